"""The ``iodfz`` command line: compress, decompress, test, info.

Options follow gzip/zstd, with their short forms where they do not clash: ``iodfz -d`` is
``decompress``, ``-t`` is ``test``, ``-l`` is ``info``, ``-1`` … ``-19`` are ``--level``, and
options without a command mean ``compress``. Errors are one line each, ``iodfz: FILE: reason``,
on stderr; a batch goes on after a failed file and exits with status 1; a usage error is one
``iodfz:`` line and exit status 2. ``--debug`` adds tracebacks.

The typer app (``app``, :mod:`iodfz.cli_app`) is built only when a command line needs it: a
plain compress, decompress or test runs the commands here directly (:func:`_run_plain`), as
importing typer and building its commands costs more than the work on a few small files.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from iodfz import api
from iodfz.codecs import (
    DEFAULT_LEVEL,
    MAX_LEVEL,
    MIN_LEVEL,
    Options,
)
from iodfz.container import CODEC_IMAGE, CODEC_ZSTD, codec_name
from iodfz.errors import IodfError
from iodfz.limits import MAX_AHEAD_BYTES, MAX_AHEAD_FILES
from iodfz.machine import available_cores

if TYPE_CHECKING:  # imported where used: a run without a pool or a bar never loads them
    from concurrent.futures import Future, ProcessPoolExecutor

SUFFIX = ".iodf"
STDIO = "-"
USAGE_EXIT = 2  # exit status of a usage error (a failed file gives 1)
# Show a progress bar for a single input from this size on (batches always get one).
_PROGRESS_MIN_BYTES = 64 << 20
_ALIASES = {"-d": "decompress", "--decompress": "decompress", "-t": "test", "--test": "test"}
_ALIASES |= {"-l": "info", "--list": "info", "-z": "compress", "--compress": "compress"}
_LEVEL_FLAG = re.compile(r"-(1[0-9]|[1-9])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(text: str) -> str:
    """``text`` on one line: bytes that are not UTF-8 (file names decoded with surrogate
    escapes) as ``\\xNN``, control characters such as a newline as ``\\n`` or ``\\xNN``."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _say(message: str) -> None:
    print(f"iodfz: {printable(message)}", file=sys.stderr)  # above a live progress bar


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived: unwind (removing temporary outputs) and exit 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_WORKER_POOL_RUNNING = False  # execute() runs jobs in worker processes


