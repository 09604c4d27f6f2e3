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

import contextlib
import functools
import hashlib
import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from iodfz import zoo
from iodfz.codec import lockstep
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
PREDICT_PIXELS = 1 << 18  # pixels predicted at once (bounds the temporaries' memory)
WEIGHT_ONE = 1 << 24
#: Each plane's sample range: Y, then Co and Cg.
PLANE_RANGES = ((0, 255), (-255, 255), (-255, 255))
MAX_MEAN = 127  # |mean| of a context in 1/8 units: one signed byte
PARAMS_BYTES = 2 * CONTEXTS
MODE_OWN, MODE_DEFAULTS = 0, 1  # the parameter part's first byte (FORMAT.md 3.5)
#: The default parameters' scale indices move by a shift (−8 … 7) per plane and group of
#: error contexts (e < 4, 4–7, 8–11, ≥ 12): 12 shifts, 6 bytes.
SHIFT_EDGES = np.array([4, 8, 12], np.int64)
SHIFT_COUNT = 3 * (len(SHIFT_EDGES) + 1)
OWN_FROM = 3 * 96 * 96  # samples from which the encoder also tries parameters of its own
DEFAULTS_FILE = "iodf-predictive-1.json"
DEFAULTS_SHA256 = "6eb0331dba2de24baeb8ca1d3af4838c20527465162fa1eb396b6c1244c9bddb"
LOGISTIC_TABLES_HASH = "724e3d9069a3206f29f5a7963e991af169fbd3fd27f561c3e6d0e205c7185706"

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


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


@functools.cache
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


