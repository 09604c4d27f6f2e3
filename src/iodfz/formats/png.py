"""PNG (non-interlaced; gray, gray+alpha, RGB, RGBA at 8/16 bits; gray and palette at 1/2/4/8 bits).

Pixels: (H, W, C) uint8 or uint16 samples; palette images give the index plane (H, W, 1); 1/2/4-bit
samples are unpacked to one uint8 each. Byte-exact rebuild keeps everything but the IDAT payload
verbatim and re-derives the IDAT payload: the scanlines are re-filtered with the stored per-row
filter types and re-deflated, either by Python's zlib with the (level, memLevel, strategy, wbits)
found by a search here, or, for streams made only of stored blocks, by writing the same blocks.
The side-info layout is in docs/FORMATS.md.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from ._raster import MAX_PIXELS, check_pixels
from ._side import FormatError, Reader, Writer, chunk_sizes, chunking, read_ints, write_ints

SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEARCH_SECONDS = 2.0  # cap on the deflate-parameter search per image
_VERSION = 1
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ZLIB, _STORED, _REENCODE = 0, 1, 2
_PREFIX_BYTES = 1 << 16  # first prefix of the scanlines compressed per candidate
_CONCLUSIVE = 64  # a prefix match of this many output bytes sends a candidate to the full check
_REENCODE_PARAMS = (9, 8, zlib.Z_DEFAULT_STRATEGY, 15)
_MAX_STORED_BLOCK = 0xFFFF
_IEND = b"\0\0\0\0IEND\xaeB`\x82"
# side-info flags (docs/FORMATS.md)
_F_IHDR_CRC, _F_DEPTH, _F_TYPES, _F_TAIL, _F_IDAT = 1, 2, 4, 8, 16
_DEFAULT_CTYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # colour type implied by the pixels' channel count


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    depth: int
    ctype: int

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
        )


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
    header = _Header(width, height, depth, ctype)
    if struct.unpack_from(">I", data, 8)[0] != 13 or (comp, filt, interlace) != (0, 0, 0):
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
            payload.append(data[pos + 8 : pos + 8 + length])
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


def _unfilter(filtered: np.ndarray, types: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the row filters of (H, row_bytes) ``filtered``.

    Byte (y, x) of a pixel depends on its left, upper and upper-left neighbours, so all pixels
    on one anti-diagonal y + x = d are independent: H + W - 1 vectorized steps.
    """
    h, row_bytes = filtered.shape
    w = row_bytes // bpp
    src = filtered.reshape(h * w, bpp).astype(np.int16)
    kinds = types.astype(np.intp)[:, None]
    out = np.zeros(((h + 1) * (w + 1), bpp), np.int16)  # one zero row above, one zero column left
    zero = np.zeros(1, np.int16)
    for d in range(h + w - 1):
        y = np.arange(max(0, d - w + 1), min(h, d + 1))
        x = d - y
        dst = (y + 1) * (w + 1) + x + 1
        a, b, c = out[dst - 1], out[dst - w - 1], out[dst - w - 2]
        pred = np.choose(kinds[y], (zero, a, b, (a + b) >> 1, _paeth(a, b, c)))
        out[dst] = (src[y * w + x] + pred) & 0xFF
    return out.reshape(h + 1, w + 1, bpp)[1:, 1:].reshape(h, row_bytes).astype(np.uint8)


def _filter(rows: np.ndarray, types: np.ndarray, bpp: int) -> bytes:
    """Filter (H, row_bytes) ``rows`` with the given per-row types; the PNG scanline stream."""
    x = rows.astype(np.int16)
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]
    b = np.zeros_like(x)
    b[1:] = x[:-1]
    c = np.zeros_like(x)
    c[1:] = a[:-1]
    pred = np.zeros_like(x)
    for kind in (1, 2, 3, 4):
        sel = types == kind
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
    out[:, 1:] = (x - pred) & 0xFF
    return out.tobytes()


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


def _deflate(data: bytes, params: tuple[int, ...]) -> bytes:
    level, mem_level, strategy, wbits = params
    comp = zlib.compressobj(level, zlib.DEFLATED, wbits, mem_level, strategy)
    return comp.compress(data) + comp.flush()


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


