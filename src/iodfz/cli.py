"""The ``iodfz`` command line: compress, decompress, test, info.

Options follow gzip/zstd. Errors are one line each, ``iodfz: FILE: reason``, on stderr; a batch
goes on after a failed file and exits with status 1. ``--debug`` adds tracebacks. Other modules
may add subcommands with ``@app.command()`` (see the import of ``iodfz.cli_extra`` at the end).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import stat
import sys
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from iodfz import __version__, api
from iodfz.codecs import DEFAULT_LEVEL, MAX_LEVEL, MIN_LEVEL, Options
from iodfz.errors import IodfError

SUFFIX = ".iodf"
STDIO = "-"
# Show a progress bar for a single input from this size on (batches always get one).
_PROGRESS_MIN_BYTES = 64 << 20

app = typer.Typer(
    name="iodfz",
    help="Lossless file compressor: neural codec for images, zstd for everything else.",
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _say(message: str) -> None:
    err.print(f"iodfz: {message}", markup=False)


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """One file to process. ``src``/``dst`` are paths or ``-`` (stdin/stdout); ``dst`` is
    None for test."""

    action: str
    src: str
    dst: str | None
    options: Options = field(default_factory=Options)
    force: bool = False
    remove_src: bool = False


@dataclass
class Outcome:
    src: str
    dst: str | None = None
    original: int = 0
    compressed: int = 0
    error: str | None = None
    trace: str | None = None


def _stdin() -> BinaryIO:
    return sys.stdin.buffer


def _stdout() -> BinaryIO:
    return sys.stdout.buffer


def _compress(job: Job, progress: Callable[[int], None] | None) -> api.Result:
    if job.src == STDIO:
        if job.dst == STDIO:
            return api.compress(_stdin(), _stdout(), job.options, progress=progress)
        assert job.dst is not None
        with api.atomic_output(job.dst, job.force) as out:
            return api.compress(_stdin(), out, job.options, progress=progress)
    if job.dst == STDIO:
        with open(job.src, "rb") as fin:
            meta = api.file_metadata(fin, job.src)
            return api.compress(fin, _stdout(), job.options, progress=progress, **meta)
    assert job.dst is not None
    return api.compress_file(
        job.src,
        job.dst,
        job.options,
        force=job.force,
        verify=job.remove_src,
        progress=progress,
    )


def _decompress(job: Job, progress: Callable[[int], None] | None) -> api.ContainerInfo:
    threads = job.options.threads
    if job.action == "test" or job.dst == STDIO:
        dst = None if job.action == "test" else _stdout()
        if job.src == STDIO:
            return api.decompress(_stdin(), dst, threads=threads, progress=progress)
        with open(job.src, "rb") as fin:
            return api.decompress(fin, dst, threads=threads, progress=progress)
    assert job.dst is not None
    if job.src == STDIO:
        with api.atomic_output(job.dst, job.force) as out:
            return api.decompress(_stdin(), out, threads=threads, progress=progress)
    return api.decompress_file(
        job.src,
        job.dst,
        force=job.force,
        verify=job.remove_src,
        threads=threads,
        progress=progress,
    )


def run_job(job: Job, progress: Callable[[int], None] | None = None) -> Outcome:
    """Run one job, turning every failure into ``Outcome.error`` (never raises, so it can
    run in a worker process)."""
    outcome = Outcome(job.src, job.dst)
    try:
        if job.action == "compress":
            result = _compress(job, progress)
            outcome.original, outcome.compressed = result.original_size, result.compressed_size
        else:
            info = _decompress(job, progress)
            outcome.original, outcome.compressed = info.original_size, info.compressed_size
        if job.dst == STDIO:
            _stdout().flush()
        if job.remove_src and job.src != STDIO and job.dst not in (None, STDIO):
            os.unlink(job.src)
    except IodfError as exc:
        outcome.error = str(exc)
        outcome.trace = traceback.format_exc()
    except OSError as exc:
        if isinstance(exc, BrokenPipeError) and job.dst == STDIO:
            raise  # the reader of stdout went away: main() exits quietly
        outcome.error = _os_reason(exc, job.src)
        outcome.trace = traceback.format_exc()
    except Exception as exc:  # a bug: report it like any error, traceback with --debug
        outcome.error = f"internal error: {type(exc).__name__}: {exc}"
        outcome.trace = traceback.format_exc()
    return outcome


def _os_reason(exc: OSError, src: str) -> str:
    reason = exc.strerror or str(exc)
    if exc.filename is not None and os.fspath(exc.filename) != src:
        return f"{os.fsdecode(exc.filename)}: {reason}"
    return reason


# --------------------------------------------------------------------------- inputs


@dataclass
class Batch:
    """Reporting for one command: notes (unless quiet) and errors, counted for the exit status."""

    quiet: bool
    debug: bool
    failed: int = 0

    def note(self, path: str, message: str) -> None:
        if not self.quiet:
            _say(f"{path}: {message}")

    def fail(self, path: str, message: str, trace: str | None = None) -> None:
        self.failed += 1
        if self.debug and trace:
            err.print(trace, markup=False, end="")
        _say(f"{path}: {message}")


def _walk(root: str, batch: Batch) -> Iterator[str]:
    """Regular files under ``root``, sorted; symlinks and special files are noted."""

    def onerror(exc: OSError) -> None:
        batch.fail(os.fsdecode(exc.filename or root), _os_reason(exc, exc.filename or root))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames.sort()
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                batch.note(path, "symbolic link -- skipped")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError as exc:
                batch.fail(path, _os_reason(exc, path))
                continue
            if stat.S_ISLNK(mode):
                batch.note(path, "symbolic link -- skipped")
            elif not stat.S_ISREG(mode):
                batch.note(path, "not a regular file -- skipped")
            else:
                yield path


def _inputs(files: list[str] | None, recursive: bool, batch: Batch) -> Iterator[tuple[str, str]]:
    """Yield ``(path, root)`` pairs; ``root`` is the directory argument a file was found
    under (for ``--output-dir`` mirroring), or the file itself."""
    for arg in files or [STDIO]:
        if arg != STDIO and os.path.isdir(arg):
            if not recursive:
                batch.fail(arg, "is a directory (use -r)")
                continue
            for path in _walk(arg, batch):
                yield path, arg
        else:
            yield arg, arg


def _target(path: str, root: str, output_dir: Path | None, name: str) -> str:
    """Where the output for ``path`` goes: beside it, or under ``output_dir`` mirroring the
    tree below the directory argument ``root``."""
    if output_dir is None:
        return os.path.join(os.path.dirname(path), name)
    if root == path:
        return os.path.join(output_dir, name)
    rel = os.path.relpath(os.path.dirname(path), root)
    top = os.path.basename(os.path.normpath(root))
    return os.path.normpath(os.path.join(output_dir, top, rel, name))


# --------------------------------------------------------------------------- running


def _run_all(jobs: list[Job], batch: Batch, workers: int, verbose: bool) -> None:
    sizes = [_size(job.src) for job in jobs]
    show = (
        err.is_terminal
        and not batch.quiet
        and not any(j.src == STDIO or j.dst == STDIO for j in jobs)
        and (len(jobs) > 1 or sum(sizes) >= _PROGRESS_MIN_BYTES)
    )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not show,
    )
    with progress:
        task = progress.add_task(jobs[0].action if jobs else "", total=sum(sizes))

        def report(job: Job, outcome: Outcome) -> None:
            if outcome.error is not None:
                batch.fail(job.src, outcome.error, outcome.trace)
            elif verbose:
                _report_ok(job, outcome)

        if workers > 1 and len(jobs) > 1 and all(job.dst != STDIO for job in jobs):
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
                futures = [pool.submit(run_job, job) for job in jobs]
                for job, size, future in zip(jobs, sizes, futures, strict=True):
                    report(job, future.result())
                    progress.advance(task, size)
        else:
            for job, size in zip(jobs, sizes, strict=True):
                done = progress.tasks[task].completed
                outcome = run_job(job, lambda n: progress.advance(task, n))
                progress.update(task, completed=done + size)
                report(job, outcome)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size if path != STDIO else 0
    except OSError:
        return 0


def _report_ok(job: Job, outcome: Outcome) -> None:
    src = "stdin" if job.src == STDIO else job.src
    if job.action == "test":
        _say(f"{src}: OK ({_human(outcome.original)})")
        return
    dst = "stdout" if job.dst == STDIO else job.dst
    pct = 100 * outcome.compressed / outcome.original if outcome.original else 0.0
    _say(f"{src}: {pct:.2f}% ({_human(outcome.original)} => {_human(outcome.compressed)}, {dst})")


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _workers(threads: int) -> int:
    return os.cpu_count() or 1 if threads == 0 else threads


def _finish(batch: Batch) -> None:
    if batch.failed:
        raise typer.Exit(1)


def _usage(message: str) -> None:
    _say(message)
    raise typer.Exit(1)


# --------------------------------------------------------------------------- commands

_FILES = typer.Argument(None, help="Files (directories with -r). '-' or none: stdin.")
_STDOUT = typer.Option(False, "-c", "--stdout", help="Write to stdout, keep inputs.")
_KEEP = typer.Option(False, "-k", "--keep", help="Keep input files (the default).")
_RM = typer.Option(False, "--rm", help="Remove each input once its output is verified.")
_FORCE = typer.Option(False, "-f", "--force", help="Overwrite existing outputs.")
_OUTPUT = typer.Option(None, "-o", "--output", help="Output file (one input only).")
_OUTPUT_DIR = typer.Option(
    None, "--output-dir", help="Write outputs under DIR, mirroring the input tree."
)
_RECURSIVE = typer.Option(False, "-r", "--recursive", help="Process every file in directories.")
_THREADS = typer.Option(1, "-T", "--threads", min=0, help="Files in parallel (0: all cores).")
_QUIET = typer.Option(False, "-q", "--quiet", help="Only errors.")
_VERBOSE = typer.Option(False, "-v", "--verbose", help="One line per file.")
_DEBUG = typer.Option(False, "--debug", help="Show tracebacks of errors.")


def _check_options(
    keep: bool, rm: bool, stdout: bool, output: Path | None, output_dir: Path | None
) -> None:
    if keep and rm:
        _usage("-k/--keep and --rm contradict each other")
    if output is not None and output_dir is not None:
        _usage("-o/--output and --output-dir cannot be combined")
    if (output is not None or output_dir is not None) and stdout:
        _usage("-c/--stdout cannot be combined with -o/--output or --output-dir")


def _within_file_threads(workers: int) -> int:
    """Threads per file: all cores for one file at a time, else the cores shared out."""
    return 0 if workers <= 1 else max(1, (os.cpu_count() or 1) // workers)


@app.command()
def compress(
    files: list[str] = _FILES,
    stdout: bool = _STDOUT,
    keep: bool = _KEEP,
    rm: bool = _RM,
    force: bool = _FORCE,
    output: Path | None = _OUTPUT,
    output_dir: Path | None = _OUTPUT_DIR,
    recursive: bool = _RECURSIVE,
    threads: int = _THREADS,
    quiet: bool = _QUIET,
    verbose: bool = _VERBOSE,
    level: int = typer.Option(
        DEFAULT_LEVEL, "--level", min=MIN_LEVEL, max=MAX_LEVEL, help="zstd level."
    ),
    pixels: bool = typer.Option(
        False,
        "--pixels",
        help="PNG only: allow a pixel-exact instead of byte-exact reconstruction.",
    ),
    debug: bool = _DEBUG,
) -> None:
    """Compress FILE to FILE.iodf (stdin to stdout without FILE)."""
    _check_options(keep, rm, stdout, output, output_dir)
    batch = Batch(quiet, debug)
    workers = _workers(threads)
    options = Options(level=level, pixels=pixels, threads=_within_file_threads(workers))
    inputs = list(_inputs(files, recursive, batch))
    if (output is not None or stdout) and len(inputs) > 1:
        _usage("-o/--output and -c/--stdout take a single input when compressing")
    jobs = []
    for path, root in inputs:
        if path == STDIO:
            if sys.stdin.isatty() and not force:
                batch.fail("stdin", "refusing to read data from a terminal (use -f)")
                continue
            dst = STDIO if output is None else str(output)
        elif path.endswith(SUFFIX) and not force:
            batch.note(path, f"already has {SUFFIX} suffix -- skipped (use -f)")
            continue
        elif stdout:
            dst = STDIO
        elif output is not None:
            dst = str(output)
        else:
            dst = _target(path, root, output_dir, os.path.basename(path) + SUFFIX)
        if dst == STDIO and sys.stdout.isatty():
            batch.fail(
                path if path != STDIO else "stdout",
                "refusing to write compressed data to a terminal (use -o or redirect)",
            )
            continue
        jobs.append(Job("compress", path, dst, options, force, rm and dst != STDIO))
    _prepare_dirs(jobs, batch)
    _run_all(jobs, batch, workers, verbose)
    _finish(batch)


@app.command()
def decompress(
    files: list[str] = _FILES,
    stdout: bool = _STDOUT,
    keep: bool = _KEEP,
    rm: bool = _RM,
    force: bool = _FORCE,
    output: Path | None = _OUTPUT,
    output_dir: Path | None = _OUTPUT_DIR,
    recursive: bool = _RECURSIVE,
    threads: int = _THREADS,
    quiet: bool = _QUIET,
    verbose: bool = _VERBOSE,
    debug: bool = _DEBUG,
) -> None:
    """Decompress FILE.iodf to FILE (stdin to stdout without FILE)."""
    _check_options(keep, rm, stdout, output, output_dir)
    batch = Batch(quiet, debug)
    workers = _workers(threads)
    options = Options(threads=_within_file_threads(workers))
    inputs = list(_inputs(files, recursive, batch))
    if output is not None and len(inputs) > 1:
        _usage("-o/--output takes a single input")
    jobs = []
    for path, root in inputs:
        if path == STDIO:
            dst = STDIO if output is None else str(output)
        elif stdout:
            dst = STDIO
        elif output is not None:
            dst = str(output)
        elif not path.endswith(SUFFIX) or path.endswith("/" + SUFFIX) or path == SUFFIX:
            if root != path:  # found by -r: silently not ours
                if verbose:
                    batch.note(path, f"no {SUFFIX} suffix -- skipped")
                continue
            batch.fail(path, f"unknown suffix (expected {SUFFIX}); name the output with -o or -c")
            continue
        else:
            dst = _target(path, root, output_dir, os.path.basename(path)[: -len(SUFFIX)])
        jobs.append(Job("decompress", path, dst, options, force, rm and dst != STDIO))
    _prepare_dirs(jobs, batch)
    _run_all(jobs, batch, workers, verbose)
    _finish(batch)


@app.command("test")
def test_cmd(
    files: list[str] = _FILES,
    recursive: bool = _RECURSIVE,
    threads: int = _THREADS,
    quiet: bool = _QUIET,
    verbose: bool = _VERBOSE,
    debug: bool = _DEBUG,
) -> None:
    """Decode FILE.iodf and verify its checksums without writing anything."""
    batch = Batch(quiet, debug)
    workers = _workers(threads)
    options = Options(threads=_within_file_threads(workers))
    jobs = [
        Job("test", path, None, options)
        for path, root in _inputs(files, recursive, batch)
        if root == path or path.endswith(SUFFIX)
    ]
    _run_all(jobs, batch, workers, verbose)
    _finish(batch)


@app.command()
def info(
    files: list[str] = _FILES,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    verbose: bool = _VERBOSE,
    debug: bool = _DEBUG,
) -> None:
    """Show codec, sizes, ratio, image shape, model id and checksum of FILE.iodf.

    Checks the container's CRCs but does not decode; use `iodfz test` for that.
    """
    batch = Batch(False, debug)
    rows: list[dict[str, Any]] = []
    for path in files or [STDIO]:
        try:
            if path == STDIO:
                result = api.info(sys.stdin.buffer)
            else:
                with open(path, "rb") as fin:
                    result = api.info(fin)
        except (IodfError, OSError) as exc:
            reason = _os_reason(exc, path) if isinstance(exc, OSError) else str(exc)
            batch.fail(path, reason, traceback.format_exc())
            rows.append({"file": path, "error": reason})
            continue
        rows.append({"file": path, **result.to_dict()})
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        _print_info([r for r in rows if "error" not in r], verbose)
    _finish(batch)


app.command("list", hidden=True, help="Alias of info.")(info)


def _print_info(rows: list[dict[str, Any]], verbose: bool) -> None:
    if not rows:
        return
    # Piped output: no line wrapping, so each file is one line.
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 1 << 16)
    table = Table(box=None, pad_edge=False)
    for column in ("Codec", "Frames", "Compressed", "Original", "Ratio", "Shape", "Model", "Exact"):
        table.add_column(column, justify="left" if column in ("Codec", "Shape") else "right")
    table.add_column("File", overflow="fold")
    for row in rows:
        shape = row["shape"]
        if shape is not None:
            shape = (
                f"{shape['height']}x{shape['width']}x{shape['channels']} {shape['bit_depth']}-bit"
            )
        table.add_row(
            row["codec"],
            str(row["frames"]),
            _human(row["compressed_size"]),
            _human(row["original_size"]),
            f"{row['ratio']:.3f}",
            shape or "-",
            (row["model_id"] or "-")[:16],
            row["guarantee"],
            Text(row["file"]),
        )
    out.print(table)
    if verbose:
        for row in rows:
            out.print(f"{row['file']}:", markup=False)
            for key in ("name", "mode", "mtime_ns", "frame_codecs", "tiling", "sections"):
                out.print(f"  {key}: {row[key]}", markup=False)
            out.print(f"  model id: {row['model_id']}", markup=False)
            out.print(f"  content digest: {row['content_digest']}", markup=False)
            out.print(f"  checksum: {row['checksum']}", markup=False)


def _prepare_dirs(jobs: list[Job], batch: Batch) -> None:
    """Create output directories for --output-dir."""
    for job in jobs:
        if job.dst in (None, STDIO):
            continue
        parent = os.path.dirname(job.dst)
        if parent:
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                batch.fail(job.src, _os_reason(exc, job.src))


def _version(value: bool) -> None:
    if value:
        print(f"iodfz {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Lossless file compressor: neural codec for images, zstd for everything else."""


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`): exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


with contextlib.suppress(ImportError):  # subcommands added by other modules (selftest, bench)
    import iodfz.cli_extra  # noqa: F401
