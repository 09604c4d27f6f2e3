"""iodfz as a numcodecs codec, and its Zarr 3 wrapper (``pip install iodfz[zarr]``).

A chunk is turned into one file's bytes, that file into one ``.iodf`` container through
:func:`iodfz.api.compress`, and back through :func:`iodfz.api.decompress`, which checks every
checksum and the content digest, so a chunk decodes exactly or raises.

* An image chunk — uint8, shaped ``(..., H, W, C)`` with C in 1..4 (``layout="hwc"``), or
  ``(..., H, W)`` gray (``layout="hw"``) — becomes an uncompressed little-endian TIFF whose
  images along the leading axes are stacked into one tall image ``(N*H, W, C)``. The flow
  codes 256-pixel tiles independently, so with H a multiple of 256 each image is coded as if
  alone; otherwise a tile spans two neighbouring images, which costs nothing in exactness. The
  chunk's shape is kept in the TIFF's ImageDescription. The TIFF is offered to the neural
  image path like any file, which takes it when that beats zstd; images under 8 pixels a side
  and empty chunks go through zstd.
* Any other chunk (other dtypes and shapes, or a uint8 chunk whose layout does not fit) is
  written in the NumPy ``.npy`` format (dtype, shape and order in its header) and goes through
  zstd.

The codec's config is ``{"id": "iodfz", "level": L, "layout": "hwc" | "hw"}``: ``level`` picks
the model and the zstd level when encoding, ``layout`` which axes are an image; decoding needs
neither, since the container and the file inside describe themselves.

In Zarr 3 a compressor sees only bytes, so the codec is used there as the array's
*serializer* (an array → bytes codec), through :func:`zarr3_codec` / ``Zarr3Iodfz``, named
``numcodecs.iodfz`` in the array metadata::

    from iodfz.numcodecs import Zarr3Iodfz
    zarr.create_array(store, shape=(8, 256, 256, 3), chunks=(1, 256, 256, 3), dtype="uint8",
                      serializer=Zarr3Iodfz(level=3), compressors=None)
"""

from __future__ import annotations

import io
import math
import struct
from functools import cache
from typing import Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray_like, ensure_ndarray_like, ndarray_copy

from iodfz import api
from iodfz.codecs import DEFAULT_LEVEL, MAX_IMAGE_INPUT, Options
from iodfz.errors import IodfError
from iodfz.limits import MAX_CHUNK

CODEC_ID = "iodfz"
LAYOUTS = ("hwc", "hw")
_HEADER_SLACK = 1 << 16  # room for the .npy or TIFF header around a chunk's bytes
_NPY_MAGIC = b"\x93NUMPY"
_TIFF_MAGIC = b"II*\x00"
_DESCRIPTION = b"iodfz chunk shape="

# TIFF tags (type SHORT=3, LONG=4, ASCII=2) of the file an image chunk becomes.
_SHORT, _LONG, _ASCII = 3, 4, 2