def _interrupt(signum: int, frame: object) -> None:
    """SIGINT, SIGTERM or SIGHUP in the main process: remove the temporary outputs and leave
    at once — unless worker processes run, which must be stopped by unwinding (``execute``)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second signal must not
        signal.signal(sig, signal.SIG_IGN)  # stop the clean-up
    if not _WORKER_POOL_RUNNING:
        api.remove_temporary_outputs()
        os._exit(128 + signum)
    raise Interrupted(signum)


def _expand_aliases(args: list[str], commands: Sequence[str]) -> list[str]:
    """gzip/zstd short forms: ``-1`` … ``-19`` are ``--level N``; without a command, ``-d``,
    ``-t``, ``-l`` (``-z``) pick one and other options mean ``compress``."""
    end = args.index("--") if "--" in args else len(args)
    head: list[str] = []
    for arg in args[:end]:
        head += ["--level", arg[1:]] if _LEVEL_FLAG.fullmatch(arg) else [arg]
    tail = args[end:]
    if not head or head[0] in commands or not head[0].startswith("-"):
        return head + tail
    if head[0] in ("-h", "--help", "-V", "--version"):
        return head + tail
    picked = [_ALIASES[arg] for arg in head if arg in _ALIASES]
    if len(set(picked)) > 1:
        raise UsageError(f"conflicting commands: {', '.join(sorted(set(picked)))}")
    rest = [arg for arg in head if arg not in _ALIASES]
    return [picked[0] if picked else "compress", *rest, *tail]


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
    names: bool = True  # compress: store the name, mode and mtime (not with -n)


@dataclass
class Outcome:
    src: str
    dst: str | None = None
    original: int = 0
    compressed: int = 0
    error: str | None = None
    trace: str | None = None
    codec: int = CODEC_ZSTD
    model_id: str | None = None  # hex id prefix of an image's model
    kept: str | None = None  # why --rm kept the input

    @property
    def how(self) -> str:
        """The codec, and for an image its model and backend (for -v): looked up only when
        asked, as that costs a model lookup per file."""
        return _how(self.codec, self.model_id)


def _stdin() -> BinaryIO:
    return sys.stdin.buffer


def _stdout() -> BinaryIO:
    return sys.stdout.buffer


def _compress(job: Job, progress: Callable[[int], None] | None, ahead: api.Ahead) -> api.Result:
    if job.src == STDIO:
        if job.dst == STDIO:
            return api.compress(_stdin(), _stdout(), job.options, progress=progress)
        assert job.dst is not None
        return api.compress_to_file(
            _stdin(), job.dst, job.options, force=job.force, progress=progress
        )
    if job.dst == STDIO:
        with open(job.src, "rb") as fin:
            meta = api.file_metadata(fin, job.src, job.names)
            return api.compress(fin, _stdout(), job.options, progress=progress, **meta)
    assert job.dst is not None
    return api.compress_file(
        job.src,
        job.dst,
        job.options,
        force=job.force,
        verify=job.remove_src,
        progress=progress,
        ahead=ahead,
        names=job.names,
    )


def _decompress(
    job: Job, progress: Callable[[int], None] | None, ahead: api.Ahead
) -> api.ContainerInfo:
    threads = job.options.threads
    if job.action == "test" or job.dst == STDIO:
        dst = None if job.action == "test" else _stdout()
        if job.src == STDIO:
            return api.decompress(_stdin(), dst, threads=threads, progress=progress)
        with open(job.src, "rb") as fin:
            return api.decompress(fin, dst, threads=threads, progress=progress, ahead=ahead)
    assert job.dst is not None
    if job.src == STDIO:
        return api.decompress_to_file(
            _stdin(), job.dst, force=job.force, threads=threads, progress=progress
        )
    return api.decompress_file(
        job.src,
        job.dst,
        force=job.force,
        verify=job.remove_src,
        threads=threads,
        progress=progress,
        ahead=ahead,
    )


def run_job(
    job: Job, progress: Callable[[int], None] | None = None, ahead: api.Ahead | None = None
) -> Outcome:
    """Run one job, turning every failure into ``Outcome.error`` (never raises, but for an
    interruption, so it can run in a worker process). ``ahead``: image results worked out
    for several jobs at once (:func:`_ahead`)."""
    outcome = Outcome(job.src, job.dst)
    ahead = ahead or api.Ahead()
    try:
        if job.action == "compress":
            result = _compress(job, progress, ahead)
            outcome.original, outcome.compressed = result.original_size, result.compressed_size
            outcome.codec, outcome.model_id = result.codec, result.model_id
            if not result.exact:
                outcome.kept = "decompression gives the same pixels, not the same bytes"
        else:
            info = _decompress(job, progress, ahead)
            outcome.original, outcome.compressed = info.original_size, info.compressed_size
            model_id = info.header.sections.model_id() if info.codec == CODEC_IMAGE else None
            outcome.codec = info.codec
            outcome.model_id = None if model_id is None else model_id.hex()
        if job.dst == STDIO:
            _stdout().flush()
        if job.remove_src and job.src != STDIO and job.dst not in (None, STDIO):
            _remove_input(job.src, outcome)
    except IodfError as exc:
        outcome.error = str(exc)
        outcome.trace = _traceback()
    except OSError as exc:
        if isinstance(exc, BrokenPipeError) and job.dst == STDIO:
            raise  # the reader of stdout went away: main() exits quietly
        outcome.error = _os_reason(exc, job.src)
        outcome.trace = _traceback()
    except Exception as exc:  # a bug: report it like any error, traceback with --debug
        outcome.error = f"internal error: {type(exc).__name__}: {exc}"
        outcome.trace = _traceback()
    return outcome


def _traceback() -> str:
    """The traceback of the exception being handled (for --debug), its module imported only
    when a file fails."""
    import traceback

    return traceback.format_exc()


def _remove_input(src: str, outcome: Outcome) -> None:
    """``--rm``: remove a regular input once its output is verified and gives back its bytes;
    a FIFO, device or socket is never removed."""
    if outcome.kept is None and not stat.S_ISREG(os.lstat(src).st_mode):
        outcome.kept = "not a regular file"
    if outcome.kept is None:
        os.unlink(src)


def _how(codec: int, model_id: str | None) -> str:
    """``zstd``, or ``neural-image, model NAME (ID), backend NAME`` for -v; ``model_id`` is
    the prefix of the model's id that the container keeps."""
    if model_id is None:
        return codec_name(codec)
    card = api.model_card(model_id)
    if card is None:
        return f"{codec_name(codec)}, model {model_id} (not installed)"
    name, full_id = card.get("name"), card["model_id"]
    return f"{codec_name(codec)}, model {name} ({full_id[:16]}), backend {_backend_name(full_id)}"


