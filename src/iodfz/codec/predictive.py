"""RGB pixels ↔ the predictive payload (docs/INTEGER.md "Predictive coder", FORMAT.md 3.5).

No network: a reversible colour transform (YCoCg-R), then each sample predicted from its
decoded neighbours by a blend of six fixed predictors, weighted by how well each did on the
neighbours (the idea of JPEG-XL's weighted predictor, in integers), and its residual coded with
the logistic tables of the flow's coder, in a context given by the neighbours' smallest error.
The encoder fits one (scale, mean) per plane and context to the image (the parameter part).

The image is cut into tiles of ``TILE`` pixels a side (no padding), and tiles of one shape are
coded in batches, one rANS stream each. Encoding is one vectorised pass; decoding runs over the
anti-diagonals ``2·i + j = t`` of the tiles (every neighbour a sample needs lies on an earlier
one), all tiles of a batch and all three planes at once: ``2·h + w`` steps per batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from iodfz.codec import pixels as pixel_codec
from iodfz.codecs import Share
from iodfz.coder import ans
from iodfz.coder import tables as coder_tables
from iodfz.engine.tables import pinned_tables

#: The coder's id where a container names a model (FORMAT.md 3.1): the first bytes name it.
CODER_ID = hashlib.sha256(b"iodfz predictive coder 1 (docs/INTEGER.md)").hexdigest()
NAME = "iodf-predictive-1"
TILE = 256
#: Context edges on the neighbours' smallest weighted error (2 units per unit of error).
ERROR_EDGES = np.array([1, 2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181], np.int64)
ERROR_CONTEXTS = len(ERROR_EDGES) + 1
#: Co's context also buckets |Y's residual| at the same pixel, Cg's |Co's residual|.
RESIDUAL_EDGES = np.array([1, 2, 3, 5, 9], np.int64)
PLANE_CONTEXTS = (ERROR_CONTEXTS, *(ERROR_CONTEXTS * (len(RESIDUAL_EDGES) + 1),) * 2)
PLANE_FIRST = np.cumsum((0, *PLANE_CONTEXTS[:-1]))  # each plane's first context
CONTEXTS = sum(PLANE_CONTEXTS)
PREDICTORS = 6
PREDICT_TILES = 4  # tiles predicted at once by the encoder
WEIGHT_ONE = 1 << 24
#: Each plane's sample range: Y, then Co and Cg.
PLANE_RANGES = ((0, 255), (-255, 255), (-255, 255))
MAX_MEAN = 127  # |mean| of a context in 1/8 units: one signed byte
PARAMS_BYTES = 2 * CONTEXTS
LOGISTIC_TABLES_HASH = "724e3d9069a3206f29f5a7963e991af169fbd3fd27f561c3e6d0e205c7185706"

IntArray = npt.NDArray[np.int64]


class PredictiveError(ValueError):
    pass


@dataclass(frozen=True)
class PredictiveCoder:
    """The predictive coder where the image codec takes a model: an id (what a container
    names) and no flow levels (nothing is padded)."""

    model_id: str = CODER_ID
    name: str = NAME
    levels: int = 0


CODER = PredictiveCoder()


def logistic_tables() -> coder_tables.Tables:
    return pinned_tables(LOGISTIC_TABLES_HASH, coder_tables.default_tables)


# --- colour -----------------------------------------------------------------------------


def to_planes(rgb: np.ndarray) -> IntArray:
    """(..., 3) uint8 RGB → (3, ...) int64 Y, Co, Cg (YCoCg-R lifting, exactly invertible)."""
    r, g, b = (rgb[..., c].astype(np.int64) for c in range(3))
    co = r - b
    t = b + (co >> 1)
    cg = g - t
    return np.stack([t + (cg >> 1), co, cg])


def to_rgb(planes: IntArray) -> np.ndarray:
    y, co, cg = planes
    t = y - (cg >> 1)
    g = cg + t
    b = t - (co >> 1)
    r = b + co
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


# --- prediction -------------------------------------------------------------------------


def _predictors(n: IntArray, w: IntArray, nw: IntArray, ne: IntArray) -> list[IntArray]:
    grad = n + w - nw
    med = np.where(
        nw >= np.maximum(n, w),
        np.minimum(n, w),
        np.where(nw <= np.minimum(n, w), np.maximum(n, w), grad),
    )
    return [n, w, grad, (n + ne) >> 1, w + ne - n, med]


def _blend(
    preds: list[IntArray], errors: IntArray, low: IntArray, high: IntArray
) -> tuple[IntArray, IntArray]:
    """(prediction, context) from the six predictions and their neighbourhood errors
    ``errors`` (6, ...): weights ``2^24 // (E + 1)``, rounded weighted mean, clamped."""
    weights = (WEIGHT_ONE // (errors + 1)).astype(np.int64)
    total = weights.sum(0)
    blended = (sum(wk * pk for wk, pk in zip(weights, preds, strict=True)) + (total >> 1)) // total
    context = np.searchsorted(ERROR_EDGES, errors.min(0), side="right")
    return np.clip(blended, low, high), context


def _plane_bounds(shape: tuple[int, ...]) -> tuple[IntArray, IntArray]:
    low = np.array([r[0] for r in PLANE_RANGES]).reshape((3,) + (1,) * (len(shape) - 1))
    high = np.array([r[1] for r in PLANE_RANGES]).reshape(low.shape)
    return low, high


def _bordered(a: np.ndarray) -> np.ndarray:
    """``a`` with a zero row above and a zero column on each side of its last two axes."""
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 0), (1, 1)])


