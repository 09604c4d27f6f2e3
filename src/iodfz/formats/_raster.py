"""Uncompressed rasters (PNM, BMP, TIFF): a file is a *skeleton* with pixel *blocks* cut out.

A block is a rectangle of the raster stored as rows of ``(x1 - x0) * C`` bytes, ``stride`` bytes
apart, starting at ``offset``; ``flip`` means the rows are stored bottom-up. Everything that is
not pixel data (headers, row padding, tile padding, trailing bytes, other IFDs, ...) is the
skeleton, kept verbatim in file order.

Blocks are handled as one int64 array (one row per block, columns as in :class:`Block`), never
one Python object per block, and their number is bounded by the raster's shape
(:func:`max_blocks`), so hostile side information costs time and memory in proportion to the
image it claims, not to its own length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from iodfz.limits import MAX_PIXELS

from ._side import FormatError, Reader, Writer, unzigzag

_OFF, _Y0, _Y1, _X0, _X1, _STRIDE, _FLIP = range(7)
_SMALL = 1 << 16  # blocks of fewer bytes are copied in vectorised batches
_BATCH = 1 << 22  # bytes per batch of small blocks
_FIELD_MAX = 1 << 31  # bound on any offset, stride or delta (files are below 2 GiB)


class Block(NamedTuple):
    offset: int
    y0: int
    y1: int
    x0: int
    x1: int
    stride: int
    flip: bool


def max_blocks(h: int, w: int) -> int:
    """Most blocks a raster of this shape may be cut into: one-row strips, or tiles of at
    least 16 × 16 pixels (TIFF tiles are multiples of 16 a side)."""
    return h + -(-h // 16) * -(-w // 16)


def as_array(blocks: Sequence[Block] | np.ndarray) -> np.ndarray:
    if isinstance(blocks, np.ndarray):
        return blocks
    return np.array(blocks, np.int64).reshape(-1, 7)


def _valid(b: np.ndarray, h: int, w: int, c: int, length: int) -> bool:
    """Blocks inside the raster and the file, covering each pixel exactly once, with disjoint
    file extents."""
    if not 0 < len(b) <= max_blocks(h, w):
        return False
    # The same checks on every block's columns: Python ints for a lone block (a PNM's, a
    # one-strip TIFF's), where numpy's cost per call on one-element arrays was most of the
    # work of parsing a small image.
    off, y0, y1, x0, x1, stride, flip = b[0].tolist() if len(b) == 1 else b.T
    rows, row_bytes = y1 - y0, (x1 - x0) * c
    start, end = off, off + (rows - 1) * stride + row_bytes
    inside = (y0 >= 0) & (y0 < y1) & (y1 <= h) & (x0 >= 0) & (x0 < x1) & (x1 <= w)
    inside &= (stride >= row_bytes) & (stride < _FIELD_MAX) & (start >= 0) & (end <= length)
    inside &= (flip == 0) | (flip == 1)
    area = rows * (x1 - x0)
    if isinstance(inside, bool):  # one block inside the raster with its area covers it once
        return inside and area == h * w
    if not (inside.all() and int(area.sum()) == h * w):
        return False
    order = np.argsort(start, kind="stable")
    if np.any(start[order][1:] < end[order][:-1]):
        return False
    # Coverage counts modulo 256: with the areas adding up to h·w, all counts ≡ 1 means all 1.
    count = np.zeros((h + 1, w + 1), np.uint8)
    for dy, dx, sign in ((_Y0, _X0, 1), (_Y0, _X1, -1), (_Y1, _X0, -1), (_Y1, _X1, 1)):
        np.add.at(count, (b[:, dy], b[:, dx]), np.uint8(sign % 256))
    np.cumsum(count, axis=0, out=count)
    np.cumsum(count, axis=1, out=count)
    return bool(np.all(count[:h, :w] == 1))


def _contiguous(b: np.ndarray, w: int, c: int) -> int | None:
    """The offset of valid blocks that are one run of the whole raster's bytes, top-down
    (a PNM's), else None: such a raster is one slice of the file."""
    if len(b) != 1 or b[0, _STRIDE] != w * c or b[0, _FLIP]:
        return None
    return int(b[0, _OFF])


def _pieces(b: np.ndarray, w: int, c: int) -> Iterator[tuple[object, object]]:
    """(file index, raster index) pairs covering every block: slices of strided views for
    large blocks, int64 fancy indices for batches of small ones (bounds already checked)."""
    rows, cols = b[:, _Y1] - b[:, _Y0], b[:, _X1] - b[:, _X0]
    # A lone block (a PNM, a one-strip TIFF) is a strided view whatever its size.
    large = (rows * cols * c >= _SMALL) | (len(b) == 1)
    for i in np.flatnonzero(large):
        off, y0, y1, x0, x1, stride, flip = (int(v) for v in b[i])
        yield (off, (y1 - y0, (x1 - x0) * c), stride), (y0, y1, x0, x1, bool(flip))
    small = np.flatnonzero(~large)
    if not len(small):
        return
    keys = np.stack([rows[small], cols[small], b[small, _STRIDE], b[small, _FLIP]], axis=1)
    shapes, group = np.unique(keys, axis=0, return_inverse=True)
    for g, (nrows, ncols, stride, flip) in enumerate(shapes.tolist()):
        members = small[group.ravel() == g]
        row_bytes = ncols * c
        per_batch = max(1, _BATCH // (nrows * row_bytes))
        r = np.arange(nrows)
        file_rel = (r * stride)[:, None] + np.arange(row_bytes)
        ry = r[::-1] if flip else r
        raster_rel = (ry * w * c)[:, None] + np.arange(row_bytes)
        for k in range(0, len(members), per_batch):
            m = members[k : k + per_batch]
            file_idx = b[m, _OFF][:, None, None] + file_rel
            raster_idx = ((b[m, _Y0] * w + b[m, _X0]) * c)[:, None, None] + raster_rel
            yield file_idx, raster_idx


def _views(
    file_arr: np.ndarray, raster: np.ndarray, piece: tuple[object, object]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Strided views of one large block in the flat file array and the raster, else None."""
    where, region = piece
    if not isinstance(where, tuple):
        return None
    off, shape, stride = where
    y0, y1, x0, x1, flip = region
    view = np.lib.stride_tricks.as_strided(file_arr[off:], shape, (stride, file_arr.itemsize))
    rows = raster[y0:y1, x0:x1]
    return view, (rows[::-1] if flip else rows).reshape(shape)


def split(
    data: bytes, blocks: Sequence[Block] | np.ndarray, h: int, w: int, c: int
) -> tuple[np.ndarray, bytes] | None:
    """Cut the (h, w, c) uint8 raster out of ``data``; None unless blocks tile it exactly once."""
    b = as_array(blocks)
    if not 0 < h * w * c <= MAX_PIXELS or h * w * c > len(data):
        return None
    if not _valid(b, h, w, c, len(data)):
        return None
    at = _contiguous(b, w, c)
    if at is not None:
        size = h * w * c
        raster = np.frombuffer(data, np.uint8, size, at).reshape(h, w, c).copy()
        return raster, data[:at] + data[at + size :]
    buf = np.frombuffer(data, np.uint8)
    hole = np.zeros(len(buf), bool)
    raster = np.empty((h, w, c), np.uint8)
    flat = raster.reshape(-1)
    for piece in _pieces(b, w, c):
        views = _views(buf, raster, piece)
        if views is None:
            file_idx, raster_idx = piece
            flat[raster_idx] = buf[file_idx]
            hole[file_idx] = True
        else:
            views[1][...] = views[0]
            _views(hole, raster, piece)[0][...] = True  # type: ignore[index]
    return raster, buf[~hole].tobytes()


def join(raster: np.ndarray, skeleton: bytes, blocks: Sequence[Block] | np.ndarray) -> bytes:
    """Inverse of :func:`split`."""
    h, w, c = raster.shape
    b = as_array(blocks)
    total = len(skeleton) + raster.size
    if not _valid(b, h, w, c, total):
        raise FormatError("pixel blocks out of range, overlapping or not covering the raster")
    at = _contiguous(b, w, c)
    if at is not None:
        return skeleton[:at] + raster.tobytes() + skeleton[at:]
    out = np.empty(total, np.uint8)
    hole = np.zeros(total, bool)
    flat = raster.reshape(-1)
    for piece in _pieces(b, w, c):
        views = _views(out, raster, piece)
        if views is None:
            file_idx, raster_idx = piece
            out[file_idx] = flat[raster_idx]
            hole[file_idx] = True
        else:
            views[0][...] = views[1]
            _views(hole, raster, piece)[0][...] = True  # type: ignore[index]
    out[~hole] = np.frombuffer(skeleton, np.uint8)
    return out.tobytes()


def write_layout(
    wr: Writer, shape: tuple[int, int, int], blocks: Sequence[Block] | np.ndarray, skel: bytes
) -> None:
    """Geometry, blocks (offsets delta-coded so regular strips/tiles compress well), skeleton."""
    for n in shape:
        wr.uint(n)
    b = as_array(blocks)
    wr.uint(len(b))
    prev_end, prev_y1 = 0, 0
    for offset, y0, y1, x0, x1, stride, flip in b.tolist():
        row_bytes = (x1 - x0) * shape[2]
        wr.sint(offset - prev_end)
        wr.sint(y0 - prev_y1)
        wr.uint(y1 - y0)
        wr.uint(x0)
        wr.uint(x1 - x0)
        wr.uint(stride - row_bytes)
        wr.u8(flip)
        prev_end, prev_y1 = offset + (y1 - y0) * stride, y1
    wr.blob(skel)


def read_layout(rd: Reader) -> tuple[tuple[int, int, int], np.ndarray, bytes]:
    """Inverse of :func:`write_layout`: the blocks as an (n, 7) int64 array, read without a
    Python object per block (``u8 flip`` reads as a one-byte varint)."""
    h, w, c = rd.uint(MAX_PIXELS), rd.uint(MAX_PIXELS), rd.uint(4)
    if h * w * c > MAX_PIXELS:
        raise FormatError("raster too large")
    n = rd.uint(max_blocks(h, w))
    v = rd.uints(7 * n).reshape(n, 7)
    v[:, :2] = unzigzag(v[:, :2])
    if n and (int(np.abs(v).max()) >= _FIELD_MAX or int(v[:, 2].max()) > h):
        raise FormatError("bad pixel block in side info")
    d_off, d_y0, rows, x0, cols, pad, flip = v.T
    stride = cols * c + pad
    end_step = rows * stride  # each below 2^28 · 2^33: no overflow, nor in the sums below
    b = np.empty((n, 7), np.int64)
    b[:, _OFF] = np.cumsum(d_off) + np.concatenate(([0], np.cumsum(end_step)[:-1]))
    b[:, _Y0] = np.cumsum(d_y0) + np.concatenate(([0], np.cumsum(rows)[:-1]))
    b[:, _Y1] = b[:, _Y0] + rows
    b[:, _X0], b[:, _X1], b[:, _STRIDE], b[:, _FLIP] = x0, x0 + cols, stride, flip
    return (h, w, c), b, rd.blob()


def check_pixels(pixels: np.ndarray, shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    """``pixels`` as a C-contiguous array of exactly ``shape``/``dtype``, else FormatError."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != dtype or pixels.shape != shape:
        got = getattr(pixels, "shape", None), getattr(pixels, "dtype", None)
        raise FormatError(f"pixels {got} do not match side info {shape} {np.dtype(dtype)}")
    return np.ascontiguousarray(pixels)


def pack(
    version: int, data: bytes, blocks: Sequence[Block], h: int, w: int, c: int
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
