"""The neural image codec (container codec 2): image files in, the very same files out.

An image file is split by :mod:`iodfz.formats` into pixels and side information. 8-bit RGB
goes through the flow as is; gray through the colour model with three neighbouring pixels as
one RGB pixel; an alpha plane and the side information through zstd. Anything else (16-bit
samples, images under 8 pixels a side, files the formats layer cannot rebuild) is left to the
zstd path, and so is any file for which the neural result is not smaller than zstd's.
Payload layout: docs/FORMAT.md §3.
"""

from __future__ import annotations

import struct

import numpy as np
import zstandard

from iodfz import formats, zoo
from iodfz.codec import pixels as pixel_codec
from iodfz.codecs import Options
from iodfz.container import CODEC_IMAGE, ImageShape, Sections, Tiling
from iodfz.engine.backends import backend_for
from iodfz.engine.model import Model
from iodfz.errors import IodfError

SECTION_IMAGE_FORMAT = 0x0100
MIN_SIDE = 8
_FORMAT = struct.Struct("<B7s")  # flags (bit 0: byte-exact), format name (NUL padded)
_U32 = struct.Struct("<I")
_SIDE_LEVEL = 19


def to_rgb(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(RGB plane for the flow, extra plane for zstd or None) of 8-bit 1–4 channel pixels."""
    channels = pixels.shape[2]
    colour = pixels[..., :3] if channels >= 3 else pixels[..., :1]
    extra = pixels[..., -1] if channels in (2, 4) else None
    if colour.shape[2] == 1:  # gray: three horizontal neighbours form one RGB pixel
        h, w, _ = colour.shape
        padded = np.pad(colour[..., 0], ((0, 0), (0, -w % 3)), mode="edge")
        colour = padded.reshape(h, -1, 3)
    return np.ascontiguousarray(colour), extra


def from_rgb(rgb: np.ndarray, extra: np.ndarray | None, shape: ImageShape) -> np.ndarray:
    h, w, c = shape.height, shape.width, shape.channels
    colour = rgb if c >= 3 else rgb.reshape(h, -1)[:, :w, None]
    parts = [colour] if extra is None else [colour, extra[..., None]]
    return np.ascontiguousarray(np.concatenate(parts, axis=2))


def _pack_parts(parts: list[bytes]) -> bytes:
    return _U32.pack(len(parts)) + b"".join(_U32.pack(len(p)) + p for p in parts)


def _unpack_parts(payload: bytes) -> list[bytes]:
    view, pos = memoryview(payload), _U32.size
    if len(view) < pos:
        raise IodfError("damaged container: image payload truncated")
    (count,) = _U32.unpack_from(view)
    if count > len(view) // _U32.size:
        raise IodfError("damaged container: bad image part count")
    parts = []
    for _ in range(count):
        if pos + _U32.size > len(view):
            raise IodfError("damaged container: image payload truncated")
        (n,) = _U32.unpack_from(view, pos)
        pos += _U32.size
        if pos + n > len(view):
            raise IodfError("damaged container: image payload truncated")
        parts.append(bytes(view[pos : pos + n]))
        pos += n
    if pos != len(view):
        raise IodfError("damaged container: trailing bytes in image payload")
    return parts


def _unzstd(blob: bytes, limit: int) -> bytes:
    try:
        return zstandard.ZstdDecompressor().decompress(blob, max_output_size=limit)
    except zstandard.ZstdError as exc:
        raise IodfError(f"damaged container: image side data ({exc})") from None


class NeuralImageCodec:
    id = CODEC_IMAGE
    name = "neural-image"

    def try_compress(
        self, data: bytes, level: int, options: Options
    ) -> tuple[Sections, bytes, bytes] | None:
        parsed = formats.parse(data, allow_pixel_exact=options.pixels)
        if parsed is None or parsed.pixels.dtype != np.uint8:
            return None
        rgb, extra = to_rgb(parsed.pixels)
        if min(rgb.shape[:2]) < MIN_SIDE:
            return None
        model = zoo.for_level(level)
        if model is None:
            return None
        streams = pixel_codec.encode(model, backend_for(model), rgb)
        zc = zstandard.ZstdCompressor(level=_SIDE_LEVEL)
        side = zc.compress(parsed.side)
        alpha = b"" if extra is None else zc.compress(np.ascontiguousarray(extra).tobytes())
        payload = _pack_parts([side, alpha, *streams])
        if len(payload) >= len(zstandard.ZstdCompressor(level=level).compress(data)):
            return None  # never worse than the fallback
        h, w, c = parsed.pixels.shape
        sections = Sections()
        sections.set_shape(ImageShape(h, w, c, 8))
        sections.set_model_id(bytes.fromhex(model.model_id))
        sections.set_tiling(Tiling(pixel_codec.TILE, pixel_codec.TILE))
        flags = 1 if parsed.exact else 0
        sections.add(SECTION_IMAGE_FORMAT, _FORMAT.pack(flags, parsed.fmt.encode()))
        produced = data if parsed.exact else formats.rebuild(parsed.fmt, parsed.pixels, parsed.side)
        return sections, payload, produced

    def decompress(self, sections: Sections, payload: bytes) -> bytes:
        shape = sections.shape()
        model_id = sections.model_id()
        tiling = sections.tiling()
        fmt_value = sections.require(SECTION_IMAGE_FORMAT)
        if shape is None or model_id is None or tiling is None or len(fmt_value) != _FORMAT.size:
            raise IodfError("damaged container: image sections missing")
        if shape.bit_depth != 8 or not 1 <= shape.channels <= 4:
            raise IodfError("damaged container: bad image shape")
        if shape.height * shape.width * shape.channels > pixel_codec.MAX_PIXELS:
            raise IodfError("damaged container: image too large")
        _, name = _FORMAT.unpack(fmt_value)
        model = _model(model_id.hex())
        side_blob, alpha_blob, *streams = _unpack_parts(payload)
        h, w = shape.height, shape.width
        rgb_w = w if shape.channels >= 3 else -(-w // 3)
        rgb = pixel_codec.decode(model, backend_for(model), streams, h, rgb_w, tiling.tile_height)
        extra = None
        if shape.channels in (2, 4):
            extra = np.frombuffer(_unzstd(alpha_blob, h * w), np.uint8)
            if extra.size != h * w:
                raise IodfError("damaged container: alpha plane has the wrong size")
            extra = extra.reshape(h, w)
        side = _unzstd(side_blob, pixel_codec.MAX_PIXELS)
        return formats.rebuild(
            name.rstrip(b"\0").decode("ascii", "replace"), from_rgb(rgb, extra, shape), side
        )

    def guarantee(self, sections: Sections) -> str:
        value = sections.get(SECTION_IMAGE_FORMAT)
        if value is None or len(value) != _FORMAT.size:
            return "unknown"
        flags, name = _FORMAT.unpack(value)
        fmt = name.rstrip(b"\0").decode("ascii", "replace")
        return f"byte-exact {fmt}" if flags & 1 else f"pixel-exact {fmt} (re-encoded)"


def _model(model_id: str) -> Model:
    try:
        return zoo.load_by_id(model_id)
    except LookupError as exc:
        raise IodfError(f"needs model {model_id[:16]}, which is not installed ({exc})") from None


CODEC = NeuralImageCodec()
