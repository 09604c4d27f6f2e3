"""Side info is bounded by the image shape (iodfz.limits) and parsed without a Python object per
record: hostile side info is refused fast and with little memory (issue 10, item 1)."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from iodfz import limits
from iodfz.formats import FormatError, max_side_bytes, parse, rebuild
from iodfz.formats._side import Reader, Writer


def _ppm(h: int, w: int) -> tuple[np.ndarray, bytes]:
    px = (np.arange(h * w * 3) % 251).astype(np.uint8).reshape(h, w, 3)
    return px, b"P6\n%d %d\n255\n" % (w, h) + px.tobytes()


def test_max_side_bytes_follows_the_shape() -> None:
    assert max_side_bytes("png", 64, 64, 3) == limits.MAX_SIDE_BASE + 64 * 64 * 3
    assert max_side_bytes("tiff", 1, 1, 1) < 2 * limits.MAX_SIDE_BASE


def test_side_beyond_the_bound_is_refused_before_parsing() -> None:
    px, data = _ppm(64, 64)
    got = parse(data)
    assert got is not None
    bomb = got.side + bytes((1 << 28) - len(got.side))  # the format's own cap on side data
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(FormatError):
        rebuild("pnm", px, bomb)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20 and time.perf_counter() - start < 1


@pytest.mark.parametrize("fill", [0, 0x01, 0x7F])
def test_block_records_are_bounded_by_the_shape(fill: int) -> None:
    """Millions of 7-byte block records within the size bound: the count is bounded by the
    shape, so only the allowed few are read, as arrays."""
    px, _ = _ppm(64, 64)
    wr = Writer()
    wr.u8(1)
    for n in (64, 64, 3):
        wr.uint(n)
    wr.uint(80)  # the most blocks a 64 × 64 raster may have
    side = wr.getvalue() + bytes([fill]) * (limits.MAX_SIDE_BASE - 16)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(FormatError):
        rebuild("pnm", px, side)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 << 20 and time.perf_counter() - start < 2
    wr = Writer()
    wr.u8(1)
    for n in (64, 64, 3, 81):  # one more than the shape allows
        wr.uint(n)
    with pytest.raises(FormatError):
        rebuild("pnm", px, wr.getvalue() + bytes(81 * 7 + 1))


def test_vector_varints_match_the_scalar_reader() -> None:
    values = [0, 1, 127, 128, 300, 1 << 20, (1 << 62) + 5, 7]
    wr = Writer()
    for v in values:
        wr.uint(v)
    got = Reader(wr.getvalue()).uints(len(values))
    assert got.tolist() == values
    with pytest.raises(FormatError):
        Reader(b"\x80" * 12).uints(1)
    with pytest.raises(FormatError):
        Reader(b"\x01\x02").uints(3)


def test_many_strips_parse_and_rebuild() -> None:
    """A one-row-per-strip TIFF (the most blocks allowed) round-trips."""
    from test_formats import _tiff  # the uncompressed writer of the main format tests

    px = (np.arange(300 * 40 * 3) % 256).astype(np.uint8).reshape(300, 40, 3)
    data = _tiff(px, "<", None, rows=1)
    got = parse(data)
    assert got is not None and got.exact
    assert rebuild("tiff", got.pixels, got.side) == data