def _backend_name(model_id: str) -> str:
    """The backend the image codec runs this model on: the selection it uses itself."""
    try:
        from iodfz import zoo
        from iodfz.codec import predictive
        from iodfz.engine.backends import backend_for

        if predictive.coders_for(model_id):
            return "numpy (no network)"
        return backend_for(zoo.load_by_id(model_id)).name
    except Exception as exc:  # no usable model or backend: say why instead of failing the file
        return f"none ({exc})"


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
            sys.stderr.write(trace)
        _say(f"{path}: {message}")


def _walk(root: str, batch: Batch, skip: Callable[[str], str | None]) -> Iterator[str]:
    """Regular files under ``root``, sorted; symlinks and special files are noted, and so is
    a file for which ``skip(path)`` gives a reason."""

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
            if api.is_temp_name(name):  # another run's output in the making: never an input
                continue
            try:
                mode = os.lstat(path).st_mode
            except OSError as exc:
                batch.fail(path, _os_reason(exc, path))
                continue
            reason = skip(path)
            if stat.S_ISLNK(mode):
                batch.note(path, "symbolic link -- skipped")
            elif not stat.S_ISREG(mode):
                batch.note(path, "not a regular file -- skipped")
            elif reason is not None:
                batch.note(path, reason)
            else:
                yield path


def _no_skip(path: str) -> str | None:
    return None


def _inputs(
    files: Sequence[str] | None,
    recursive: bool,
    batch: Batch,
    skip: Callable[[str], str | None] = _no_skip,
) -> Iterator[tuple[str, str]]:
    """Yield ``(path, root)`` pairs; ``root`` is the directory argument a file was found
    under (for ``--output-dir`` mirroring), or the file itself. ``skip`` gives the reason
    to pass over a file found by ``-r``."""
    for arg in files or [STDIO]:
        if arg != STDIO and os.path.isdir(arg):
            if not recursive:
                batch.fail(arg, "is a directory (use -r)")
                continue
            for path in _walk(arg, batch, skip):
                yield path, arg
        else:
            yield arg, arg


def _special(path: str) -> str | None:
    """Why a named input is refused without -f (like gzip): it is not a regular file —
    a FIFO would block with no writer, a device never end. None for a regular file, a
    missing one (its error comes when it is opened) and stdin."""
    if path == STDIO:
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return "not a regular file -- skipped (use -f to read it)"


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

Advance = Callable[[int, int], None]  # (job index, bytes of that job done so far)
Report = Callable[[int, Outcome], None]  # (job index, its outcome)

_WORKER_QUEUE: Any = None  # worker processes: where their progress goes
_WORKER_BUSY = False


def _worker_init(queue: Any) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = queue
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _worker_signal)


def _worker_signal(signum: int, frame: object) -> None:
    """In a worker: unwind the running job (its temporary output is removed on the way),
    or leave at once when idle."""
    if not _WORKER_BUSY:
        os._exit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def _worker_jobs(start: int, jobs: list[Job]) -> list[Outcome]:
    """In a worker: run ``jobs`` (numbered from ``start``) as a single process runs them."""
    global _WORKER_BUSY
    outcomes: list[Outcome] = []

    def advance(index: int, done: int) -> None:
        _WORKER_QUEUE.put((start + index, done))

    _WORKER_BUSY = True
    try:
        execute(jobs, 1, advance, lambda index, outcome: outcomes.append(outcome))
        return outcomes
    except (Interrupted, KeyboardInterrupt) as exc:
        api.remove_temporary_outputs()  # unwinding removed them, unless it came too early
        os._exit(128 + getattr(exc, "signum", signal.SIGINT))
    finally:
        _WORKER_BUSY = False


def execute(jobs: list[Job], workers: int, advance: Advance, report: Report) -> None:
    """Run ``jobs``, in ``workers`` processes when there are several (not for stdio jobs).
    ``advance`` hears how far each file has got, within files too; ``report`` gets each
    outcome in job order. An interruption stops the workers, each removing its temporary
    output, before it propagates."""
    if workers > 1 and len(jobs) > 1 and all(job.dst != STDIO for job in jobs):
        _execute_pool(jobs, workers, advance, report)
        return
    for start, chunk in _runs(jobs):
        ahead = _ahead(chunk)
        for index, job in enumerate(chunk, start):
            done = 0

            def progress(n: int, index: int = index) -> None:
                nonlocal done
                done += n
                advance(index, done)

            report(index, run_job(job, progress, ahead))


