"""Image file formats: byte-exact round trips, pixel-exact PNG fallback, hostile inputs."""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iodfz.formats import FormatError, ParsedImage, parse, rebuild, sniff

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
SIZES = [(1, 1), (3, 5), (17, 1), (1, 9), (67, 131), (131, 67)]
RNG = np.random.default_rng(1234)


def _image(h: int, w: int, c: int, dtype: type = np.uint8, top: int = 256) -> np.ndarray:
    """Smooth-ish noise so deflate finds matches (exercises more than literals)."""
    base = np.add.outer(np.arange(h), np.arange(w))[:, :, None] * 3 + np.arange(c)
    noise = RNG.integers(0, 4, (h, w, c))
    return ((base + noise) % top).astype(dtype)


def _roundtrip(data: bytes, fmt: str, pixels: np.ndarray | None = None) -> ParsedImage:
    got = parse(data)
    assert got is not None, f"{fmt} not handled"
    assert got.fmt == fmt and got.exact
    assert got.pixels.flags.c_contiguous and got.pixels.ndim == 3
    if pixels is not None:
        np.testing.assert_array_equal(got.pixels, pixels.reshape(got.pixels.shape))
    assert rebuild(fmt, got.pixels, got.side) == data
    return got


def _pil_bytes(img: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


# --- PNM ------------------------------------------------------------------------------------


def _pnm(pixels: np.ndarray, header: bytes | None = None, trailer: bytes = b"") -> bytes:
    h, w, c = pixels.shape
    magic = b"P5" if c == 1 else b"P6"
    return (header or b"%s\n%d %d\n255\n" % (magic, w, h)) + pixels.tobytes() + trailer


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("c", [1, 3])
def test_pnm_roundtrip(h: int, w: int, c: int) -> None:
    px = _image(h, w, c)
    _roundtrip(_pnm(px), "pnm", px)
    magic = b"P5" if c == 1 else b"P6"
    header = b"%s # made by hand\n#another\r%d\t%d # dims\n255 " % (magic, w, h)
    _roundtrip(_pnm(px, header, trailer=b"\n\x00junk"), "pnm", px)


def test_pnm_not_handled() -> None:
    px = _image(4, 4, 1)
    assert parse(b"P5\n4 4\n65535\n" + px.tobytes() * 2) is None
    assert parse(b"P5\n4 4\n100\n" + px.tobytes()) is None
    assert parse(b"P2\n4 4\n255\n1 2 3") is None
    assert parse(b"P5\n4 4\n255\n" + px.tobytes()[:-1]) is None


# --- BMP ------------------------------------------------------------------------------------


def _bmp(pixels: np.ndarray, bpp: int, top_down: bool, pad_byte: int = 0) -> bytes:
    h, w, _ = pixels.shape
    stride = (w * bpp + 31) // 32 * 4
    rows = pixels[..., [2, 1, 0, 3][: bpp // 8]].reshape(h, -1)
    body = b"".join(
        r.tobytes() + bytes([pad_byte]) * (stride - w * bpp // 8)
        for r in (rows if top_down else rows[::-1])
    )
    info = struct.pack(
        "<IiiHHIIiiII", 40, w, -h if top_down else h, 1, bpp, 0, len(body), 2835, 2835, 0, 0
    )
    return b"BM" + struct.pack("<IHHI", 54 + len(body), 0, 0, 54) + info + body


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("top_down", [False, True])
def test_bmp_roundtrip(h: int, w: int, top_down: bool) -> None:
    rgb = _image(h, w, 3)
    _roundtrip(_bmp(rgb, 24, top_down), "bmp", rgb)
    _roundtrip(_bmp(rgb, 24, top_down, pad_byte=7) + b"trailer", "bmp", rgb)
    rgba = _image(h, w, 4)
    rgba[0, 0, 3] = 1  # the fourth byte varies (unless 1x1): kept as alpha
    _roundtrip(_bmp(rgba, 32, top_down), "bmp", rgba if h * w > 1 else rgba[..., :3].copy())
    rgba[..., 3] = 0  # constant fourth byte: RGB pixels
    _roundtrip(_bmp(rgba, 32, top_down), "bmp", rgba[..., :3].copy())


def test_bmp_from_pillow() -> None:
    rgb = _image(37, 21, 3)
    _roundtrip(_pil_bytes(Image.fromarray(rgb), "BMP"), "bmp", rgb)


# --- TIFF -----------------------------------------------------------------------------------


def _tiff(pixels: np.ndarray, order: str, tile: tuple[int, int] | None, rows: int = 3) -> bytes:
    """Minimal uncompressed TIFF: pixel chunks (each followed by a pad byte), IFD, tag data."""
    h, w, c = pixels.shape
    chunks = []
    if tile:
        th, tw = tile
        for y in range(0, h, th):
            for x in range(0, w, tw):
                t = np.full((th, tw, c), 0xAB, np.uint8)
                part = pixels[y : y + th, x : x + tw]
                t[: part.shape[0], : part.shape[1]] = part
                chunks.append(t.tobytes())
    else:
        chunks = [pixels[y : y + rows].tobytes() for y in range(0, h, rows)]
    offsets = list(np.cumsum([8] + [len(ch) + 1 for ch in chunks[:-1]]))
    body = b"".join(ch + b"\0" for ch in chunks)
    entries = [(256, 4, [w]), (257, 4, [h]), (258, 3, [8] * c), (259, 3, [1])]
    entries += [(262, 3, [2 if c >= 3 else 1]), (277, 3, [c]), (284, 3, [1])]
    if tile:
        entries += [(322, 4, [tile[1]]), (323, 4, [tile[0]])]
        entries += [(324, 4, offsets), (325, 4, [len(ch) for ch in chunks])]
    else:
        entries += [(273, 4, offsets), (278, 4, [rows]), (279, 4, [len(ch) for ch in chunks])]
        entries += [(305, 2, list(b"abc\0"))]
    ifd_pos = 8 + len(body)
    extra_pos = ifd_pos + 2 + 12 * len(entries) + 4
    ifd, extra = struct.pack(f"{order}H", len(entries)), b""
    for tag, typ, values in entries:
        code = {2: "B", 3: "H", 4: "I"}[typ]
        data = struct.pack(f"{order}{len(values)}{code}", *values)
        if len(data) > 4:
            data, extra = struct.pack(f"{order}I", extra_pos + len(extra)), extra + data
        ifd += struct.pack(f"{order}HHI", tag, typ, len(values)) + data.ljust(4, b"\0")
    magic = b"II*\0" if order == "<" else b"MM\0*"
    return magic + struct.pack(f"{order}I", ifd_pos) + body + ifd + b"\0" * 4 + extra


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("c", [1, 2, 3, 4])
@pytest.mark.parametrize("order", ["<", ">"])
def test_tiff_roundtrip_strips(h: int, w: int, c: int, order: str) -> None:
    px = _image(h, w, c)
    _roundtrip(_tiff(px, order, None), "tiff", px)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("c", [1, 3, 4])
def test_tiff_roundtrip_tiles(order: str, c: int) -> None:
    for h, w in [(1, 1), (67, 131), (16, 32)]:
        px = _image(h, w, c)
        _roundtrip(_tiff(px, order, (16, 16)), "tiff", px)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_tiff_from_pillow_and_imagecodecs(mode: str) -> None:
    c = len(mode)
    px = _image(45, 33, c)
    img = Image.fromarray(px[..., 0] if c == 1 else px, mode)
    _roundtrip(_pil_bytes(img, "TIFF"), "tiff", px)
    ic = pytest.importorskip("imagecodecs")
    _roundtrip(ic.tiff_encode(px if c > 1 else px[..., 0]), "tiff", px)


def test_tiff_not_handled() -> None:
    px = _image(9, 9, 3)
    img = Image.fromarray(px)
    assert parse(_pil_bytes(img, "TIFF", compression="jpeg")) is None
    gray16 = _image(9, 9, 1, np.uint16)[..., 0] * 300
    assert parse(_pil_bytes(Image.fromarray(gray16), "TIFF")) is None


# --- PNG ------------------------------------------------------------------------------------


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    return out


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(
        struct.pack(">I", len(p)) + k + p + struct.pack(">I", zlib.crc32(k + p)) for k, p in chunks
    )
    return b"\x89PNG\r\n\x1a\n" + body


def _pil_png(px: np.ndarray, mode: str | None = None, **kw: object) -> bytes:
    arr = px[..., 0] if px.shape[2] == 1 else px
    return _pil_bytes(Image.fromarray(arr, mode), "PNG", **kw)


@pytest.mark.parametrize(("h", "w"), SIZES)
@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_png_pillow_levels(h: int, w: int, level: int) -> None:
    for c in (1, 2, 3, 4):
        px = _image(h, w, c)
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
        _roundtrip(_pil_png(px, mode, compress_level=level), "png", px)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_png_palette_and_low_bit_depths(bits: int) -> None:
    for h, w in [(1, 1), (5, 3), (67, 131)]:
        idx = _image(h, w, 1, top=1 << bits)
        img = Image.fromarray(idx[..., 0], "P")
        img.putpalette([i % 256 for i in range(3 << bits)])
        data = _pil_bytes(img, "PNG", bits=bits, transparency=0)
        if bits == 8:  # distinct colours: the pixels are RGBA (tRNS), not indices
            colours = np.arange(3 << bits).reshape(-1, 3) % 256
            alpha = np.full((1 << bits, 1), 255)
            alpha[0] = 0
            want = np.concatenate([colours, alpha], axis=1).astype(np.uint8)[idx[..., 0]]
        else:
            want = idx
        got = _roundtrip(data, "png", want)
        assert got.pixels.dtype == np.uint8
    gray1 = (_image(67, 131, 1) & 1).astype(bool)
    got = _roundtrip(_pil_bytes(Image.fromarray(gray1[..., 0]), "PNG"), "png")
    np.testing.assert_array_equal(got.pixels.astype(bool), gray1)


def test_png_16_bit_gray() -> None:
    px = _image(29, 31, 1, np.uint16, top=65536) * 251
    got = _roundtrip(_pil_png(px), "png", px)
    assert got.pixels.dtype == np.uint16


@pytest.mark.parametrize("c", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_imagecodecs(c: int, dtype: type) -> None:
    ic = pytest.importorskip("imagecodecs")
    for h, w in [(1, 1), (67, 131)]:
        px = _image(h, w, c, dtype, top=256 if dtype == np.uint8 else 65536)
        for level in (None, 1, 9):
            _roundtrip(ic.png_encode(px if c > 1 else px[..., 0], level=level), "png", px)


def test_png_chunks_idat_split_and_trailing_bytes() -> None:
    px = _image(67, 131, 3)
    chunks = _chunks(_pil_png(px, compress_level=9))
    idat = b"".join(p for k, p in chunks if k == b"IDAT")
    split = [idat[i : i + 1000] for i in range(0, len(idat), 1000)] + [b""]
    text = (b"tEXt", b"Comment\0made by a test")
    new = [chunks[0], text, *[(b"IDAT", s) for s in split], text, (b"IEND", b"")]
    _roundtrip(_png(new) + b"\0trailing garbage", "png", px)
    uneven = [chunks[0], (b"IDAT", idat[:5]), (b"IDAT", idat[5:77]), (b"IDAT", idat[77:])]
    _roundtrip(_png([*uneven, (b"IEND", b"")]), "png", px)


def _stored_zlib(data: bytes, block: int, pad_bits: int = 0) -> bytes:
    out = [b"\x78\x01"]
    for i in range(0, len(data), block):
        part = data[i : i + block]
        final = i + block >= len(data)
        out.append(struct.pack("<BHH", final | pad_bits << 3, len(part), len(part) ^ 0xFFFF) + part)
    return b"".join([*out, struct.pack(">I", zlib.adler32(data))])


def _with_idat(png: bytes, stream: bytes) -> bytes:
    chunks = [(k, p) for k, p in _chunks(png) if k != b"IDAT"]
    return _png([chunks[0], (b"gAMA", b"\0\0\xb1\x8f"), (b"IDAT", stream), *chunks[1:]])


def test_png_stored_blocks_exact() -> None:
    px = _image(30, 41, 3)
    raw = zlib.decompress(b"".join(p for k, p in _chunks(_pil_png(px)) if k == b"IDAT"))
    for block in (1000, 65535, 7):
        _roundtrip(_with_idat(_pil_png(px), _stored_zlib(raw, block)), "png", px)


def _foreign_png(px: np.ndarray) -> bytes:
    """A PNG whose deflate stream zlib cannot produce (stored blocks with non-zero pad bits)."""
    raw = zlib.decompress(b"".join(p for k, p in _chunks(_pil_png(px)) if k == b"IDAT"))
    return _with_idat(_pil_png(px), _stored_zlib(raw, 500, pad_bits=5))


def _check_pixel_exact(data: bytes, px: np.ndarray) -> None:
    assert parse(data) is None
    got = parse(data, allow_pixel_exact=True)
    assert got is not None and not got.exact and got.fmt == "png"
    np.testing.assert_array_equal(got.pixels, px)
    out = rebuild("png", got.pixels, got.side)
    assert out != data
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(out))), px.squeeze())
    assert [k for k, _ in _chunks(out)] == [*[k for k, _ in _chunks(data)][:2], b"IDAT", b"IEND"]


def test_png_allow_pixel_exact() -> None:
    px = _image(23, 19, 3)
    _check_pixel_exact(_foreign_png(px), px)


def test_png_allow_pixel_exact_other_deflaters() -> None:
    ic = pytest.importorskip("imagecodecs")
    px = _image(67, 131, 4)
    raw = zlib.decompress(b"".join(p for k, p in _chunks(_pil_png(px)) if k == b"IDAT"))
    for stream in (ic.zopfli_encode(raw), ic.deflate_encode(raw, level=12)):
        if zlib.decompress(stream) != raw:  # not a zlib-wrapped stream in this version
            continue
        data = _with_idat(_pil_png(px), stream)
        if parse(data) is None:
            _check_pixel_exact(data, px)


def test_png_not_handled() -> None:
    px = _image(16, 16, 3)
    interlaced = _pil_png(px, optimize=False, interlace=1)
    if _chunks(interlaced)[0][1][12]:  # Pillow honoured interlace
        assert parse(interlaced) is None and parse(interlaced, allow_pixel_exact=True) is None
    broken = bytearray(_pil_png(px))
    broken[-20] ^= 0xFF  # IDAT CRC / data damaged
    got = parse(bytes(broken))
    assert got is None or rebuild("png", got.pixels, got.side) == bytes(broken)


# --- hostile inputs and corrupt side info ---------------------------------------------------


def _samples() -> dict[str, bytes]:
    px = _image(5, 7, 3)
    pal = Image.fromarray(_image(5, 7, 1, top=16)[..., 0], "P")
    pal.putpalette(list(range(48)))
    return {
        "png": _pil_png(px),
        "png-pal4": _pil_bytes(pal, "PNG", bits=4),
        "png-foreign": _foreign_png(px),
        "pnm": _pnm(px, b"P6 #c\n7 5 255\n"),
        "bmp": _bmp(px, 24, False),
        "tiff-le": _tiff(px, "<", None, rows=2),
        "tiff-be": _tiff(px, ">", (16, 16)),
    }


def _safe_parse(data: bytes) -> None:
    for allow in (False, True):
        got = parse(data, allow_pixel_exact=allow)
        if got is not None and got.exact:
            assert rebuild(got.fmt, got.pixels, got.side) == data


@pytest.mark.parametrize("name", list(_samples()))
def test_truncated_everywhere(name: str) -> None:
    data = _samples()[name]
    for n in range(len(data)):
        _safe_parse(data[:n])


@pytest.mark.parametrize("name", list(_samples()))
def test_corrupted_bytes(name: str) -> None:
    data = _samples()[name]
    rng = np.random.default_rng(7)
    for _ in range(300):
        bad = bytearray(data)
        for pos in rng.integers(0, len(data), rng.integers(1, 4)):
            bad[pos] = int(rng.integers(0, 256))
        _safe_parse(bytes(bad))


def test_hostile_dimensions() -> None:
    ihdr = struct.pack(">IIBBBBB", 1 << 30, 1 << 30, 8, 2, 0, 0, 0)
    tiny = zlib.compress(b"\0" * 100)
    assert parse(_png([(b"IHDR", ihdr), (b"IDAT", tiny), (b"IEND", b"")])) is None
    assert parse(b"P6\n100000 100000\n255\n" + b"\0" * 100) is None
    huge = _bmp(_image(2, 2, 3), 24, False)
    huge = huge[:18] + struct.pack("<ii", 1 << 20, 1 << 20) + huge[26:]
    assert parse(huge) is None


@pytest.mark.parametrize("name", list(_samples()))
def test_corrupt_side_raises_format_error(name: str) -> None:
    got = parse(_samples()[name], allow_pixel_exact=True)
    assert got is not None
    rng = np.random.default_rng(3)
    cases = [got.side[:n] for n in range(len(got.side))]
    for _ in range(300):
        bad = bytearray(got.side)
        bad[int(rng.integers(0, len(bad)))] = int(rng.integers(0, 256))
        cases.append(bytes(bad))
    for side in cases:
        with contextlib.suppress(FormatError):
            rebuild(got.fmt, got.pixels, side)
    with pytest.raises(FormatError):
        rebuild(
            got.fmt, got.pixels[:, :-1] if got.pixels.shape[1] > 1 else got.pixels[:0], got.side
        )
    with pytest.raises(FormatError):
        rebuild("gif", got.pixels, got.side)


def test_sniff() -> None:
    assert sniff(b"\x89PNG\r\n\x1a\n") == "png"
    assert sniff(b"P6\n") == "pnm" and sniff(b"P5 ") == "pnm" and sniff(b"P3\n") is None
    assert sniff(b"II*\0") == "tiff" and sniff(b"MM\0*") == "tiff"
    assert sniff(_bmp(_image(1, 1, 3), 24, False)[:32]) == "bmp"
    assert sniff(b"BMW is a car brand, not a bitmap") is None
    assert sniff(b"hello") is None and sniff(b"") is None
    assert parse(b"") is None and parse(b"not an image at all") is None


@pytest.mark.data
@pytest.mark.skipif(not KODAK.is_dir(), reason="kodak data absent")
def test_kodak_pngs() -> None:
    for name in ("kodim01.png", "kodim02.png"):
        data = (KODAK / name).read_bytes()
        ref = np.asarray(Image.open(KODAK / name))
        got = parse(data, allow_pixel_exact=True)
        assert got is not None
        np.testing.assert_array_equal(got.pixels, ref)
        out = rebuild("png", got.pixels, got.side)
        assert (
            out == data
            if got.exact
            else np.array_equal(np.asarray(Image.open(io.BytesIO(out))), ref)
        )
        if got.exact:
            assert parse(data) is not None
