"""RGB pixels ↔ the neural payload's streams (docs/FORMAT.md §3).

The image is edge-padded to a multiple of 2^levels, cut into tiles of at most ``tile`` pixels a
side, and tiles of equal shape are run through the flow in batches of bounded size, so memory
stays bounded whatever the image size. Each batch is one rANS stream: the factored-out levels
pushed finest first, the top latents last, so the decoder pops the top first and then each
finer level as soon as the flow has produced its prior parameters.

Small images (one tile each) of one shape can also go through together (:func:`encode_many`,
:func:`decode_many`): the flow runs over a batch of them and their streams are coded in
lockstep (:mod:`iodfz.codec.lockstep`), each image's stream the one it has alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np

from iodfz import limits
from iodfz.codec import lockstep, tiling
from iodfz.codecs import Share
from iodfz.coder import ans
from iodfz.coder import tables as coder_tables
from iodfz.engine import flow
from iodfz.engine.model import Model
from iodfz.engine.tables import model_tables


def _lanes(tiles: int, height: int, width: int) -> int:
    """Lane count of a batch's stream: a function of its shape (so a compact stream, which
    does not store it, can be read)."""
    return ans.lanes_for(tiles * height * width * 3 // 2)


def _tiles(image: np.ndarray, rects: list[tuple[int, int, int, int]]) -> np.ndarray:
    return np.stack([image[y : y + th, x0 : x0 + tw] for y, x0, th, tw in rects])


def _pad(rgb: np.ndarray, levels: int) -> np.ndarray:
    h, w, _ = rgb.shape
    hp, wp = tiling.padded_size(h, levels), tiling.padded_size(w, levels)
    return np.pad(rgb, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")


def _split_symbols(split: flow.SplitLatents, rows: int) -> list[tuple[np.ndarray, ...]]:
    """(values, table index, offset) of each coding pass of a factored-out level, in push
    order, one row per stream."""
    out = []
    for values, scale_index, mean_fp in split.passes():
        index, offset = coder_tables.logistic_index(scale_index, mean_fp)
        out.append(tuple(a.reshape(rows, -1) for a in (values, index, offset)))
    return out


def _top_channels(shape: tuple[int, ...], rows: int) -> np.ndarray:
    """The top latents' table (their channel), one row per stream."""
    return np.broadcast_to(np.arange(shape[-1]), shape).reshape(rows, -1)


def encode(
    model: Model,
    backend: flow.Backend,
    rgb: np.ndarray,
    tile: int = tiling.TILE,
    compact: bool = True,
    progress: Share | None = None,
) -> list[bytes]:
    """(H, W, 3) uint8 → one rANS stream per batch (compact streams, FORMAT.md 2.4, unless
    ``compact`` is False). ``progress`` hears the share of pixels done after each batch."""
    image = _pad(rgb, model.levels)
    hp, wp, _ = image.shape
    logistic, mixture = model_tables(model)
    streams = []
    done = 0
    for rects in tiling.batches(hp, wp, tile):
        x = _tiles(image, rects)
        splits, top = flow.forward(model, backend, x)
        enc = ans.encoder(_lanes(*x.shape[:3]))
        for s in splits:
            for symbols in _split_symbols(s, 1):
                ans.push(enc, logistic, *(a.ravel() for a in symbols))
        ans.push(enc, mixture, top.ravel(), _top_channels(top.shape, 1).ravel())
        streams.append(ans.finish(enc, compact))
        done += x[..., 0].size
        if progress:
            progress(done / (hp * wp))
    return streams


