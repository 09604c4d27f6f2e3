"""PNG (plain or Adam7-interlaced; gray, gray+alpha, RGB, RGBA at 8/16 bits; gray and palette
at 1/2/4/8 bits).

Pixels: (H, W, C) uint8 or uint16 samples; 1/2/4-bit samples are unpacked to one uint8 each. A
palette image gives its colours (RGB, or RGBA with a tRNS chunk) when each colour it uses names
one palette entry (the first with that colour), else its index plane (H, W, 1). Byte-exact rebuild
keeps everything but the IDAT payload verbatim and re-derives the IDAT payload: the scanlines are
re-filtered with the stored per-row filter types and re-deflated, either by Python's zlib with
the (level, memLevel, strategy, wbits) found by a search here, or, for streams made only of
stored blocks, by writing the same blocks. The side-info layout is in docs/FORMATS.md.

Memory: the scanlines are inflated in bounded pieces into one buffer of the declared size, which
is checked against :mod:`iodfz.limits` first; filtering, filter prediction and deflating work on
bands of rows, so a parse holds about the pixels twice plus the file.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from iodfz.limits import MAX_DEFLATE_RATIO, MAX_PIXELS

from ._raster import check_pixels
from ._side import FormatError, Reader, Writer, chunk_sizes, chunking, read_ints, write_ints

SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEARCH_WORK = 1 << 20  # bytes zlib may be fed in one parameter search, plus the scanline bytes
_VERSION = 1
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ZLIB, _STORED, _REENCODE = 0, 1, 2
_PREFIX_BYTES = 1 << 16  # first prefix of the scanlines compressed per candidate
_CONCLUSIVE = 64  # a prefix match of this many output bytes sends a candidate to the full check
_PIECE = 1 << 20  # bytes per piece when inflating, deflating and comparing streams
_BAND_BYTES = 1 << 20  # scanline bytes per band when filtering
_REENCODE_PARAMS = (9, 8, zlib.Z_DEFAULT_STRATEGY, 15)
_MAX_STORED_BLOCK = 0xFFFF
_IEND = b"\0\0\0\0IEND\xaeB`\x82"
# side-info flags (docs/FORMATS.md)
_F_IHDR_CRC, _F_DEPTH, _F_TYPES, _F_TAIL, _F_IDAT = 1, 2, 4, 8, 16
_F_INTERLACE, _F_PALETTE = 32, 64
_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2))
_ADAM7 += ((1, 0, 2, 1),)  # (y0, x0, dy, dx) of the seven passes
_DEFAULT_CTYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # colour type implied by the pixels' channel count


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    depth: int
    ctype: int
    interlace: int = 0

    @property
    def channels(self) -> int:
        return _CHANNELS[self.ctype]

    @property
    def bpp(self) -> int:
        """Filter byte distance: bytes per complete pixel, at least 1."""
        return max(1, self.depth * self.channels // 8)

    @property
    def row_bytes(self) -> int:
        return (self.width * self.depth * self.channels + 7) // 8

    def valid(self) -> bool:
        return (
            0 < self.width < 1 << 31
            and 0 < self.height < 1 << 31
            and self.depth in _DEPTHS.get(self.ctype, ())
            and self.interlace in (0, 1)
        )

    def passes(self) -> list[tuple[tuple[slice, slice], _Header]]:
        """(pixel slices, header of the sub-image) of each non-empty pass, in stream order."""
        if not self.interlace:
            return [((slice(None), slice(None)), self)]
        out = []
        for y0, x0, dy, dx in _ADAM7:
            h, w = -(-(self.height - y0) // dy), -(-(self.width - x0) // dx)
            if h > 0 and w > 0:
                sub = replace(self, width=w, height=h, interlace=0)
                out.append(((slice(y0, None, dy), slice(x0, None, dx)), sub))
        return out

    def raw_size(self) -> int:
        """Bytes of the inflated scanlines (a filter byte per row of each pass)."""
        return sum(sub.height * (sub.row_bytes + 1) for _, sub in self.passes())


@dataclass(frozen=True)
class _Side:
    header: _Header
    head: bytes  # chunks between the signature and the first IDAT (IHDR included), verbatim
    tail: bytes  # chunks after the last IDAT (IEND included) and trailing bytes, verbatim
    types: bytes  # filter type per row
    mode: int
    params: tuple[int, ...] = ()  # _ZLIB: level, memLevel, strategy, wbits
    zlib_header: bytes = b""  # _ZLIB, _STORED: CMF and FLG bytes as found (libpng rewrites CINFO)
    blocks: tuple[int, ...] = ()  # _STORED: stored-block lengths, as ``chunking`` gives them
    idat_sizes: tuple[int, ...] = ()  # IDAT payload sizes, as ``chunking`` gives them
    extra: bytes = b""  # bytes after the end of the zlib stream inside the IDAT data


def _structure(data: bytes) -> tuple[_Header, bytes, bytes, list[int], bytes] | None:
    """(header, head, tail, IDAT payload sizes, IDAT payload) of a PNG with consecutive IDATs."""
    if not data.startswith(SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, depth, ctype, comp, filt, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    header = _Header(width, height, depth, ctype, interlace)
    if struct.unpack_from(">I", data, 8)[0] != 13 or (comp, filt) != (0, 0):
        return None
    if not header.valid():
        return None
    pos, sizes, first, idat_end = 8, [], 0, 0
    payload = []
    while True:
        if pos + 12 > len(data):
            return None
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if length >= 1 << 31 or end > len(data):
            return None
        if kind == b"IDAT":
            if sizes and idat_end != pos:
                return None
            first = first or pos
            sizes.append(length)
            payload.append(memoryview(data)[pos + 8 : pos + 8 + length])
            idat_end = end
        pos = end
        if kind == b"IEND":
            break
    if not sizes:
        return None
    return header, data[8:first], data[idat_end:], sizes, b"".join(payload)


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _unfilter_diagonal(
    src: np.ndarray, types: np.ndarray, prev: np.ndarray, bpp: int
) -> np.ndarray:
    """Undo the filters of (n, row_bytes) ``src`` below the reconstructed row ``prev``.

    Byte (y, x) of a pixel depends on its left, upper and upper-left neighbours, so all pixels
    on one anti-diagonal y + x = d are independent: n + W - 1 vectorized steps, each with
    int16 temporaries of one diagonal.
    """
    h, row_bytes = src.shape
    w = row_bytes // bpp
    flat = src.reshape(h * w, bpp)
    kinds = types.astype(np.intp)[:, None]
    out = np.zeros(((h + 1) * (w + 1), bpp), np.uint8)  # ``prev`` above, a zero column left
    out[1 : w + 1] = prev.reshape(w, bpp)
    zero = np.zeros(1, np.int16)
    for d in range(h + w - 1):
        y = np.arange(max(0, d - w + 1), min(h, d + 1))
        x = d - y
        dst = (y + 1) * (w + 1) + x + 1
        a, b, c = (out[i].astype(np.int16) for i in (dst - 1, dst - w - 1, dst - w - 2))
        pred = np.choose(kinds[y], (zero, a, b, (a + b) >> 1, _paeth(a, b, c)))
        out[dst] = flat[y * w + x] + pred.astype(np.uint8)
    return out.reshape(h + 1, w + 1, bpp)[1:, 1:].reshape(h, row_bytes)


def _unfilter(filtered: np.ndarray, types: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the row filters of (H, row_bytes) ``filtered``: None, Sub and Up rows one row at a
    time, the span from the first to the last Average/Paeth row along anti-diagonals
    (:func:`_unfilter_diagonal`)."""
    h, row_bytes = filtered.shape
    out = np.empty((h, row_bytes), np.uint8)
    slow = np.flatnonzero(types >= 3)
    span = (int(slow[0]), int(slow[-1]) + 1) if len(slow) else (h, h)
    zero_row = np.zeros(row_bytes, np.uint8)
    y = 0
    while y < h:
        prev = out[y - 1] if y else zero_row
        if y == span[0]:
            end = span[1]
            out[y:end] = _unfilter_diagonal(filtered[y:end], types[y:end], prev, bpp)
            y = end
            continue
        kind = int(types[y])
        if kind == 0:
            out[y] = filtered[y]
        elif kind == 1:
            out[y] = np.cumsum(filtered[y].reshape(-1, bpp), axis=0, dtype=np.uint8).ravel()
        else:
            np.add(filtered[y], prev, out=out[y])
        y += 1
    return out