def _runs(jobs: list[Job]) -> Iterator[tuple[int, list[Job]]]:
    """``jobs`` in runs worked out at once (:func:`_ahead`), each with the index of its first
    job: at most MAX_AHEAD_FILES files of at most MAX_AHEAD_BYTES in all (a larger file alone),
    so that a command's memory is bounded and its progress moves run by run."""
    run: list[Job] = []
    start = size = 0
    for index, job in enumerate(jobs):
        n = _file_size(job.src)
        if run and (len(run) == MAX_AHEAD_FILES or size + n > MAX_AHEAD_BYTES):
            yield start, run
            run, start, size = [], index, 0
        run.append(job)
        size += n
    if run:
        yield start, run


def _file_size(path: str) -> int:
    """The size of file ``path``; 0 for stdin or one that cannot be looked at (doing its job
    says why)."""
    if path == STDIO:
        return 0
    try:
        return os.stat(path).st_size
    except (OSError, ValueError):
        return 0


def _ahead(jobs: list[Job]) -> api.Ahead:
    """The image results of ``jobs`` (one command's) worked out at once where that is faster:
    their images of one shape are coded together. Each job then takes its result by
    content, and does everything else — and anything not worked out here — alone."""
    paths = [job.src for job in jobs if job.src != STDIO]
    if len(paths) < 2:
        return api.Ahead()
    if jobs[0].action == "compress":
        return api.compress_ahead(paths, jobs[0].options)
    return api.decompress_ahead(paths)


