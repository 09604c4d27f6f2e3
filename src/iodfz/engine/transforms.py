"""Fixed, exactly invertible integer transforms at the flow's input (docs/INTEGER.md).

Both are lifting steps with floor division by 2, written once over whatever array type the
caller passes (numpy integer arrays in the engine, integer-valued torch tensors in training):
``//`` floors in both. They hand the coupling networks decorrelated inputs at no learned cost.

- YCoCg-R (Malvar & Sullivan): RGB → (Y, Co, Cg); Y in [0, 255], Co and Cg in [-255, 255].
- The S-transform (integer Haar) on a 2×2 block (a b / c d): rows, then columns, giving
  (LL, HL, LH, HH) — the rounded block mean and three differences.
- The LeGall 5/3 wavelet (the reversible one of JPEG 2000) over a whole tile: rows, then
  columns, with symmetric extension at the tile's edges (so tiles stay independent). Its high
  bands predict each odd sample from both even neighbours, not from one as Haar does: on smooth
  content they are second differences, smaller than Haar's first differences.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

A = TypeVar("A", bound=Any)

COLOUR_TRANSFORMS = ("none", "ycocg-r")
WAVELETS = ("none", "haar", "legall53")


def ycocg_r(r: A, g: A, b: A) -> tuple[A, A, A]:
    co = r - b
    t = b + co // 2
    cg = g - t
    return t + cg // 2, co, cg


def ycocg_r_inverse(y: A, co: A, cg: A) -> tuple[A, A, A]:
    t = y - cg // 2
    g = cg + t
    b = t - co // 2
    return b + co, g, b


def _lift(x0: A, x1: A) -> tuple[A, A]:
    """S-transform of a pair: (floor mean, difference)."""
    d = x0 - x1
    return x1 + d // 2, d


def _unlift(s: A, d: A) -> tuple[A, A]:
    x1 = s - d // 2
    return x1 + d, x1


def haar(a: A, b: A, c: A, d: A) -> tuple[A, A, A, A]:
    """2×2 block (a b / c d) → (LL, HL, LH, HH)."""
    lo_top, hi_top = _lift(a, b)
    lo_bottom, hi_bottom = _lift(c, d)
    ll, lh = _lift(lo_top, lo_bottom)
    hl, hh = _lift(hi_top, hi_bottom)
    return ll, hl, lh, hh


def haar_inverse(ll: A, hl: A, lh: A, hh: A) -> tuple[A, A, A, A]:
    lo_top, lo_bottom = _unlift(ll, lh)
    hi_top, hi_bottom = _unlift(hl, hh)
    a, b = _unlift(lo_top, hi_top)
    c, d = _unlift(lo_bottom, hi_bottom)
    return a, b, c, d


def _lift53(x: A) -> tuple[A, A]:
    """5/3 lifting along the last axis (even length): (low, high), each half as long."""
    n = x.shape[-1] // 2
    even, odd = x[..., 0::2], x[..., 1::2]
    high = odd - (even + even[..., _next(n)]) // 2
    return even + (high[..., _previous(n)] + high + 2) // 4, high


def _unlift53(low: Any, high: Any) -> Any:
    """Inverse of :func:`_lift53` (numpy arrays)."""
    n = low.shape[-1]
    even = low - (high[..., _previous(n)] + high + 2) // 4
    odd = high + (even + even[..., _next(n)]) // 2
    return np.stack([even, odd], axis=-1).reshape(*low.shape[:-1], 2 * n)


def _next(n: int) -> list[int]:
    """Index of each sample's right neighbour, mirrored at the end (symmetric extension)."""
    return [*range(1, n), n - 1]


def _previous(n: int) -> list[int]:
    """Index of each sample's left neighbour, mirrored at the start."""
    return [0, *range(n - 1)]


def legall53(x: A) -> tuple[A, A, A, A]:
    """(..., H, W), H and W even → (LL, HL, LH, HH), each (..., H/2, W/2)."""
    low, high = _lift53(x)
    ll, lh = (t.swapaxes(-1, -2) for t in _lift53(low.swapaxes(-1, -2)))
    hl, hh = (t.swapaxes(-1, -2) for t in _lift53(high.swapaxes(-1, -2)))
    return ll, hl, lh, hh


def legall53_inverse(ll: Any, hl: Any, lh: Any, hh: Any) -> Any:
    """Inverse of :func:`legall53` (numpy arrays)."""
    low = _unlift53(ll.swapaxes(-1, -2), lh.swapaxes(-1, -2)).swapaxes(-1, -2)
    high = _unlift53(hl.swapaxes(-1, -2), hh.swapaxes(-1, -2)).swapaxes(-1, -2)
    return _unlift53(low, high)