class Iodfz(Codec):  # type: ignore[misc]
    """numcodecs codec ``iodfz``: uint8 image chunks through the neural path, the rest
    through zstd, each chunk one ``.iodf`` container (see the module docstring)."""

    codec_id = CODEC_ID
    max_buffer_size = MAX_CHUNK

    def __init__(self, level: int = DEFAULT_LEVEL, layout: str = "hwc") -> None:
        Options(level=level)  # validates the level
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
        self.level = level
        self.layout = layout

    def encode(self, buf: Any) -> bytes:
        arr = ensure_ndarray_like(buf)
        if arr.nbytes > self.max_buffer_size:
            raise ValueError(f"iodfz: chunks are limited to {self.max_buffer_size} bytes")
        image = image_view(arr, self.layout)
        content = _npy(arr) if image is None else _tiff(image, arr.shape)
        out = io.BytesIO()
        api.compress(
            io.BytesIO(content), out, Options(level=self.level, threads=1), length=len(content)
        )
        return out.getvalue()

    def decode(self, buf: Any, out: Any = None) -> np.ndarray:
        data = ensure_contiguous_ndarray_like(buf).tobytes()
        limit = (MAX_CHUNK if out is None else ensure_ndarray_like(out).nbytes) + _HEADER_SLACK
        sink = _BoundedBuffer(limit)
        api.decompress(io.BytesIO(data), sink, threads=1)
        arr = chunk_from_content(sink.getvalue())
        if out is None:
            return arr
        out = ensure_ndarray_like(out)
        if out.nbytes != arr.nbytes:
            raise ValueError(f"iodfz: decoded chunk has {arr.nbytes} bytes, out has {out.nbytes}")
        if out.shape == arr.shape and out.dtype == arr.dtype:
            np.copyto(out, arr)
            return out
        return ndarray_copy(arr, out)  # a flat or differently shaped buffer: bytes as they lie

    def __repr__(self) -> str:
        return f"Iodfz(level={self.level}, layout={self.layout!r})"


def image_view(arr: np.ndarray, layout: str) -> np.ndarray | None:
    """The chunk as one tall ``(N*H, W, C)`` uint8 image, or None when it goes to zstd."""
    if arr.dtype != np.uint8 or arr.size == 0 or arr.nbytes + _HEADER_SLACK > MAX_IMAGE_INPUT:
        return None
    if layout == "hw" and arr.ndim >= 2:
        h, w, c = math.prod(arr.shape[:-1]), arr.shape[-1], 1
    elif layout == "hwc" and arr.ndim >= 3 and 1 <= arr.shape[-1] <= 4:
        h, w, c = math.prod(arr.shape[:-2]), arr.shape[-2], arr.shape[-1]
    else:
        return None
    return np.ascontiguousarray(arr).reshape(h, w, c)


def chunk_from_content(content: bytes) -> np.ndarray:
    """The chunk a decoded container's content holds (an ``.npy`` file or an image TIFF)."""
    if content.startswith(_NPY_MAGIC):
        try:
            return np.lib.format.read_array(io.BytesIO(content), allow_pickle=False)
        except ValueError as exc:
            raise IodfError(f"not an iodfz chunk: {exc}") from None
    shape, image = _tiff_fields(content)
    size = math.prod(shape)
    header = _tiff_header(shape, image) if math.prod(image) == size <= MAX_CHUNK else b""
    if not header or not content.startswith(header) or len(content) != len(header) + size:
        raise IodfError("not an iodfz chunk: unexpected TIFF layout")
    return np.frombuffer(content, np.uint8, offset=len(header)).reshape(shape).copy()