def _band_rows(hdr: _Header) -> int:
    return max(1, _BAND_BYTES // (hdr.row_bytes + 1))


def _filter_band(rows: np.ndarray, prev: np.ndarray | None, types: np.ndarray, bpp: int) -> bytes:
    """Filter (n, row_bytes) ``rows`` (``prev``: the row above, None at the top) with the
    given per-row types; the scanline bytes."""
    x = rows.astype(np.int16)
    b = np.zeros_like(x)
    b[1:] = x[:-1]
    if prev is not None:
        b[0] = prev
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]
    c = np.zeros_like(x)
    c[:, bpp:] = b[:, :-bpp]
    pred = np.zeros_like(x)
    for kind in (1, 2, 3, 4):
        sel = types == kind
        if not sel.any():
            continue
        if kind == 1:
            pred[sel] = a[sel]
        elif kind == 2:
            pred[sel] = b[sel]
        elif kind == 3:
            pred[sel] = (a[sel] + b[sel]) >> 1
        else:
            pred[sel] = _paeth(a[sel], b[sel], c[sel])
    out = np.empty((x.shape[0], x.shape[1] + 1), np.uint8)
    out[:, 0] = types
    out[:, 1:] = x - pred  # int16 → uint8 keeps the low byte
    return out.tobytes()


