"""Compress directory trees on a Dask cluster (``pip install iodfz[dask]``).

:func:`compress_tree` is ``iodfz compress -r`` with a Dask cluster in place of the local
worker processes: the same files (the CLI's walk: sorted, symbolic links and special files
skipped, ``.iodf`` files skipped unless ``force``), the same outputs (beside each input, or
mirrored under ``output_dir``), one task per file, and one :class:`FileResult` per file with
the CLI's one-line reason when it failed. Paths must name the same files on the client and on
every worker (a shared file system).

Nothing is lost when a worker dies: the scheduler runs its tasks again elsewhere. A task
writes its output inside a staging directory beside the final name (``.NAME.iodfz-dask/``),
through :func:`iodfz.api.compress_file` (a temporary file renamed on success), and only then
links it to the final name without replacing anything (unless ``force``). So the final name
only ever holds a complete container; a task that starts again first removes the staging
directory a dead attempt left, and when the dead attempt had already published its output,
accepts that output once it decodes to the input's bytes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from distributed import Client, Future, as_completed

from iodfz import api
from iodfz.cli import SUFFIX, Batch, Job, _inputs, _os_reason, _target, run_job
from iodfz.codecs import DEFAULT_LEVEL, Options
from iodfz.errors import IodfError

STAGING_SUFFIX = ".iodfz-dask"
_WINDOW = 1024  # tasks in flight at a time: bounds the scheduler's load for huge trees


@dataclass(frozen=True)
class FileResult:
    """What became of one file. ``error`` is the one-line reason the CLI would print after
    ``iodfz: SRC:``; ``note`` says why a file was skipped (symbolic link, ``.iodf`` suffix)."""

    src: str
    dst: str | None = None
    original_size: int = 0
    compressed_size: int = 0
    error: str | None = None
    note: str | None = None

    @property
    def ok(self) -> bool:
        """True when ``dst`` now holds the compressed file."""
        return self.error is None and self.note is None


def compress_tree(
    paths: Iterable[str | os.PathLike[str]],
    client: Client,
    output_dir: str | os.PathLike[str] | None = None,
    *,
    level: int = DEFAULT_LEVEL,
    pixels: bool = False,
    force: bool = False,
    retries: int = 1,
) -> list[FileResult]:
    """Compress every file under ``paths`` (files or directories) on ``client``'s cluster.

    Outputs go where ``iodfz compress -r [--output-dir OUTPUT_DIR] [-f]`` puts them. Returns
    one result per file found, in walk order; never raises for a file's failure. ``retries``
    reruns a task that raised (a bug or an out-of-memory worker); a task whose worker died is
    rerun by the scheduler anyway (up to ``distributed.scheduler.allowed-failures`` times).
    """
    options = Options(level=level, pixels=pixels, threads=1)
    entries, jobs = _plan([os.fspath(p) for p in paths], output_dir, force)
    for index, result in _run(client, jobs, options, force, retries):
        entries[index] = result
    return [entry for entry in entries if entry is not None]


def _plan(
    paths: list[str], output_dir: str | os.PathLike[str] | None, force: bool
) -> tuple[list[FileResult | None], list[tuple[int, str, str]]]:
    """Walk ``paths`` as the CLI does. Returns the results known now (notes and errors, and
    a None slot for each job) and the jobs ``(slot, src, dst)``."""
    batch = _Collect()
    entries: list[FileResult | None] = []
    jobs: list[tuple[int, str, str]] = []
    planned: set[str] = set()
    outdir = None if output_dir is None else Path(output_dir)
    for path, root in _inputs(paths, recursive=True, batch=batch) if paths else ():
        entries += batch.take()
        if path == "-":
            entries.append(FileResult(path, error="stdin cannot be compressed on a cluster"))
        elif path.endswith(SUFFIX) and not force:
            note = f"already has {SUFFIX} suffix -- skipped (use -f)"
            entries.append(FileResult(path, note=note))
        else:
            dst = _target(path, root, outdir, os.path.basename(path) + SUFFIX)
            if not force and os.path.lexists(dst):
                error = f"{dst} already exists (use -f to overwrite)"
                entries.append(FileResult(path, dst, error=error))
            elif dst in planned:  # two tasks must never share an output (or its staging)
                entries.append(FileResult(path, dst, error=f"{dst} is already an output here"))
            else:
                planned.add(dst)
                jobs.append((len(entries), path, dst))
                entries.append(None)
    entries += batch.take()
    return entries, jobs


@dataclass
class _Collect(Batch):
    """The CLI's walk reporting, collected as results instead of printed."""

    quiet: bool = True
    debug: bool = False
    found: list[FileResult] = field(default_factory=list)

    def note(self, path: str, message: str) -> None:
        self.found.append(FileResult(path, note=message))

    def fail(self, path: str, message: str, trace: str | None = None) -> None:
        self.found.append(FileResult(path, error=message))

    def take(self) -> list[FileResult]:
        found, self.found = self.found, []
        return found