class _BoundedBuffer(io.BytesIO):
    """In-memory output that refuses to grow past ``limit`` bytes (hostile containers)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data: Any) -> int:
        if self.tell() + memoryview(data).nbytes > self.limit:
            raise IodfError(f"decoded chunk larger than {self.limit} bytes")
        return super().write(data)


def _npy(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, np.asanyarray(arr), allow_pickle=False)
    return out.getvalue()


def _tiff(image: np.ndarray, shape: tuple[int, ...]) -> bytes:
    return _tiff_header(shape, image.shape) + image.tobytes()


def _tiff_header(shape: tuple[int, ...], image: tuple[int, ...]) -> bytes:
    """Header, one IFD and the description of the uncompressed one-strip TIFF holding an
    image chunk of ``shape`` as the tall image ``(H, W, C)``; the pixels follow it."""
    h, w, c = image
    description = _DESCRIPTION + ",".join(map(str, shape)).encode() + b"\x00"
    entries = [
        (256, _LONG, 1, w),  # ImageWidth
        (257, _LONG, 1, h),  # ImageLength
        (258, _SHORT, 1, 8),  # BitsPerSample
        (259, _SHORT, 1, 1),  # Compression: none
        (262, _SHORT, 1, 2 if c >= 3 else 1),  # Photometric: RGB or BlackIsZero
        (270, _ASCII, len(description), 0),  # ImageDescription (offset filled in below)
        (273, _LONG, 1, 0),  # StripOffsets (filled in below)
        (277, _SHORT, 1, c),  # SamplesPerPixel
        (278, _LONG, 1, h),  # RowsPerStrip
        (279, _LONG, 1, h * w * c),  # StripByteCounts
        (284, _SHORT, 1, 1),  # PlanarConfiguration: chunky
    ]
    if c in (2, 4):
        entries.append((338, _SHORT, 1, 2))  # ExtraSamples: unassociated alpha
    ifd_size = 2 + 12 * len(entries) + 4
    description_at = 8 + ifd_size
    pixels_at = description_at + len(description)
    fields = {270: description_at, 273: pixels_at}
    ifd = [struct.pack("<H", len(entries))]
    for tag, typ, count, value in entries:
        value = fields.get(tag, value)
        packed = struct.pack("<H", value) + b"\0\0" if typ == _SHORT else struct.pack("<I", value)
        ifd.append(struct.pack("<HHI", tag, typ, count) + packed)
    ifd.append(struct.pack("<I", 0))  # no next IFD
    return _TIFF_MAGIC + struct.pack("<I", 8) + b"".join(ifd) + description


def _tiff_fields(content: bytes) -> tuple[tuple[int, ...], tuple[int, int, int]]:
    """(chunk shape, tall image ``(H, W, C)``) read from an image chunk's TIFF IFD; IodfError
    if they are missing (the caller then checks the whole header against a rebuilt one)."""
    if not content.startswith(_TIFF_MAGIC + struct.pack("<I", 8)) or len(content) < 10:
        raise IodfError("not an iodfz chunk: neither .npy nor an iodfz TIFF")
    (count,) = struct.unpack_from("<H", content, 8)
    values: dict[int, int] = {}
    shape = None
    for i in range(min(count, 16)):
        at = 10 + 12 * i
        if at + 12 > len(content):
            break
        tag, typ, n, value = struct.unpack_from("<HHII", content, at)
        values[tag] = value & 0xFFFF if typ == _SHORT else value
        if tag == 270 and typ == _ASCII and value + n <= len(content):
            text = content[value : value + n]
            if text.startswith(_DESCRIPTION) and text.endswith(b"\x00"):
                digits = text[len(_DESCRIPTION) : -1].split(b",")
                if all(d.isdigit() for d in digits):
                    shape = tuple(int(d) for d in digits)
    if shape is None or not {256, 257, 277} <= values.keys():
        raise IodfError("not an iodfz chunk: TIFF without a chunk shape")
    return shape, (values[257], values[256], values[277])


@cache
def zarr3_codec() -> type:
    """The Zarr 3 array → bytes codec ``numcodecs.iodfz`` wrapping :class:`Iodfz` (needs
    zarr ≥ 3.1.3, whose numcodecs wrappers it extends). Also ``iodfz.numcodecs.Zarr3Iodfz``."""
    from zarr.codecs.numcodecs._codecs import _NumcodecsArrayBytesCodec

    class Zarr3Iodfz(_NumcodecsArrayBytesCodec, codec_name=CODEC_ID):  # type: ignore[misc]
        def __init__(self, **codec_config: Any) -> None:
            config = {k: v for k, v in codec_config.items() if k != "id"}
            super().__init__(**Iodfz(**config).get_config())

    Zarr3Iodfz.__module__ = __name__
    Zarr3Iodfz.__qualname__ = "Zarr3Iodfz"
    return Zarr3Iodfz


def __getattr__(name: str) -> Any:
    # Built on first use so that importing this module (numcodecs' registry does) never
    # imports zarr; pickles and the zarr.codecs entry point find the class under this name.
    if name == "Zarr3Iodfz":
        return zarr3_codec()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
