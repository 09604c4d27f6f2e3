"""Integer frequency tables for the rANS coder (see docs/CODER.md and docs/FORMAT.md §2).

Every table is a list of integer frequencies over an integer support ``[lo, lo + nsym)`` plus
one *escape* symbol (index ``nsym``) whose frequency covers the mass outside the support. Every
frequency is >= 1 and every table sums to exactly ``2**precision``.

Cross-machine determinism: the probabilities are computed with float64 ``+ - * /``, ``floor``,
``ldexp`` and comparisons only — IEEE-754 operations that are correctly rounded (or exact) on
every platform numpy supports, applied one ufunc at a time so no compiler can fuse them. The
exponential is our own Cody-Waite range reduction + Horner polynomial (``det_exp``), not libm's
or numpy's SIMD ``exp`` (whose last bit differs between CPUs). The quantizer then works on those
bit-identical floats with a deterministic (stable-sort) procedure. So the integer tables are a
pure function of the integer parameters; ``tables_hash`` pins them and the model file stores the
hash so that a mismatch is an error, never a silently different stream.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from iodfz.coder.errors import CoderError

IntArray = npt.NDArray[np.int64]

#: Frequency precision in bits: every table sums to ``2**PRECISION``.
PRECISION = 16
#: Number of scales in the logistic grid; the flow outputs a scale index in ``[0, NUM_SCALES)``.
NUM_SCALES = 64
#: Scale grid: ``s_j = 2 ** ((j - SCALE_INDEX_OF_ONE) / SCALES_PER_OCTAVE)`` (0.099 .. 143.7).
SCALES_PER_OCTAVE = 6
SCALE_INDEX_OF_ONE = 20
#: Mean phases: ``mu_fp`` is the predicted mean in units of ``1 / NUM_PHASES``.
PHASE_BITS = 3
NUM_PHASES = 1 << PHASE_BITS
#: Support radius of the table for scale s: ``R = min(MAX_RADIUS, floor(TAIL_WIDTH * s) + 2)``;
#: the support is ``[-R, R + 1]`` around ``floor(mean)``, everything else is an escape.
TAIL_WIDTH = 9
MAX_RADIUS = 800
#: Mixture tables: means in units of ``2**-MIX_MEAN_BITS``, logit weights in ``2**-MIX_LOGIT_BITS``.
MIX_MEAN_BITS = 8
MIX_LOGIT_BITS = 8

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that n * _LN2_HI is exact for |n| < 2**20
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
# 1/k! for k = 0..13 written as literals (float64 decimal -> binary parsing is exact-rounded).
_EXP_COEFFS = (
    1.0,
    1.0,
    0.5,
    0.16666666666666666,
    0.041666666666666664,
    0.008333333333333333,
    0.001388888888888889,
    0.0001984126984126984,
    2.48015873015873e-05,
    2.7557319223985893e-06,
    2.755731922398589e-07,
    2.505210838544172e-08,
    2.08767569878681e-09,
    1.6059043836821613e-10,
)


@dataclass(frozen=True, eq=False)
class Tables:
    """A set of T integer tables, flattened for vectorized coding.

    ``freq``/``start`` hold the tables back to back (table t, symbol i at ``base[t] + i``,
    ``i == nsym[t]`` is the escape); ``lut[t * 2**precision + cf]`` is the symbol index whose
    interval ``[start, start + freq)`` contains ``cf``. Only decoding reads the lookup (2 bytes
    per unit of frequency: 64 MiB for the logistic set), so it is built on first use.
    """

    precision: int
    lo: IntArray  # [T] lowest in-support value
    nsym: IntArray  # [T] number of in-support symbols (escape has index nsym)
    base: IntArray  # [T] offset of each table in the flat arrays
    freq: IntArray  # [F] frequencies, >= 1, each table sums to 2**precision
    start: IntArray  # [F] cumulative frequency before each symbol

    @property
    def count(self) -> int:
        return len(self.lo)

    @cached_property
    def freq_float(self) -> npt.NDArray[np.float64]:
        """``freq`` as float64 (what encoding computes with), converted once per table set."""
        return self.freq.astype(np.float64)

    @cached_property
    def start_float(self) -> npt.NDArray[np.float64]:
        return self.start.astype(np.float64)

    @cached_property
    def lut(self) -> npt.NDArray[np.uint16]:
        """[T * 2**precision] cf -> symbol index within its table."""
        sym = np.arange(len(self.freq), dtype=np.int64) - np.repeat(self.base, self.nsym + 1)
        return np.repeat(sym.astype(np.uint16), self.freq)


# ----------------------------------------------------------------------------- float helpers
def det_exp(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """exp(x) for x <= 0, bit-identical on every IEEE-754 machine (rel. error < 1e-15)."""
    x = np.maximum(np.asarray(x, dtype=np.float64), -700.0)
    n = np.floor(x * _INV_LN2 + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    acc = np.full_like(r, _EXP_COEFFS[-1])
    for c in _EXP_COEFFS[-2::-1]:
        acc = acc * r + c
    return np.ldexp(acc, n.astype(np.int64))


def scale_grid() -> npt.NDArray[np.float64]:
    """The logistic scales ``s_j = 2 ** ((j - 20) / 6)`` for j in [0, NUM_SCALES)."""
    j = np.arange(NUM_SCALES, dtype=np.float64)
    return _det_exp2((j - SCALE_INDEX_OF_ONE) / SCALES_PER_OCTAVE)


def _det_exp2(y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    whole = np.floor(y)
    return np.ldexp(det_exp((y - whole - 1.0) * (_LN2_HI + _LN2_LO)) * 2.0, whole.astype(np.int64))


def support_radius(scales: npt.NDArray[np.float64]) -> IntArray:
    """Radius R of the support ``[-R, R + 1]`` for each scale."""
    r = np.floor(scales * TAIL_WIDTH) + 2.0
    return np.minimum(r, MAX_RADIUS).astype(np.int64)


def _tail(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """sigmoid(-|x|), computed without cancellation."""
    e = det_exp(-np.abs(x))
    return e / (1.0 + e)


def logistic_pmf(lo: int, hi: int, mean: float, scale: float) -> npt.NDArray[np.float64]:
    """Discretized logistic over bins [k - 0.5, k + 0.5] for k in [lo, hi], then the escape mass.

    Requires ``lo - 0.5 < mean < hi + 0.5``. Deterministic (see module docstring).
    """
    edges = (np.arange(lo, hi + 2, dtype=np.float64) - 0.5 - mean) / scale
    t = _tail(edges)
    a, b, ta, tb = edges[:-1], edges[1:], t[:-1], t[1:]
    pmf = np.where(a >= 0.0, ta - tb, np.where(b <= 0.0, tb - ta, (1.0 - ta) - tb))
    return np.concatenate([pmf, [t[0] + t[-1]]])


# ----------------------------------------------------------------------------- quantization
def _int_sum(f: npt.NDArray[np.float64]) -> int:
    """Exact sum of integer-valued frequencies (integer arithmetic, no rounding)."""
    return int(f.astype(np.int64).sum())


def quantize_pmf(p: npt.NDArray[np.float64], precision: int) -> IntArray:
    """Integer frequencies >= 1 summing to exactly 2**precision, close to ``p`` in KL.

    Start from floor(p * M) (at least 1), then repeatedly give the missing units to the
    symbols with the largest p/f (the marginal gain p*log((f+1)/f) ~ p/f), or take excess units
    from the symbols with f >= 2 and the smallest p/(f-1). Ties break by index (stable sort).
    """
    total = 1 << precision
    n = len(p)
    if not 1 <= n <= total:
        raise CoderError(f"a table needs 1..{total} symbols, got {n}")
    p = np.asarray(p, dtype=np.float64)
    p = p / math.fsum(p.tolist())
    f = np.maximum(np.floor(p * total), 1.0)
    for _ in range(64):
        r = total - _int_sum(f)
        if r == 0:
            return f.astype(np.int64)
        if r > 0:
            pick = np.argsort(-(p / f), kind="stable")[: min(r, n)]
            f[pick] += 1.0
        else:
            cand = f >= 2.0
            k = int(np.count_nonzero(cand))
            if -r > k:  # far too many units: shrink the reducible symbols proportionally
                have = float(_int_sum(f[cand]))
                f = np.where(cand, np.maximum(np.floor(f * ((have + r) / have)), 1.0), f)
                continue
            cost = np.where(cand, p / np.maximum(f - 1.0, 1.0), np.inf)
            pick = np.argsort(cost, kind="stable")[:-r]
            f[pick] -= 1.0
    raise CoderError("table quantization did not converge")  # pragma: no cover


def tables_from_freqs(los: list[int], freqs: list[IntArray], precision: int) -> Tables:
    """Assemble a Tables object from per-table (lo, frequencies incl. escape as last)."""
    nsym = np.array([len(f) - 1 for f in freqs], dtype=np.int64)
    freq = np.concatenate(freqs).astype(np.int64) if freqs else np.zeros(0, np.int64)
    return tables_from_flat(np.asarray(los, np.int64), nsym, freq, precision)


def tables_from_flat(lo: IntArray, nsym: IntArray, freq: IntArray, precision: int) -> Tables:
    """A Tables object from each table's lo and symbol count (escape excluded) and all the
    frequencies back to back (what ``Tables`` holds), checked like :func:`tables_from_freqs`."""
    total = 1 << precision
    if not 1 <= precision <= 16:
        raise CoderError("precision must be in 1..16 (the decode lookup is uint16 indexed)")
    sizes = np.asarray(nsym, np.int64) + 1
    if len(lo) != len(sizes) or (sizes < 1).any() or int(sizes.sum()) != len(freq):
        raise CoderError("invalid table: frequencies must be >= 1 and sum to 2**precision")
    base = np.cumsum(sizes) - sizes
    freq = np.asarray(freq, np.int64)
    if len(freq) and (int(freq.min()) < 1 or (np.add.reduceat(freq, base) != total).any()):
        raise CoderError("invalid table: frequencies must be >= 1 and sum to 2**precision")
    if (sizes > total).any():
        raise CoderError("invalid table: too many symbols")
    cum = np.cumsum(freq) - freq
    start = cum - np.repeat(cum[base], sizes)
    return Tables(precision, np.asarray(lo, np.int64), sizes - 1, base, freq, start)


def concat_tables(*parts: Tables) -> Tables:
    """One Tables object holding the tables of ``parts`` in order (indices shift accordingly)."""
    if len({t.precision for t in parts}) != 1:
        raise CoderError("cannot concatenate tables of different precision")
    los: list[int] = []
    freqs: list[IntArray] = []
    for t in parts:
        for i in range(t.count):
            los.append(int(t.lo[i]))
            freqs.append(t.freq[t.base[i] : t.base[i] + t.nsym[i] + 1])
    return tables_from_freqs(los, freqs, parts[0].precision)


# ----------------------------------------------------------------------------- builders
def logistic_grid(phase_bits: int = PHASE_BITS) -> tuple[IntArray, IntArray]:
    """(lo, nsym) of every table of :func:`build_logistic_tables`: each scale's support
    (:func:`support_radius`), for each phase. Tables on that grid with frequencies of their
    own need no more of it, so they never build the logistic tables' frequencies."""
    radius = support_radius(scale_grid())
    return np.repeat(-radius, 1 << phase_bits), np.repeat(2 * radius + 2, 1 << phase_bits)


