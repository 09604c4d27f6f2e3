"""How a payload cuts an image into tiles and batches (docs/FORMAT.md 3.3): the rules the flow's
pixel codec (:mod:`iodfz.codec.pixels`) and the predictive coders share, apart from the flow so
that a predictive coding never loads the flow's engine."""

from __future__ import annotations

from collections.abc import Iterator

TILE = 256
MAX_BATCH_PIXELS = 1 << 20  # per batch of tiles (FORMAT.md 3.3), and of small images at once


class PixelCodecError(ValueError):
    """A payload's tiles or streams do not fit its image."""


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


def tile_ok(tile: int, levels: int) -> bool:
    """A tile size a decoder accepts: a multiple of 2^levels, 2^levels … 4096."""
    return tile % (1 << levels) == 0 and 1 << levels <= tile <= 4096


def single_tile(height: int, width: int, levels: int, tile: int = TILE) -> bool:
    """Whether an image of this size is one tile (one batch, one stream)."""
    unit = max(padded_size(height, levels), padded_size(width, levels))
    return tile_ok(tile, levels) and unit <= tile
