"""The correction of ``iodf-predictive-4`` (docs/INTEGER.md "Predictive coders", step 9): each
sample's prediction moved by a linear function, fitted to the image, of 23 features of what the
decoder already knows — 7 neighbours' values against the prediction, compressed by an integer
log-like curve, and their squares; 6 neighbours' residuals and the previous plane's residuals
at N, W and the sample itself, compressed too. One set of 24 weights (23 features and a
constant) per plane and group of error contexts (the groups of the scale shifts), sent in the
parameter part.

A photo's samples are not the training photos': a fit to the image itself moves each prediction
where the image's own textures say (−2.2 % of Kodak's bits in a float probe,
``scripts/probe_network.py`` and README "Session 24"). Integer throughout: the features are
table lookups and products, the weights int16, the sum int64.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

FEATURES = 23
WEIGHTS = FEATURES + 1  # the constant's weight last
GROUPS = 12  # 3 planes × 4 groups of error contexts (predictive.SHIFT_EDGES)
WEIGHT_BITS = 12  # a correction is (Σ weight · feature + 2^11) >> 12 eighths
CONSTANT = 16  # the constant feature
WEIGHT_LIMIT = (1 << 15) - 1  # |weight| ≤ this: int16
BLOCK_BYTES = 2 * GROUPS * WEIGHTS  # the weights in the parameter part (int16, little-endian)
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


def features(values: IntArray, pred: IntArray, residuals: IntArray) -> npt.NDArray[np.int16]:
    """The 22 features known before the previous plane's sample is, stacked (22, ...):
    ``values`` (7, ...: N, W, NW, NE, NN, WW, NNE after the edge rules) against ``pred``
    (eighths), ``c = compress(8·v − pred)``; their squares ``(c·|c|) >> 4``; and
    ``residuals`` (8, ...: the plane's at N, W, NW, NE, NN, WW, then the previous plane's at N
    and W; 0 for Y and outside the tile), ``compress(8·r)``. The 23rd, the previous plane's
    residual at the sample, is :func:`compress` of 8 × it."""
    inputs = np.empty((VALUES + RESIDUALS, *pred.shape), np.int64)
    np.subtract(values << 3, pred, out=inputs[:VALUES])
    np.left_shift(residuals, 3, out=inputs[VALUES:])
    curved = compress(inputs)
    near = curved[:VALUES].astype(np.int32)
    squares = ((near * np.abs(near)) >> 4).astype(np.int16)  # at most 1 580
    return np.concatenate([curved[:VALUES], squares, curved[VALUES:]])


def weighted_sum(feats: IntArray, weights: IntArray) -> IntArray:
    """Σ weight · feature over ``feats`` (stacked: the first 22 or all 23) and the constant:
    ``weights`` (..., WEIGHTS) each sample's own (the features' shape after the first axis, plus
    a last axis)."""
    total = np.einsum("f...,...f->...", feats, weights[..., : len(feats)])
    return total + weights[..., FEATURES] * CONSTANT


def corrected(total: IntArray, pred: IntArray, low: IntArray, high: IntArray) -> IntArray:
    """The prediction (eighths) moved by ``(total + 2^11) >> 12``, clamped to the plane's
    range (``low``, ``high`` in samples)."""
    moved = pred + ((total + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS)
    return np.clip(moved, low << 3, high << 3)


class Fit:
    """The encoder's least-squares fit of one image's weights, a chunk of samples at a time:
    per group, the sums of feature products and of features times the target (8 · sample −
    prediction, clipped to ±``FIT_CLIP``)."""

    def __init__(self) -> None:
        self.gram = np.zeros((GROUPS, WEIGHTS, WEIGHTS))
        self.moment = np.zeros((GROUPS, WEIGHTS))
        self.square = np.zeros(GROUPS)  # Σ target²

    def add(self, feats: np.ndarray, target: IntArray, group: IntArray) -> None:
        """Samples with ``feats`` (WEIGHTS, n: the features and the constant, float64),
        ``target`` (n,) and ``group`` (n,)."""
        y = np.clip(target, -FIT_CLIP, FIT_CLIP).astype(np.float64)
        for g in np.unique(group):
            mask = group == g
            part = feats[:, mask]
            self.gram[g] += part @ part.T
            self.moment[g] += part @ y[mask]
            self.square[g] += y[mask] @ y[mask]

    def _solved(self) -> list[np.ndarray | None]:
        """Each group's least-squares weights (float); None for a group with too few samples
        for a stable fit."""
        out: list[np.ndarray | None] = []
        for g in range(GROUPS):
            if self.gram[g, FEATURES, FEATURES] < CONSTANT**2 * 4 * WEIGHTS:
                out.append(None)
                continue
            ridge = 1e-3 * np.trace(self.gram[g]) / WEIGHTS * np.eye(WEIGHTS)
            out.append(np.linalg.solve(self.gram[g] + ridge, self.moment[g]))
        return out

    def weights(self) -> IntArray:
        """(GROUPS, WEIGHTS) int weights (0 for a group without a fit)."""
        out = np.zeros((GROUPS, WEIGHTS), np.int64)
        for g, w in enumerate(self._solved()):
            if w is not None:
                out[g] = np.clip(np.rint(w * (1 << WEIGHT_BITS)), -WEIGHT_LIMIT, WEIGHT_LIMIT)
        return out

    def saving(self) -> float:
        """Bits the weights should save per fitted sample, were the targets Gaussian: half
        the log of how much they shrink the squared error (an estimate; the encoder trusts
        it only far above what the weights cost)."""
        bits = 0.0
        for g, w in enumerate(self._solved()):
            if w is None:
                continue
            after = self.square[g] - 2 * w @ self.moment[g] + w @ self.gram[g] @ w
            if after > 0:
                samples = self.gram[g, FEATURES, FEATURES] / CONSTANT**2
                bits += samples / 2 * np.log2(self.square[g] / after)
        samples = self.gram[:, FEATURES, FEATURES].sum() / CONSTANT**2
        return bits / samples if samples else 0.0


def pack(weights: IntArray) -> bytes:
    return weights.astype("<i2").tobytes()


def unpack(data: bytes) -> IntArray:
    """(GROUPS, WEIGHTS) weights from BLOCK_BYTES bytes (ValueError if fewer, or one is −2^15)."""
    if len(data) < BLOCK_BYTES:
        raise ValueError("correction weights cut short")
    weights = np.frombuffer(data[:BLOCK_BYTES], "<i2").astype(np.int64).reshape(GROUPS, WEIGHTS)
    if (weights < -WEIGHT_LIMIT).any():
        raise ValueError("a correction weight out of range")
    return weights
