"""Image file formats: split a file into pixels + side information and rebuild its exact bytes.

Detection is by content. Supported: PNG (see ``png``), binary PNM P5/P6 with maxval 255,
BMP 24/32-bit BI_RGB, 8-bit TIFF (uncompressed, LZW, Deflate, PackBits; see ``tiff``).
Side-info layouts: docs/FORMATS.md.
"""

from __future__ import annotations

import importlib
import struct
import zlib
from types import ModuleType
from typing import NamedTuple

import numpy as np

from iodfz import limits

from . import bmp, pnm
from ._side import FormatError

__all__ = ["FormatError", "ParsedImage", "max_side_bytes", "parse", "rebuild", "sniff"]

_FORMATS = ("png", "pnm", "bmp", "tiff")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # png.SIGNATURE: sniffing never imports png


def _module(fmt: str) -> ModuleType:
    """The module of format ``fmt``, imported when first needed: PNG and TIFF are large, and a
    run of PNM files never loads them."""
    return importlib.import_module(f"{__name__}.{fmt}")


class ParsedImage(NamedTuple):
    fmt: str  # 'png' | 'pnm' | 'bmp' | 'tiff'
    pixels: np.ndarray  # (H, W, C) uint8 or uint16, C in {1, 2, 3, 4}, C-contiguous
    side: bytes  # everything else needed to rebuild the file
    exact: bool  # True: rebuild(...) == original bytes; False: same pixels (re-encoded)


def sniff(head: bytes) -> str | None:
    """Format name from the first bytes of a file (at least 18 help BMP), or None."""
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head[:4] in (b"II*\0", b"MM\0*"):
        return "tiff"
    if head[:2] in (b"P5", b"P6") and head[2:3] in (b" ", b"\t", b"\n", b"\v", b"\f", b"\r", b"#"):
        return "pnm"
    if bmp.header_ok(head):
        return "bmp"
    return None


def _parse(fmt: str, data: bytes, allow_pixel_exact: bool) -> tuple[np.ndarray, bytes, bool] | None:
    if fmt in ("png", "tiff"):
        return _module(fmt).parse(data, allow_pixel_exact)
    got = {"pnm": pnm.parse, "bmp": bmp.parse}[fmt](data)
    return None if got is None else (*got, True)


def parse(data: bytes, *, allow_pixel_exact: bool = False) -> ParsedImage | None:
    """Split ``data`` into pixels and side info; None if the file is not handled.

    Never raises on malformed input. An ``exact`` result has been checked to rebuild to
    ``data``; with ``allow_pixel_exact`` a PNG whose deflate stream (or a TIFF whose LZW or
    Deflate segments) cannot be reproduced is returned with ``exact=False`` (rebuild gives a
    valid file with the same pixels, chunks and tags, its pixel data re-encoded).
    """
    fmt = sniff(data[:32])
    if fmt is None:
        return None
    try:
        got = _parse(fmt, bytes(data), allow_pixel_exact)
        if got is None:
            return None
        pixels, side, exact = got
        pixels = np.ascontiguousarray(pixels)
        if len(side) > max_side_bytes(fmt, *pixels.shape):
            return None
        if exact and rebuild(fmt, pixels, side) != data:
            if not (allow_pixel_exact and fmt == "png"):
                return None
            side, exact = _module("png").as_pixel_exact(side, pixels), False
    except (ValueError, IndexError, OverflowError, MemoryError, struct.error, zlib.error):
        return None
    return ParsedImage(fmt, pixels, side, exact)


def max_side_bytes(fmt: str, height: int, width: int, channels: int) -> int:
    """Largest side info ``parse`` gives (and ``rebuild`` accepts) for an image of this format
    and pixel shape: a decoder stops inflating stored side data beyond it
    (:func:`iodfz.limits.max_side_bytes`; the same for every format today)."""
    del fmt  # one bound for all formats; kept so a format may tighten it
    return limits.max_side_bytes(height, width, channels)


def rebuild(fmt: str, pixels: np.ndarray, side: bytes) -> bytes:
    """The file bytes from ``parse``'s pixels and side info; FormatError on bad side info."""
    if fmt not in _FORMATS:
        raise FormatError(f"unknown image format {fmt!r}")
    if getattr(pixels, "ndim", 0) != 3 or len(side) > max_side_bytes(fmt, *pixels.shape):
        raise FormatError("side info larger than the image shape allows")
    return _module(fmt).rebuild(pixels, bytes(side))