def predict(x: IntArray) -> tuple[IntArray, IntArray]:
    """(prediction, context) of every sample of planes ``x`` (3, T, h, w): what the decoder
    computes one anti-diagonal at a time, here at once from the known samples."""
    h, w = x.shape[-2:]
    rows, cols = np.indices((h, w))
    has_up, has_left, has_right = rows > 0, cols > 0, cols < w - 1
    p = _bordered(x)
    n = np.where(has_up, p[..., :h, 1:-1], p[..., 1:, :-2])  # the zero border at (0, 0)
    west = np.where(has_left, p[..., 1:, :-2], n)
    nw = np.where(has_up & has_left, p[..., :h, :-2], n)
    ne = np.where(has_up & has_right, p[..., :h, 2:], n)
    preds = _predictors(n, west, nw, ne)
    e = _bordered(np.stack([np.abs(x - pk) for pk in preds]))  # errors, absent ones 0
    near = 2 * (e[..., :h, 1:-1] + e[..., 1:, :-2] + e[..., :h, 2:]) + e[..., :h, :-2]
    return _blend(preds, near, *_plane_bounds(x.shape))


# --- parameters -------------------------------------------------------------------------


@cache
def _scale_bits() -> np.ndarray:
    """Ideal bits (64 scales, 8 phases, value −1023 … 1023) of the logistic tables; an escape
    counts 24 bits."""
    tables = logistic_tables()
    values = np.arange(-1023, 1024)
    out = np.empty((coder_tables.NUM_SCALES, coder_tables.NUM_PHASES, values.size))
    for s in range(coder_tables.NUM_SCALES):
        for p in range(coder_tables.NUM_PHASES):
            index = np.full(values.shape, s * coder_tables.NUM_PHASES + p)
            bits, escape = coder_tables.symbol_bits(tables, values, index)
            out[s, p] = bits + 16.0 * escape
    return out


def contexts_of(error_context: IntArray, residual: IntArray) -> IntArray:
    """Each plane's contexts (numbered across the planes, plane-major) from the error contexts
    and residuals of planes (3, ...): Y's error context; Co's and Cg's with the bucket of the
    previous plane's residual at the same pixel."""
    previous = np.searchsorted(RESIDUAL_EDGES, np.abs(residual[:-1]), side="right")
    chroma = error_context[1:] + ERROR_CONTEXTS * previous
    shape = (2,) + (1,) * (chroma.ndim - 1)
    return np.concatenate([error_context[:1], chroma + PLANE_FIRST[1:].reshape(shape)])


