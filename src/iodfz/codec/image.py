"""The neural image codec (container codec 2): image files in, the very same files out.

An image file is split by :mod:`iodfz.formats` into pixels and side information. 8-bit RGB
goes through the flow as is; gray through the colour model with three neighbouring pixels as
one RGB pixel; an alpha plane and the side information through zstd. Anything else (16-bit
samples, images under 8 pixels a side, files the formats layer cannot rebuild) is left to the
zstd path, and so is any file for which the neural result is not smaller than zstd's.
Payload layout: docs/FORMAT.md §3.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import zstandard

from iodfz import formats, limits, zoo
from iodfz.codec import pixels as pixel_codec
from iodfz.codecs import Options
from iodfz.coder import CoderError, ans
from iodfz.container import (
    CODEC_IMAGE,
    COMPACT_MODEL_ID,
    IMAGE_COMPACT,
    IMAGE_EXACT,
    IMAGE_SIDE_NONE,
    IMAGE_SIDE_ZSTD,
    SECTION_IMAGE_FORMAT,
    ImageShape,
    Sections,
    Tiling,
    pnm_header,
    read_uint,
    uint_bytes,
)
from iodfz.engine.backends import BackendUnavailable, backend_for, requested
from iodfz.engine.flow import Backend
from iodfz.engine.model import Model, ModelError
from iodfz.engine.tables import model_tables
from iodfz.errors import IodfError

MIN_SIDE = 8
MODEL_ID_SIZE = 8  # bytes of the model file's SHA-256 a version 1 container names it by
FLAG_EXACT = IMAGE_EXACT  # image format section flags (FORMAT.md 3.1)
FLAG_SIDE_ZSTD = IMAGE_SIDE_ZSTD
FLAG_SIDE_NONE = IMAGE_SIDE_NONE
FLAG_COMPACT = IMAGE_COMPACT
_ALL_FLAGS = FLAG_EXACT | FLAG_SIDE_ZSTD | FLAG_SIDE_NONE | FLAG_COMPACT
_FORMAT_IDS = {"png": 1, "pnm": 2, "bmp": 3, "tiff": 4}
_FORMAT_NAMES = {v: k for k, v in _FORMAT_IDS.items()}
_SIDE_LEVEL = 19
_UNZSTD_STEP = 256  # compressed bytes fed per step: bounds the output of one step (~8 MiB)


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


def fits(height: int, width: int, channels: int, levels: int) -> bool:
    """Whether the neural path takes (and its decoder accepts) an image of this shape: the
    samples, and the padded RGB plane the flow runs on, within ``limits.MAX_PIXELS``."""
    padded_h, padded_w = _padded(height, width if channels >= 3 else -(-width // 3), levels)
    return height * width * channels <= limits.MAX_PIXELS and padded_h * padded_w * 3 <= (
        limits.MAX_PIXELS
    )


def _pack_compact(side: bytes | None, alpha: bytes | None, streams: list[bytes]) -> bytes:
    """FORMAT.md 3.4: every part but the last with its length; the parts present are known
    from the header (side unless canonical, alpha for 2 and 4 channels, one stream per batch)."""
    parts = [p for p in (side, alpha) if p is not None] + streams
    return b"".join(uint_bytes(len(p)) + p for p in parts[:-1]) + parts[-1]


def _unpack_compact(payload: bytes | memoryview, count: int) -> list[bytes]:
    view = memoryview(payload)
    parts, pos = [], 0
    for _ in range(count - 1):
        n, pos = read_uint(view, pos, "image payload")
        if pos + n > len(view):
            raise IodfError("damaged container: image payload truncated")
        parts.append(bytes(view[pos : pos + n]))
        pos += n
    parts.append(bytes(view[pos:]))
    return parts


def _pack_parts(parts: list[bytes]) -> bytes:
    """FORMAT.md 3.2: count, then each part's length (but the last's) and bytes."""
    out = [uint_bytes(len(parts))]
    for i, part in enumerate(parts):
        out += [b"" if i == len(parts) - 1 else uint_bytes(len(part)), part]
    return b"".join(out)


def _unpack_parts(payload: bytes) -> list[bytes]:
    view = memoryview(payload)
    count, pos = read_uint(view, 0, "image payload")
    if count < 1 or count > len(view):
        raise IodfError("damaged container: bad image part count")
    return _unpack_compact(view[pos:], count)


def _zstd(data: bytes) -> bytes:
    """A magicless zstd frame without content size, checksum or dictionary id."""
    params = zstandard.ZstdCompressionParameters.from_level(
        _SIDE_LEVEL,
        source_size=len(data),  # a window no larger than the data: small files, small context
        format=zstandard.FORMAT_ZSTD1_MAGICLESS,
        write_content_size=False,
        write_checksum=False,
        write_dict_id=False,
    )
    return zstandard.ZstdCompressor(compression_params=params).compress(data)


def _unzstd(blob: bytes, limit: int) -> bytes:
    """Inverse of :func:`_zstd`; IodfError unless ``blob`` is exactly one frame of at most
    ``limit`` bytes. Input is fed in small steps so output grows only as far as the limit."""
    dobj = zstandard.ZstdDecompressor(format=zstandard.FORMAT_ZSTD1_MAGICLESS).decompressobj()
    out = bytearray()
    try:
        for i in range(0, len(blob), _UNZSTD_STEP):
            out += dobj.decompress(blob[i : i + _UNZSTD_STEP])
            if len(out) > limit:
                raise IodfError("damaged container: image side data too large")
    except zstandard.ZstdError as exc:
        raise IodfError(f"damaged container: image side data ({exc})") from None
    if not dobj.eof or dobj.unused_data:
        raise IodfError("damaged container: image side data is not one zstd frame")
    return bytes(out)


def _pack_format(flags: int, fmt: str, tile: int) -> bytes:
    return bytes([flags, _FORMAT_IDS[fmt]]) + uint_bytes(tile)


def _unpack_format(value: bytes) -> tuple[int, str, int]:
    """(flags, format name, tile) of the image format section; IodfError if malformed."""
    if len(value) < 3 or value[0] & ~_ALL_FLAGS or value[1] not in _FORMAT_NAMES:
        raise IodfError("damaged container: bad image format section")
    tile, pos = read_uint(value, 2, "image format section")
    if pos != len(value) or not 1 <= tile <= 4096:
        raise IodfError("damaged container: bad image format section")
    return value[0], _FORMAT_NAMES[value[1]], tile


class NeuralImageCodec:
    id = CODEC_IMAGE
    name = "neural-image"

    def try_compress(
        self, data: bytes, level: int, options: Options
    ) -> tuple[Sections, bytes, bytes] | None:
        parsed = formats.parse(data, allow_pixel_exact=options.pixels)
        if parsed is None or parsed.pixels.dtype != np.uint8:
            return None
        h, w, c = parsed.pixels.shape
        rgb, extra = to_rgb(parsed.pixels)
        if min(rgb.shape[:2]) < MIN_SIDE:
            return None
        engine = _engine_for_level(level)
        if engine is None:
            return None
        model, backend = engine
        if not fits(h, w, c, model.levels):
            return None  # the decoder would refuse it
        shape = ImageShape(h, w, c, 8)
        streams = pixel_codec.encode(model, backend, rgb)
        flags = FLAG_COMPACT | (FLAG_EXACT if parsed.exact else 0)
        side: bytes | None = None
        if parsed.exact and parsed.fmt == "pnm" and data == _canonical_pnm(shape, parsed.pixels):
            flags |= FLAG_SIDE_NONE
        else:
            side = _zstd(parsed.side)
            if len(side) < len(parsed.side):
                flags |= FLAG_SIDE_ZSTD
            else:
                side = parsed.side
        alpha = None if extra is None else _zstd(np.ascontiguousarray(extra).tobytes())
        payload = _pack_compact(side, alpha, streams)
        if len(payload) >= len(zstandard.ZstdCompressor(level=level).compress(data)):
            return None  # never worse than the fallback
        sections = Sections()
        sections.set_shape(shape)
        sections.set_model_id(bytes.fromhex(model.model_id)[:COMPACT_MODEL_ID])
        sections.add(SECTION_IMAGE_FORMAT, _pack_format(flags, parsed.fmt, pixel_codec.TILE))
        produced = data if parsed.exact else formats.rebuild(parsed.fmt, parsed.pixels, parsed.side)
        return sections, payload, produced

    def decompress(self, sections: Sections, payload: bytes) -> bytes:
        shape = sections.shape()
        model_id = sections.model_id()
        flags, fmt, tile = _unpack_format(sections.require(SECTION_IMAGE_FORMAT))
        compact = bool(flags & FLAG_COMPACT)
        id_size = COMPACT_MODEL_ID if compact else MODEL_ID_SIZE
        if shape is None or model_id is None or len(model_id) != id_size:
            raise IodfError("damaged container: image sections missing")
        if shape.bit_depth != 8 or not 1 <= shape.channels <= 4:
            raise IodfError("damaged container: bad image shape")
        has_alpha = shape.channels in (2, 4)
        h, w = shape.height, shape.width
        rgb_w = w if shape.channels >= 3 else -(-w // 3)
        last_error: Exception | None = None
        for model in _models(model_id.hex()):
            if not fits(h, w, shape.channels, model.levels):
                raise IodfError("damaged container: image too large")
            plan = pixel_codec.batch_count(*_padded(h, rgb_w, model.levels), tile)
            if plan * ans.HEAD_WORDS * 2 > len(payload):  # every stream holds its lane heads
                raise IodfError("damaged container: image payload too short for its shape")
            if compact:
                present = (not flags & FLAG_SIDE_NONE) + has_alpha
                parts = _unpack_compact(payload, present + plan)
                side_blob = None if flags & FLAG_SIDE_NONE else parts.pop(0)
                streams = parts
            else:
                side_blob, *streams = _unpack_parts(payload)
            alpha_blob = streams.pop(0) if has_alpha and streams else b""
            try:
                rgb = pixel_codec.decode(
                    model, _backend(model), streams, h, rgb_w, tile, compact=compact
                )
                break
            except (CoderError, pixel_codec.PixelCodecError) as exc:
                last_error = exc  # a model whose id shares the prefix: try the next one
        else:
            raise IodfError(f"damaged container: image payload: {last_error}")
        extra = None
        if has_alpha:
            extra = np.frombuffer(_unzstd(alpha_blob, h * w), np.uint8)
            if extra.size != h * w:
                raise IodfError("damaged container: alpha plane has the wrong size")
            extra = extra.reshape(h, w)
        pixels = from_rgb(rgb, extra, shape)
        if side_blob is None:
            return _canonical_pnm(shape, pixels)
        if flags & FLAG_SIDE_ZSTD:
            side = _unzstd(side_blob, formats.max_side_bytes(fmt, h, w, shape.channels))
        else:
            side = side_blob
        return formats.rebuild(fmt, pixels, side)

    def guarantee(self, sections: Sections) -> str:
        value = sections.get(SECTION_IMAGE_FORMAT)
        try:
            flags, fmt, _ = _unpack_format(b"" if value is None else value)
        except IodfError:
            return "unknown"
        return f"byte-exact {fmt}" if flags & FLAG_EXACT else f"pixel-exact {fmt} (re-encoded)"

    def tiling(self, sections: Sections) -> Tiling | None:
        """The tile size kept in the image format section (for ``info``), or None."""
        value = sections.get(SECTION_IMAGE_FORMAT)
        try:
            _, _, tile = _unpack_format(b"" if value is None else value)
        except IodfError:
            return None
        return Tiling(tile, tile)


_WARNED: set[str] = set()


def _engine_for_level(level: int) -> tuple[Model, Backend] | None:
    """The level's model and a backend that passed its test vectors, or None — then images go
    through zstd, with one warning per process (``iodfz selftest`` tells more)."""
    try:
        model = zoo.for_level(level)
        if model is None:
            return None
        model_tables(model)
        return model, backend_for(model)
    except (ModelError, CoderError, BackendUnavailable) as exc:
        if isinstance(exc, BackendUnavailable) and requested() != "auto":
            raise IodfError(str(exc)) from None  # an explicit IODFZ_BACKEND never falls back
        if str(exc) not in _WARNED:
            _WARNED.add(str(exc))
            print(
                f"iodfz: warning: neural image path unusable, using zstd ({exc})", file=sys.stderr
            )
        return None


def _models(prefix: str) -> Iterator[Model]:
    """The installed models whose id starts with ``prefix`` (hex). A version 2 container keeps
    2 bytes of the id, so two installed models may share it: the caller tries each, and the
    rANS end check and the content digest refuse the wrong one (FORMAT.md 3.1)."""
    ids = [card["model_id"] for card in zoo.cards() if card["model_id"].startswith(prefix)]
    if not ids:
        searched = ", ".join(map(str, zoo.model_dirs()))
        raise IodfError(f"needs model {prefix[:16]}, which is not installed (searched {searched})")
    for model_id in ids:
        try:
            model = zoo.load_by_id(model_id)
            model_tables(model)
        except (LookupError, ModelError, CoderError) as exc:
            raise IodfError(f"model {model_id[:16]} is unusable ({exc})") from None
        yield model


def _backend(model: Model) -> Backend:
    try:
        return backend_for(model)
    except BackendUnavailable as exc:
        raise IodfError(
            f"integer engine unusable on this machine ({exc}); see iodfz selftest"
        ) from None


def _padded(height: int, width: int, levels: int) -> tuple[int, int]:
    return pixel_codec.padded_size(height, levels), pixel_codec.padded_size(width, levels)


def _canonical_pnm(shape: ImageShape, pixels: np.ndarray) -> bytes:
    """The binary PNM (P5 / P6, maxval 255, one space and newlines) of ``pixels``."""
    return pnm_header(shape) + np.ascontiguousarray(pixels).tobytes()


CODEC = NeuralImageCodec()
