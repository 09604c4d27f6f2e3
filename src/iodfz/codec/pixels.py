"""RGB pixels ↔ the neural payload's streams (docs/FORMAT.md §3).

The image is edge-padded to a multiple of 2^levels, cut into tiles of at most ``tile`` pixels a
side, and tiles of equal shape are run through the flow in batches of bounded size, so memory
stays bounded whatever the image size. Each batch is one rANS stream: the factored-out levels
pushed finest first, the top latents last, so the decoder pops the top first and then each
finer level as soon as the flow has produced its prior parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np

from iodfz import limits
from iodfz.coder import ans
from iodfz.coder import tables as coder_tables
from iodfz.engine import flow
from iodfz.engine.model import Model
from iodfz.engine.tables import model_tables

TILE = 256
MAX_BATCH_PIXELS = 1 << 20


class PixelCodecError(ValueError):
    pass


def padded_size(n: int, levels: int) -> int:
    unit = 1 << levels
    return -(-n // unit) * unit


def batches(height: int, width: int, tile: int) -> Iterator[list[tuple[int, int, int, int]]]:
    """Tile rectangles (y, x, h, w) of a padded image, grouped into same-shape batches."""
    by_shape: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            h, w = min(tile, height - y), min(tile, width - x)
            by_shape.setdefault((h, w), []).append((y, x, h, w))
    for (h, w), rects in by_shape.items():
        per_batch = max(1, MAX_BATCH_PIXELS // (h * w))
        for i in range(0, len(rects), per_batch):
            yield rects[i : i + per_batch]


def _lanes(tiles: int, height: int, width: int) -> int:
    """Lane count of a batch's stream: a function of its shape (so a compact stream, which
    does not store it, can be read)."""
    return ans.lanes_for(tiles * height * width * 3 // 2)


def batch_count(height: int, width: int, tile: int) -> int:
    """``len(list(batches(height, width, tile)))`` without listing the tiles: a decoder checks
    it against the payload before it builds anything that large."""
    rows = [(tile, height // tile)] + ([(height % tile, 1)] if height % tile else [])
    cols = [(tile, width // tile)] + ([(width % tile, 1)] if width % tile else [])
    count = 0
    for h, nh in rows:
        for w, nw in cols:
            if nh and nw:
                per_batch = max(1, MAX_BATCH_PIXELS // (h * w))
                count += -(-(nh * nw) // per_batch)
    return count


def encode(
    model: Model, backend: flow.Backend, rgb: np.ndarray, tile: int = TILE, compact: bool = True
) -> list[bytes]:
    """(H, W, 3) uint8 → one rANS stream per batch (compact streams, FORMAT.md 2.4, unless
    ``compact`` is False)."""
    levels = model.levels
    h, w, _ = rgb.shape
    hp, wp = padded_size(h, levels), padded_size(w, levels)
    image = np.pad(rgb, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    logistic, mixture = model_tables(model)
    streams = []
    for rects in batches(hp, wp, tile):
        x = np.stack([image[y : y + th, x0 : x0 + tw] for y, x0, th, tw in rects])
        splits, top = flow.forward(model, backend, x)
        enc = ans.encoder(_lanes(*x.shape[:3]))
        for s in splits:
            index, offset = coder_tables.logistic_index(s.scale_index, s.mean_fp)
            ans.push(enc, logistic, s.values.ravel(), index.ravel(), offset.ravel())
        channel = np.broadcast_to(np.arange(top.shape[-1]), top.shape)
        ans.push(enc, mixture, top.ravel(), channel.ravel())
        streams.append(ans.finish(enc, compact))
    return streams


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
    tile: int = TILE,
    compact: bool = True,
) -> np.ndarray:
    """Inverse of :func:`encode`."""
    levels = model.levels
    if tile % (1 << levels) or not 1 << levels <= tile <= 4096:
        raise PixelCodecError(f"bad tile size {tile}")
    hp, wp = padded_size(height, levels), padded_size(width, levels)
    if hp * wp * 3 > limits.MAX_PIXELS:
        raise PixelCodecError("image too large")
    image = np.empty((hp, wp, 3), np.uint8)
    logistic, mixture = model_tables(model)
    plan = list(batches(hp, wp, tile))
    if len(plan) != len(streams):
        raise PixelCodecError(f"expected {len(plan)} streams, found {len(streams)}")
    top_channels = 3 * 2 ** (levels + 1)
    for rects, stream in zip(plan, streams, strict=True):
        _, _, th, tw = rects[0]
        dec = (
            ans.compact_decoder(stream, _lanes(len(rects), th, tw))
            if compact
            else ans.decoder(stream)
        )
        top_shape = (len(rects), th >> levels, tw >> levels, top_channels)
        channel = np.broadcast_to(np.arange(top_channels), top_shape)
        top = ans.pop(dec, mixture, channel.ravel()).reshape(top_shape)

        x = flow.inverse(model, backend, top, partial(_pop_split, dec, logistic))
        ans.check_finished(dec)
        for (y, x0, th_, tw_), tile_pixels in zip(rects, x, strict=True):
            image[y : y + th_, x0 : x0 + tw_] = tile_pixels
    return image[:height, :width]
