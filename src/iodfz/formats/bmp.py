"""BMP: 24/32-bit uncompressed (BI_RGB), bottom-up or top-down, any header version.

Pixels are RGB (24-bit, and 32-bit whose fourth byte is one constant) or RGBA (32-bit whose
fourth byte varies). Side info: version byte, the constant fourth byte (0 to 255; 256 = none or
kept as alpha), then the raster layout of the file's BGR(X) bytes (see ``_raster``); headers,
row padding, gaps and trailing bytes form the skeleton.
"""

from __future__ import annotations

import struct

import numpy as np

from ._raster import Block, check_pixels, join, read_layout, split, write_layout
from ._side import FormatError, Reader, Writer

_VERSION = 1
_INFO_HEADER_SIZES = (40, 52, 56, 64, 108, 124)
_NO_CONSTANT = 256


def header_ok(head: bytes) -> bool:
    """Plausible BMP file header (used by ``sniff``)."""
    if head[:2] != b"BM":
        return False
    return len(head) < 18 or struct.unpack_from("<I", head, 14)[0] in (12, *_INFO_HEADER_SIZES)


def parse(data: bytes) -> tuple[np.ndarray, bytes] | None:
    if len(data) < 26 or not header_ok(data):
        return None
    offset, dib = struct.unpack_from("<II", data, 10)
    if dib == 12:
        w, h, _planes, bpp = struct.unpack_from("<HHHH", data, 18)
        compression = 0
    elif len(data) >= 54:
        w, h, _planes, bpp, compression = struct.unpack_from("<iiHHI", data, 18)
    else:
        return None
    if compression != 0 or bpp not in (24, 32) or w <= 0 or h == 0:
        return None
    c = bpp // 8
    stride = (w * bpp + 31) // 32 * 4
    blocks = [Block(offset, 0, abs(h), 0, w, stride, h > 0)]
    got = split(data, blocks, abs(h), w, c)
    if got is None:
        return None
    raster, skeleton = got
    constant = _NO_CONSTANT
    pixels = raster[..., 2::-1]
    if c == 4:
        fourth = raster[..., 3]
        if np.all(fourth == fourth.flat[0]):
            constant = int(fourth.flat[0])
        else:
            pixels = raster[..., [2, 1, 0, 3]]
    wr = Writer()
    wr.u8(_VERSION)
    wr.uint(constant)
    write_layout(wr, raster.shape, blocks, skeleton)
    return np.ascontiguousarray(pixels), wr.getvalue()


def rebuild(pixels: np.ndarray, side: bytes) -> bytes:
    rd = Reader(side)
    if rd.u8() != _VERSION:
        raise FormatError("unknown BMP side-info version")
    constant = rd.uint(_NO_CONSTANT)
    (h, w, c), blocks, skeleton = read_layout(rd)
    rd.done()
    if c not in (3, 4) or (c == 3 and constant != _NO_CONSTANT):
        raise FormatError("bad BMP channel layout")
    keep_fourth = c == 4 and constant == _NO_CONSTANT
    pixels = check_pixels(pixels, (h, w, 4 if keep_fourth else 3))
    raster = np.empty((h, w, c), np.uint8)
    raster[..., :3] = pixels[..., 2::-1]
    if c == 4:
        raster[..., 3] = pixels[..., 3] if keep_fourth else constant
    return join(raster, skeleton, blocks)
