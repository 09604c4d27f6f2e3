"""Binary PNM: P5 (gray) and P6 (RGB), maxval 255.

Side info: version byte, then the raster layout (see ``_raster``): the header (comments and
whitespace included) and any trailing bytes form the skeleton.
"""

from __future__ import annotations

import numpy as np

from ._raster import Block, pack, unpack

_VERSION = 1
_WHITESPACE = b" \t\n\v\f\r"
_DIGITS = b"0123456789"


def _header(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, channels, raster offset) of a P5/P6 file with maxval 255."""
    if len(data) < 3 or data[:2] not in (b"P5", b"P6") or data[2] not in _WHITESPACE + b"#":
        return None
    pos, fields = 2, []
    while len(fields) < 3:
        while pos < len(data) and (data[pos] in _WHITESPACE or data[pos] == ord("#")):
            if data[pos] == ord("#"):
                while pos < len(data) and data[pos] not in b"\r\n":
                    pos += 1
            else:
                pos += 1
        start = pos
        while pos < len(data) and data[pos] in _DIGITS and pos - start < 10:
            pos += 1
        if pos == start:
            return None
        fields.append(int(data[start:pos]))
    if pos >= len(data) or data[pos] not in _WHITESPACE:
        return None
    width, height, maxval = fields
    if maxval != 255 or width == 0 or height == 0:
        return None
    return width, height, 1 if data[1] == ord("5") else 3, pos + 1


def parse(data: bytes) -> tuple[np.ndarray, bytes] | None:
    head = _header(data)
    if head is None:
        return None
    w, h, c, offset = head
    blocks = [Block(offset, 0, h, 0, w, w * c, False)]
    return pack(_VERSION, data, blocks, h, w, c)


def rebuild(pixels: np.ndarray, side: bytes) -> bytes:
    return unpack(_VERSION, "PNM", pixels, side)