def _execute_pool(jobs: list[Job], workers: int, advance: Advance, report: Report) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    queue = context.SimpleQueue()

    def drain() -> None:
        while not queue.empty():
            advance(*queue.get())

    global _WORKER_POOL_RUNNING
    pool = ProcessPoolExecutor(
        min(workers, len(jobs)), mp_context=context, initializer=_worker_init, initargs=(queue,)
    )
    _WORKER_POOL_RUNNING = True
    # Jobs go out in runs, so that a worker works out its images together (_ahead), and
    # in several runs per worker, so that the workers finish together.
    size = min(MAX_AHEAD_FILES, -(-len(jobs) // (2 * workers)))
    starts = range(0, len(jobs), size)
    try:
        futures = [pool.submit(_worker_jobs, i, jobs[i : i + size]) for i in starts]
        for start, future in zip(starts, futures, strict=True):
            for index, outcome in enumerate(_wait(future, drain), start):
                report(index, outcome)
        drain()
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        _WORKER_POOL_RUNNING = False
    pool.shutdown()


def _wait(future: Future[list[Outcome]], drain: Callable[[], None]) -> list[Outcome]:
    from concurrent.futures import TimeoutError as FutureTimeout

    while True:
        try:
            outcome = future.result(timeout=0.2)
        except FutureTimeout:
            drain()
            continue
        drain()
        return outcome


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Ask every worker to stop (SIGTERM: a busy one removes its temporary output first) and
    wait for them. The executor has no public way to reach its processes before 3.14."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.terminate()
    for process in processes:
        process.join(timeout=30)


def _run_all(jobs: list[Job], batch: Batch, workers: int, verbose: bool) -> None:
    sizes = [_size(job.src) for job in jobs]
    show = (
        sys.stderr.isatty()
        and not batch.quiet
        and not any(j.src == STDIO or j.dst == STDIO for j in jobs)
        and (len(jobs) > 1 or sum(sizes) >= _PROGRESS_MIN_BYTES)
    )
    done = [0] * len(jobs)
    with _bar(show, jobs[0].action if jobs else "", sum(sizes)) as update:

        def advance(index: int, amount: int) -> None:
            done[index] = min(amount, sizes[index])
            update(sum(done))

        def report(index: int, outcome: Outcome) -> None:
            advance(index, sizes[index])
            job = jobs[index]
            if outcome.error is not None:
                batch.fail(job.src, outcome.error, outcome.trace)
                return
            if outcome.kept is not None:
                batch.note(job.src, f"kept ({outcome.kept})")
            if verbose:
                _report_ok(job, outcome)

        execute(jobs, workers, advance, report)


@contextlib.contextmanager
def _bar(show: bool, title: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (only if ``show``: rich is loaded only then), transient;
    yields the function that sets how many of the ``total`` bytes are done."""
    if not show:
        yield lambda completed: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    text = TextColumn("{task.description}")
    with Progress(text, *columns, console=console, transient=True) as progress:
        task = progress.add_task(title, total=total)
        yield lambda completed: progress.update(task, completed=completed)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size if path != STDIO else 0
    except OSError:
        return 0


def _report_ok(job: Job, outcome: Outcome) -> None:
    src = "stdin" if job.src == STDIO else job.src
    if job.action == "test":
        _say(f"{src}: OK ({_human(outcome.original)}, {outcome.how})")
        return
    dst = "stdout" if job.dst == STDIO else job.dst
    pct = 100 * outcome.compressed / outcome.original if outcome.original else 0.0
    sizes = f"{_human(outcome.original)} => {_human(outcome.compressed)}"
    _say(f"{src}: {pct:.2f}% ({sizes}, {dst}) {outcome.how}")


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _workers(threads: int) -> int:
    return available_cores() if threads == 0 else threads


def _finish(batch: Batch) -> None:
    if batch.failed:
        sys.exit(1)


class UsageError(Exception):
    """A usage error: one ``iodfz:`` line and exit status 2 (``USAGE_EXIT``)."""


def _usage(message: str) -> None:
    raise UsageError(message)


def _terminal_stdin(batch: Batch, force: bool = False) -> bool:
    """Refuse to read data from a terminal (it would wait for typing): True if refused."""
    if sys.stdin.isatty() and not force:
        batch.fail("stdin", "refusing to read data from a terminal (use -f, or redirect)")
        return True
    return False


# --------------------------------------------------------------------------- commands


def _check_options(
    keep: bool, rm: bool, stdout: bool, output: Path | None, output_dir: Path | None, threads: int
) -> None:
    if keep and rm:
        _usage("-k/--keep and --rm contradict each other")
    if output is not None and output_dir is not None:
        _usage("-o/--output and --output-dir cannot be combined")
    if (output is not None or output_dir is not None) and stdout:
        _usage("-c/--stdout cannot be combined with -o/--output or --output-dir")
    if threads < 0:
        _usage(f"-T/--threads must be 0 or more, not {threads}")


def _within_file_threads(workers: int) -> int:
    """Threads per file: all cores for one file at a time, else the cores shared out."""
    return 0 if workers <= 1 else max(1, available_cores() // workers)


def _iodf_skip(path: str) -> str | None:
    """Why ``compress -r`` passes over a file: a ``.iodf`` file is skipped even with -f (an
    output of this or another run)."""
    return f"already has {SUFFIX} suffix -- skipped" if path.endswith(SUFFIX) else None


def compress(
    files: list[str] | None = None,
    stdout: bool = False,
    keep: bool = False,
    rm: bool = False,
    force: bool = False,
    output: Path | None = None,
    output_dir: Path | None = None,
    recursive: bool = False,
    threads: int = 1,
    quiet: bool = False,
    verbose: bool = False,
    level: int = DEFAULT_LEVEL,
    pixels: bool = False,
    no_name: bool = False,
    debug: bool = False,
) -> None:
    """Compress each FILE to FILE.iodf (stdin to stdout without FILE)."""
    _check_options(keep, rm, stdout, output, output_dir, threads)
    if not MIN_LEVEL <= level <= MAX_LEVEL:
        _usage(f"--level must be {MIN_LEVEL} to {MAX_LEVEL}, not {level}")
    batch = Batch(quiet, debug)
    workers = _workers(threads)
    options = Options(level=level, pixels=pixels, threads=_within_file_threads(workers))
    inputs = list(_inputs(files, recursive, batch, _iodf_skip))
    if (output is not None or stdout) and len(inputs) > 1:
        _usage("-o/--output and -c/--stdout take a single input when compressing")
    jobs = []
    for path, root in inputs:
        if path == STDIO:
            if _terminal_stdin(batch, force):
                continue
            dst = STDIO if output is None else str(output)
        elif path.endswith(SUFFIX) and not force:
            batch.note(path, f"already has {SUFFIX} suffix -- skipped (use -f)")
            continue
        elif (special := _special(path)) is not None and not force:
            batch.fail(path, special)
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
        jobs.append(
            Job("compress", path, dst, options, force, rm and dst != STDIO, names=not no_name)
        )
    _run_all(_prepare_dirs(jobs, batch) if output_dir else jobs, batch, workers, verbose)
    _finish(batch)


def decompress(
    files: list[str] | None = None,
    stdout: bool = False,
    keep: bool = False,
    rm: bool = False,
    force: bool = False,
    output: Path | None = None,
    output_dir: Path | None = None,
    recursive: bool = False,
    threads: int = 1,
    quiet: bool = False,
    verbose: bool = False,
    debug: bool = False,
) -> None:
    """Decompress each FILE.iodf to FILE (stdin to stdout without FILE)."""
    _check_options(keep, rm, stdout, output, output_dir, threads)
    batch = Batch(quiet, debug)
    workers = _workers(threads)
    options = Options(threads=_within_file_threads(workers))
    inputs = list(_inputs(files, recursive, batch))
    if output is not None and len(inputs) > 1:
        _usage("-o/--output takes a single input")
    jobs = []
    for path, root in inputs:
        if path == STDIO:
            if _terminal_stdin(batch, force):
                continue
            dst = STDIO if output is None else str(output)
        elif (special := _special(path)) is not None and not force:
            batch.fail(path, special)
            continue
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
    _run_all(_prepare_dirs(jobs, batch) if output_dir else jobs, batch, workers, verbose)
    _finish(batch)


def test_cmd(
    files: list[str] | None = None,
    recursive: bool = False,
    threads: int = 1,
    quiet: bool = False,
    verbose: bool = False,
    debug: bool = False,
) -> None:
    """Decode each FILE.iodf and verify its checksums without writing anything."""
    _check_options(False, False, False, None, None, threads)
    batch = Batch(quiet, debug)
    workers = _workers(threads)
    options = Options(threads=_within_file_threads(workers))
    jobs = [
        Job("test", path, None, options)
        for path, root in _inputs(files, recursive, batch)
        if (root == path or path.endswith(SUFFIX))
        and not (path == STDIO and _terminal_stdin(batch))
    ]
    _run_all(jobs, batch, workers, verbose)
    _finish(batch)


def info(
    files: list[str] | None = None,
    as_json: bool = False,
    verbose: bool = False,
    debug: bool = False,
) -> None:
    """Show codec, sizes, ratio, image shape, model and checksum of each FILE.iodf.

    Checks the container's CRCs but does not decode; use `iodfz test` for that.
    """
    batch = Batch(False, debug)
    rows: list[dict[str, Any]] = []
    for path in files or [STDIO]:
        if path == STDIO and _terminal_stdin(batch):
            continue
        try:
            rows.append({"file": path, **_info_row(path)})
        except Exception as exc:  # one bad file must not hide the others
            reason = _reason(exc, path)
            batch.fail(path, reason, _traceback())
            rows.append({"file": path, "error": reason})
    if as_json:
        import json

        print(json.dumps(rows, indent=2))
    else:
        _print_info([r for r in rows if "error" not in r], verbose)
    _finish(batch)


def _info_row(path: str) -> dict[str, Any]:
    if path == STDIO:
        return api.info(_stdin()).to_dict()
    with open(path, "rb") as fin:
        return api.info(fin).to_dict()


def _reason(exc: Exception, path: str) -> str:
    if isinstance(exc, OSError):
        return _os_reason(exc, path)
    if isinstance(exc, IodfError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def _info_cells(row: dict[str, Any]) -> list[tuple[str, ...]]:
    """Each column's cell for one file, in one or two parts (two lines when narrow)."""
    shape = row["shape"]
    codec = (row["codec"],)
    if shape is not None:
        bits = "" if shape["bit_depth"] == 8 else f" {shape['bit_depth']}-bit"
        codec += (f"{shape['height']}x{shape['width']}x{shape['channels']}{bits}",)
    model = ("-",)
    if row["model_id"] is not None:
        card = api.model_card(row["model_id"])
        full_id = row["model_id"] if card is None else card["model_id"]
        model = (row["model_name"] or "not installed", full_id[:_SHORT_ID])
    exact = tuple((row["guarantee"] or "unknown").split(" ", 1))
    size = (_human(row["original_size"]), f"-> {_human(row['compressed_size'])}")
    return [codec, size, (f"{row['ratio']:.3f}",), model, exact]


_INFO_COLUMNS = ("Codec", "Size", "Ratio", "Model", "Exact")
_SHORT_ID = 8  # hex digits of a model id in the table (-v and --json give it whole)


def _print_info(rows: list[dict[str, Any]], verbose: bool) -> None:
    """A table of the good rows: one line per file where the terminal is wide enough (or
    output is piped), else cells on two lines so that it stays within 80 columns."""
    if not rows:
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    piped = not sys.stdout.isatty()
    out = Console(highlight=False, width=1 << 16 if piped else None)
    cells = [_info_cells(row) for row in rows]
    longest = max(len(printable(row["file"])) for row in rows)
    one_line = piped or _width(cells, " ") + longest <= out.width
    sep = " " if one_line else "\n"
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
    for i, column in enumerate(_INFO_COLUMNS):
        width = max(len(column), *(len(part) for row in cells for part in _parts(row[i], sep)))
        justify = "right" if column == "Ratio" else "left"
        table.add_column(column, justify=justify, no_wrap=True, min_width=width)
    table.add_column("File", overflow="fold")
    for row, parts in zip(rows, cells, strict=True):
        table.add_row(*(sep.join(cell) for cell in parts), Text(printable(row["file"])))
    out.print(table)
    if verbose:
        for row in rows:
            out.print(f"{printable(row['file'])}:", markup=False)
            for key in ("name", "mode", "mtime_ns", "frame_codecs", "shape", "tiling"):
                out.print(f"  {key}: {row[key]}", markup=False)
            out.print(f"  model: {row['model_name']} {row['model_id']}", markup=False)
            for key in ("guarantee", "sections", "malformed", "content_digest", "checksum"):
                out.print(f"  {key.replace('_', ' ')}: {row[key]}", markup=False)


def _parts(cell: tuple[str, ...], sep: str) -> list[str]:
    return [" ".join(cell)] if sep == " " else list(cell)


def _width(cells: list[list[tuple[str, ...]]], sep: str) -> int:
    """Width of the table's columns but the file name's, padding included."""
    widths = [
        max(len(column), *(len(part) for row in cells for part in _parts(row[i], sep)))
        for i, column in enumerate(_INFO_COLUMNS)
    ]
    return sum(widths) + 2 * len(widths)


def _prepare_dirs(jobs: list[Job], batch: Batch) -> list[Job]:
    """Create the output directories (for --output-dir); a job whose directory cannot be
    made fails here, before it runs. Returns the jobs that can run."""
    ready = []
    for job in jobs:
        parent = os.path.dirname(job.dst) if job.dst not in (None, STDIO) else ""
        try:
            if parent:
                os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            batch.fail(job.src, _os_reason(exc, job.src))
            continue
        ready.append(job)
    return ready


BLAS_SPIN_ENV = "OPENBLAS_THREAD_TIMEOUT"
_BLAS_SPIN = "4"  # its least: idle threads wait 2^4 cycles, then sleep


def _blas_threads_sleep_when_idle() -> None:
    """Idle OpenBLAS threads spin 2^28 cycles (~0.1 s of a core each) before they sleep: once
    when numpy loads, and after every multithreaded GEMM. A command is short, and the engine
    shares work out over its own threads with a one-thread BLAS, so that spin is waste (at
    numpy's import alone 0.05-0.1 s of CPU on 2 cores): let them sleep at once, unless the
    user set it. This must come before numpy is loaded; worker processes inherit it."""
    if "numpy" not in sys.modules:
        os.environ.setdefault(BLAS_SPIN_ENV, _BLAS_SPIN)


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_FROM = 32 << 20  # glibc's largest mmap threshold on 64-bit
_TRIM_FROM = 1 << 30
_TOP_PAD = 64 << 20


def _malloc_keeps_freed_memory() -> None:
    """Let glibc's malloc reuse what a command frees instead of giving it back. By default
    blocks of a few MB (numpy's temporaries: a Kodak tile's planes, a batch's tables) are
    mapped and unmapped on every allocation, and the heap's top is trimmed, so each one's
    pages are faulted in and zeroed afresh: ~0.3 s of system time over 6 Kodak files,
    ~17 % of the compress call. A command's memory peaks once and ends with the process.
    Left as it is where the user tunes malloc (MALLOC_* or GLIBC_TUNABLES) or it is not
    glibc."""
    if sys.platform != "linux" or "GLIBC_TUNABLES" in os.environ:
        return
    if any(name.startswith("MALLOC_") for name in os.environ):
        return
    import ctypes  # numpy imports it anyway

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_FROM)
    mallopt(_M_TOP_PAD, _TOP_PAD)


def main() -> None:
    """Console-script entry point: :func:`run_command_line`, then :func:`_leave` with its exit
    status."""
    try:
        run_command_line()
        status: object = 0
    except SystemExit as exc:
        status = exc.code
    _leave(status)


def _leave(status: object) -> None:
    """End the process with exit ``status`` as ``sys.exit`` would, without tearing the
    interpreter down: freeing numpy and every module's objects one by one costs a short
    command ~10 % of its time (60 ms of a call on 95 small images), and nothing is left to
    do by then — every output is closed and renamed, and exit handlers still run."""
    import atexit

    if status is None:
        status = 0
    elif not isinstance(status, int):
        print(status, file=sys.stderr)
        status = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (e.g. `| head`): as main does
        status = status or 1
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(status)


def run_command_line() -> None:
    """Run the command line in ``sys.argv``; SystemExit with its status when it fails."""
    _blas_threads_sleep_when_idle()
    _malloc_keeps_freed_memory()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        if not _run_plain(sys.argv[1:]):
            from iodfz.cli_app import app

            app()
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`): exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        api.remove_temporary_outputs()
        sys.exit(130)
    except Interrupted as exc:
        api.remove_temporary_outputs()
        sys.exit(128 + exc.signum)


# Option name -> parameter, of the commands _run_plain runs: what iodfz.cli_app declares for
# them (tests/test_cli.py checks that the two agree). A flag sets True; the others take a value.
_FLAGS = {
    "-c": "stdout",
    "--stdout": "stdout",
    "-k": "keep",
    "--keep": "keep",
    "--rm": "rm",
    "-f": "force",
    "--force": "force",
    "-r": "recursive",
    "--recursive": "recursive",
    "-q": "quiet",
    "--quiet": "quiet",
    "-v": "verbose",
    "--verbose": "verbose",
    "--debug": "debug",
    "--pixels": "pixels",
    "-n": "no_name",
    "--no-name": "no_name",
}
_VALUES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "-T": ("threads", int),
    "--threads": ("threads", int),
    "--level": ("level", int),
    "-o": ("output", Path),
    "--output": ("output", Path),
    "--output-dir": ("output_dir", Path),
}
_DIGITS = re.compile(r"[0-9]+")
_COMPLETE_VAR = "_IODFZ_COMPLETE"  # click's shell completion: typer's to answer


def _plain_command(args: list[str]) -> tuple[Callable[..., None], dict[str, Any]] | None:
    """The command and its arguments of a plain command line — compress, decompress or test,
    each option of that command given apart from the others (no ``-qf``, ``-T2``), at most
    once, with a value that is a number or a name not starting with ``-`` where one is taken
    (``--level 3`` or ``--level=3``) — or None for anything else (help, ``--``, unknown
    options, bad values…): that is typer's to parse, and to report."""
    commands: dict[str, Callable[..., None]] = {
        "compress": compress,
        "decompress": decompress,
        "test": test_cmd,
    }
    try:
        argv = _expand_aliases(args, tuple(commands))
    except UsageError:
        return None
    if not argv or argv[0] not in commands or _COMPLETE_VAR in os.environ:
        return None
    command = commands[argv[0]]
    accepted = command.__code__.co_varnames[: command.__code__.co_argcount]
    files: list[str] = []
    kwargs: dict[str, Any] = {}
    tokens = iter(argv[1:])
    for token in tokens:
        if token == STDIO or not token.startswith("-"):
            files.append(token)
            continue
        option, joined, given = token.partition("=")
        if joined and not option.startswith("--"):
            return None
        name, convert = _VALUES.get(option, (_FLAGS.get(option, ""), None))
        if name not in accepted or name in kwargs or (joined and convert is None):
            return None
        if convert is None:
            kwargs[name] = True
            continue
        value = given if joined else next(tokens, "")
        if not value or value.startswith("-") or (convert is int and not _DIGITS.fullmatch(value)):
            return None
        kwargs[name] = convert(value)
    return command, {"files": files or None, **kwargs}


def _run_plain(args: list[str]) -> bool:
    """Run ``args`` if it is a plain command line (:func:`_plain_command`) as typer would
    run it, and say whether it was."""
    plain = _plain_command(args)
    if plain is None:
        return False
    command, kwargs = plain
    try:
        command(**kwargs)
    except UsageError as exc:
        _say(str(exc))
        sys.exit(USAGE_EXIT)
    return True


def __getattr__(name: str) -> Any:
    """``app``, the typer app, built when first asked for."""
    if name == "app":
        from iodfz.cli_app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
