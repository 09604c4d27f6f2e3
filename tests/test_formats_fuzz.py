"""Fuzzing the format readers (issue 10): damaged PNG, TIFF, BMP and PNM files, and damaged side
info, give a clean answer — None from ``parse``, FormatError from ``rebuild`` — never another
exception, and an exact parse always rebuilds to the input."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_formats_png import _palette_png, _png
from test_formats_tiff import _tiff

from iodfz.formats import FormatError, parse, rebuild

_FUZZ = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def _px(h: int, w: int, c: int) -> np.ndarray:
    return (np.add.outer(np.arange(h), np.arange(w))[..., None] * 7 + np.arange(c) * 50) % 256


def _pil(px: np.ndarray, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    arr = px.astype(np.uint8)
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(out, fmt, **kw)
    return out.getvalue()


def _samples() -> dict[str, bytes]:
    px = _px(12, 10, 3).astype(np.uint8)
    colours = (np.arange(48).reshape(16, 3) * 5).astype(np.uint8)
    return {
        "png": _pil(px, "PNG"),
        "png-interlaced": _png(px, 2, 8, interlace=True),
        "png-palette": _palette_png(px[..., :1] % 16, colours, True),
        "tiff-lzw": _tiff(px, 5, predictor=2) if _has_imagecodecs() else _pil(px, "TIFF"),
        "tiff-deflate-tiles": _tiff(px, 8, tile=(16, 16), planar=True),
        "tiff-packbits": _tiff(px, 32773, order=">"),
        "tiff-raw": _pil(px, "TIFF"),
        "bmp": _pil(px, "BMP"),
        "pnm": _pil(px, "PPM"),
    }


def _has_imagecodecs() -> bool:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


SAMPLES = _samples()


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int, insert: bytes) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        buf[pos % len(buf)] = value
    at = cut % (len(buf) + 1)
    return bytes(buf[:at] + insert + buf[at:]) if insert else bytes(buf[: max(8, at)])


_EDITS = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6)


def _check_parse(data: bytes) -> None:
    got = parse(data, allow_pixel_exact=True)
    if got is not None and got.exact:
        assert rebuild(got.fmt, got.pixels, got.side) == data
    elif got is not None:
        out = rebuild(got.fmt, got.pixels, got.side)
        again = parse(out)
        assert again is not None and np.array_equal(again.pixels, got.pixels)


@pytest.mark.parametrize("name", sorted(SAMPLES))
@_FUZZ
@given(edits=_EDITS, cut=st.integers(0, 1 << 16), insert=st.binary(max_size=8))
def test_damaged_files_parse_cleanly(name: str, edits, cut: int, insert: bytes) -> None:
    _check_parse(_mutate(SAMPLES[name], edits, cut, insert))


@_FUZZ
@given(data=st.binary(min_size=0, max_size=200), magic=st.sampled_from(list(SAMPLES)))
def test_random_bytes_after_a_magic(data: bytes, magic: str) -> None:
    _check_parse(SAMPLES[magic][:16] + data)


@pytest.mark.parametrize("name", sorted(SAMPLES))
@_FUZZ
@given(edits=_EDITS, cut=st.integers(0, 1 << 16), insert=st.binary(max_size=8))
def test_damaged_side_info_is_a_format_error(name: str, edits, cut: int, insert: bytes) -> None:
    got = parse(SAMPLES[name])
    assert got is not None
    side = _mutate(got.side, edits, cut, insert) if len(got.side) > 8 else got.side[: cut % 8]
    with contextlib.suppress(FormatError):
        rebuild(got.fmt, got.pixels, side)


def test_every_sample_is_handled() -> None:
    for name, data in SAMPLES.items():
        got = parse(data)
        assert got is not None and got.exact, name
