"""Fixed, exactly invertible integer transforms at the flow's input (docs/INTEGER.md).

Both are lifting steps with floor division by 2, written once over whatever array type the
caller passes (numpy integer arrays in the engine, integer-valued torch tensors in training):
``//`` floors in both. They hand the coupling networks decorrelated inputs at no learned cost.

- YCoCg-R (Malvar & Sullivan): RGB → (Y, Co, Cg); Y in [0, 255], Co and Cg in [-255, 255].
- The S-transform (integer Haar) on a 2×2 block (a b / c d): rows, then columns, giving
  (LL, HL, LH, HH) — the rounded block mean and three differences.
"""

from __future__ import annotations

from typing import Any, TypeVar

A = TypeVar("A", bound=Any)

COLOUR_TRANSFORMS = ("none", "ycocg-r")
WAVELETS = ("none", "haar")


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