def _run(
    client: Client,
    jobs: list[tuple[int, str, str]],
    options: Options,
    force: bool,
    retries: int,
) -> Iterator[tuple[int, FileResult]]:
    """Run the jobs, at most ``_WINDOW`` at a time; yield ``(slot, result)`` as they end."""
    pending = iter(jobs)
    slots: dict[str, tuple[int, str, str]] = {}
    running = as_completed()

    def submit_next() -> None:
        job = next(pending, None)
        if job is not None:
            _, src, dst = job
            future = client.submit(
                compress_one, src, dst, options, force, pure=False, retries=retries
            )
            slots[future.key] = job
            running.add(future)

    for _ in range(_WINDOW):
        submit_next()
    for future in running:
        slot, src, dst = slots.pop(future.key)
        yield slot, _outcome(future, src, dst)
        future.release()
        submit_next()


def _outcome(future: Future, src: str, dst: str) -> FileResult:
    if future.status == "finished":
        result: FileResult = future.result()
        return result
    exc = future.exception()
    return FileResult(src, dst, error=f"task failed on the cluster: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- on a worker


def compress_one(src: str, dst: str, options: Options, force: bool) -> FileResult:
    """Compress ``src`` to ``dst`` through a staging directory (see the module docstring);
    errors become ``FileResult.error``."""
    staging = os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}{STAGING_SUFFIX}")
    try:
        if not force and os.path.lexists(dst):
            if _holds(dst, src):
                return _done(src, dst)  # an earlier attempt of this task published it
            raise IodfError(f"{dst} already exists (use -f to overwrite)")
        shutil.rmtree(staging, ignore_errors=True)  # what an earlier attempt left
        if os.path.dirname(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.mkdir(staging)
        staged = os.path.join(staging, os.path.basename(dst))
        outcome = run_job(Job("compress", src, staged, options, force=True))
        if outcome.error is not None:
            return FileResult(src, dst, error=outcome.error)
        _publish(staged, dst, src, force)
        return FileResult(src, dst, outcome.original, outcome.compressed)
    except IodfError as exc:
        return FileResult(src, dst, error=str(exc))
    except OSError as exc:
        return FileResult(src, dst, error=_os_reason(exc, src))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staged: str, dst: str, src: str, force: bool) -> None:
    """Give the complete file ``staged`` its final name ``dst``; without ``force`` an existing
    ``dst`` is kept, and is an error unless it already holds ``src`` compressed."""
    if force:
        os.replace(staged, dst)
        return
    try:
        os.link(staged, dst)  # atomic, and never replaces
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links
        if not os.path.lexists(dst):
            os.rename(staged, dst)
            return
    else:
        return
    if not _holds(dst, src):
        raise IodfError(f"{dst} already exists (use -f to overwrite)")


def _holds(container: str, src: str) -> bool:
    """True if the file ``container`` decodes, every checksum verified, to ``src``'s bytes."""
    try:
        with open(container, "rb") as fin, open(src, "rb") as original:
            api.decompress(fin, _Compare(original), threads=1)  # type: ignore[arg-type]
            return original.read(1) == b""
    except (IodfError, OSError):
        return False


class _Compare:
    """A write-only sink that checks what is written against a file, read along."""

    def __init__(self, original: BinaryIO) -> None:
        self.original = original

    def write(self, data: Any) -> int:
        data = bytes(data)
        if self.original.read(len(data)) != data:
            raise IodfError("differs")
        return len(data)


def _done(src: str, dst: str) -> FileResult:
    return FileResult(src, dst, os.path.getsize(src), os.path.getsize(dst))
