"""The general path: frames of at most 32 MiB, each zstd-compressed or stored.

Memory stays bounded whatever the input size (a couple of frames in flight). zstd runs with
worker threads inside each frame; SHA-256 of the input runs concurrently in another thread
(hashlib and zstandard both release the GIL), so hashing costs little wall time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

import zstandard

from iodfz.container import (
    CODEC_STORED,
    CODEC_ZSTD,
    FRAME_SIZE,
    ContainerWriter,
    Frame,
)
from iodfz.errors import IodfError

Progress = Callable[[int], None]


def read_chunks(src: BinaryIO, size: int, prefix: bytes = b"") -> Iterator[bytes]:
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


def compressor(level: int, threads: int) -> zstandard.ZstdCompressor:
    """The zstd settings of codec 1: content size in every frame, no zstd checksum (the
    container has its own), no dictionary id. ``threads`` 0 means one worker per core."""
    return zstandard.ZstdCompressor(
        level=level,
        threads=-1 if threads == 0 else threads,
        write_content_size=True,
        write_checksum=False,
        write_dict_id=False,
    )


def compress_stream(
    src: BinaryIO,
    writer: ContainerWriter,
    level: int,
    threads: int,
    *,
    prefix: bytes = b"",
    frame_size: int = FRAME_SIZE,
    progress: Progress | None = None,
) -> bytes:
    """Write all of ``prefix + src`` as frames; return the SHA-256 of those bytes.

    Each frame is stored instead when zstd does not make it smaller.
    """
    cctx = compressor(level, threads)
    sha = hashlib.sha256()
    with ThreadPoolExecutor(1, thread_name_prefix="iodfz-hash") as pool:
        for chunk in read_chunks(src, frame_size, prefix):
            hashing = pool.submit(sha.update, chunk)
            packed = cctx.compress(chunk)
            if len(packed) < len(chunk):
                writer.write_frame(CODEC_ZSTD, len(chunk), packed)
            else:
                writer.write_frame(CODEC_STORED, len(chunk), chunk)
            hashing.result()
            if progress:
                progress(len(chunk))
    return sha.digest()


class FrameDecoder:
    """Decode frames of codecs 0 and 1; any malformed zstd data raises IodfError."""

    def __init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor()

    def decode(self, frame: Frame, index: int) -> bytes | bytearray:
        if frame.codec == CODEC_STORED:
            return frame.payload
        if frame.codec != CODEC_ZSTD:
            raise IodfError(f"damaged container: frame {index} has codec {frame.codec}")
        try:
            # zstandard sizes its output from the frame header and ignores max_output_size
            # when the header has a content size, so check that size first.
            params = zstandard.get_frame_parameters(frame.payload)
            if params.content_size != frame.raw_len:
                raise IodfError(f"damaged container: frame {index} has a wrong zstd size")
            data = self._dctx.decompress(
                frame.payload, max_output_size=frame.raw_len, allow_extra_data=False
            )
        except zstandard.ZstdError as exc:
            raise IodfError(f"damaged container: frame {index}: zstd: {exc}") from exc
        if len(data) != frame.raw_len:
            raise IodfError(f"damaged container: frame {index} decodes to a wrong size")
        return data