def build_logistic_tables(
    num_scales: int = NUM_SCALES,
    phase_bits: int = PHASE_BITS,
    precision: int = PRECISION,
) -> Tables:
    """The shared logistic tables: table ``j * 2**phase_bits + p`` is scale s_j, mean p / P.

    Value z with fixed-point mean ``mu_fp`` (units 1/P) is coded as ``k = z - (mu_fp >> log2 P)``
    in table ``(scale_index, mu_fp & (P - 1))`` — see :func:`logistic_index`.
    """
    if num_scales != NUM_SCALES:
        raise CoderError("only the default scale grid is supported")
    scales = scale_grid()
    lo, nsym = logistic_grid(phase_bits)
    phases = 1 << phase_bits
    freqs: list[IntArray] = []
    for t in range(len(lo)):  # scale t // phases, mean (t % phases) / phases
        first, last = int(lo[t]), int(lo[t] + nsym[t] - 1)
        pmf = logistic_pmf(first, last, (t % phases) / phases, float(scales[t // phases]))
        freqs.append(quantize_pmf(pmf, precision))
    return tables_from_freqs(lo.tolist(), freqs, precision)


def build_mixture_table(
    logits_fp: npt.ArrayLike,
    means_fp: npt.ArrayLike,
    scale_idx: npt.ArrayLike,
    support: tuple[int, int],
    precision: int = PRECISION,
) -> Tables:
    """One table per row (channel) for a mixture of logistics, from integer parameters.

    ``logits_fp``, ``means_fp``, ``scale_idx``: int arrays of shape [C, K] — mixture logits in
    units of 2**-MIX_LOGIT_BITS, means in units of 2**-MIX_MEAN_BITS, indices into the scale
    grid. ``support = (lo, hi)``: the coded range; other values escape. Deterministic.
    """
    logits = np.atleast_2d(np.asarray(logits_fp, dtype=np.int64))
    means = np.atleast_2d(np.asarray(means_fp, dtype=np.int64))
    sidx = np.atleast_2d(np.asarray(scale_idx, dtype=np.int64))
    lo, hi = int(support[0]), int(support[1])
    if logits.shape != means.shape or logits.shape != sidx.shape or logits.ndim != 2:
        raise CoderError("mixture parameters must share one [C, K] shape")
    if not lo <= hi or hi - lo + 2 > (1 << precision):
        raise CoderError("bad mixture support")
    if np.any((sidx < 0) | (sidx >= NUM_SCALES)):
        raise CoderError("mixture scale index out of range")
    if np.any(np.abs(logits) >= 1 << 40) or np.any(np.abs(means) >= 1 << 40):
        raise CoderError("mixture parameter out of range")
    scales = scale_grid()
    freqs: list[IntArray] = []
    for c in range(logits.shape[0]):
        lg = (logits[c] - logits[c].max()).astype(np.float64) / (1 << MIX_LOGIT_BITS)
        w = det_exp(lg)
        w = w / math.fsum(w.tolist())
        pmf = np.zeros(hi - lo + 2, dtype=np.float64)
        for i in range(logits.shape[1]):
            mean = float(means[c, i]) / (1 << MIX_MEAN_BITS)
            mean = min(max(mean, lo - 0.25), hi + 0.25)
            pmf = pmf + w[i] * logistic_pmf(lo, hi, mean, float(scales[sidx[c, i]]))
        freqs.append(quantize_pmf(pmf, precision))
    return tables_from_freqs([lo] * len(freqs), freqs, precision)


def logistic_index(
    scale_idx: npt.ArrayLike, mu_fp: npt.ArrayLike, phase_bits: int = PHASE_BITS
) -> tuple[IntArray, IntArray]:
    """(table_index, offset) for the logistic tables from scale indices and fixed-point means."""
    s = np.asarray(scale_idx, dtype=np.int64)
    m = np.asarray(mu_fp, dtype=np.int64)
    return (s << phase_bits) | (m & ((1 << phase_bits) - 1)), m >> phase_bits


def symbol_bits(
    tables: Tables, values: npt.ArrayLike, table_index: npt.ArrayLike, offset: npt.ArrayLike = 0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Ideal code length -log2 p of each value's symbol (an escape counts its escape symbol
    only) and the escape mask: the yardstick the coder's overhead is measured against."""
    t = np.asarray(table_index, dtype=np.int64).ravel()
    v = np.asarray(values, dtype=np.int64).ravel()
    k = (
        v
        - np.broadcast_to(np.asarray(offset, dtype=np.int64), np.shape(values)).ravel()
        - tables.lo[t]
    )
    nsym = tables.nsym[t]
    escape = (k < 0) | (k >= nsym)
    freq = tables.freq[tables.base[t] + np.where(escape, nsym, k)]
    return -np.log2(freq / float(1 << tables.precision)), escape


def tables_hash(tables: Tables) -> str:
    """sha256 (hex) of the integer content of a table set (precision, lo, frequencies)."""
    h = hashlib.sha256()
    h.update(b"iodfz-rans-tables-v1")
    h.update(np.array([tables.precision, tables.count], dtype="<i8").tobytes())
    h.update(tables.lo.astype("<i8").tobytes())
    h.update(tables.nsym.astype("<i8").tobytes())
    h.update(tables.freq.astype("<i4").tobytes())
    return h.hexdigest()


def check_tables(tables: Tables, expected_hash: str) -> Tables:
    """Return ``tables`` if their hash is ``expected_hash``, else raise CoderError."""
    got = tables_hash(tables)
    if got != expected_hash:
        raise CoderError(f"rANS tables hash mismatch: expected {expected_hash}, got {got}")
    return tables


_DEFAULT: list[Tables] = []


def default_tables() -> Tables:
    """The default logistic table set (built once per process, ~0.1 s, 64 MiB decode lookup)."""
    if not _DEFAULT:
        _DEFAULT.append(build_logistic_tables())
    return _DEFAULT[0]