def _scanlines(pixels: np.ndarray, hdr: _Header, types: np.ndarray) -> Iterator[bytes]:
    """The filtered scanline stream of ``pixels`` (all passes), in bands of about 1 MiB."""
    t = 0
    for where, sub in hdr.passes():
        rows = _pack(np.ascontiguousarray(pixels[where]), sub)
        step = _band_rows(sub)
        for y in range(0, sub.height, step):
            prev = rows[y - 1] if y else None
            end = min(y + step, sub.height)
            yield _filter_band(rows[y:end], prev, types[t + y : t + end], sub.bpp)
        t += sub.height


def predict_types(pixels: np.ndarray, hdr: _Header) -> np.ndarray:
    """Per row (of each pass), the filter type whose output has the least sum of |byte as int8|
    (first on ties): the adaptive choice of libpng and Pillow. Side info stores only
    disagreements."""
    out = []
    for where, sub in hdr.passes():
        rows = _pack(np.ascontiguousarray(pixels[where]), sub)
        step = _band_rows(sub)
        for y in range(0, sub.height, step):
            band = rows[y : y + step]
            prev = rows[y - 1] if y else None
            costs = []
            for kind in range(5):
                kinds = np.full(len(band), kind, np.uint8)
                f = np.frombuffer(_filter_band(band, prev, kinds, sub.bpp), np.uint8)
                v = f.reshape(len(band), -1)[:, 1:].view(np.int8)
                costs.append(np.abs(v, dtype=np.int16).sum(axis=1, dtype=np.int64))
            out.append(np.argmin(np.stack(costs), axis=0).astype(np.uint8))
    return np.concatenate(out)


def _shifts(depth: int) -> np.ndarray:
    return np.arange(8 - depth, -1, -depth, dtype=np.uint8)


def _unpack(rows: np.ndarray, hdr: _Header) -> np.ndarray:
    shape = (hdr.height, hdr.width, hdr.channels)
    if hdr.depth == 8:
        return rows.reshape(shape)
    if hdr.depth == 16:
        return rows.view(">u2").reshape(shape).astype(np.uint16)
    values = (rows[:, :, None] >> _shifts(hdr.depth)) & ((1 << hdr.depth) - 1)
    return np.ascontiguousarray(values.reshape(hdr.height, -1)[:, : hdr.width, None])


def _pack(pixels: np.ndarray, hdr: _Header) -> np.ndarray:
    if hdr.depth == 8:
        return pixels.reshape(hdr.height, -1)
    if hdr.depth == 16:
        return pixels.astype(">u2").view(np.uint8).reshape(hdr.height, -1)
    if pixels.size and int(pixels.max()) >> hdr.depth:
        raise FormatError(f"pixel values exceed {hdr.depth} bits")
    per_byte = 8 // hdr.depth
    padded = np.zeros((hdr.height, hdr.row_bytes * per_byte), np.uint8)
    padded[:, : hdr.width] = pixels[:, :, 0]
    grouped = padded.reshape(hdr.height, hdr.row_bytes, per_byte) << _shifts(hdr.depth)
    return np.bitwise_or.reduce(grouped, axis=2)


