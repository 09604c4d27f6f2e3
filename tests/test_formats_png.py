"""PNG as people write it: Adam7 interlacing, palette colours, a work-bounded deflate search,
and bounded memory on decompression bombs."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from PIL import Image

from iodfz.formats import FormatError, parse, png, rebuild

_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2))
_ADAM7 += ((1, 0, 2, 1),)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload))
    return struct.pack(">I", len(payload)) + kind + payload + crc


def _filter_rows(rows: np.ndarray, bpp: int, seed: int) -> bytes:
    """Scanlines with varied filter types (0-4), filtered by a plain per-byte reference."""
    rng = np.random.default_rng(seed)
    out, prev = [], np.zeros(rows.shape[1], np.int64)
    for row in rows.astype(np.int64):
        kind = int(rng.integers(5))
        line = []
        for x, v in enumerate(row):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            p = a + b - c
            paeth = a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b
            paeth = paeth if abs(p - paeth) <= abs(p - c) else c
            pred = (0, a, b, (a + b) >> 1, paeth)[kind]
            line.append((v - pred) & 0xFF)
        out.append(bytes([kind, *line]))
        prev = row
    return b"".join(out)


def _png(px: np.ndarray, ctype: int, depth: int = 8, interlace: bool = False, extra=()) -> bytes:
    """A PNG written independently of iodfz (8/16-bit samples, or 8-bit palette indices)."""
    h, w, c = px.shape
    bpp = max(1, c * depth // 8)
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    raw = b""
    for i, (y0, x0, dy, dx) in enumerate(passes):
        sub = px[y0::dy, x0::dx]
        if sub.size:
            rows = sub.astype(">u2").view(np.uint8) if depth == 16 else sub
            raw += _filter_rows(rows.reshape(sub.shape[0], -1), bpp, i)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace))
    chunks = [_chunk(b"IHDR", ihdr), *extra, _chunk(b"IDAT", zlib.compress(raw, 6))]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + _chunk(b"IEND", b"")


def _pixels(h: int, w: int, c: int, top: int = 256, dtype: type = np.uint8) -> np.ndarray:
    rng = np.random.default_rng(h * 1000 + w * 10 + c)
    smooth = np.add.outer(np.arange(h), np.arange(w))[..., None] * 3 + np.arange(c) * 40
    return ((smooth + rng.integers(0, 9, (h, w, c))) % top).astype(dtype)


def _exact(data: bytes) -> np.ndarray:
    got = parse(data)
    assert got is not None and got.exact
    assert rebuild(got.fmt, got.pixels, got.side) == data
    return got.pixels


@pytest.mark.parametrize(("h", "w"), [(1, 1), (3, 5), (9, 17), (33, 20)])
@pytest.mark.parametrize(("ctype", "c", "depth"), [(2, 3, 8), (0, 1, 8), (4, 2, 8), (6, 4, 16)])
def test_interlaced_roundtrip(h: int, w: int, ctype: int, c: int, depth: int) -> None:
    dtype = np.uint16 if depth == 16 else np.uint8
    px = _pixels(h, w, c, 1 << depth, dtype)
    data = _png(px, ctype, depth, interlace=True)
    got = _exact(data)
    np.testing.assert_array_equal(got, px)
    if depth == 8:  # an independent decoder agrees
        ref = np.asarray(Image.open(io.BytesIO(data)))
        np.testing.assert_array_equal(got.reshape(ref.shape), ref)


def _palette_png(idx: np.ndarray, colours: np.ndarray, interlace: bool, trns: bytes = b"") -> bytes:
    extra = [_chunk(b"PLTE", colours.astype(np.uint8).tobytes())]
    if trns:
        extra.append(_chunk(b"tRNS", trns))
    return _png(idx, 3, 8, interlace, extra)


@pytest.mark.parametrize("interlace", [False, True])
def test_palette_gives_colours_and_rebuilds_exactly(interlace: bool) -> None:
    colours = np.random.default_rng(1).permutation(256 * 3).reshape(256, 3) % 256
    idx = _pixels(21, 30, 1)
    got = parse(_palette_png(idx, colours, interlace))
    assert got is not None and got.exact and got.pixels.shape == (21, 30, 3)
    np.testing.assert_array_equal(got.pixels, colours[idx[..., 0]])
    assert rebuild("png", got.pixels, got.side) == _palette_png(idx, colours, interlace)
    # with tRNS the pixels carry the palette's alpha
    data = _palette_png(idx, colours, interlace, trns=bytes(range(0, 200)))
    rgba = _exact(data)
    assert rgba.shape == (21, 30, 4)
    np.testing.assert_array_equal(rgba, np.asarray(Image.open(io.BytesIO(data)).convert("RGBA")))
    bad = got.pixels.copy()
    bad[0, 0] = colours[idx[0, 0, 0]] ^ 1  # a colour the palette does not hold
    if any((colours == bad[0, 0]).all(axis=1)):
        return
    with pytest.raises(FormatError):
        rebuild("png", bad, got.side)


def test_palette_with_duplicate_colours_gives_indices() -> None:
    colours = np.zeros((16, 3), np.uint8)  # all entries alike: colours cannot name indices
    idx = _pixels(12, 13, 1, top=16)
    got = parse(_palette_png(idx, colours, False))
    assert got is not None and got.exact and got.pixels.shape == (12, 13, 1)
    np.testing.assert_array_equal(got.pixels, idx)


def test_search_is_bounded_by_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream no candidate makes: the search gives up after a fixed amount of zlib input,
    whatever the clock says; the same input always gives the same answer."""
    raw = np.random.default_rng(3).integers(0, 40, 1 << 20, np.uint8).tobytes()
    z = zlib.compress(raw, 9)
    z = z[:40] + bytes([z[40] ^ 0x10]) + z[41:]  # no parameters make this
    fed = []
    real = zlib.compressobj

    class Spy:
        def __init__(self, *args: object) -> None:
            self._c = real(*args)

        def compress(self, data: bytes) -> bytes:
            fed.append(len(data))
            return self._c.compress(data)

        def flush(self) -> bytes:
            return self._c.flush()

    monkeypatch.setattr(png.zlib, "compressobj", Spy)
    assert png.search_params(raw, z) is None
    assert sum(fed) <= png.SEARCH_WORK + 2 * len(raw)
    assert png.search_params(raw, zlib.compress(raw, 9)) == (9, 8, 0, 15)