@dataclass(frozen=True)
class Counts:
    """How often each residual (clipped to ±1023) falls in each context: the nonzero counts,
    ordered by context, then residual."""

    context: IntArray
    residual: IntArray
    count: IntArray

    @staticmethod
    def of(keys: IntArray, weights: IntArray | None = None) -> Counts:
        unique, inverse = np.unique(keys, return_inverse=True)
        count = np.bincount(inverse.ravel(), weights, len(unique)).astype(np.int64)
        return Counts(unique // 2047, unique % 2047 - 1023, count)

    def __add__(self, other: Counts) -> Counts:
        keys = [c.context * 2047 + c.residual + 1023 for c in (self, other)]
        return Counts.of(np.concatenate(keys), np.concatenate([self.count, other.count]))


def histograms(residuals: IntArray, contexts: IntArray) -> Counts:
    """The residuals' counts per context."""
    residual = np.clip(residuals.ravel().astype(np.int64), -1023, 1023)
    return Counts.of(contexts.ravel().astype(np.int64) * 2047 + residual + 1023)


def fit(counts: Counts) -> IntArray:
    """(CONTEXTS, 2): the scale index and mean (1/8 units) of each context minimising the
    ideal code length of its residuals (0, 0 for a context no sample falls in)."""
    bits = _scale_bits()
    params = np.zeros((CONTEXTS, 2), np.int64)
    starts = np.flatnonzero(np.diff(counts.context, prepend=-1))
    for c, values, weights in zip(
        counts.context[starts],
        np.split(counts.residual, starts[1:]),
        np.split(counts.count, starts[1:]),
        strict=True,
    ):
        mean = round(8 * float(np.average(values, weights=weights)))
        best = None
        for m in range(max(mean - 4, -MAX_MEAN), min(mean + 4, MAX_MEAN) + 1):
            at = np.clip(values - (m >> 3), -1023, 1023) + 1023
            costs = bits[:, m & 7, at] @ weights
            s = int(np.argmin(costs))
            if best is None or costs[s] < best[0]:
                best = (costs[s], s, m)
        if best is not None:
            params[c] = best[1:]
    return params


def cost(counts: Counts, params: IntArray) -> float:
    """Ideal bits of the residuals counted with ``params`` (context by context)."""
    s, m = params[counts.context, 0], params[counts.context, 1]
    at = np.clip(counts.residual - (m >> 3), -1023, 1023) + 1023
    return float(_scale_bits()[s, m & 7, at] @ counts.count)


def _shift_groups() -> IntArray:
    """Each context's shift group: its plane × 4 + the group of its error context (edges
    SHIFT_EDGES)."""
    plane = np.searchsorted(PLANE_FIRST, np.arange(CONTEXTS), side="right") - 1
    error = (np.arange(CONTEXTS) - PLANE_FIRST[plane]) % ERROR_CONTEXTS
    return plane * (len(SHIFT_EDGES) + 1) + np.searchsorted(SHIFT_EDGES, error, side="right")


SHIFT_GROUPS = _shift_groups()


def shifted(defaults: IntArray, shifts: IntArray) -> IntArray:
    """``defaults`` with each context's scale index moved by its group's shift (clamped to
    the grid)."""
    params = defaults.copy()
    params[:, 0] = np.clip(defaults[:, 0] + shifts[SHIFT_GROUPS], 0, coder_tables.NUM_SCALES - 1)
    return params


def pack_shifts(shifts: IntArray) -> bytes:
    """Two 4-bit two's complement shifts a byte, the first in the low half."""
    nibbles = (shifts & 15).reshape(-1, 2)
    return (nibbles[:, 0] | nibbles[:, 1] << 4).astype(np.uint8).tobytes()


def unpack_shifts(data: bytes) -> IntArray:
    raw = np.frombuffer(data, np.uint8).astype(np.int64)
    nibbles = np.stack([raw & 15, raw >> 4], axis=1).ravel()
    return nibbles - 16 * (nibbles >= 8)


def choose_params(counts: Counts) -> tuple[bytes, IntArray]:
    """(parameter part, parameters): the shipped defaults with the best shift per group, or
    parameters fitted to this image when that is smaller, parameter part included (not tried
    below OWN_FROM samples, where 416 bytes of parameters never pay)."""
    candidates = []
    defaults = default_params()
    if defaults is not None:
        contexts = counts.context
        m = defaults[contexts, 1]
        at = np.clip(counts.residual - (m >> 3), -1023, 1023) + 1023
        trial = np.arange(-8, 8)[:, None]
        scale = np.clip(defaults[contexts, 0][None, :] + trial, 0, coder_tables.NUM_SCALES - 1)
        bits = _scale_bits()[scale, (m & 7)[None, :], at[None, :]] * counts.count  # (16, n)
        group = SHIFT_GROUPS[contexts]
        shifts = np.array(
            [trial[np.argmin(bits[:, group == g].sum(1)), 0] for g in range(SHIFT_COUNT)]
        )
        params = shifted(defaults, shifts)
        part = bytes([MODE_DEFAULTS]) + pack_shifts(shifts)
        candidates.append((cost(counts, params) + 8 * len(part), part, params))
    if defaults is None or counts.count.sum() >= OWN_FROM:
        own = fit(counts)
        part = bytes([MODE_OWN]) + pack_params(own)
        candidates.append((cost(counts, own) + 8 * len(part), part, own))
    _, part, params = min(candidates, key=lambda c: c[0])
    return part, params


def read_params(part: bytes) -> IntArray:
    """The parameters a parameter part (FORMAT.md 3.5) stands for; PredictiveError if damaged,
    or if it needs default parameters that are not installed intact."""
    if not part:
        raise PredictiveError("parameter part is empty")
    if part[0] == MODE_OWN:
        return unpack_params(part[1:])
    if part[0] == MODE_DEFAULTS and len(part) == 1 + SHIFT_COUNT // 2:
        defaults = default_params()
        if defaults is None:
            raise PredictiveError(f"needs {DEFAULTS_FILE}, which is not installed intact")
        return shifted(defaults, unpack_shifts(part[1:]))
    raise PredictiveError("bad parameter part")


def split_params(first: bytes) -> tuple[IntArray, bytes]:
    """(parameters, first stream) of a payload's first part: the parameter part's length
    follows from its mode byte (FORMAT.md 3.5)."""
    size = {MODE_OWN: 1 + PARAMS_BYTES, MODE_DEFAULTS: 1 + SHIFT_COUNT // 2}.get(
        first[:1][0] if first else -1
    )
    if size is None or len(first) < size:
        raise PredictiveError("bad parameter part")
    return read_params(first[:size]), first[size:]


@functools.cache
def default_params() -> IntArray | None:
    """The shipped default parameters (models/DEFAULTS_FILE, fitted on the training photos'
    thumbnails by scripts/fit_predictive.py) if found with their pinned hash, else None."""
    for folder in zoo.model_dirs():
        try:
            card = json.loads((folder / DEFAULTS_FILE).read_text())
            packed = np.array(card["scales"], np.uint8).tobytes()
            packed += np.array(card["means"], np.int8).tobytes()
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if hashlib.sha256(packed).hexdigest() == DEFAULTS_SHA256:
            return unpack_params(packed)
    return None


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


@functools.lru_cache(maxsize=8)  # tile shapes: a batch of odd-sized images has many
def _diagonals(h: int, w: int) -> list[tuple[IntArray, IntArray]]:
    """(rows, columns) of each anti-diagonal ``2·i + j = t`` of an h×w tile, rows ascending."""
    out = []
    for t in range(2 * (h - 1) + w):
        rows = np.arange(max(0, -(-(t - w + 1) // 2)), min(h - 1, t // 2) + 1)
        out.append((rows, t - 2 * rows))
    return out


@functools.lru_cache(maxsize=4)
def _push_order(tiles: int, h: int, w: int) -> tuple[IntArray, list[int]]:
    """Where each symbol pushed comes from in a batch's (3, tiles, h, w) arrays, and where each
    push ends: the anti-diagonals last to first (rANS is LIFO), each as Cg, Co, Y, each in
    (tile, row) order — the decoder pops them the other way round."""
    parts = []
    for rows, cols in reversed(_diagonals(h, w)):
        at = (np.arange(tiles)[:, None] * (h * w) + rows * w + cols).ravel()
        parts += [plane * tiles * h * w + at for plane in (2, 1, 0)]
    return np.concatenate(parts), np.cumsum([len(p) for p in parts]).tolist()


def _lanes(tiles: int, h: int, w: int) -> int:
    return ans.lanes_for(3 * tiles * h * w)


def _batches(height: int, width: int) -> list[list[tuple[int, int, int, int]]]:
    return list(pixel_codec.batches(height, width, TILE))


def batch_count(height: int, width: int) -> int:
    return pixel_codec.batch_count(height, width, TILE)


def encode(rgb: np.ndarray, progress: Share | None = None) -> list[bytes]:
    """(H, W, 3) uint8 → one compact rANS stream per batch, the first after the parameter
    part."""
    height, width, _ = rgb.shape
    batches = _batches(height, width)
    coded = []
    for rects in batches:
        residuals, contexts = [], []
        per_chunk = max(1, PREDICT_PIXELS // (rects[0][2] * rects[0][3]))
        for i in range(0, len(rects), per_chunk):
            part = rects[i : i + per_chunk]
            x = to_planes(np.stack([rgb[y : y + h, x0 : x0 + w] for y, x0, h, w in part]))
            pred, error_context = predict(x)
            residuals.append((x - pred).astype(np.int16))
            contexts.append(contexts_of(error_context, x - pred).astype(np.int16))
        coded.append((np.concatenate(residuals, axis=1), np.concatenate(contexts, axis=1)))
    counts = [histograms(residual, context) for residual, context in coded]
    part, params = choose_params(functools.reduce(operator.add, counts))
    tables = logistic_tables()
    streams: list[bytes] = []
    done = 0
    for residual, context in coded:
        _, tiles, h, w = residual.shape
        index, offset = _table_of(params, context)
        enc = ans.encoder(_lanes(tiles, h, w))
        order, ends = _push_order(tiles, h, w)
        flat = (a.reshape(-1)[order] for a in (residual, index, offset))
        ans.push_chunks(enc, tables, *flat, ends)
        streams.append(ans.finish(enc, compact=True))
        done += tiles * h * w
        if progress:
            progress(done / (height * width))
    return [part + streams[0], *streams[1:]]


def decode(
    parts: list[bytes], height: int, width: int, progress: Share | None = None
) -> np.ndarray:
    """Inverse of :func:`encode`; PredictiveError (or the coder's CoderError) when the parts
    are damaged."""
    batches = _batches(height, width)
    if len(parts) != len(batches):
        raise PredictiveError("wrong number of parts")
    params, first = split_params(parts[0])
    tables = logistic_tables()
    rgb = np.empty((height, width, 3), np.uint8)
    done = 0
    for rects, stream in zip(batches, [first, *parts[1:]], strict=True):
        tiles, h, w = len(rects), rects[0][2], rects[0][3]
        x = _decode_batch(stream, params, tables, tiles, h, w)
        for tile, (y, x0, th, tw) in zip(to_rgb(x), rects, strict=True):
            rgb[y : y + th, x0 : x0 + tw] = tile
        done += tiles * h * w
        if progress:
            progress(done / (height * width))
    return rgb


@functools.lru_cache(maxsize=8)
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


Pop = Callable[[IntArray, IntArray], IntArray]  # (table index, offset) (n, tiles) → values


def _decode_batch(
    stream: bytes, params: IntArray, tables: coder_tables.Tables, tiles: int, h: int, w: int
) -> IntArray:
    """One batch's planes (3, tiles, h, w), its tiles sharing ``params`` and one stream."""
    dec = ans.compact_decoder(stream, _lanes(tiles, h, w))

    def pop(index: IntArray, offset: IntArray) -> IntArray:
        return ans.pop(dec, tables, index.T.ravel(), offset.T.ravel()).reshape(tiles, -1).T

    x, inside = _decode_tiles(pop, np.broadcast_to(params, (tiles, *params.shape)), h, w)
    ans.check_finished(dec)
    if not inside.all():
        raise PredictiveError("a decoded sample is out of range")
    return x


def _decode_tiles(pop: Pop, params: IntArray, h: int, w: int) -> tuple[IntArray, BoolArray]:
    """Planes (3, tiles, h, w) of tiles with parameters ``params`` (tiles, CONTEXTS, 2), their
    residuals from ``pop``, and whether each tile's samples all fell in their planes' ranges
    (a damaged stream's may not). Position-major layouts, so that each gather of a
    diagonal's neighbours reads whole rows of (predictor,) plane and tile."""
    tiles = len(params)
    lanes = 3 * tiles  # (plane, tile) pairs
    x = np.zeros((h * w + 1, lanes), np.int64)  # the last position stays 0
    errors = np.zeros(((h + 1) * (w + 2), PREDICTORS, lanes), np.int32)  # zero border: absent
    low, high = (np.repeat(b.ravel(), tiles)[None, :] for b in _plane_bounds((3, 1)))
    planes = [slice(k * tiles, (k + 1) * tiles) for k in range(3)]
    tile = np.arange(tiles)[None, :]
    inside = np.ones(lanes, bool)
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
            chosen = params[tile, context]
            residual[:, columns] = pop(*coder_tables.logistic_index(chosen[..., 0], chosen[..., 1]))
        value = pred + residual
        inside &= ((value >= low) & (value <= high)).all(0)
        value = np.clip(value, low, high)  # a damaged stream's lanes stay bounded
        x[here] = value
        errors[at] = np.abs(value[:, None, :] - np.stack(preds, axis=1))
    return x[:-1].T.reshape(3, tiles, h, w), inside.reshape(3, tiles).all(0)


def single_tile(height: int, width: int) -> bool:
    """Whether an image of this size is one tile (what the batch functions take)."""
    return height <= TILE and width <= TILE


def encode_many(rgbs: Sequence[np.ndarray]) -> list[list[bytes]]:
    """``[encode(rgb) for rgb in rgbs]`` for images of one shape, one tile each: predicted
    together, their streams coded in lockstep (each the very bytes ``encode`` gives)."""
    h, w, _ = rgbs[0].shape
    if not single_tile(h, w) or any(rgb.shape != rgbs[0].shape for rgb in rgbs):
        raise ValueError("encode_many takes images of one shape, one tile each")
    tables = logistic_tables()
    out = []
    per_group = max(1, PREDICT_PIXELS // (h * w))
    for i in range(0, len(rgbs), per_group):
        x = to_planes(np.stack(rgbs[i : i + per_group]))
        pred, error_context = predict(x)
        residual = x - pred
        context = contexts_of(error_context, residual)
        chosen = [
            choose_params(histograms(residual[:, t], context[:, t])) for t in range(len(pred[0]))
        ]
        params = np.stack([p for _, p in chosen])
        picked = params[np.arange(len(params))[:, None, None], context]  # (3, T, h, w, 2)
        index, offset = coder_tables.logistic_index(picked[..., 0], picked[..., 1])
        group = lockstep.Encoder(len(params), _lanes(1, h, w))
        for rows, cols in reversed(_diagonals(h, w)):
            for plane in (2, 1, 0):
                group.push(
                    tables,
                    residual[plane][:, rows, cols],
                    index[plane][:, rows, cols],
                    offset[plane][:, rows, cols],
                )
        out += [[part + stream] for (part, _), stream in zip(chosen, group.finish(), strict=True)]
    return out


def decode_many(parts: Sequence[list[bytes]], height: int, width: int) -> list[np.ndarray | None]:
    """``decode(p, height, width)`` of each of ``parts`` (images of one shape, one tile each),
    their streams decoded in lockstep; None for one that is damaged (decoding it alone says
    how)."""
    if not single_tile(height, width):
        raise ValueError("decode_many takes images of one tile each")
    tables = logistic_tables()
    out: list[np.ndarray | None] = [None] * len(parts)
    good = []
    for k, image_parts in enumerate(parts):
        with contextlib.suppress(PredictiveError):
            if len(image_parts) == 1:
                good.append((k, *split_params(image_parts[0])))
    per_group = max(1, PREDICT_PIXELS // (height * width))
    for i in range(0, len(good), per_group):
        members = good[i : i + per_group]
        group = lockstep.Decoder([stream for _, _, stream in members], _lanes(1, height, width))

        def pop(index: IntArray, offset: IntArray, group: lockstep.Decoder = group) -> IntArray:
            return group.pop(tables, index.T, offset.T).T

        x, inside = _decode_tiles(pop, np.stack([p for _, p, _ in members]), height, width)
        rgbs = to_rgb(x)
        for (k, _, _), ok, rgb in zip(members, group.finish() & inside, rgbs, strict=True):
            if ok:
                out[k] = rgb
    return out
