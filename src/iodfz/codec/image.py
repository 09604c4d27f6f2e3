"""The neural image codec (container codec 2): image files in, the very same files out.

An image file is split by :mod:`iodfz.formats` into pixels and side information. 8-bit RGB
goes through the flow as is; gray through the colour model with three neighbouring pixels as
one RGB pixel; an alpha plane and the side information through zstd. Anything else (16-bit
samples, images under 8 pixels a side, files the formats layer cannot rebuild) is left to the
zstd path, and so is any file for which the neural result is not smaller than zstd's.
Payload layout: docs/FORMAT.md §3.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from iodfz import formats, limits, zoo
from iodfz.codec import predictive, tiling, zframe
from iodfz.codecs import FLOW_FROM, MAX_LEVEL, TRY_ALL_FROM, Options, Share
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
from iodfz.engine.tables import model_tables
from iodfz.errors import IodfError

if TYPE_CHECKING:  # the flow's engine loads only when a flow codes
    from iodfz.engine.flow import Backend
    from iodfz.engine.model import Model

MIN_SIDE = 8
#: From FLOW_FROM and below the max levels, images of more pixels than this go to the
#: predictive coder alone; smaller ones to the flow and the predictive coder, the smaller
#: result kept (the flow still wins some small images, never many large ones).
PREDICTIVE_FROM_PIXELS = 128 * 128
MODEL_ID_SIZE = 8  # bytes of the model file's SHA-256 a version 1 container names it by
FLAG_EXACT = IMAGE_EXACT  # image format section flags (FORMAT.md 3.1)
FLAG_SIDE_ZSTD = IMAGE_SIDE_ZSTD
FLAG_SIDE_NONE = IMAGE_SIDE_NONE
FLAG_COMPACT = IMAGE_COMPACT
_ALL_FLAGS = FLAG_EXACT | FLAG_SIDE_ZSTD | FLAG_SIDE_NONE | FLAG_COMPACT
_FORMAT_IDS = {"png": 1, "pnm": 2, "bmp": 3, "tiff": 4}
_FORMAT_NAMES = {v: k for k, v in _FORMAT_IDS.items()}


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


def _unzstd(blob: bytes, limit: int) -> bytes:
    """:func:`zframe.unpack`; IodfError unless ``blob`` is one frame of at most ``limit``
    bytes."""
    try:
        return zframe.unpack(blob, limit)
    except zframe.FrameError as exc:
        raise IodfError(f"damaged container: image side data {exc}") from None


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


Encoded = tuple[Sections, bytes, bytes]  # what try_compress gives: sections, payload, output


class ImageCoder(Protocol):
    """What the codec codes an image's RGB pixels with, one rANS stream per batch of tiles:
    a flow (:class:`FlowCoder`) or a predictive coder (:class:`predictive.PredictiveCoder`).
    ``model_id`` is what a container names; ``levels`` the flow levels an image is padded for
    (0: nothing padded)."""

    @property
    def model_id(self) -> str: ...

    @property
    def levels(self) -> int: ...

    def encode(self, rgb: np.ndarray, progress: Share | None = None) -> list[bytes]: ...

    def encode_many(self, rgbs: Sequence[np.ndarray]) -> list[list[bytes]]: ...

    def decode(
        self,
        streams: list[bytes],
        height: int,
        width: int,
        tile: int,
        compact: bool,
        progress: Share | None = None,
    ) -> np.ndarray: ...

    def decode_many(
        self, streams: Sequence[list[bytes]], shapes: Sequence[tuple[int, int]]
    ) -> list[np.ndarray | None]:
        """``decode`` of each image's streams, of the (height, width) of ``shapes`` (one shape
        unless ``mixes_shapes``); None for one that is damaged."""
        ...

    def batch_count(self, height: int, width: int, tile: int) -> int: ...

    def codes_together(self, height: int, width: int, tile: int) -> bool:
        """Whether images of this size go through ``encode_many`` and ``decode_many``."""
        ...

    @property
    def mixes_shapes(self) -> bool:
        """Whether ``encode_many`` and ``decode_many`` take images of different shapes
        together."""
        ...


@dataclass(frozen=True)
class FlowCoder:
    """A flow model as an :class:`ImageCoder`, with the backend it runs on: found (the one
    whose outputs match the model's test vectors) when first needed if not given."""

    model: Model
    backend: Backend | None = None

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def levels(self) -> int:
        return self.model.levels

    def _engine(self) -> Backend:
        return self.backend if self.backend is not None else _backend(self.model)

    def encode(self, rgb: np.ndarray, progress: Share | None = None) -> list[bytes]:
        return _flow_pixels().encode(self.model, self._engine(), rgb, progress=progress)

    def encode_many(self, rgbs: Sequence[np.ndarray]) -> list[list[bytes]]:
        return _flow_pixels().encode_many(self.model, self._engine(), rgbs)

    def decode(
        self,
        streams: list[bytes],
        height: int,
        width: int,
        tile: int,
        compact: bool,
        progress: Share | None = None,
    ) -> np.ndarray:
        engine = self._engine()
        return _flow_pixels().decode(
            self.model, engine, streams, height, width, tile, compact=compact, progress=progress
        )

    def decode_many(
        self, streams: Sequence[list[bytes]], shapes: Sequence[tuple[int, int]]
    ) -> list[np.ndarray | None]:
        if len(set(shapes)) != 1:
            raise ValueError("a flow decodes images of one shape together")
        firsts = [image_streams[0] for image_streams in streams]  # one tile: one stream
        return _flow_pixels().decode_many(self.model, self._engine(), firsts, *shapes[0])

    def batch_count(self, height: int, width: int, tile: int) -> int:
        return tiling.batch_count(*_padded(height, width, self.levels), tile)

    def codes_together(self, height: int, width: int, tile: int) -> bool:
        return tiling.single_tile(height, width, self.levels, tile)  # one flow tile

    @property
    def mixes_shapes(self) -> bool:
        return False


class _Input(NamedTuple):
    """An input file taken apart for its coder (what encoding does before coding)."""

    data: bytes
    parsed: formats.ParsedImage
    rgb: np.ndarray
    extra: np.ndarray | None
    coder: ImageCoder


class _Layout(NamedTuple):
    """What a container's sections say about its image (decoding before the flow)."""

    shape: ImageShape
    model_id: bytes
    flags: int
    fmt: str
    tile: int

    @property
    def rgb_width(self) -> int:
        return self.shape.width if self.shape.channels >= 3 else -(-self.shape.width // 3)

    @property
    def has_alpha(self) -> bool:
        return self.shape.channels in (2, 4)


class _Parts(NamedTuple):
    """A payload cut into its parts: side information (None: canonical PNM), extra plane,
    one rANS stream per batch."""

    side: bytes | None
    alpha: bytes
    streams: list[bytes]


class NeuralImageCodec:
    id = CODEC_IMAGE
    name = "neural-image"

    def try_compress(
        self, data: bytes, level: int, options: Options, progress: Share | None = None
    ) -> Encoded | None:
        """The container parts of ``data`` coded by each coder :func:`_coders_for` gives it,
        keeping the smallest, or None when the neural path does not take it or zstd does
        better."""
        takens = _take_apart(data, options, functools.partial(_coders_for, level))
        results = []
        for i, taken in enumerate(takens):
            share = None if progress is None else _part_of(progress, i, len(takens))
            streams = taken.coder.encode(taken.rgb, progress=share)
            results.append(_put_together(taken, streams, level))
        return _smallest(results)

    def try_compress_many(
        self, datas: Sequence[bytes], level: int, options: Options
    ) -> dict[int, Encoded | None]:
        """``try_compress`` of those of ``datas`` that are images their coders code together
        (``ImageCoder.codes_together``) with another one (of the same shape, unless the coder
        ``mixes_shapes``), keyed by position: they run as one batch per model and their
        streams are coded in lockstep, each result the very one ``try_compress`` gives.
        Inputs it declines are there as None. Anything else — other inputs, and any that
        raised — is left out, for ``try_compress`` to do (and report) alone."""
        results: dict[int, Encoded | None] = {}
        tried: dict[int, list[Encoded | None]] = {}
        failed: set[int] = set()
        groups: dict[tuple[str, tuple[int, ...] | None], list[tuple[int, int, _Input]]] = {}
        # Looked up once per image size, not per image: the lookup reads the model folders.
        coders = functools.cache(functools.partial(_coders_for, level))
        for i, data in enumerate(datas):
            try:
                takens = _take_apart(data, options, coders)
            except Exception:  # found again, and reported, when this input is done alone
                continue
            if not takens:
                results[i] = None
            elif all(t.coder.codes_together(*t.rgb.shape[:2], tiling.TILE) for t in takens):
                tried[i] = [None] * len(takens)
                for k, taken in enumerate(takens):
                    shape = None if taken.coder.mixes_shapes else taken.rgb.shape
                    key = (taken.coder.model_id, shape)
                    groups.setdefault(key, []).append((i, k, taken))
        for members in groups.values():
            if len(members) < 2:  # alone, a stream codes faster through the coder itself
                failed.update(i for i, _, _ in members)
                continue
            try:
                rgbs = [taken.rgb for _, _, taken in members]
                streams = members[0][2].coder.encode_many(rgbs)
                for (i, k, taken), image_streams in zip(members, streams, strict=True):
                    tried[i][k] = _put_together(taken, image_streams, level)
            except Exception:  # found again, and reported, when each input is done alone
                failed.update(i for i, _, _ in members)
        for i, encoded in tried.items():
            if i not in failed:
                results[i] = _smallest(encoded)
        return results

    def decompress(
        self, sections: Sections, payload: bytes, progress: Share | None = None
    ) -> bytes:
        layout = _layout(sections)
        h, rgb_w = layout.shape.height, layout.rgb_width
        last_error: Exception | None = None
        compact = bool(layout.flags & FLAG_COMPACT)
        for coder in _coders(layout.model_id.hex()):
            parts = _cut(layout, payload, coder)
            try:
                rgb = coder.decode(parts.streams, h, rgb_w, layout.tile, compact, progress)
                break
            except (CoderError, tiling.PixelCodecError, predictive.PredictiveError) as exc:
                last_error = exc  # a model whose id shares the prefix: try the next one
        else:
            raise IodfError(f"damaged container: image payload: {last_error}")
        return _rebuild(layout, rgb, parts)

    def decompress_many(self, items: Sequence[tuple[Sections, bytes]]) -> dict[int, bytes]:
        """``decompress`` of those of ``items`` (sections, payload) that hold images their
        coders decode together (``ImageCoder.codes_together``, compact payload) with another
        one (of the same shape, unless the coder ``mixes_shapes``), keyed by position:
        they run as one batch per model, their streams decoded in lockstep. Items that are
        anything else, or fail here in any way, are left out, for ``decompress`` to do (and
        report) alone; a result is the very bytes ``decompress`` gives."""
        groups: dict[tuple[str, int, tuple[int, int] | None], list[tuple[int, _Layout, _Parts]]]
        groups = {}
        coders: dict[str, ImageCoder] = {}
        for i, (sections, payload) in enumerate(items):
            try:
                layout = _layout(sections)
                coder = next(_coders(layout.model_id.hex()))
                h, rgb_w = layout.shape.height, layout.rgb_width
                together = coder.codes_together(h, rgb_w, layout.tile)
                if not layout.flags & FLAG_COMPACT or not together:
                    continue
                parts = _cut(layout, payload, coder)
            except Exception:  # found again, and reported, when this item is done alone
                continue
            coders[coder.model_id] = coder
            shape = None if coder.mixes_shapes else (h, rgb_w)
            groups.setdefault((coder.model_id, layout.tile, shape), []).append((i, layout, parts))
        results: dict[int, bytes] = {}
        for (model_id, _, _), members in groups.items():
            if len(members) < 2:
                continue
            shapes = [(layout.shape.height, layout.rgb_width) for _, layout, _ in members]
            try:
                rgbs = coders[model_id].decode_many([p.streams for _, _, p in members], shapes)
            except Exception:  # found again, and reported, when each item is done alone
                continue
            for (i, layout, parts), rgb in zip(members, rgbs, strict=True):
                with contextlib.suppress(Exception):  # idem
                    if rgb is not None:
                        results[i] = _rebuild(layout, rgb, parts)
        return results

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


def _take_apart(
    data: bytes, options: Options, coders_for: Callable[[int, int], list[ImageCoder]]
) -> list[_Input]:
    """``data`` parsed into pixels, once with each coder it is to be coded with (``coders_for``
    its RGB plane's height and width); [] when the neural path does not take it."""
    parsed = formats.parse(data, allow_pixel_exact=options.pixels)
    if parsed is None or parsed.pixels.dtype != np.uint8:
        return []
    h, w, c = parsed.pixels.shape
    rgb, extra = to_rgb(parsed.pixels)
    if min(rgb.shape[:2]) < MIN_SIDE:
        return []
    return [
        _Input(data, parsed, rgb, extra, coder)
        for coder in coders_for(*rgb.shape[:2])
        if fits(h, w, c, coder.levels)  # else the decoder would refuse it
    ]


def _part_of(progress: Share, i: int, n: int) -> Share:
    """The progress of the ``i``-th of ``n`` equal parts of one input's work."""
    return lambda share: progress((i + share) / n)


def _smallest(results: Sequence[Encoded | None]) -> Encoded | None:
    """The result of smallest payload (the first of equals); None when there is none."""
    done = [r for r in results if r is not None]
    return min(done, key=lambda r: len(r[1])) if done else None


def _put_together(taken: _Input, streams: list[bytes], level: int) -> Encoded | None:
    """The container sections, payload and output of ``taken`` coded as ``streams``; None when
    that is not smaller than zstd at ``level``."""
    data, parsed = taken.data, taken.parsed
    shape = ImageShape(*parsed.pixels.shape, 8)
    flags = FLAG_COMPACT | (FLAG_EXACT if parsed.exact else 0)
    side: bytes | None = None
    if parsed.exact and parsed.fmt == "pnm" and data == _canonical_pnm(shape, parsed.pixels):
        flags |= FLAG_SIDE_NONE
    else:
        side = zframe.pack(parsed.side)
        if len(side) < len(parsed.side):
            flags |= FLAG_SIDE_ZSTD
        else:
            side = parsed.side
    extra = taken.extra
    alpha = None if extra is None else zframe.pack(np.ascontiguousarray(extra).tobytes())
    payload = _pack_compact(side, alpha, streams)
    import zstandard  # here: an image's decoding never needs it

    if len(payload) >= len(zstandard.ZstdCompressor(level=level).compress(data)):
        return None  # never worse than the fallback
    sections = Sections()
    sections.set_shape(shape)
    sections.set_model_id(bytes.fromhex(taken.coder.model_id)[:COMPACT_MODEL_ID])
    sections.add(SECTION_IMAGE_FORMAT, _pack_format(flags, parsed.fmt, tiling.TILE))
    produced = data if parsed.exact else formats.rebuild(parsed.fmt, parsed.pixels, parsed.side)
    return sections, payload, produced


def _layout(sections: Sections) -> _Layout:
    """The image fields of a container's sections; IodfError when they are damaged."""
    shape = sections.shape()
    model_id = sections.model_id()
    flags, fmt, tile = _unpack_format(sections.require(SECTION_IMAGE_FORMAT))
    id_size = COMPACT_MODEL_ID if flags & FLAG_COMPACT else MODEL_ID_SIZE
    if shape is None or model_id is None or len(model_id) != id_size:
        raise IodfError("damaged container: image sections missing")
    if shape.bit_depth != 8 or not 1 <= shape.channels <= 4:
        raise IodfError("damaged container: bad image shape")
    return _Layout(shape, model_id, flags, fmt, tile)


def _cut(layout: _Layout, payload: bytes, coder: ImageCoder) -> _Parts:
    """``payload`` cut into its parts, for ``coder``'s number of streams; IodfError when it
    cannot be."""
    h, rgb_w, flags = layout.shape.height, layout.rgb_width, layout.flags
    if not fits(h, layout.shape.width, layout.shape.channels, coder.levels):
        raise IodfError("damaged container: image too large")
    plan = coder.batch_count(h, rgb_w, layout.tile)
    if plan * ans.HEAD_WORDS * 2 > len(payload):  # every stream holds its lane heads
        raise IodfError("damaged container: image payload too short for its shape")
    if flags & FLAG_COMPACT:
        present = (not flags & FLAG_SIDE_NONE) + layout.has_alpha
        streams = _unpack_compact(payload, present + plan)
        side = None if flags & FLAG_SIDE_NONE else streams.pop(0)
    else:
        side, *streams = _unpack_parts(payload)
    alpha = streams.pop(0) if layout.has_alpha and streams else b""
    return _Parts(side, alpha, streams)


def _rebuild(layout: _Layout, rgb: np.ndarray, parts: _Parts) -> bytes:
    """The decoded file from the flow's pixels and the payload's other parts."""
    shape = layout.shape
    h, w = shape.height, shape.width
    extra = None
    if layout.has_alpha:
        extra = np.frombuffer(_unzstd(parts.alpha, h * w), np.uint8)
        if extra.size != h * w:
            raise IodfError("damaged container: alpha plane has the wrong size")
        extra = extra.reshape(h, w)
    pixels = from_rgb(rgb, extra, shape)
    if parts.side is None:
        return _canonical_pnm(shape, pixels)
    if layout.flags & FLAG_SIDE_ZSTD:
        side = _unzstd(parts.side, formats.max_side_bytes(layout.fmt, h, w, shape.channels))
    else:
        side = parts.side
    return formats.rebuild(layout.fmt, pixels, side)


_WARNED: set[str] = set()


def _coders_for(level: int, height: int, width: int) -> list[ImageCoder]:
    """What an image of this size is coded with at ``level`` (the encoder keeps the smallest
    result): below ``FLOW_FROM``, the predictive coder alone; below ``MAX_LEVEL``, the
    predictive coder alone above ``PREDICTIVE_FROM_PIXELS`` (the flows win no large photo:
    tried on Kodak they gave the same bytes ten times slower); else the level's flows
    (:func:`_flow_coders`) and the predictive coder. The predictive coder tries every colour
    transform on large images from TRY_ALL_FROM, and on every image at MAX_LEVEL (on small
    ones below it, 4 codings beside the flows would take imagenet32 below 0.3 MB/s)."""
    coder = predictive.encoding_coder()
    large = height * width > PREDICTIVE_FROM_PIXELS
    if level >= MAX_LEVEL or (level >= TRY_ALL_FROM and large):
        coder = predictive.every_transform(coder)
    if level < FLOW_FROM or (level < MAX_LEVEL and large):
        return [coder]
    return [*_flow_coders(level, height, width), coder]


def _flow_coders(level: int, height: int, width: int) -> list[ImageCoder]:
    """The level's models (``zoo.models_for``), each with a backend that passed its test
    vectors. A model that cannot be used is left out, with one warning per process (``iodfz
    selftest`` tells more)."""
    from iodfz.engine.backends import BackendUnavailable, backend_for, requested
    from iodfz.engine.model import ModelError

    try:
        models = zoo.models_for(
            level, lambda depth: math.prod(_padded(height, width, depth)), height * width
        )
    except ModelError as exc:
        _warn_unusable(exc)
        return []
    coders: list[ImageCoder] = []
    for model in models:
        try:
            model_tables(model)
            coders.append(FlowCoder(model, backend_for(model)))
        except (ModelError, CoderError, BackendUnavailable) as exc:
            if isinstance(exc, BackendUnavailable) and requested() != "auto":
                raise IodfError(str(exc)) from None  # an explicit IODFZ_BACKEND never falls back
            _warn_unusable(exc)
    return coders


def _warn_unusable(exc: Exception) -> None:
    if str(exc) not in _WARNED:
        _WARNED.add(str(exc))
        print(
            f"iodfz: warning: neural image path unusable, using the predictive coder ({exc})",
            file=sys.stderr,
        )


def _coders(prefix: str) -> Iterator[ImageCoder]:
    """The installed models whose id starts with ``prefix`` (hex), then the predictive coders
    whose ids do. A version 2 container keeps 2 bytes of the id, so two may share it: the
    caller tries each, and the rANS end check and the content digest refuse the wrong one
    (FORMAT.md 3.1)."""
    ids = [card["model_id"] for card in zoo.cards() if card["model_id"].startswith(prefix)]
    coder = predictive.coders_for(prefix)
    if not ids and not coder:
        searched = ", ".join(map(str, zoo.model_dirs()))
        raise IodfError(f"needs model {prefix[:16]}, which is not installed (searched {searched})")
    for model_id in ids:
        yield _installed_flow(model_id)
    yield from coder


def _installed_flow(model_id: str) -> FlowCoder:
    """The installed model ``model_id`` as a coder (IodfError if it cannot be used)."""
    from iodfz.engine.model import ModelError

    try:
        model = zoo.load_by_id(model_id)
        model_tables(model)
    except (LookupError, ModelError, CoderError) as exc:
        raise IodfError(f"model {model_id[:16]} is unusable ({exc})") from None
    return FlowCoder(model)


def _flow_pixels() -> ModuleType:
    """The flow's pixel codec (:mod:`iodfz.codec.pixels`), loaded when a flow codes."""
    from iodfz.codec import pixels

    return pixels


def _backend(model: Model) -> Backend:
    from iodfz.engine.backends import BackendUnavailable, backend_for

    try:
        return backend_for(model)
    except BackendUnavailable as exc:
        raise IodfError(
            f"integer engine unusable on this machine ({exc}); see iodfz selftest"
        ) from None


def _padded(height: int, width: int, levels: int) -> tuple[int, int]:
    return tiling.padded_size(height, levels), tiling.padded_size(width, levels)


def _canonical_pnm(shape: ImageShape, pixels: np.ndarray) -> bytes:
    """The binary PNM (P5 / P6, maxval 255, one space and newlines) of ``pixels``."""
    return pnm_header(shape) + np.ascontiguousarray(pixels).tobytes()


CODEC = NeuralImageCodec()