def _stored_blocks(z: bytes) -> list[int] | None:
    """Block lengths of a zlib stream made only of byte-aligned stored blocks, else None."""
    pos, sizes = 2, []
    while pos + 5 <= len(z):
        length, inverse = struct.unpack_from("<HH", z, pos + 1)
        if z[pos] not in (0, 1) or length ^ inverse != 0xFFFF:
            return None
        sizes.append(length)
        pos += 5 + length
        if z[pos - 5 - length] == 1:
            return sizes if pos + 4 == len(z) else None
    return None


def _stored_stream(zlib_header: bytes, data: bytes, sizes: list[int]) -> bytes:
    parts, pos = [zlib_header], 0
    for i, n in enumerate(sizes):
        parts += [struct.pack("<BHH", i == len(sizes) - 1, n, n ^ 0xFFFF), data[pos : pos + n]]
        pos += n
    parts.append(struct.pack(">I", zlib.adler32(data)))
    return b"".join(parts)


def _deflate(pieces: Iterable[bytes], params: tuple[int, ...]) -> Iterator[bytes]:
    level, mem_level, strategy, wbits = params
    comp = zlib.compressobj(level, zlib.DEFLATED, wbits, mem_level, strategy)
    for piece in pieces:
        yield comp.compress(piece)
    yield comp.flush()


def _same_stream(pieces: Iterator[bytes], z: bytes, skip: int = 0) -> bool:
    """Whether the concatenated ``pieces`` equal ``z``, both past their first ``skip`` bytes,
    stopping at the first difference (no copy of the whole stream is made)."""
    pos = 0
    for piece in pieces:
        lo = max(0, skip - pos)
        if lo < len(piece) and z[pos + lo : pos + len(piece)] != piece[lo:]:
            return False
        pos += len(piece)
    return pos == len(z)


def _bands(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(view), _PIECE):
        yield view[i : i + _PIECE]


def _candidates(flevel: int) -> Iterator[tuple[int, int, int]]:
    """(level, memLevel, strategy) consistent with the FLEVEL header bits, likeliest first:
    memLevel 9 and 8 (Pillow uses 9, libpng 8) for every level before the rarer memLevels.

    Levels 1-3 ignore Z_FILTERED and Z_HUFFMAN_ONLY/Z_RLE ignore the level, so those
    duplicates are left out; level 0 (stored) is handled without zlib.
    """
    d, f = zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED
    pairs = {
        0: [(1, d), (1, zlib.Z_HUFFMAN_ONLY), (1, zlib.Z_RLE)]
        + [(lv, zlib.Z_FIXED) for lv in (9, 6, 1, 2, 3, 4, 5, 7, 8)],
        1: [(4, f), (4, d), (5, f), (5, d), (2, d), (3, d)],
        2: [(6, f), (6, d)],
        3: [(9, f), (9, d), (7, f), (7, d), (8, f), (8, d)],
    }[flevel]
    for mem_levels in ((9, 8), (7, 6, 5, 4, 3, 2, 1)):
        for level, strategy in pairs:
            for mem_level in mem_levels:
                yield level, mem_level, strategy


def _prefix_test(data: bytes, z: bytes, params: tuple[int, ...], budget: int) -> tuple[bool, int]:
    """(whether ``params`` may make ``z``, bytes fed to zlib): output produced so far, no
    flush, compared with ``z`` for growing prefixes of ``data`` until they differ (False) or
    64 output bytes agree, the data ends, or the next prefix would exceed ``budget`` (True)."""
    level, mem_level, strategy, wbits = params
    view = memoryview(data)
    n, fed = min(_PREFIX_BYTES, len(data)), 0
    while n < len(data) and fed + n <= budget:
        comp = zlib.compressobj(level, zlib.DEFLATED, wbits, mem_level, strategy)
        out = comp.compress(view[:n])
        fed += n
        if not z.startswith(out[2:], 2):
            return False, fed
        if len(out) >= _CONCLUSIVE:
            return True, fed
        n *= 4
    return True, fed  # no difference seen: the full check decides