def encode_many(
    model: Model, backend: flow.Backend, rgbs: Sequence[np.ndarray]
) -> list[list[bytes]]:
    """``[encode(model, backend, rgb) for rgb in rgbs]`` for images of one shape that are one
    tile each: the flow runs over batches of them (at most ``tiling.MAX_BATCH_PIXELS``), and their
    streams are coded in lockstep."""
    h, w, _ = rgbs[0].shape
    if not tiling.single_tile(h, w, model.levels) or any(
        rgb.shape != rgbs[0].shape for rgb in rgbs
    ):
        raise ValueError("encode_many takes images of one shape, one tile each")
    hp, wp = tiling.padded_size(h, model.levels), tiling.padded_size(w, model.levels)
    logistic, mixture = model_tables(model)
    out = []
    per_batch = max(1, tiling.MAX_BATCH_PIXELS // (hp * wp))
    for i in range(0, len(rgbs), per_batch):
        x = np.stack([_pad(rgb, model.levels) for rgb in rgbs[i : i + per_batch]])
        splits, top = flow.forward(model, backend, x)
        group = lockstep.Encoder(len(x), _lanes(1, hp, wp))
        for s in splits:
            for symbols in _split_symbols(s, len(x)):
                group.push(logistic, *symbols)
        group.push(mixture, top.reshape(len(x), -1), _top_channels(top.shape, len(x)), 0)
        out += [[stream] for stream in group.finish()]
    return out


def _pop_split(
    dec: ans.Decoder,
    logistic: coder_tables.Tables,
    level: int,
    scale_index: np.ndarray,
    mean_fp: np.ndarray,
) -> np.ndarray:
    index, offset = coder_tables.logistic_index(scale_index, mean_fp)
    return ans.pop(dec, logistic, index.ravel(), offset.ravel()).reshape(scale_index.shape)


def decode(
    model: Model,
    backend: flow.Backend,
    streams: list[bytes],
    height: int,
    width: int,
    tile: int = tiling.TILE,
    compact: bool = True,
    progress: Share | None = None,
) -> np.ndarray:
    """Inverse of :func:`encode`."""
    levels = model.levels
    if not tiling.tile_ok(tile, levels):
        raise tiling.PixelCodecError(f"bad tile size {tile}")
    hp, wp = tiling.padded_size(height, levels), tiling.padded_size(width, levels)
    if hp * wp * 3 > limits.MAX_PIXELS:
        raise tiling.PixelCodecError("image too large")
    image = np.empty((hp, wp, 3), np.uint8)
    logistic, mixture = model_tables(model)
    plan = list(tiling.batches(hp, wp, tile))
    if len(plan) != len(streams):
        raise tiling.PixelCodecError(f"expected {len(plan)} streams, found {len(streams)}")
    top_channels = 3 * 2 ** (levels + 1)
    done = 0
    for rects, stream in zip(plan, streams, strict=True):
        _, _, th, tw = rects[0]
        dec = (
            ans.compact_decoder(stream, _lanes(len(rects), th, tw))
            if compact
            else ans.decoder(stream)
        )
        top_shape = (len(rects), th >> levels, tw >> levels, top_channels)
        top = ans.pop(dec, mixture, _top_channels(top_shape, 1).ravel()).reshape(top_shape)

        x = flow.inverse(model, backend, top, partial(_pop_split, dec, logistic))
        ans.check_finished(dec)
        for (y, x0, th_, tw_), tile_pixels in zip(rects, x, strict=True):
            image[y : y + th_, x0 : x0 + tw_] = tile_pixels
        done += len(rects) * th * tw
        if progress:
            progress(done / (hp * wp))
    return image[:height, :width]


def _pop_splits(
    group: lockstep.Decoder,
    logistic: coder_tables.Tables,
    level: int,
    scale_index: np.ndarray,
    mean_fp: np.ndarray,
) -> np.ndarray:
    index, offset = coder_tables.logistic_index(scale_index, mean_fp)
    rows = len(scale_index)
    return group.pop(logistic, index.reshape(rows, -1), offset.reshape(rows, -1)).reshape(
        scale_index.shape
    )


def decode_many(
    model: Model, backend: flow.Backend, streams: Sequence[bytes], height: int, width: int
) -> list[np.ndarray | None]:
    """``decode(model, backend, [stream], height, width)`` of each of ``streams`` (images of
    one shape, one tile each), the flow's inverse run over batches of them and their streams
    decoded in lockstep; None for a stream that is damaged (decoding it alone says how)."""
    levels = model.levels
    if not tiling.single_tile(height, width, levels):
        raise ValueError("decode_many takes images of one tile each")
    hp, wp = tiling.padded_size(height, levels), tiling.padded_size(width, levels)
    logistic, mixture = model_tables(model)
    top_shape = (hp >> levels, wp >> levels, 3 * 2 ** (levels + 1))
    out: list[np.ndarray | None] = []
    per_batch = max(1, tiling.MAX_BATCH_PIXELS // (hp * wp))
    for i in range(0, len(streams), per_batch):
        group = lockstep.Decoder(list(streams[i : i + per_batch]), _lanes(1, hp, wp))
        n = len(group.x)
        top = group.pop(mixture, _top_channels((n, *top_shape), n), 0).reshape(n, *top_shape)
        x = flow.inverse(model, backend, top, partial(_pop_splits, group, logistic))
        ok = group.finish()
        out += [x[k, :height, :width] if ok[k] else None for k in range(n)]
    return out
