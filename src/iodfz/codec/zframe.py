"""Small zstd frames inside an image payload — an image's side data and alpha, a predictive
coder's parameter part: magicless, without content size, checksum or dictionary id (the
container's digest checks what they give back), read back a step at a time so that a hostile
frame's output stops growing at the reader's limit."""

from __future__ import annotations

LEVEL = 19  # a few kilobytes at most: the strongest level costs nothing that matters
_STEP = 256  # compressed bytes fed per step: bounds the output of one step (~8 MiB)


class FrameError(ValueError):
    pass


def pack(data: bytes) -> bytes:
    """``data`` as one frame."""
    import zstandard  # here: decoding an image without side data never needs it

    params = zstandard.ZstdCompressionParameters.from_level(
        LEVEL,
        source_size=len(data),  # a window no larger than the data: small files, small context
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_content_size=False,
        write_checksum=False,
        write_dict_id=False,
    )
    return zstandard.ZstdCompressor(compression_params=params).compress(data)


def unpack(blob: bytes | memoryview, limit: int) -> bytes:
    """Inverse of :func:`pack`; FrameError unless ``blob`` is exactly one frame of at most
    ``limit`` bytes."""
    import zstandard

    dobj = zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS).decompressobj()
    out = bytearray()
    try:
        for i in range(0, len(blob), _STEP):
            out += dobj.decompress(bytes(blob[i : i + _STEP]))
            if len(out) > limit:
                raise FrameError("too large")
    except zstandard.ZstdError as exc:
        raise FrameError(f"({exc})") from None
    if not dobj.eof or dobj.unused_data:
        raise FrameError("is not one zstd frame")
    return bytes(out)