def _reproduces(data: bytes, z: bytes, params: tuple[int, ...]) -> bool:
    """Cheap prefix checks first (output so far, no flush), then the full stream."""
    level, mem_level, strategy, wbits = params
    view = memoryview(data)
    n = _PREFIX_BYTES
    while n < len(data):
        comp = zlib.compressobj(level, zlib.DEFLATED, wbits, mem_level, strategy)
        out = comp.compress(view[:n])
        if not z.startswith(out[2:], 2):
            return False
        if len(out) >= _CONCLUSIVE:
            break
        n *= 4
    return _deflate(data, params)[2:] == z[2:]


def search_params(data: bytes, z: bytes, seconds: float = SEARCH_SECONDS) -> tuple[int, ...] | None:
    """(level, memLevel, strategy, wbits) with which zlib turns ``data`` into ``z``, or None.

    The two header bytes are not compared: libpng shrinks CINFO for small images (to 8 even,
    compressing with 9) and fixes FCHECK up; FLEVEL is kept and narrows the levels.
    """
    if len(z) < 6 or z[0] & 0x0F != 8 or z[1] & 0x20 or z[0] >> 4 > 7:
        return None
    wbits = max(9, (z[0] >> 4) + 8)
    deadline = time.monotonic() + seconds
    for level, mem_level, strategy in _candidates(z[1] >> 6):
        if time.monotonic() > deadline:
            return None
        if _reproduces(data, z, (level, mem_level, strategy, wbits)):
            return level, mem_level, strategy, wbits
    return None


def _decode(hdr: _Header, stream: bytes) -> tuple[np.ndarray, np.ndarray, bytes, bytes] | None:
    """(pixels, filter types, inflated scanlines, bytes after the zlib stream)."""
    if hdr.width * hdr.height > MAX_PIXELS:
        return None
    expected = hdr.height * (hdr.row_bytes + 1)
    if expected > 1032 * len(stream) + 64:  # beyond deflate's maximum ratio
        return None
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(stream, expected + 1)
    except zlib.error:
        return None
    if len(raw) != expected or not inflater.eof:
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(hdr.height, -1)
    types = rows[:, 0].copy()
    if types.max() > 4:
        return None
    pixels = _unpack(_unfilter(rows[:, 1:], types, hdr.bpp), hdr)
    return pixels, types, raw, inflater.unused_data


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
    if _filter(_pack(pixels, hdr), types, hdr.bpp) == raw:
        z = stream[: len(stream) - len(extra)]
        side = _exact_side(side, raw, z) or side
        one = len(idat_sizes) == 1  # the usual layout, implied (docs/FORMATS.md)
        side = replace(side, idat_sizes=() if one else chunking(idat_sizes, len(stream)))
        side = replace(side, extra=extra)
    if side.mode == _REENCODE and not allow_pixel_exact:
        return None
    return (
        pixels,
        _write_side(side, predict_types(_pack(pixels, hdr), hdr.bpp)),
        (side.mode != _REENCODE),
    )


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
    s = _read_side(side, pixels)
    return _write_side(
        replace(s, mode=_REENCODE), predict_types(_pack(pixels, s.header), s.header.bpp)
    )


def predict_types(rows: np.ndarray, bpp: int) -> np.ndarray:
    """Per row, the filter type whose output has the least sum of |byte as int8| (first on
    ties): the adaptive choice of libpng and Pillow. Side info stores only disagreements."""
    h = rows.shape[0]
    costs = []
    for kind in range(5):
        out = np.frombuffer(_filter(rows, np.full(h, kind, np.uint8), bpp), np.uint8)
        v = out.reshape(h, -1)[:, 1:].astype(np.int64)
        costs.append(np.minimum(v, 256 - v).sum(axis=1))
    return np.argmin(np.stack(costs), axis=0).astype(np.uint8)


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
    return b"IHDR" + struct.pack(">IIBBBBB", hdr.width, hdr.height, hdr.depth, hdr.ctype, 0, 0, 0)


