"""TIFF, first image only: 8 bits per sample, 1-4 samples (gray, gray+alpha, RGB, RGBA; photometric
0/1/2), strips or tiles, chunky or planar, uncompressed, LZW, Deflate or PackBits, with or
without the horizontal predictor, little- or big-endian.

Side info version 1 (uncompressed chunky files): the raster layout (see ``_raster``), one block
per strip/tile; header, IFDs, tag data, tile padding, further pages and trailing bytes form the
skeleton. Version 2 (everything else): the file with the stored strips/tiles cut out (the
skeleton), where each segment was and how long, the samples of tile padding, and the choices
that make our encoders (``_tiffcodec``) give back the stored bytes exactly: PackBits run
headers, LZW clear positions, the zlib parameters found by the PNG search. A file whose
segments cannot be remade exactly is not handled. Layouts: docs/FORMATS.md.
"""

from __future__ import annotations

import struct

import numpy as np

from iodfz.limits import MAX_PIXELS

from . import _tiffcodec as codec
from ._raster import Block, check_pixels, max_blocks, pack, unpack
from ._side import FormatError, Reader, Writer, read_ints, unzigzag, write_ints
from .png import search_params

_VERSION = 1
_VERSION_SEGMENTS = 2
_TYPE_CODES = {1: "B", 3: "H", 4: "I"}  # BYTE, SHORT, LONG
_TAGS = {256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 322, 323, 324, 325, 339}
# ImageWidth, ImageLength, BitsPerSample, Compression, Photometric, FillOrder, StripOffsets,
# SamplesPerPixel, RowsPerStrip, StripByteCounts, PlanarConfiguration, Predictor, TileWidth,
# TileLength, TileOffsets, TileByteCounts, SampleFormat
_SCHEMES = {
    codec.NONE: 0,
    codec.LZW: 1,
    codec.DEFLATE: 2,
    codec.OLD_DEFLATE: 3,
    codec.PACKBITS: 4,
}
_COMPRESSIONS = {v: k for k, v in _SCHEMES.items()}
# LZW encoder variants: (most table entries, zero byte after a byte-aligned end code); libtiff
# stops adding entries at 4094, others clear the table when it is full.
_REENCODED = 2  # side info v2 flags: bit 0 tiled, bit 1 segments re-encoded (pixel-exact)
_LZW_VARIANTS = tuple((t, pad) for t in (4094, 4095, 4096) for pad in (False, True))


def _read_ifd(
    data: bytes, order: str, offset: int, where: dict[int, tuple[int, int]] | None = None
) -> dict[int, list[int]] | None:
    """The tags in ``_TAGS`` of the IFD at ``offset`` (tags of other types are left out);
    ``where`` receives each tag's (value position, value size)."""
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
        if where is not None:
            where[tag] = (at, size)
    return tags


def _one(tags: dict[int, list[int]], tag: int, default: int = 0) -> int:
    vals = tags.get(tag)
    return vals[0] if vals else default


def _samples_ok(tags: dict[int, list[int]]) -> int | None:
    """Samples per pixel of an 8-bit, unsigned-integer, gray or RGB image, else None."""
    spp = _one(tags, 277, 1)
    if spp not in (1, 2, 3, 4) or _one(tags, 262, -1) not in (0, 1, 2):
        return None
    if tags.get(258, [1]) not in ([8], [8] * spp) or tags.get(339, [1]) not in ([1], [1] * spp):
        return None
    return spp if _one(tags, 266, 1) == 1 else None