def search_params(data: bytes, z: bytes, work: int | None = None) -> tuple[int, ...] | None:
    """(level, memLevel, strategy, wbits) with which zlib turns ``data`` into ``z``, or None.

    The two header bytes are not compared: libpng shrinks CINFO for small images (to 8 even,
    compressing with 9) and fixes FCHECK up; FLEVEL is kept and narrows the levels. The search
    is bounded by work, not time, so that its answer does not depend on the machine's load:
    prefix checks and full checks (which stop at the first differing output byte) feed zlib
    about ``work`` bytes in all (default ``SEARCH_WORK`` + ``len(data)``: the work grows
    with the image, as the rest of its encoding does); the last check may overrun that.
    """
    if len(z) < 6 or z[0] & 0x0F != 8 or z[1] & 0x20 or z[0] >> 4 > 7:
        return None
    wbits = max(9, (z[0] >> 4) + 8)
    left = SEARCH_WORK + len(data) if work is None else work
    for level, mem_level, strategy in _candidates(z[1] >> 6):
        if left <= 0:
            return None
        params = (level, mem_level, strategy, wbits)
        maybe, fed = _prefix_test(data, z, params, left)
        left -= fed
        if maybe:
            counted = _Counted(_bands(data))
            if _same_stream(_deflate(counted, params), z, 2):
                return params
            left -= counted.fed
    return None


class _Counted:
    """An iterator over byte pieces that counts the bytes it has handed out."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self.fed = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._pieces:
            self.fed += len(piece)
            yield piece


def _inflate(stream: bytes, size: int) -> tuple[np.ndarray, bytes] | None:
    """(exactly ``size`` inflated bytes, bytes after the zlib stream), inflated in pieces of
    at most 1 MiB into one preallocated buffer; None unless the stream holds exactly that."""
    raw = np.empty(size, np.uint8)
    inflater = zlib.decompressobj()
    pos, tail = 0, stream
    try:
        while not inflater.eof:
            piece = inflater.decompress(tail, min(_PIECE, size + 1 - pos))
            tail = inflater.unconsumed_tail
            if pos + len(piece) > size or not (piece or tail):
                return None
            raw[pos : pos + len(piece)] = np.frombuffer(piece, np.uint8)
            pos += len(piece)
    except zlib.error:
        return None
    return (raw, inflater.unused_data) if pos == size else None


def _decode(hdr: _Header, stream: bytes) -> tuple[np.ndarray, np.ndarray, bytes, bytes] | None:
    """(pixels, filter types, inflated scanlines, bytes after the zlib stream).

    The declared shape is checked against the limits before anything of its size is made."""
    if hdr.width * hdr.height * hdr.channels > MAX_PIXELS:
        return None
    expected = hdr.raw_size()
    if expected > MAX_DEFLATE_RATIO * len(stream) + 64:
        return None
    got = _inflate(stream, expected)
    if got is None:
        return None
    raw, extra = got
    dtype = np.uint16 if hdr.depth == 16 else np.uint8
    pixels = np.empty((hdr.height, hdr.width, hdr.channels), dtype)
    types, pos = [], 0
    for where, sub in hdr.passes():
        rows = raw[pos : pos + sub.height * (sub.row_bytes + 1)].reshape(sub.height, -1)
        pos += rows.size
        if rows[:, 0].max() > 4:
            return None
        types.append(rows[:, 0].copy())
        pixels[where] = _unpack(_unfilter(rows[:, 1:], types[-1], sub.bpp), sub)
    return pixels, np.concatenate(types), memoryview(raw), extra


def _palette(head: bytes) -> np.ndarray | None:
    """The palette of ``head``'s PLTE chunk as (n, 3) uint8, with a fourth column (alpha)
    when a tRNS chunk follows; None without a well-formed PLTE."""
    plte = trns = None
    for kind, payload, _ in _chunks(head):
        if kind == b"PLTE":
            plte = payload
        elif kind == b"tRNS":
            trns = payload
    if plte is None or not 3 <= len(plte) <= 768 or len(plte) % 3:
        return None
    colours = np.frombuffer(plte, np.uint8).reshape(-1, 3)
    if trns is None:
        return colours
    if len(trns) > len(colours):
        return None
    alpha = np.full((len(colours), 1), 255, np.uint8)
    alpha[: len(trns), 0] = np.frombuffer(trns, np.uint8)
    return np.concatenate([colours, alpha], axis=1)


def _colour_keys(colours: np.ndarray) -> np.ndarray:
    """One int per colour (last axis: RGB or RGBA samples)."""
    keys = np.zeros(colours.shape[:-1], np.int64)
    for i in range(colours.shape[-1]):
        keys = keys << 8 | colours[..., i]
    return keys


def _expand_palette(indices: np.ndarray, palette: np.ndarray) -> np.ndarray | None:
    """Colour pixels of an index plane, when :func:`_to_indices` gives the indices back: every
    index used is the first palette entry with its colour."""
    used = np.flatnonzero(np.bincount(indices.ravel(), minlength=256))
    if used[-1] >= len(palette):
        return None
    keys = _colour_keys(palette)
    _, first = np.unique(keys, return_index=True)
    firsts = np.zeros(len(palette), bool)
    firsts[first] = True
    if not firsts[used].all():
        return None
    return palette[indices[..., 0]]


def _to_indices(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_expand_palette` (FormatError for a colour not in the palette)."""
    check_pixels(pixels, (*pixels.shape[:2], palette.shape[1]))
    keys = _colour_keys(palette)
    uniq, first = np.unique(keys, return_index=True)
    want = _colour_keys(pixels)
    at = np.minimum(np.searchsorted(uniq, want), len(uniq) - 1)
    if not np.array_equal(uniq[at], want):
        raise FormatError("pixel colour not in the PNG palette")
    return first[at].astype(np.uint8)[..., None]