def _write_side(side: _Side, predicted: np.ndarray) -> bytes:
    hdr = side.header
    chunks = _chunks(side.head)  # IHDR first: its data follows from the header fields
    ihdr_crc = chunks[0][2]
    types = np.frombuffer(side.types, np.uint8)
    wrong = np.flatnonzero(types != predicted)
    flags = (
        (_F_IHDR_CRC if ihdr_crc != struct.pack(">I", zlib.crc32(_ihdr(hdr))) else 0)
        | (_F_DEPTH if (hdr.ctype, hdr.depth) != _default_depth(hdr.channels, hdr.depth) else 0)
        | (_F_TYPES if 2 * len(wrong) >= hdr.height else 0)
        | (_F_TAIL if side.tail != _IEND else 0)
        | (_F_IDAT if side.mode != _REENCODE and (side.idat_sizes or side.extra) else 0)
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


def _read_side(data: bytes, pixels: np.ndarray) -> _Side:
    """Side info for ``pixels`` ((H, W, C) uint8 or uint16; they imply the default colour type
    and bit depth)."""
    rd = Reader(data)
    if rd.u8() != _VERSION:
        raise FormatError("unknown PNG side-info version")
    flags = rd.u8()
    if flags >> 5:
        raise FormatError("unknown PNG side-info flags")
    if pixels.ndim != 3 or pixels.shape[2] not in _DEFAULT_CTYPE:
        raise FormatError("bad pixel array for PNG")
    height, width, channels = pixels.shape
    if (rd.uint(), rd.uint()) != (width, height):
        raise FormatError("pixels do not match the PNG side info's width and height")
    ihdr_crc = rd.raw(4) if flags & _F_IHDR_CRC else None
    if flags & _F_DEPTH:
        depth, ctype = rd.uint(16), rd.uint(6)
    else:
        ctype, depth = _default_depth(channels, 16 if pixels.dtype == np.uint16 else 8)
    hdr = _Header(width, height, depth, ctype)
    if not hdr.valid():
        raise FormatError("bad PNG header in side info")
    ihdr = _ihdr(hdr)
    ihdr_crc = ihdr_crc or struct.pack(">I", zlib.crc32(ihdr))
    head = struct.pack(">I", 13) + ihdr + ihdr_crc + _read_chunks(rd)
    tail = _IEND
    if flags & _F_TAIL:
        tail = _read_chunks(rd)
        tail += rd.blob()
    if flags & _F_TYPES:
        types = rd.raw(height)
    else:
        predicted = predict_types(
            _pack(check_pixels(pixels, (height, width, hdr.channels), pixels.dtype), hdr), hdr.bpp
        )
        row = -1
        for _ in range(rd.uint(height)):
            row += rd.uint(height) + 1
            if row >= height:
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
    return side


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def rebuild(pixels: np.ndarray, side: bytes) -> bytes:
    s = _read_side(side, pixels)
    hdr = s.header
    dtype = np.uint16 if hdr.depth == 16 else np.uint8
    pixels = check_pixels(pixels, (hdr.height, hdr.width, hdr.channels), dtype)
    scanlines = _filter(_pack(pixels, hdr), np.frombuffer(s.types, np.uint8), hdr.bpp)
    if s.mode == _ZLIB:
        stream = s.zlib_header + _deflate(scanlines, s.params)[2:] + s.extra
    elif s.mode == _STORED:
        blocks = chunk_sizes(s.blocks, len(scanlines))
        if not blocks or max(blocks) > _MAX_STORED_BLOCK:
            raise FormatError("bad stored-block sizes")
        stream = _stored_stream(s.zlib_header, scanlines, blocks) + s.extra
    else:
        stream = _deflate(scanlines, _REENCODE_PARAMS)
    sizes = chunk_sizes(s.idat_sizes, len(stream)) if s.idat_sizes else [len(stream)]
    chunks, pos = [], 0
    for n in sizes:
        chunks.append(_chunk(b"IDAT", stream[pos : pos + n]))
        pos += n
    return SIGNATURE + s.head + b"".join(chunks) + s.tail
