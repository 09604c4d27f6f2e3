"""The general path: frames of 4 MiB, each zstd-compressed or stored, in parallel.

Frames are independent, so a pool of threads compresses or decompresses several at once and
computes their checksums (SHA-256; zstandard and hashlib both release the GIL), while the
calling thread reads and writes in order. At most ``workers + 2`` frames, and at most
``MAX_IN_FLIGHT`` bytes of them, are in flight, so memory stays bounded whatever the input size
or thread count. Small frames keep each job's data in the CPU
cache; zstd's window is a few MiB at most levels, so cutting frames costs little ratio
(about 0.1 % at level 3 on the benchmark's mixed data).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from iodfz.container import (
    CODEC_STORED,
    CODEC_ZSTD,
    FRAME_SIZE,
    ContainerWriter,
    Frame,
    check_frame,
    frame_digest,
)
from iodfz.errors import IodfError
from iodfz.limits import MAX_IN_FLIGHT
from iodfz.machine import available_cores
from iodfz.threads import block_termination_signals

if TYPE_CHECKING:  # imported where used: a pool (and logging), zstd (an image's decoding
    # never needs it: ~4 ms of a short command)
    from concurrent.futures import Future

    import zstandard

Progress = Callable[[int], None]
T = TypeVar("T")
R = TypeVar("R")


def worker_count(threads: int) -> int:
    """``threads`` workers, or one per core for 0."""
    return threads if threads > 0 else available_cores()


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    cost: Callable[[T], int] = lambda item: 0,
    budget: int = MAX_IN_FLIGHT,
) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, results in order, at most ``workers + 2`` items
    and ``budget`` total ``cost`` in flight (one item of any cost at least). ``items`` is
    consumed in the calling thread."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(
        workers, thread_name_prefix="iodfz", initializer=block_termination_signals
    ) as pool:
        pending: deque[tuple[Future[R], int]] = deque()
        in_flight = 0
        try:
            for item in items:
                weight = cost(item)
                while pending and (len(pending) >= workers + 2 or in_flight + weight > budget):
                    future, done = pending.popleft()
                    in_flight -= done
                    yield future.result()
                pending.append((pool.submit(fn, item), weight))
                in_flight += weight
            while pending:
                yield pending.popleft()[0].result()
        finally:
            for future, _ in pending:
                future.cancel()


def read_chunks(src: BinaryIO, size: int, prefix: bytes | bytearray = b"") -> Iterator[bytes]:
    """Yield consecutive chunks of exactly ``size`` bytes (the last may be shorter, never
    empty) from ``prefix`` followed by ``src``."""
    view = memoryview(prefix)
    while len(view) >= size:
        yield bytes(view[:size])
        view = view[size:]
    parts = [bytes(view)] if view else []
    want = size - len(view)
    while True:
        while want > 0:
            data = src.read(want)
            if not data:
                break
            parts.append(data)
            want -= len(data)
        chunk = parts[0] if len(parts) == 1 else b"".join(parts)
        if chunk:
            yield chunk
        if want > 0:
            return
        parts = []
        want = size


def compressor(level: int) -> zstandard.ZstdCompressor:
    """The zstd settings of codec 1: content size in every frame, no zstd checksum (the
    container has its own), no dictionary id."""
    import zstandard

    return zstandard.ZstdCompressor(
        level=level, write_content_size=True, write_checksum=False, write_dict_id=False
    )


def compress_stream(
    src: BinaryIO,
    writer: ContainerWriter,
    level: int,
    threads: int,
    *,
    prefix: bytes | bytearray = b"",
    frame_size: int = FRAME_SIZE,
    progress: Progress | None = None,
) -> bytes:
    """Write all of ``prefix + src`` as frames (the caller then calls ``writer.finish``).

    Each frame is stored instead when zstd does not make it smaller. ``threads`` is the
    number of threads compressing and hashing frames (0: one per core).
    """
    local = threading.local()

    def encode(chunk: bytes) -> tuple[bytes, bytes, bytes]:
        if not hasattr(local, "cctx"):
            local.cctx = compressor(level)
        return chunk, frame_digest(chunk), local.cctx.compress(chunk)

    chunks = read_chunks(src, frame_size, prefix)
    work = ordered_map(encode, chunks, worker_count(threads), lambda chunk: 2 * len(chunk))
    for chunk, digest, packed in work:
        if len(packed) < len(chunk):
            writer.write_frame(CODEC_ZSTD, len(chunk), digest, packed)
        else:
            writer.write_frame(CODEC_STORED, len(chunk), digest, chunk)
        if progress:
            progress(len(chunk))


def decode_frame(dctx: zstandard.ZstdDecompressor, frame: Frame, index: int) -> bytes | bytearray:
    """Decode and check one frame of codec 0 or 1; any damage raises IodfError."""
    import zstandard

    if frame.codec == CODEC_STORED:
        check_frame(frame, frame.payload, index)
        return frame.payload
    if frame.codec != CODEC_ZSTD:
        raise IodfError(f"damaged container: frame {index} has codec {frame.codec}")
    try:
        # zstandard sizes its output from the frame header and ignores max_output_size
        # when the header has a content size, so check that size first.
        params = zstandard.get_frame_parameters(frame.payload)
        if params.content_size != frame.raw_len:
            raise IodfError(f"damaged container: frame {index} has a wrong zstd size")
        data = dctx.decompress(frame.payload, max_output_size=frame.raw_len, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise IodfError(f"damaged container: frame {index}: zstd: {exc}") from exc
    check_frame(frame, data, index)
    return data


def decode_frames(frames: Iterable[Frame], threads: int) -> Iterator[bytes | bytearray]:
    """Decode and check frames of codecs 0 and 1 on ``threads`` threads (0: one per core),
    yielding their data in order."""
    local = threading.local()

    def decode(item: tuple[int, Frame]) -> bytes | bytearray:
        if not hasattr(local, "dctx"):
            import zstandard

            local.dctx = zstandard.ZstdDecompressor()
        return decode_frame(local.dctx, item[1], item[0])

    def cost(item: tuple[int, Frame]) -> int:
        return item[1].raw_len + len(item[1].payload)

    return ordered_map(decode, enumerate(frames, 1), worker_count(threads), cost)