def parse(data: bytes, allow_pixel_exact: bool) -> tuple[np.ndarray, bytes, bool] | None:
    found = _structure(data)
    if found is None:
        return None
    hdr, head, tail, idat_sizes, stream = found
    decoded = _decode(hdr, stream)
    if decoded is None:
        return None
    pixels, types, raw, extra = decoded
    side = _Side(hdr, head, tail, types.tobytes(), _REENCODE)
    # Non-zero padding bits, for one, make the scanlines irreproducible from the pixels.
    if _same_stream(_scanlines(pixels, hdr, types), raw):
        z = stream[: len(stream) - len(extra)]
        side = _exact_side(side, raw, z) or side
        one = len(idat_sizes) == 1  # the usual layout, implied (docs/FORMATS.md)
        side = replace(side, idat_sizes=() if one else chunking(idat_sizes, len(stream)))
        side = replace(side, extra=extra)
    if side.mode == _REENCODE and not allow_pixel_exact:
        return None
    palette = _palette(head) if hdr.ctype == 3 and hdr.depth == 8 else None
    colours = None if palette is None else _expand_palette(pixels, palette)
    side_bytes = _write_side(side, predict_types(pixels, hdr), colours is not None)
    return (pixels if colours is None else colours), side_bytes, side.mode != _REENCODE


def _exact_side(side: _Side, raw: bytes, z: bytes) -> _Side | None:
    """``side`` with an IDAT mode that turns ``raw`` into exactly the zlib stream ``z``."""
    blocks = _stored_blocks(z)
    if blocks is not None and _stored_stream(z[:2], raw, blocks) == z:
        spec = chunking(blocks, len(raw))
        return replace(side, mode=_STORED, zlib_header=z[:2], blocks=spec)
    params = search_params(raw, z)
    return None if params is None else replace(side, mode=_ZLIB, zlib_header=z[:2], params=params)


def as_pixel_exact(side: bytes, pixels: np.ndarray) -> bytes:
    """The same side info switched to re-encoding (level 9, default strategy, one IDAT)."""
    s, indices, colours = _read_side(side, pixels)
    return _write_side(replace(s, mode=_REENCODE), predict_types(indices, s.header), colours)