def fit(residuals: IntArray, contexts: IntArray) -> IntArray:
    """(CONTEXTS, 2): the scale index and mean (1/8 units) of each context minimising the
    ideal code length of its residuals (0, 0 for a context no sample falls in)."""
    bits = _scale_bits()
    key = contexts.ravel().astype(np.int64) * 2047 + np.clip(residuals.ravel(), -1023, 1023) + 1023
    hist = np.bincount(key, minlength=CONTEXTS * 2047).reshape(CONTEXTS, 2047)
    params = np.zeros((CONTEXTS, 2), np.int64)
    for c in np.flatnonzero(hist.sum(1)):
        values = np.flatnonzero(hist[c]) - 1023
        weights = hist[c, values + 1023]
        mean = round(8 * float(np.average(values, weights=weights)))
        best = None
        for m in range(max(mean - 4, -MAX_MEAN), min(mean + 4, MAX_MEAN) + 1):
            shifted = np.clip(values - (m >> 3), -1023, 1023) + 1023
            costs = bits[:, m & 7, shifted] @ weights
            s = int(np.argmin(costs))
            if best is None or costs[s] < best[0]:
                best = (costs[s], s, m)
        if best is not None:
            params[c] = best[1:]
    return params


def pack_params(params: IntArray) -> bytes:
    return params[:, 0].astype(np.uint8).tobytes() + params[:, 1].astype(np.int8).tobytes()


def unpack_params(data: bytes) -> IntArray:
    if len(data) != PARAMS_BYTES:
        raise PredictiveError("parameter part has the wrong size")
    raw = np.frombuffer(data, np.uint8)
    scales = raw[:CONTEXTS].astype(np.int64)
    means = raw[CONTEXTS:].view(np.int8).astype(np.int64)
    if int(scales.max()) >= coder_tables.NUM_SCALES or int(np.abs(means).max()) > MAX_MEAN:
        raise PredictiveError("parameter out of range")
    return np.stack([scales, means], axis=-1)


def _table_of(params: IntArray, context: IntArray) -> tuple[IntArray, IntArray]:
    return coder_tables.logistic_index(params[context, 0], params[context, 1])


# --- streams ----------------------------------------------------------------------------


