"""The correction of ``iodf-predictive-4`` and ``-5``: each sample's prediction moved by a
linear function, fitted to the image, of 23 integer features of what the decoder already knows
(its neighbourhood's values and residuals against the prediction), one set of weights per
plane and group of error contexts (version 5: per parity of the position too, for the chroma
planes, where that pays), sent in the parameter part. The rules — features, curve, sum and
bounds — are docs/INTEGER.md "Predictive coders" step 9; the weights' bytes FORMAT.md 3.5.

A photo's samples are not the training photos': a fit to the image itself moves each prediction
where the image's own textures say (about −2 % of Kodak's bits; ``scripts/probe_network.py``
and docs/HISTORY.md "Session 24").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

FEATURES = 23
WEIGHTS = FEATURES + 1  # the constant's weight last
ERROR_GROUPS = 4  # groups of error contexts (predictive.SHIFT_EDGES)
PARITIES = 4  # a sample's (row % 2, column % 2)
GROUPS = 3 * ERROR_GROUPS  # a block without parities: one weight set per plane and error group
#: A block with parities (version 5, FORMAT.md 3.5): Y's 4 sets, then Co's and Cg's for each
#: parity — the chroma of most photos was stored at half resolution and interpolated (JPEG's
#: 4:2:0, Photo CD), so that its samples of one parity follow other rules than their
#: neighbours'.
PARITY_GROUPS = ERROR_GROUPS + 2 * PARITIES * ERROR_GROUPS
#: Every weight set a sample may use, (plane, parity, error group) in that order: what a block
#: unpacks to (:func:`expand`).
TABLE = 3 * PARITIES * ERROR_GROUPS
WEIGHT_BITS = 12  # a correction is (Σ weight · feature + 2^11) >> 12 eighths
CONSTANT = 16  # the constant feature
WEIGHT_LIMIT = (1 << 15) - 1  # |weight| ≤ this: int16


def block_bytes(parity: bool) -> int:
    """Bytes of a block of weights in the parameter part (int16, little-endian)."""
    return 2 * (PARITY_GROUPS if parity else GROUPS) * WEIGHTS


def position_parity(row: IntArray, column: IntArray) -> IntArray:
    """A position's parity q (docs/INTEGER.md "Predictive coders" step 9)."""
    return 2 * (row % 2) + column % 2


def table_row(plane: IntArray | int, parity: IntArray | int, error_group: IntArray) -> IntArray:
    """Where a sample's weights are in the table of :func:`expand` (plane 0: within a plane's
    rows)."""
    return (plane * PARITIES + parity) * ERROR_GROUPS + error_group


def _block_rows(parity: bool) -> IntArray:
    """For each row of the table, the row of a block (with or without parities) it holds."""
    plane, par, group = np.unravel_index(np.arange(TABLE), (3, PARITIES, ERROR_GROUPS))
    if not parity:
        return plane * ERROR_GROUPS + group
    chroma = ERROR_GROUPS + ((plane - 1) * PARITIES + par) * ERROR_GROUPS + group
    return np.where(plane == 0, group, chroma)


def expand(block: IntArray, parity: bool) -> IntArray:
    """(TABLE, WEIGHTS): a block's weight sets, each where the samples that use it look."""
    return block[_block_rows(parity)]


#: Inputs are eighths of a sample: a value's distance from the prediction or 8 × a residual,
#: at most 8 · 1 020 (Co and Cg span −255 … 255).
MAX_INPUT = 8 * 1020
#: ``compress(d) = sign(d) · CURVE[|d|]``: |d| below 32, then 16 steps per octave
#: (``16·e + (|d| >> e)`` with ``e`` such that ``|d| >> e`` is 16 … 31); at most 159.
_a = np.arange(MAX_INPUT + 1)
_e = np.maximum(0, np.frexp(_a)[1] - 5)  # frexp's exponent is the bit length, exactly
CURVE = np.where(_a < 32, _a, 16 * _e + (_a >> _e)).astype(np.int64)
_SIGNED = np.concatenate([-CURVE[:0:-1], CURVE]).astype(np.int16)  # compress(d) at d + MAX_INPUT
del _a, _e
#: Targets beyond ±30 samples (outliers) count as ±30 in the encoder's fit.
FIT_CLIP = 8 * 30


def compress(d: IntArray) -> npt.NDArray[np.int16]:
    """``sign(d) · CURVE[min(|d|, MAX_INPUT)]`` (int16: a narrow lookup is twice as fast)."""
    return _SIGNED.take(d + MAX_INPUT, mode="clip")


VALUES = 7  # N, W, NW, NE, NN, WW, NNE
RESIDUALS = 8  # the plane's at N, W, NW, NE, NN, WW; the previous plane's at N, W


def features(
    values: Sequence[IntArray], pred: IntArray, residuals: Sequence[IntArray]
) -> npt.NDArray[np.int16]:
    """The features of docs/INTEGER.md "Predictive coders" step 9, stacked (2 · len(values) +
    len(residuals), ...), from ``values`` (N, W, NW, NE, NN, WW, NNE after the edge rules),
    ``pred`` (eighths) and ``residuals`` (the plane's at N, W, NW, NE, NN, WW, then the
    previous plane's at N and W — the first 22 features — and, where the caller knows it
    already, the previous plane's at the sample: the 23rd). Each input goes once into the
    curve's lookup index and each feature straight into its row: no stacked copies (~30 %
    less time than stacking them)."""
    count = len(values)
    index = np.empty((count + len(residuals), *pred.shape), np.int64)  # d + MAX_INPUT
    below = pred - MAX_INPUT
    for row, v in zip(index[:count], values, strict=True):
        np.left_shift(v, 3, out=row)
        row -= below
    for row, r in zip(index[count:], residuals, strict=True):
        np.left_shift(r, 3, out=row)
        row += MAX_INPUT
    out = np.empty((count + len(index), *pred.shape), np.int16)
    _SIGNED.take(index[:count], mode="clip", out=out[:count])
    _SIGNED.take(index[count:], mode="clip", out=out[2 * count :])
    near = out[:count].astype(np.int32)
    squares = near * np.abs(near)
    squares >>= 4  # at most 1 580
    out[count : 2 * count] = squares
    return out


