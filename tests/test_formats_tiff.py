"""TIFF as people write it: strips and tiles, chunky and planar, PackBits, LZW and Deflate with
and without the horizontal predictor, either byte order — parsed to the right pixels and
rebuilt to the same bytes."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from iodfz.formats import FormatError, parse, rebuild
from iodfz.formats import _tiffcodec as codec


def _packbits(data: bytes) -> bytes:
    """A plain PackBits encoder (runs of 3+ equal bytes, literals of up to 128)."""
    out, i = bytearray(), 0
    while i < len(data):
        j = i
        while j + 1 < len(data) and data[j + 1] == data[i] and j - i < 127:
            j += 1
        if j - i >= 2:
            out += bytes([257 - (j - i + 1), data[i]])
            i = j + 1
            continue
        j = i
        while j < len(data) and j - i < 128 and data[j : j + 3] != data[j : j + 1] * 3:
            j += 1
        j = max(j, i + 1)
        out += bytes([j - i - 1]) + data[i:j]
        i = j
    return bytes(out)


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data, 6)


def _lzw(data: bytes) -> bytes:
    ic = pytest.importorskip("imagecodecs")
    return ic.lzw_encode(data)


_ENCODERS: dict[int, Callable[[bytes], bytes]] = {
    1: lambda d: d,
    5: _lzw,
    8: _deflate,
    32946: _deflate,
    32773: _packbits,
}


def _segment(samples: np.ndarray, predictor: int) -> bytes:
    if predictor == 2:
        s = samples.copy()
        s[:, 1:] -= samples[:, :-1]
        samples = s
    return samples.tobytes()


def _tiff(
    px: np.ndarray,
    compression: int,
    *,
    order: str = "<",
    tile: tuple[int, int] | None = None,
    rows: int = 5,
    planar: bool = False,
    predictor: int = 1,
) -> bytes:
    """A TIFF written independently of iodfz's encoders; tile padding holds 0xA5."""
    h, w, c = px.shape
    planes = [px[..., i : i + 1] for i in range(c)] if planar else [px]
    segments = []
    for plane in planes:
        if tile:
            th, tw = tile
            for y in range(0, h, th):
                for x in range(0, w, tw):
                    t = np.full((th, tw, plane.shape[2]), 0xA5, np.uint8)
                    part = plane[y : y + th, x : x + tw]
                    t[: part.shape[0], : part.shape[1]] = part
                    segments.append(_segment(t, predictor))
        else:
            segments += [_segment(plane[y : y + rows], predictor) for y in range(0, h, rows)]
    stored = [_ENCODERS[compression](s) for s in segments]
    offsets = list(np.cumsum([8] + [len(s) + 1 for s in stored[:-1]]))
    body = b"".join(s + b"\x77" for s in stored)  # a gap byte after each segment
    entries = [(256, 4, [w]), (257, 4, [h]), (258, 3, [8] * c), (259, 3, [compression])]
    entries += [(262, 3, [2 if c >= 3 else 1]), (277, 3, [c]), (284, 3, [2 if planar else 1])]
    entries += [(317, 3, [predictor])]
    if tile:
        entries += [(322, 4, [tile[1]]), (323, 4, [tile[0]])]
        entries += [(324, 4, offsets), (325, 4, [len(s) for s in stored])]
    else:
        entries += [(273, 4, offsets), (278, 4, [rows]), (279, 4, [len(s) for s in stored])]
    entries.sort()
    ifd_pos = 8 + len(body)
    extra_pos = ifd_pos + 2 + 12 * len(entries) + 4
    ifd, extra = struct.pack(f"{order}H", len(entries)), b""
    for tag, typ, values in entries:
        code = {3: "H", 4: "I"}[typ]
        data = struct.pack(f"{order}{len(values)}{code}", *values)
        if len(data) > 4:
            data, extra = struct.pack(f"{order}I", extra_pos + len(extra)), extra + data
        ifd += struct.pack(f"{order}HHI", tag, typ, len(values)) + data.ljust(4, b"\0")
    magic = b"II*\0" if order == "<" else b"MM\0*"
    return magic + struct.pack(f"{order}I", ifd_pos) + body + ifd + b"\0" * 4 + extra


