"""Baseline TIFF, first image only: uncompressed, chunky, 8 bits per sample, 1-4 samples
(gray, gray+alpha, RGB, RGBA), strips or tiles, little- or big-endian.

Side info: version byte, then the raster layout (see ``_raster``): one block per strip/tile;
header, IFDs, tag data, tile padding, further pages and trailing bytes form the skeleton.
"""

from __future__ import annotations

import struct

import numpy as np

from ._raster import Block, pack, unpack

_VERSION = 1
_TYPE_CODES = {1: "B", 3: "H", 4: "I"}  # BYTE, SHORT, LONG
_TAGS = {256, 257, 258, 259, 262, 273, 277, 278, 284, 322, 323, 324, 339}
# ImageWidth, ImageLength, BitsPerSample, Compression, Photometric, StripOffsets,
# SamplesPerPixel, RowsPerStrip, PlanarConfiguration, TileWidth, TileLength, TileOffsets,
# SampleFormat


def _read_ifd(data: bytes, order: str, offset: int) -> dict[int, list[int]] | None:
    """The tags in ``_TAGS`` of the IFD at ``offset`` (tags of other types are left out)."""
    if offset + 2 > len(data):
        return None
    (count,) = struct.unpack_from(order + "H", data, offset)
    if offset + 2 + 12 * count > len(data):
        return None
    tags: dict[int, list[int]] = {}
    for i in range(count):
        tag, typ, n = struct.unpack_from(order + "HHI", data, offset + 2 + 12 * i)
        if tag not in _TAGS or typ not in _TYPE_CODES:
            continue
        code = _TYPE_CODES[typ]
        size = struct.calcsize(code)
        at = offset + 10 + 12 * i
        if n * size > 4:
            (at,) = struct.unpack_from(order + "I", data, at)
        if at + n * size > len(data):
            return None
        tags[tag] = list(struct.unpack_from(f"{order}{n}{code}", data, at))
    return tags


def _blocks(tags: dict[int, list[int]]) -> tuple[int, int, int, list[Block]] | None:
    def one(tag: int, default: int | None = None) -> int | None:
        vals = tags.get(tag)
        return vals[0] if vals else default

    w, h, spp = one(256), one(257), one(277, 1)
    if not w or not h or spp not in (1, 2, 3, 4):
        return None
    if one(259, 1) != 1 or one(262) not in (0, 1, 2) or (spp > 1 and one(284, 1) != 1):
        return None
    if tags.get(258, [1]) not in ([8], [8] * spp) or tags.get(339, [1]) not in ([1], [1] * spp):
        return None
    blocks = []
    if 324 in tags:
        tw, th = one(322), one(323)
        if not tw or not th:
            return None
        across, down = -(-w // tw), -(-h // th)
        offsets = tags[324]
        if len(offsets) < across * down:
            return None
        for i in range(across * down):
            y0, x0 = i // across * th, i % across * tw
            y1, x1 = min(h, y0 + th), min(w, x0 + tw)
            blocks.append(Block(offsets[i], y0, y1, x0, x1, tw * spp, False))
    else:
        rows = min(h, one(278, h) or h)
        offsets = tags.get(273, [])
        if len(offsets) < -(-h // rows):
            return None
        for i, y0 in enumerate(range(0, h, rows)):
            blocks.append(Block(offsets[i], y0, min(h, y0 + rows), 0, w, w * spp, False))
    return h, w, spp, blocks


def parse(data: bytes) -> tuple[np.ndarray, bytes] | None:
    if len(data) < 8 or data[:4] not in (b"II*\0", b"MM\0*"):
        return None
    order = "<" if data[0] == ord("I") else ">"
    tags = _read_ifd(data, order, struct.unpack_from(order + "I", data, 4)[0])
    geometry = None if tags is None else _blocks(tags)
    if geometry is None:
        return None
    h, w, c, blocks = geometry
    return pack(_VERSION, data, blocks, h, w, c)


def rebuild(pixels: np.ndarray, side: bytes) -> bytes:
    return unpack(_VERSION, "TIFF", pixels, side)