def weighted_sum(feats: IntArray, weights: IntArray) -> IntArray:
    """Σ weight · feature over ``feats`` (stacked: the first 22 or all 23) and the constant:
    ``weights`` (..., WEIGHTS) each sample's own (the features' shape after the first axis, plus
    a last axis)."""
    total = np.einsum("f...,...f->...", feats, weights[..., : len(feats)])
    return total + weights[..., FEATURES] * CONSTANT


def plane_sums(feats: np.ndarray, error_group: IntArray, weights: IntArray) -> IntArray:
    """:func:`weighted_sum` of samples of one parity in the 3 planes, for the encoder:
    ``feats`` (all 23, 3, n), ``error_group`` (3, n: 0 … 3 within the plane), ``weights``
    (3, ERROR_GROUPS, WEIGHTS): the parity's rows of the table. Each plane's 4 groups' sums
    are one float64 product, the sample's picked: every term and partial sum is an integer
    below 2^31, so it is the decoder's int64 sum exactly."""
    w = weights.astype(np.float64)
    total = np.empty(error_group.shape, np.int64)
    for k in range(3):
        sums = w[k, :, :FEATURES] @ feats[:, k].astype(np.float64)  # (4 groups, samples)
        sums += w[k, :, FEATURES, None] * CONSTANT
        total[k] = np.take_along_axis(sums, error_group[k][None], 0)[0]
    return total


def corrected(total: IntArray, pred: IntArray, low: IntArray, high: IntArray) -> IntArray:
    """The prediction (eighths) moved by ``(total + 2^11) >> 12``, clamped to the plane's
    range (``low``, ``high`` in samples)."""
    moved = pred + ((total + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS)
    return np.clip(moved, low << 3, high << 3)


class Fit:
    """The encoder's least-squares fit of one image's weights, a chunk of samples at a time:
    per row of the table, the sums of feature products and of features times the target (8 ·
    sample − prediction, clipped to ±``FIT_CLIP``) — a block with or without parities is
    solved from their sums."""

    def __init__(self) -> None:
        self.gram = np.zeros((TABLE, WEIGHTS, WEIGHTS))
        self.moment = np.zeros((TABLE, WEIGHTS))
        self.square = np.zeros(TABLE)  # Σ target²

    def add(self, feats: np.ndarray, target: IntArray, group: IntArray) -> None:
        """Samples with ``feats`` (WEIGHTS, n: the features and the constant, float64),
        ``target`` (n,) and ``group`` (n,: their rows of the table, :func:`table_row`)."""
        order = np.argsort(group, kind="stable")  # each group's samples side by side
        feats = feats[:, order]
        y = np.clip(target[order], -FIT_CLIP, FIT_CLIP).astype(np.float64)
        ends = np.searchsorted(group[order], np.arange(TABLE + 1))
        for g in np.flatnonzero(np.diff(ends)):
            part, goal = feats[:, ends[g] : ends[g + 1]], y[ends[g] : ends[g + 1]]
            self.gram[g] += part @ part.T
            self.moment[g] += part @ goal
            self.square[g] += goal @ goal

    def solve(self, parity: bool) -> tuple[IntArray, float]:
        """A block's int weights (GROUPS or PARITY_GROUPS, WEIGHTS; 0 for a group with too few
        samples for a stable fit), and the bits they should save per fitted sample were the
        targets Gaussian: half the log of how much they shrink the squared error (an
        estimate; the encoder trusts it only far above what the weights cost)."""
        rows = _block_rows(parity)
        count = PARITY_GROUPS if parity else GROUPS
        sums = [np.zeros((count, *a.shape[1:])) for a in (self.gram, self.moment, self.square)]
        for total, a in zip(sums, (self.gram, self.moment, self.square), strict=True):
            np.add.at(total, rows, a)
        grams, moments, squares = sums
        weights = np.zeros((count, WEIGHTS), np.int64)
        bits = 0.0
        for g in range(count):
            gram, moment, samples = grams[g], moments[g], grams[g, -1, -1] / CONSTANT**2
            if samples < 4 * WEIGHTS:
                continue
            w = np.linalg.solve(gram + 1e-3 * np.trace(gram) / WEIGHTS * np.eye(WEIGHTS), moment)
            weights[g] = np.clip(np.rint(w * (1 << WEIGHT_BITS)), -WEIGHT_LIMIT, WEIGHT_LIMIT)
            after = squares[g] - 2 * w @ moment + w @ gram @ w
            if after > 0:
                bits += samples / 2 * np.log2(squares[g] / after)
        fitted = self.gram[:, -1, -1].sum() / CONSTANT**2
        return weights, bits / fitted if fitted else 0.0


def pack(block: IntArray) -> bytes:
    return block.astype("<i2").tobytes()


def unpack(data: bytes, parity: bool) -> IntArray:
    """A block's weights (GROUPS or PARITY_GROUPS, WEIGHTS) from the start of ``data``
    (ValueError if it is cut short, or a weight is −2^15)."""
    size = block_bytes(parity)
    if len(data) < size:
        raise ValueError("correction weights cut short")
    block = np.frombuffer(data[:size], "<i2").astype(np.int64).reshape(-1, WEIGHTS)
    if (block < -WEIGHT_LIMIT).any():
        raise ValueError("a correction weight out of range")
    return block