def _pixels(h: int, w: int, c: int) -> np.ndarray:
    rng = np.random.default_rng(h * 100 + w + c)
    smooth = np.add.outer(np.arange(h) // 3, np.arange(w) // 2)[..., None] * 5 + np.arange(c) * 30
    px = (smooth + rng.integers(0, 3, (h, w, c))) % 256
    px[h // 2 :, : w // 3] = 7  # a flat area: runs for PackBits
    return px.astype(np.uint8)


def _check(data: bytes, px: np.ndarray) -> None:
    got = parse(data)
    assert got is not None and got.exact and got.fmt == "tiff"
    np.testing.assert_array_equal(got.pixels, px)
    assert rebuild("tiff", got.pixels, got.side) == data


@pytest.mark.parametrize("compression", [5, 8, 32946, 32773, 1])
@pytest.mark.parametrize("layout", ["strips", "tiles", "planar strips", "planar tiles"])
@pytest.mark.parametrize("order", ["<", ">"])
def test_tiff_variants_roundtrip(compression: int, layout: str, order: str) -> None:
    for c, predictor in ((3, 1), (3, 2), (1, 2), (4, 1)):
        if compression in (1, 32773) and predictor == 2:
            continue  # the predictor applies to LZW and Deflate only
        px = _pixels(37, 45, c)
        tile = (16, 32) if "tiles" in layout else None
        planar = "planar" in layout and c > 1
        data = _tiff(px, compression, order=order, tile=tile, planar=planar, predictor=predictor)
        _check(data, px)


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate", "packbits", "raw"])
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
def test_tiff_from_libtiff(compression: str, mode: str) -> None:
    """Files Pillow writes through libtiff (strips; predictor 2 with LZW and Deflate)."""
    px = _pixels(70, 53, len(mode))
    for predictor in (1, 2):
        img = Image.fromarray(px if len(mode) > 1 else px[..., 0], mode)
        out = io.BytesIO()
        img.save(out, "TIFF", compression=compression, tiffinfo={317: predictor})
        _check(out.getvalue(), px)


def test_lzw_clear_positions_and_table_limits() -> None:
    """Long data: the table fills; libtiff-style (no clear, table stopped at 4094 entries) and
    imagecodecs-style (clear when full) streams both come back."""
    data = np.random.default_rng(5).integers(0, 6, 60000, np.uint8).tobytes()
    libtiff_like = codec.lzw_encode(data, [], 4094)
    assert codec.lzw_decode(libtiff_like, len(data)) == (data, [])
    ic = pytest.importorskip("imagecodecs")
    stream = ic.lzw_encode(data)
    raw, runs = codec.lzw_decode(stream, len(data))
    assert raw == data and runs
    assert any(codec.lzw_encode(data, runs, t) == stream for t in (4094, 4095, 4096))


def test_tiff_hostile_segments() -> None:
    px = _pixels(20, 20, 3)
    data = _tiff(px, 8)
    # a strip that inflates beyond its declared rows is refused, not decoded whole
    bomb = _tiff(np.zeros((20, 20, 3), np.uint8), 8, rows=20)
    big = zlib.compress(bytes(1 << 22))
    assert parse(bomb.replace(zlib.compress(bytes(1200), 6), big)) is None
    got = parse(data)
    assert got is not None
    with pytest.raises(FormatError):
        rebuild("tiff", got.pixels, got.side[:-3])
    with pytest.raises(FormatError):
        rebuild("tiff", got.pixels[:-1], got.side)


@pytest.mark.parametrize("tile", [None, (16, 16)])
def test_tiff_pixel_exact_when_segments_do_not_reproduce(
    tile: tuple[int, int] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deflate segments no zlib parameters remake (here: stored blocks): not handled, or with
    allow_pixel_exact re-encoded into a valid TIFF with the same pixels."""
    px = _pixels(37, 45, 3)
    monkeypatch.setitem(_ENCODERS, 8, lambda d: zlib.compress(d, 0))
    data = _tiff(px, 8, tile=tile, predictor=2)
    assert parse(data) is None
    got = parse(data, allow_pixel_exact=True)
    assert got is not None and not got.exact
    np.testing.assert_array_equal(got.pixels, px)
    out = rebuild("tiff", got.pixels, got.side)
    again = parse(out)
    assert again is not None and again.exact
    np.testing.assert_array_equal(again.pixels, px)
    if tile is None:  # an independent reader agrees
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(out))), px)