def _chunks(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(type, data, crc) of the chunks making up ``data`` (as ``_structure`` walked them)."""
    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 12 + length
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : end - 4], data[end - 4 : end]))
        pos = end
    return out


def _write_chunks(wr: Writer, chunks: list[tuple[bytes, bytes, bytes]]) -> None:
    wr.uint(len(chunks))
    for kind, payload, crc in chunks:
        bad = crc != struct.pack(">I", zlib.crc32(kind + payload))
        wr.uint(2 * len(payload) + bad)
        wr.raw(kind + payload + (crc if bad else b""))


def _read_chunks(rd: Reader) -> bytes:
    out = []
    for _ in range(rd.uint(rd.remaining)):
        n = rd.uint(2 * rd.remaining + 1)
        kind, payload = rd.raw(4), rd.raw(n >> 1)
        crc = rd.raw(4) if n & 1 else struct.pack(">I", zlib.crc32(kind + payload))
        out.append(struct.pack(">I", len(payload)) + kind + payload + crc)
    return b"".join(out)


def _ihdr(hdr: _Header) -> bytes:
    fields = (hdr.width, hdr.height, hdr.depth, hdr.ctype, 0, 0, hdr.interlace)
    return b"IHDR" + struct.pack(">IIBBBBB", *fields)


def _write_side(side: _Side, predicted: np.ndarray, palette_colours: bool) -> bytes:
    """The side-info blob; ``palette_colours``: the pixels handed over are palette colours."""
    hdr = side.header
    chunks = _chunks(side.head)  # IHDR first: its data follows from the header fields
    ihdr_crc = chunks[0][2]
    types = np.frombuffer(side.types, np.uint8)
    wrong = np.flatnonzero(types != predicted)
    flags = (
        (_F_IHDR_CRC if ihdr_crc != struct.pack(">I", zlib.crc32(_ihdr(hdr))) else 0)
        | (_F_DEPTH if (hdr.ctype, hdr.depth) != _default_depth(hdr.channels, hdr.depth) else 0)
        | (_F_TYPES if 2 * len(wrong) >= len(types) else 0)
        | (_F_TAIL if side.tail != _IEND else 0)
        | (_F_IDAT if side.mode != _REENCODE and (side.idat_sizes or side.extra) else 0)
        | (_F_INTERLACE if hdr.interlace else 0)
        | (_F_PALETTE if palette_colours else 0)
    )
    wr = Writer()
    wr.u8(_VERSION)
    wr.u8(flags)
    wr.uint(hdr.width)
    wr.uint(hdr.height)
    if flags & _F_IHDR_CRC:
        wr.raw(ihdr_crc)
    if flags & _F_DEPTH:
        wr.uint(hdr.depth)
        wr.uint(hdr.ctype)
    _write_chunks(wr, chunks[1:])
    if flags & _F_TAIL:
        tail = _chunks_until_iend(side.tail)
        _write_chunks(wr, _chunks(side.tail[:tail]))
        wr.blob(side.tail[tail:])
    if flags & _F_TYPES:
        wr.raw(side.types)
    else:
        wr.uint(len(wrong))
        prev = -1
        for row in wrong.tolist():
            wr.uint(row - prev - 1)
            wr.u8(int(types[row]))
            prev = row
    wr.u8(side.mode)
    if side.mode == _REENCODE:
        return wr.getvalue()
    wr.raw(side.zlib_header)
    if side.mode == _ZLIB:
        level, mem_level, strategy, _ = side.params
        wr.u8(level << 4 | mem_level)
        wr.u8(strategy)
    else:
        write_ints(wr, side.blocks)
    if flags & _F_IDAT:
        write_ints(wr, side.idat_sizes)
        wr.blob(side.extra)
    return wr.getvalue()


def _default_depth(channels: int, depth: int) -> tuple[int, int]:
    """(colour type, bit depth) implied by the pixels: channel count, uint8 or uint16."""
    return _DEFAULT_CTYPE[channels], 16 if depth == 16 else 8


def _chunks_until_iend(tail: bytes) -> int:
    """Length of the chunks of ``tail`` up to and including IEND (the rest is trailing)."""
    pos = 0
    while True:
        length, kind = struct.unpack_from(">I4s", tail, pos)
        pos += 12 + length
        if kind == b"IEND":
            return pos


def _read_side(data: bytes, pixels: np.ndarray) -> tuple[_Side, np.ndarray, bool]:
    """(side info, the file's samples, whether ``pixels`` are palette colours) for ``pixels``
    ((H, W, C) uint8 or uint16; they imply the default colour type and bit depth)."""
    rd = Reader(data)
    if rd.u8() != _VERSION:
        raise FormatError("unknown PNG side-info version")
    flags = rd.u8()
    if flags >> 7:
        raise FormatError("unknown PNG side-info flags")
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 3:
        raise FormatError("bad pixel array for PNG")
    if pixels.shape[2] not in _DEFAULT_CTYPE:
        raise FormatError("bad pixel array for PNG")
    height, width, channels = pixels.shape
    if (rd.uint(), rd.uint()) != (width, height):
        raise FormatError("pixels do not match the PNG side info's width and height")
    ihdr_crc = rd.raw(4) if flags & _F_IHDR_CRC else None
    if flags & _F_DEPTH:
        depth, ctype = rd.uint(16), rd.uint(6)
    else:
        ctype, depth = _default_depth(channels, 16 if pixels.dtype == np.uint16 else 8)
    hdr = _Header(width, height, depth, ctype, 1 if flags & _F_INTERLACE else 0)
    if not hdr.valid() or width * height * hdr.channels > MAX_PIXELS:
        raise FormatError("bad PNG header in side info")
    ihdr = _ihdr(hdr)
    ihdr_crc = ihdr_crc or struct.pack(">I", zlib.crc32(ihdr))
    head = struct.pack(">I", 13) + ihdr + ihdr_crc + _read_chunks(rd)
    if flags & _F_PALETTE:
        palette = _palette(head) if (ctype, depth) == (3, 8) else None
        if palette is None:
            raise FormatError("PNG side info names no usable palette")
        pixels = _to_indices(pixels, palette)
    dtype = np.uint16 if depth == 16 else np.uint8
    pixels = check_pixels(pixels, (height, width, hdr.channels), dtype)
    tail = _IEND
    if flags & _F_TAIL:
        tail = _read_chunks(rd)
        tail += rd.blob()
    rows = sum(sub.height for _, sub in hdr.passes())
    if flags & _F_TYPES:
        types = rd.raw(rows)
    else:
        predicted = predict_types(pixels, hdr)
        row = -1
        for _ in range(rd.uint(rows)):
            row += rd.uint(rows) + 1
            if row >= rows:
                raise FormatError("bad PNG filter types")
            predicted[row] = rd.u8()
        types = predicted.tobytes()
    if types and max(types) > 4:
        raise FormatError("bad PNG filter types")
    side = _Side(hdr, head, tail, types, rd.u8())
    if side.mode != _REENCODE:
        side = replace(side, zlib_header=rd.raw(2))
        if side.zlib_header[0] & 0x0F != 8 or side.zlib_header[0] >> 4 > 7:
            raise FormatError("bad zlib header in side info")
    if side.mode == _ZLIB:
        packed, strategy = rd.u8(), rd.u8()
        level, mem_level = packed >> 4, packed & 0x0F
        wbits = max(9, (side.zlib_header[0] >> 4) + 8)
        params = (level, mem_level, strategy, wbits)
        if not (1 <= level <= 9 and 1 <= mem_level <= 9 and strategy <= 4):
            raise FormatError(f"bad deflate parameters {params}")
        side = replace(side, params=params)
    elif side.mode == _STORED:
        side = replace(side, blocks=read_ints(rd))
    elif side.mode != _REENCODE:
        raise FormatError(f"unknown PNG IDAT mode {side.mode}")
    if side.mode != _REENCODE and flags & _F_IDAT:
        side = replace(side, idat_sizes=read_ints(rd), extra=rd.blob())
    elif flags & _F_IDAT:
        raise FormatError("unknown PNG side-info flags")
    rd.done()
    return side, pixels, bool(flags & _F_PALETTE)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def rebuild(pixels: np.ndarray, side: bytes) -> bytes:
    s, samples, _ = _read_side(side, pixels)
    scanlines = _scanlines(samples, s.header, np.frombuffer(s.types, np.uint8))
    if s.mode == _ZLIB:
        deflated = _deflate(scanlines, s.params)
        stream = s.zlib_header + b"".join(deflated)[2:] + s.extra
    elif s.mode == _STORED:
        raw = b"".join(scanlines)
        blocks = chunk_sizes(s.blocks, len(raw))
        if not blocks or max(blocks) > _MAX_STORED_BLOCK:
            raise FormatError("bad stored-block sizes")
        stream = _stored_stream(s.zlib_header, raw, blocks) + s.extra
    else:
        stream = b"".join(_deflate(scanlines, _REENCODE_PARAMS))
    sizes = chunk_sizes(s.idat_sizes, len(stream)) if s.idat_sizes else [len(stream)]
    chunks, pos = [], 0
    for n in sizes:
        chunks.append(_chunk(b"IDAT", stream[pos : pos + n]))
        pos += n
    return SIGNATURE + s.head + b"".join(chunks) + s.tail