@cache
def _diagonals(h: int, w: int) -> list[tuple[IntArray, IntArray]]:
    """(rows, columns) of each anti-diagonal ``2·i + j = t`` of an h×w tile, rows ascending."""
    out = []
    for t in range(2 * (h - 1) + w):
        rows = np.arange(max(0, -(-(t - w + 1) // 2)), min(h - 1, t // 2) + 1)
        out.append((rows, t - 2 * rows))
    return out


def _lanes(tiles: int, h: int, w: int) -> int:
    return ans.lanes_for(3 * tiles * h * w)


def _batches(height: int, width: int) -> list[list[tuple[int, int, int, int]]]:
    return list(pixel_codec.batches(height, width, TILE))


def batch_count(height: int, width: int) -> int:
    return pixel_codec.batch_count(height, width, TILE)


def encode(rgb: np.ndarray, progress: Share | None = None) -> list[bytes]:
    """(H, W, 3) uint8 → [parameter part, one compact rANS stream per batch]."""
    height, width, _ = rgb.shape
    batches = _batches(height, width)
    coded = []
    for rects in batches:
        residuals, contexts = [], []
        for i in range(0, len(rects), PREDICT_TILES):  # bounds the temporaries' memory
            part = rects[i : i + PREDICT_TILES]
            x = to_planes(np.stack([rgb[y : y + h, x0 : x0 + w] for y, x0, h, w in part]))
            pred, error_context = predict(x)
            residuals.append((x - pred).astype(np.int16))
            contexts.append(contexts_of(error_context, x - pred).astype(np.int16))
        coded.append((np.concatenate(residuals, axis=1), np.concatenate(contexts, axis=1)))
    params = fit(
        np.concatenate([r.reshape(3, -1) for r, _ in coded], axis=1),
        np.concatenate([c.reshape(3, -1) for _, c in coded], axis=1),
    )
    tables = logistic_tables()
    streams = [pack_params(params)]
    done = 0
    for residual, context in coded:
        _, tiles, h, w = residual.shape
        index, offset = _table_of(params, context)
        enc = ans.encoder(_lanes(tiles, h, w))
        for rows, cols in reversed(_diagonals(h, w)):  # rANS is LIFO: last diagonal first
            for plane in (2, 1, 0):  # (tile, row) order within a plane
                ans.push(
                    enc,
                    tables,
                    residual[plane][:, rows, cols],
                    index[plane][:, rows, cols],
                    offset[plane][:, rows, cols],
                )
        streams.append(ans.finish(enc, compact=True))
        done += tiles * h * w
        if progress:
            progress(done / (height * width))
    return streams


def decode(
    parts: list[bytes], height: int, width: int, progress: Share | None = None
) -> np.ndarray:
    """Inverse of :func:`encode`; PredictiveError (or the coder's CoderError) when the parts
    are damaged."""
    batches = _batches(height, width)
    if len(parts) != len(batches) + 1:
        raise PredictiveError("wrong number of parts")
    params = unpack_params(parts[0])
    tables = logistic_tables()
    rgb = np.empty((height, width, 3), np.uint8)
    done = 0
    for rects, stream in zip(batches, parts[1:], strict=True):
        tiles, h, w = len(rects), rects[0][2], rects[0][3]
        x = _decode_batch(stream, params, tables, tiles, h, w)
        for tile, (y, x0, th, tw) in zip(to_rgb(x), rects, strict=True):
            rgb[y : y + th, x0 : x0 + tw] = tile
        done += tiles * h * w
        if progress:
            progress(done / (height * width))
    return rgb


@cache
def _gathers(h: int, w: int) -> list[tuple[IntArray, ...]]:
    """Per anti-diagonal of an h×w tile: flat indices of its samples, of their N, W, NW, NE
    samples after the edge rules (index ``h·w`` is a slot that stays 0), and of the samples'
    own, N, W, NE and NW places in the zero-bordered (h+1)×(w+2) error grid."""
    out = []
    for rows, cols in _diagonals(h, w):
        here = rows * w + cols
        zero = np.full(rows.shape, h * w)
        n = np.where(rows > 0, here - w, np.where(cols > 0, here - 1, zero))
        west = np.where(cols > 0, here - 1, n)
        nw = np.where((rows > 0) & (cols > 0), here - w - 1, n)
        ne = np.where((rows > 0) & (cols + 1 < w), here - w + 1, n)
        at = (rows + 1) * (w + 2) + cols + 1
        out.append((here, n, west, nw, ne, at, at - w - 2, at - 1, at - w - 1, at - w - 3))
    return out


def _decode_batch(
    stream: bytes, params: IntArray, tables: coder_tables.Tables, tiles: int, h: int, w: int
) -> IntArray:
    """One batch's planes (3, tiles, h, w). Position-major layouts, so that each gather of a
    diagonal's neighbours reads whole rows of (predictor,) plane and tile."""
    dec = ans.compact_decoder(stream, _lanes(tiles, h, w))
    lanes = 3 * tiles  # (plane, tile) pairs
    x = np.zeros((h * w + 1, lanes), np.int64)  # the last position stays 0
    errors = np.zeros(((h + 1) * (w + 2), PREDICTORS, lanes), np.int32)  # zero border: absent
    low, high = (np.repeat(b.ravel(), tiles)[None, :] for b in _plane_bounds((3, 1)))
    planes = [slice(k * tiles, (k + 1) * tiles) for k in range(3)]
    for here, n, west, nw, ne, at, at_n, at_w, at_ne, at_nw in _gathers(h, w):
        preds = _predictors(x[n], x[west], x[nw], x[ne])
        near = 2 * (errors[at_n] + errors[at_w] + errors[at_ne]) + errors[at_nw]
        pred, error_context = _blend(preds, near.transpose(1, 0, 2), low, high)
        residual = np.empty_like(pred)
        for k, columns in enumerate(planes):  # Y, Co, Cg: each plane's context needs the last
            context = error_context[:, columns] + PLANE_FIRST[k]
            if k:
                previous = np.abs(residual[:, planes[k - 1]])
                context += ERROR_CONTEXTS * np.searchsorted(RESIDUAL_EDGES, previous, "right")
            index, offset = _table_of(params, context)
            coded = ans.pop(dec, tables, index.T.ravel(), offset.T.ravel())
            residual[:, columns] = coded.reshape(tiles, -1).T
        value = pred + residual
        x[here] = value
        errors[at] = np.abs(value[:, None, :] - np.stack(preds, axis=1))
    ans.check_finished(dec)
    x = x[:-1]
    if (x < low).any() or (x > high).any():
        raise PredictiveError("a decoded sample is out of range")
    return x.T.reshape(3, tiles, h, w)