def _blocks(tags: dict[int, list[int]]) -> tuple[int, int, int, list[Block]] | None:
    """Geometry of an uncompressed chunky file (side info version 1)."""
    w, h, spp = _one(tags, 256), _one(tags, 257), _samples_ok(tags)
    if not w or not h or spp is None or w * h * spp > MAX_PIXELS:
        return None
    blocks = []
    if 324 in tags:
        tw, th = _one(tags, 322), _one(tags, 323)
        if not tw or not th:
            return None
        across, down = -(-w // tw), -(-h // th)
        offsets = tags[324]
        if len(offsets) < across * down or across * down > max_blocks(h, w):
            return None
        for i in range(across * down):
            y0, x0 = i // across * th, i % across * tw
            y1, x1 = min(h, y0 + th), min(w, x0 + tw)
            blocks.append(Block(offsets[i], y0, y1, x0, x1, tw * spp, False))
    else:
        rows = min(h, _one(tags, 278, h) or h)
        offsets = tags.get(273, [])
        if len(offsets) < -(-h // rows):
            return None
        for i, y0 in enumerate(range(0, h, rows)):
            blocks.append(Block(offsets[i], y0, min(h, y0 + rows), 0, w, w * spp, False))
    return h, w, spp, blocks


class _Layout:
    """Where each stored segment (strip or tile; per sample plane when planar) sits in the
    image. Tiles are stored whole (edge tiles padded); the last strip holds the rows left."""

    def __init__(
        self, shape: tuple[int, int, int], seg: tuple[int, int], planar: bool, tiled: bool
    ):
        (self.h, self.w, self.c), (self.seg_h, self.seg_w) = shape, seg
        self.planar, self.tiled = planar, tiled
        self.across, self.down = -(-self.w // self.seg_w), -(-self.h // self.seg_h)
        self.count = self.across * self.down * (self.c if planar else 1)
        self.seg_c = 1 if planar else self.c

    def region(self, k: int) -> tuple[tuple[int, int, int], tuple[slice, slice, slice]]:
        """(shape of segment ``k``'s samples, where its image part lies in the pixels)."""
        plane, i = divmod(k, self.across * self.down)
        y0, x0 = i // self.across * self.seg_h, i % self.across * self.seg_w
        rows = self.seg_h if self.tiled else min(self.seg_h, self.h - y0)
        where = (
            slice(y0, min(self.h, y0 + self.seg_h)),
            slice(x0, min(self.w, x0 + self.seg_w)),
            slice(plane, plane + 1) if self.planar else slice(None),
        )
        return (rows, self.seg_w, self.seg_c), where


def _segment_layout(tags: dict[int, list[int]]) -> tuple[_Layout, list[int], list[int]] | None:
    """(layout, offsets, byte counts) of a file for side info version 2, else None."""
    w, h, spp = _one(tags, 256), _one(tags, 257), _samples_ok(tags)
    if not w or not h or spp is None or w * h * spp > MAX_PIXELS:
        return None
    planar = spp > 1 and _one(tags, 284, 1) == 2
    tiled = 324 in tags
    if tiled:
        seg = (_one(tags, 323), _one(tags, 322))
        offsets, counts = tags.get(324, []), tags.get(325, [])
    else:
        seg = (min(h, _one(tags, 278, h) or h), w)
        offsets, counts = tags.get(273, []), tags.get(279, [])
    if not seg[0] or not seg[1] or seg[0] > 2 * h + 16 or seg[1] > 2 * w + 16:
        return None
    layout = _Layout((h, w, spp), seg, planar, tiled)
    if layout.count > spp * max_blocks(h, w) or min(len(offsets), len(counts)) < layout.count:
        return None
    return layout, offsets[: layout.count], counts[: layout.count]


def _padding(samples: np.ndarray, image_part: tuple[int, int]) -> np.ndarray:
    """Samples of a segment outside the image (right of it, then below it), flattened."""
    rh, rw = image_part
    return np.concatenate([samples[:rh, rw:].ravel(), samples[rh:].ravel()])


def _unpredict(samples: np.ndarray) -> np.ndarray:
    return np.cumsum(samples, axis=1, dtype=np.uint8)


def _predict(samples: np.ndarray) -> np.ndarray:
    out = samples.copy()
    out[:, 1:] -= samples[:, :-1]
    return out


class _Segments:
    """Decoded segments and the encoder choices (side info version 2)."""

    def __init__(self, scheme: int, predictor: int) -> None:
        self.scheme, self.predictor = scheme, predictor
        self.heads: list[bytes] = []  # PackBits: run headers per segment
        self.runs: list[list[int]] = []  # LZW: codes between clears per segment
        self.lzw = _LZW_VARIANTS[0]  # LZW: most table entries, zero byte after aligned end
        self.zlib: tuple[bytes, tuple[int, ...]] | None = None  # Deflate: header, parameters

    def reencode(self, count: int) -> None:
        """Switch to our own choices (pixel-exact): LZW as libtiff, zlib level 6."""
        self.runs, self.lzw = [[] for _ in range(count)], _LZW_VARIANTS[0]
        self.zlib = (b"\x78\x9c", (6, 8, 0, 15))

    def decode(self, stored: bytes, size: int) -> bytes:
        compression = _COMPRESSIONS[self.scheme]
        if compression == codec.NONE:
            return stored
        if compression == codec.PACKBITS:
            raw, heads = codec.packbits_decode(stored, size)
            self.heads.append(heads)
            return raw
        if compression == codec.LZW:
            raw, runs = codec.lzw_decode(stored, size)
            self.runs.append(runs)
            return raw
        return codec.inflate(stored, size)

    def encode(self, k: int, raw: bytes) -> bytes:
        compression = _COMPRESSIONS[self.scheme]
        if compression == codec.NONE:
            return raw
        if compression == codec.PACKBITS:
            out, used = codec.packbits_encode(raw, self.heads[k])
            if used != len(raw):
                raise FormatError("PackBits runs do not cover the segment")
            return out
        if compression == codec.LZW:
            return codec.lzw_encode(raw, self.runs[k], *self.lzw)
        if self.zlib is None:
            raise FormatError("no Deflate parameters")
        header, (level, mem_level, strategy, wbits) = self.zlib
        comp = codec.zlib.compressobj(level, codec.zlib.DEFLATED, wbits, mem_level, strategy)
        return header + (comp.compress(raw) + comp.flush())[2:]

    def fit(self, raws: list[bytes], stored: list[bytes]) -> bool:
        """Choose what the per-file encoder choices are so that every segment comes back."""
        compression = _COMPRESSIONS[self.scheme]
        if compression in (codec.DEFLATE, codec.OLD_DEFLATE):
            first = max(range(len(raws)), key=lambda k: len(raws[k]))
            z = stored[first]
            params = search_params(raws[first], z)
            if params is None or any(s[:2] != z[:2] for s in stored):
                return False
            self.zlib = (z[:2], params)
        elif compression == codec.LZW:
            return self._fit_lzw(raws, stored)
        pairs = enumerate(zip(raws, stored, strict=True))
        return all(self.encode(k, raw) == s for k, (raw, s) in pairs)

    def _fit_lzw(self, raws: list[bytes], stored: list[bytes]) -> bool:
        """Check the segments in order; on a mismatch switch to the next variant that remakes
        that segment and check again from the start. Each variant is tried once at most."""
        untried = list(_LZW_VARIANTS[1:])
        k = 0
        while k < len(raws):
            if self.encode(k, raws[k]) == stored[k]:
                k += 1
                continue
            while untried:
                self.lzw = untried.pop(0)
                if self.encode(k, raws[k]) == stored[k]:
                    break
            else:
                return False
            k = 0
        return True


def _side_v2(
    layout: _Layout,
    segs: _Segments,
    offsets: list[int],
    stored: list[bytes],
    data: bytes,
    patch: tuple[int, int] | None,
) -> bytes:
    """Side info version 2; ``patch``: re-encoded (pixel-exact), with the file positions of the
    segment offsets and byte counts (LONG arrays) to rewrite."""
    wr = Writer()
    wr.u8(_VERSION_SEGMENTS)
    flags = int(layout.tiled) | (_REENCODED if patch else 0)
    for v in (segs.scheme, segs.predictor, int(layout.planar), flags):
        wr.u8(v)
    for v in (layout.h, layout.w, layout.c, layout.seg_h, layout.seg_w):
        wr.uint(v)
    prev_end = 0
    for off, s in zip(offsets, stored, strict=True):
        wr.sint(off - prev_end)
        wr.uint(len(s))
        prev_end = off + len(s)
    wr.blob(_skeleton(data, offsets, [len(s) for s in stored]))
    if _COMPRESSIONS[segs.scheme] == codec.PACKBITS:
        for heads in segs.heads:
            wr.blob(heads)
    elif _COMPRESSIONS[segs.scheme] == codec.LZW:
        wr.uint(segs.lzw[0])
        wr.u8(int(segs.lzw[1]))
        for runs in segs.runs:
            write_ints(wr, tuple(runs))
    elif segs.zlib is not None:
        header, (level, mem_level, strategy, _) = segs.zlib
        wr.raw(header)
        wr.u8(level << 4 | mem_level)
        wr.u8(strategy)
    if patch:
        wr.u8(data[0] == ord("M"))
        wr.uint(patch[0])
        wr.uint(patch[1])
    return wr.getvalue()


def _skeleton(data: bytes, offsets: list[int], lengths: list[int]) -> bytes:
    """``data`` without the segments (which lie inside it and do not overlap)."""
    parts, pos = [], 0
    for off, n in sorted(zip(offsets, lengths, strict=True)):
        if off < pos or off + n > len(data):
            raise FormatError("TIFF segments overlap or lie outside the file")
        parts.append(data[pos:off])
        pos = off + n
    parts.append(data[pos:])
    return b"".join(parts)


def _reencode_patch(layout: _Layout, where: dict[int, tuple[int, int]]) -> tuple[int, int] | None:
    """Positions of the LONG segment offset and byte count arrays, which a re-encoded rebuild
    rewrites; None when either is not LONG (new values might not fit)."""
    tags = (324, 325) if layout.tiled else (273, 279)
    if any(where.get(t, (0, 0))[1] != 4 for t in tags):
        return None
    return where[tags[0]][0], where[tags[1]][0]


def _parse_segments(
    data: bytes,
    tags: dict[int, list[int]],
    positions: dict[int, tuple[int, int]],
    allow_pixel_exact: bool,
) -> tuple[np.ndarray, bytes, bool] | None:
    found = _segment_layout(tags)
    compression, predictor = _one(tags, 259, 1), _one(tags, 317, 1)
    if found is None or compression not in _SCHEMES or predictor not in (1, 2):
        return None
    if compression in (codec.NONE, codec.PACKBITS):
        predictor = 1  # the predictor applies to LZW and Deflate only (libtiff ignores it)
    layout, offsets, counts = found
    if any(off + n > len(data) for off, n in zip(offsets, counts, strict=True)):
        return None
    total = sum(int(np.prod(layout.region(k)[0])) for k in range(layout.count))
    if total > 2 * MAX_PIXELS or total > codec.MAX_RATIO[compression] * sum(counts) + 64 * len(
        counts
    ):
        return None
    segs = _Segments(_SCHEMES[compression], predictor)
    pixels = np.empty((layout.h, layout.w, layout.c), np.uint8)
    stored, raws, padding = [], [], []
    for k, (off, n) in enumerate(zip(offsets, counts, strict=True)):
        shape, where = layout.region(k)
        stored.append(data[off : off + n])
        raw = segs.decode(stored[-1], int(np.prod(shape)))
        if len(raw) != int(np.prod(shape)):
            return None
        raws.append(raw)
        samples = np.frombuffer(raw, np.uint8).reshape(shape)
        if predictor == 2:
            samples = _unpredict(samples)
        part = pixels[where]
        part[...] = samples[: part.shape[0], : part.shape[1]]
        padding.append(_padding(samples, part.shape[:2]))
    patch = None
    if not segs.fit(raws, stored):
        patch = _reencode_patch(layout, positions) if allow_pixel_exact else None
        if patch is None:
            return None
        segs.reencode(layout.count)
    side = _side_v2(layout, segs, offsets, stored, data, patch)
    wr = Writer()
    wr.blob(np.concatenate(padding).tobytes())
    return pixels, side + wr.getvalue(), patch is None


def parse(data: bytes, allow_pixel_exact: bool = False) -> tuple[np.ndarray, bytes, bool] | None:
    """(pixels, side info, exact); with ``allow_pixel_exact`` a file whose LZW or Deflate
    segments our encoders cannot remake comes back with exact=False: the rebuild re-encodes
    them (LZW as libtiff, zlib level 6) and rewrites the segment offsets and byte counts."""
    if len(data) < 8 or data[:4] not in (b"II*\0", b"MM\0*"):
        return None
    order = "<" if data[0] == ord("I") else ">"
    where: dict[int, tuple[int, int]] = {}
    tags = _read_ifd(data, order, struct.unpack_from(order + "I", data, 4)[0], where)
    if tags is None:
        return None
    planar = _one(tags, 277, 1) > 1 and _one(tags, 284, 1) != 1
    if _one(tags, 259, 1) != 1 or planar:
        return _parse_segments(data, tags, where, allow_pixel_exact)
    geometry = _blocks(tags)
    if geometry is None:
        return None
    h, w, c, blocks = geometry
    got = pack(_VERSION, data, blocks, h, w, c)
    return None if got is None else (*got, True)


def _rebuild_segments(pixels: np.ndarray, rd: Reader) -> bytes:
    scheme, predictor, planar, flags = rd.u8(), rd.u8(), rd.u8(), rd.u8()
    if scheme not in _COMPRESSIONS or predictor not in (1, 2) or planar > 1 or flags > 3:
        raise FormatError("bad TIFF side info")
    tiled = flags & 1
    h, w, c = rd.uint(MAX_PIXELS), rd.uint(MAX_PIXELS), rd.uint(4)
    seg = (rd.uint(2 * h + 16), rd.uint(2 * w + 16))
    if not (h and w and c and seg[0] and seg[1]) or h * w * c > MAX_PIXELS:
        raise FormatError("bad TIFF side info")
    pixels = check_pixels(pixels, (h, w, c))
    layout = _Layout((h, w, c), seg, bool(planar), bool(tiled))
    if layout.count > c * max_blocks(h, w):
        raise FormatError("bad TIFF side info")
    v = rd.uints(2 * layout.count).reshape(-1, 2)
    lengths = v[:, 1]
    if np.any(lengths >= 1 << 32) or np.any(np.abs(unzigzag(v[:, 0])) >= 1 << 32):
        raise FormatError("bad TIFF segment in side info")
    ends = np.cumsum(lengths)
    offsets = np.cumsum(unzigzag(v[:, 0])) + np.concatenate(([0], ends[:-1]))
    skeleton = rd.blob()
    segs = _Segments(scheme, predictor)
    compression = _COMPRESSIONS[scheme]
    if compression == codec.PACKBITS:
        segs.heads = [rd.blob() for _ in range(layout.count)]
    elif compression == codec.LZW:
        segs.lzw = (rd.uint(4096), rd.u8() == 1)
        segs.runs = [list(read_ints(rd)) for _ in range(layout.count)]
    elif compression != codec.NONE:
        header, packed, strategy = rd.raw(2), rd.u8(), rd.u8()
        wbits = max(9, (header[0] >> 4) + 8)
        params = (packed >> 4, packed & 0x0F, strategy, wbits)
        if not (1 <= params[0] <= 9 and 1 <= params[1] <= 9 and strategy <= 4):
            raise FormatError("bad Deflate parameters in TIFF side info")
        segs.zlib = (header, params)
    patch = None
    if flags & _REENCODED:
        if compression not in (codec.LZW, codec.DEFLATE, codec.OLD_DEFLATE):
            raise FormatError("bad TIFF side info")
        patch = (">" if rd.u8() else "<", rd.uint(), rd.uint())
    padding = np.frombuffer(rd.blob(), np.uint8)
    rd.done()
    total = len(skeleton) + int(lengths.sum())
    out = np.zeros(total, np.uint8)
    hole = np.zeros(total, bool)
    pos = 0
    appended: list[bytes] = []
    new_offsets, new_lengths = [], []
    for k in range(layout.count):
        shape, where = layout.region(k)
        samples = np.empty(shape, np.uint8)
        part = pixels[where]
        rh, rw = part.shape[:2]
        samples[:rh, :rw] = part
        n_right, n_below = rh * (shape[1] - rw) * shape[2], (shape[0] - rh) * shape[1] * shape[2]
        if pos + n_right + n_below > len(padding):
            raise FormatError("TIFF padding samples missing")
        samples[:rh, rw:] = padding[pos : pos + n_right].reshape(rh, -1, shape[2])
        samples[rh:] = padding[pos + n_right : pos + n_right + n_below].reshape(-1, *shape[1:])
        pos += n_right + n_below
        encoded = segs.encode(k, (_predict(samples) if predictor == 2 else samples).tobytes())
        off, slot = int(offsets[k]), int(lengths[k])
        if off < 0 or off + slot > total or hole[off : off + slot].any():
            raise FormatError("TIFF segments overlap or lie outside the file")
        hole[off : off + slot] = True
        if patch and len(encoded) > slot:  # re-encoded and longer: appended at the end
            start = total + sum(len(a) for a in appended)
            appended.append(encoded + b"\0" * (len(encoded) & 1))
            new_offsets.append(start)
        elif len(encoded) == slot or patch:
            out[off : off + len(encoded)] = np.frombuffer(encoded, np.uint8)
            new_offsets.append(off)
        else:
            raise FormatError("TIFF segment does not fit where it was")
        new_lengths.append(len(encoded))
    if pos != len(padding):
        raise FormatError("trailing TIFF padding samples")
    out[~hole] = np.frombuffer(skeleton, np.uint8)
    if patch is None:
        return out.tobytes()
    order, offsets_at, counts_at = patch
    if total % 2 and appended:
        raise FormatError("odd TIFF length before appended segments")
    for at, values in ((offsets_at, new_offsets), (counts_at, new_lengths)):
        if at + 4 * len(values) > total or max(values) >= 1 << 32:
            raise FormatError("TIFF segment tables out of range")
        out[at : at + 4 * len(values)] = np.array(values, order + "u4").view(np.uint8)
    return out.tobytes() + b"".join(appended)


def rebuild(pixels: np.ndarray, side: bytes) -> bytes:
    if side[:1] == bytes([_VERSION_SEGMENTS]):
        rd = Reader(side)
        rd.u8()
        return _rebuild_segments(pixels, rd)
    return unpack(_VERSION, "TIFF", pixels, side)
