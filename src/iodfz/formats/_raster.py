"""Uncompressed rasters (PNM, BMP, TIFF): a file is a *skeleton* with pixel *blocks* cut out.

A block is a rectangle of the raster stored as rows of ``(x1 - x0) * C`` bytes, ``stride`` bytes
apart, starting at ``offset``; ``flip`` means the rows are stored bottom-up. Everything that is
not pixel data (headers, row padding, tile padding, trailing bytes, other IFDs, ...) is the
skeleton, kept verbatim in file order.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._side import FormatError, Reader, Writer

MAX_PIXELS = 1 << 28


class Block(NamedTuple):
    offset: int
    y0: int
    y1: int
    x0: int
    x1: int
    stride: int
    flip: bool


def _valid(blk: Block, h: int, w: int, c: int, length: int) -> bool:
    rows, row_bytes = blk.y1 - blk.y0, (blk.x1 - blk.x0) * c
    return (
        0 <= blk.y0 < blk.y1 <= h
        and 0 <= blk.x0 < blk.x1 <= w
        and blk.stride >= row_bytes
        and blk.offset >= 0
        and blk.offset + (rows - 1) * blk.stride + row_bytes <= length
    )


def _file_view(arr: np.ndarray, blk: Block, c: int) -> np.ndarray:
    """Rows of ``blk`` inside the flat byte-sized array ``arr`` (bounds already checked)."""
    shape = (blk.y1 - blk.y0, (blk.x1 - blk.x0) * c)
    return np.lib.stride_tricks.as_strided(arr[blk.offset :], shape, (blk.stride, 1))


def _region(raster: np.ndarray, blk: Block) -> np.ndarray:
    rows = raster[blk.y0 : blk.y1, blk.x0 : blk.x1]
    return rows[::-1] if blk.flip else rows


def split(
    data: bytes, blocks: list[Block], h: int, w: int, c: int
) -> tuple[np.ndarray, bytes] | None:
    """Cut the (h, w, c) uint8 raster out of ``data``; None unless blocks tile it exactly once."""
    if not 0 < h * w <= MAX_PIXELS or h * w * c > len(data):
        return None
    buf = np.frombuffer(data, np.uint8)
    hole = np.zeros(len(buf), bool)
    covered = np.zeros((h, w), bool)
    raster = np.empty((h, w, c), np.uint8)
    for blk in blocks:
        if not _valid(blk, h, w, c, len(buf)):
            return None
        hole_view = _file_view(hole, blk, c)
        cover = covered[blk.y0 : blk.y1, blk.x0 : blk.x1]
        if hole_view.any() or cover.any():
            return None
        hole_view[...] = True
        cover[...] = True
        _region(raster, blk)[...] = _file_view(buf, blk, c).reshape(_region(raster, blk).shape)
    if not covered.all():
        return None
    return raster, buf[~hole].tobytes()


def join(raster: np.ndarray, skeleton: bytes, blocks: list[Block]) -> bytes:
    """Inverse of :func:`split`."""
    h, w, c = raster.shape
    total = len(skeleton) + raster.size
    out = np.empty(total, np.uint8)
    hole = np.zeros(total, bool)
    for blk in blocks:
        if not _valid(blk, h, w, c, total):
            raise FormatError(f"pixel block {blk} out of range")
        hole_view = _file_view(hole, blk, c)
        if hole_view.any():
            raise FormatError("overlapping pixel blocks")
        hole_view[...] = True
        region = _region(raster, blk)
        _file_view(out, blk, c)[...] = region.reshape(region.shape[0], -1)
    if int(np.count_nonzero(hole)) != raster.size:
        raise FormatError("pixel blocks do not cover the raster")
    out[~hole] = np.frombuffer(skeleton, np.uint8)
    return out.tobytes()


def write_layout(wr: Writer, shape: tuple[int, int, int], blocks: list[Block], skel: bytes) -> None:
    """Geometry, blocks (offsets delta-coded so regular strips/tiles compress well), skeleton."""
    for n in shape:
        wr.uint(n)
    wr.uint(len(blocks))
    prev_end, prev_y1 = 0, 0
    for blk in blocks:
        row_bytes = (blk.x1 - blk.x0) * shape[2]
        wr.sint(blk.offset - prev_end)
        wr.sint(blk.y0 - prev_y1)
        wr.uint(blk.y1 - blk.y0)
        wr.uint(blk.x0)
        wr.uint(blk.x1 - blk.x0)
        wr.uint(blk.stride - row_bytes)
        wr.u8(int(blk.flip))
        prev_end, prev_y1 = blk.offset + (blk.y1 - blk.y0) * blk.stride, blk.y1
    wr.blob(skel)


def read_layout(rd: Reader) -> tuple[tuple[int, int, int], list[Block], bytes]:
    h, w, c = rd.uint(MAX_PIXELS), rd.uint(MAX_PIXELS), rd.uint(4)
    blocks = []
    prev_end, prev_y1 = 0, 0
    for _ in range(rd.uint(rd.remaining // 7)):
        offset = prev_end + rd.sint()
        y0 = prev_y1 + rd.sint()
        y1 = y0 + rd.uint(MAX_PIXELS)
        x0 = rd.uint(MAX_PIXELS)
        x1 = x0 + rd.uint(MAX_PIXELS)
        stride = (x1 - x0) * c + rd.uint()
        blocks.append(Block(offset, y0, y1, x0, x1, stride, bool(rd.u8())))
        prev_end, prev_y1 = offset + (y1 - y0) * stride, y1
    return (h, w, c), blocks, rd.blob()


def check_pixels(pixels: np.ndarray, shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    """``pixels`` as a C-contiguous array of exactly ``shape``/``dtype``, else FormatError."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != dtype or pixels.shape != shape:
        got = getattr(pixels, "shape", None), getattr(pixels, "dtype", None)
        raise FormatError(f"pixels {got} do not match side info {shape} {np.dtype(dtype)}")
    return np.ascontiguousarray(pixels)


def pack(
    version: int, data: bytes, blocks: list[Block], h: int, w: int, c: int
) -> tuple[np.ndarray, bytes] | None:
    """(pixels, side info) of a file whose pixels are ``blocks``: side info is ``version``,
    then the layout and everything else of the file (the skeleton)."""
    got = split(data, blocks, h, w, c)
    if got is None:
        return None
    raster, skeleton = got
    wr = Writer()
    wr.u8(version)
    write_layout(wr, (h, w, c), blocks, skeleton)
    return raster, wr.getvalue()


def unpack(version: int, name: str, pixels: np.ndarray, side: bytes) -> bytes:
    """Inverse of :func:`pack`."""
    rd = Reader(side)
    if rd.u8() != version:
        raise FormatError(f"unknown {name} side-info version")
    shape, blocks, skeleton = read_layout(rd)
    rd.done()
    return join(check_pixels(pixels, shape), skeleton, blocks)