def _peak_rss_mib(code: str) -> float:
    """Run ``code`` in a fresh Python; its peak RSS in MiB (printed by the child)."""
    script = textwrap.dedent(code) + textwrap.dedent("""
        import resource
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


_BOMB = """
    import struct, zlib
    import numpy as np
    from iodfz import formats
    def chunk(k, p):
        return struct.pack(">I", len(p)) + k + p + struct.pack(">I", zlib.crc32(k + p))
    n = {n}
    comp = zlib.compressobj(9)
    row = bytes(3 * n + 1)
    z = b"".join(comp.compress(row) for _ in range(n)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", n, n, 8, 2, 0, 0, 0)
    data = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", z)
    data += chunk(b"IEND", b"")
    del z, row
    got = formats.parse(data)
    assert got is not None and got.pixels.shape == (n, n, 3)
"""


def test_png_bomb_memory_is_bounded() -> None:
    """A 49 KB PNG declaring 4096² zero pixels (48 MiB): parsed with peak RSS within a few
    times the pixels (it used to pass 1.8 GiB)."""
    base = _peak_rss_mib("import numpy, zlib\nfrom iodfz import formats")
    peak = _peak_rss_mib(_BOMB.format(n=4096))
    assert peak - base < 4 * 48, (base, peak)


def test_png_beyond_the_pixel_limit_is_refused_unread() -> None:
    ihdr = struct.pack(">IIBBBBB", 1 << 15, 1 << 14, 8, 2, 0, 0, 0)  # 1.5 Gi samples
    idat = zlib.compress(bytes(1 << 16))
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
    assert parse(data + _chunk(b"IEND", b"")) is None
