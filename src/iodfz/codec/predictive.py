"""RGB pixels ↔ the predictive payload (docs/INTEGER.md "Predictive coders", FORMAT.md 3.5).

No network: a reversible colour transform (YCoCg-R), then each sample predicted from its
decoded neighbours by a blend of six fixed predictors, weighted by how well each did on the
neighbours (the idea of JPEG-XL's weighted predictor, in integers), and the sample coded with
the logistic tables of the flow's coder around that prediction, in a context given by the
neighbours' errors. The encoder fits one (scale, mean) per plane and context to the image, or
takes shipped defaults with a few scale shifts (the parameter part).

Five coders share these rules and this code: ``iodf-predictive-1`` (integer predictions, 208
contexts; decoded only), ``iodf-predictive-2`` (predictions in eighths, contexts also by the
neighbours' residuals and the tile's first row and column), ``iodf-predictive-3`` (version 2
with each prediction moved by a shipped bias of its texture — which of 12 neighbour values
and extrapolations exceed it —, neighbourhood errors two rows up and two columns left too,
weights falling faster with the error, and rANS tables of its own on the logistic tables'
grid; biases and tables learned from the training photos), ``iodf-predictive-4`` (version 3
with, where it pays, each prediction corrected by weights fitted to the image,
:mod:`iodfz.codec.correction`) and ``iodf-predictive-5`` (what new files get: version 4 with a
colour transform named per image, chroma weights per parity of the position where they pay,
and the parameter part packed where that is shorter). A :class:`PredictiveCoder` holds what
tells them apart.

The image is cut into tiles of ``TILE`` pixels a side (no padding), and tiles of one shape are
coded in batches, one rANS stream each. Encoding is one vectorised pass; decoding runs over the
anti-diagonals ``2·i + j = t`` of the tiles (every neighbour a sample needs lies on an earlier
one), all tiles of a batch and all three planes at once: ``2·h + w`` steps per batch.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import operator
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from iodfz import varint, zoo
from iodfz.codec import correction, lockstep, tiling, zframe
from iodfz.codecs import Share
from iodfz.coder import CoderError, ans
from iodfz.coder import tables as coder_tables
from iodfz.engine.tables import pinned_tables

TILE = 256
#: Context edges on the neighbours' smallest weighted error (2 units per unit of error).
ERROR_EDGES = np.array([1, 2, 3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181], np.int64)
ERROR_CONTEXTS = len(ERROR_EDGES) + 1
#: Co's context also buckets |Y's residual| at the same pixel, Cg's |Co's residual|.
RESIDUAL_EDGES = np.array([1, 2, 3, 5, 9], np.int64)
RESIDUAL_BUCKETS = len(RESIDUAL_EDGES) + 1
PREDICTORS = 6
#: Pixels predicted at once (at least a tile): the encoder's temporaries (a dozen arrays of
#: every sample) stay near the cache — 95 images of 32 × 32 ~25 % faster 8 at a time than all
#: at once, a Kodak tile alone ~25 % faster than 6 at once.
PREDICT_PIXELS = 1 << 13
#: Pixels of images coded in lockstep at once (bounds the batch functions' memory).
GROUP_PIXELS = 1 << 21
#: Symbols of all streams pushed in one round of the lockstep encoders (bounds their
#: temporaries): each batch pushes as many rows of lanes as the others in a round.
ROUND_SYMBOLS = 1 << 17
#: Samples counted by one sort (bounds the temporaries of their keys).
HISTOGRAM_SAMPLES = 1 << 20
#: Counts the shift search takes at a time (bounds its temporaries).
SHIFT_KEYS = 1 << 16
WEIGHT_ONE = 1 << 24
#: A predictor's largest error: samples lie in their planes' ranges, so it is at most 1 020
#: (N + W − NW or W + NE − N of Co or Cg against a sample at the other end).
MAX_PREDICTOR_ERROR = 1020
#: The error context of every E (a lookup is cheaper than a search on small arrays).
_ERROR_CONTEXT = np.searchsorted(ERROR_EDGES, np.arange(9 * MAX_PREDICTOR_ERROR + 1), "right")
MAX_RESIDUAL = 510  # |sample − rounded prediction| within a plane's range
#: The bucket of every |residual| on RESIDUAL_EDGES.
_RESIDUAL_BUCKET = np.searchsorted(RESIDUAL_EDGES, np.arange(MAX_RESIDUAL + 1), "right")
#: Each plane's sample range: Y, then Co and Cg.
PLANE_RANGES = ((0, 255), (-255, 255), (-255, 255))
#: Bits of a sample's texture (how 12 neighbour values and extrapolations lie against its
#: prediction); a texture key is (plane, texture, error context).
TEXTURE_BITS = 12
TEXTURE_KEYS = 3 * (1 << TEXTURE_BITS) * ERROR_CONTEXTS
MAX_MEAN = 127  # |mean| of a context in 1/8 units: one signed byte
FIT_STEP = 4  # the encoder's fit tries every FIT_STEP-th scale, then the best one's neighbours
MODE_OWN, MODE_DEFAULTS = 0, 1  # the parameter part's first byte (FORMAT.md 3.5)
MODE_CORRECTED = 2  # with either: correction weights follow (version 4 on)
TRANSFORM_SHIFT = 2  # version 5: the mode byte's bits 2 and 3 are the colour transform
MODE_PARITY = 16  # version 5, with MODE_CORRECTED: the weights come per parity of chroma
MODE_PACKED = 32  # version 5: the rest of the parameter part is a zstd frame (codec.zframe)
#: Bytes after the mode byte from which the encoder tries packing them (a defaults part of
#: 6 bytes never gains)
PACK_FROM = 64
#: The default parameters' scale indices move by a shift (−8 … 7) per plane and group of
#: error contexts (e < 4, 4–7, 8–11, ≥ 12): 12 shifts, 6 bytes.
SHIFT_EDGES = np.array([4, 8, 12], np.int64)
#: The shift group (0 … 3 within a plane) of every error context.
_ERROR_GROUP = np.searchsorted(SHIFT_EDGES, np.arange(ERROR_CONTEXTS), "right")
SHIFT_COUNT = 3 * (len(SHIFT_EDGES) + 1)
SHIFTS_BYTES = SHIFT_COUNT // 2
OWN_FROM = 3 * 96 * 96  # samples from which the encoder also tries parameters of its own
FIT_BAND, FIT_SHARE = 8, 4  # the correction is fitted on bands of 8 rows, one in 4
#: A fit that promises this many times what its weights cost is sent without the plain coding
#: being tried (Kodak: ~25 times).
SURE_SAVING = 4
LOGISTIC_TABLES_HASH = "724e3d9069a3206f29f5a7963e991af169fbd3fd27f561c3e6d0e205c7185706"

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class PredictiveError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class PredictiveCoder:
    """One predictive coder where the image codec takes a model: an id (what a container
    names; the SHA-256 of ``label``), no flow levels (nothing is padded), and the rules that
    tell the versions apart (docs/INTEGER.md "Predictive coders")."""

    name: str
    label: bytes
    #: fractional bits of the prediction (the coder's tables take the mean in eighths)
    frac_bits: int
    #: edges on the largest |residual| at N, W, NE, NW of the plane (none: not a context)
    neighbour_edges: tuple[int, ...]
    #: whether a tile's first row and column have contexts of their own
    border_context: bool
    #: whether parameters of the image's own list only the contexts it uses (FORMAT.md 3.5)
    sparse_params: bool
    #: SHA-256 of the shipped tables (FORMAT.md 3.5): the defaults, then any texture biases
    #: and learned tables
    defaults_sha256: str
    #: whether the prediction is corrected by the shipped bias of its texture key
    texture_bias: bool = False
    #: whether E also counts the errors at NN and WW, and the weights fall as E^−1.5
    far_errors: bool = False
    #: whether samples are coded with the coder's shipped tables (learned from the training
    #: photos, on the logistic tables' grid) instead of the logistic tables
    learned_tables: bool = False
    #: whether the image may send weights that correct each prediction (codec.correction)
    corrections: bool = False
    #: whether an image names its colour transform (TRANSFORMS) in the parameter part, and
    #: may send its chroma planes' correction weights per parity of a sample's position
    transforms: bool = False
    #: the coder whose shipped tables (models/<card>.json) it codes with, if not its own
    card: str = ""
    #: the colour transforms the encoder tries on every image, keeping the smallest result
    #: (none: :func:`encoder_transform`'s); not part of the coder's identity — a decoder
    #: reads each image's from its file
    colours: tuple[int, ...] = dataclasses.field(default=(), compare=False)
    levels: int = 0

    @property
    def model_id(self) -> str:
        return hashlib.sha256(self.label).hexdigest()

    @property
    def defaults_file(self) -> str:
        return f"{self.card or self.name}.json"

    @functools.cached_property
    def local_contexts(self) -> int:
        """Contexts of a plane before Co's and Cg's residual buckets."""
        borders = 2 if self.border_context else 1
        return ERROR_CONTEXTS * (len(self.neighbour_edges) + 1) * borders

    @functools.cached_property
    def max_error(self) -> int:
        """The largest neighbourhood error E: 2·(3 errors) + 1 error (+ 2 with
        ``far_errors``), each at most MAX_PREDICTOR_ERROR."""
        return (9 if self.far_errors else 7) * MAX_PREDICTOR_ERROR

    @functools.cached_property
    def weights(self) -> IntArray:
        """The blend's weight of every E (a lookup rather than a division per sample):
        ``2^24 // (E + 1)``, or with ``far_errors`` ``2^24 // ((E + 1)·isqrt(E + 1))``."""
        e1 = np.arange(self.max_error + 1) + 1
        if self.far_errors:
            return WEIGHT_ONE // (e1 * _isqrt(e1))
        return WEIGHT_ONE // e1

    @functools.cached_property
    def neighbour_bucket(self) -> IntArray:
        """The bucket on ``neighbour_edges`` of every |residual|."""
        return np.searchsorted(self.neighbour_edges, np.arange(MAX_RESIDUAL + 1), "right")

    @functools.cached_property
    def plane_first(self) -> IntArray:
        """Each plane's first context: Y has ``local_contexts``, Co and Cg that many times
        ``RESIDUAL_BUCKETS`` each."""
        return np.array([0, 1, 1 + RESIDUAL_BUCKETS]) * self.local_contexts

    @functools.cached_property
    def contexts(self) -> int:
        return (1 + 2 * RESIDUAL_BUCKETS) * self.local_contexts

    # the image codec's coder interface (codec.image.ImageCoder)

    def encode(self, rgb: np.ndarray, progress: Share | None = None) -> list[bytes]:
        return encode(rgb, self, progress)

    def encode_many(self, rgbs: Sequence[np.ndarray]) -> list[list[bytes]]:
        return encode_many(rgbs, self)

    def decode(
        self,
        streams: list[bytes],
        height: int,
        width: int,
        tile: int,
        compact: bool,
        progress: Share | None = None,
    ) -> np.ndarray:
        """:func:`decode`; the tile a container names must be ``TILE`` (``compact``: either
        payload layout holds the same streams)."""
        if tile != TILE:
            raise PredictiveError(f"bad tile size {tile}")
        return decode(streams, height, width, self, progress)

    def decode_many(
        self, streams: Sequence[list[bytes]], shapes: Sequence[tuple[int, int]]
    ) -> list[np.ndarray | None]:
        return decode_many(streams, shapes, self)

    def batch_count(self, height: int, width: int, tile: int) -> int:
        return batch_count(height, width)

    @property
    def mixes_shapes(self) -> bool:
        return True  # images of any shapes pushed together, their tiles in one sweep

    def codes_together(self, height: int, width: int, tile: int) -> bool:
        return tile == TILE  # any size

    @functools.cached_property
    def shift_groups(self) -> IntArray:
        """Each context's shift group: its plane × 4 + the group of its error context."""
        c = np.arange(self.contexts)
        plane = np.searchsorted(self.plane_first, c, side="right") - 1
        error = (c - self.plane_first[plane]) % ERROR_CONTEXTS
        return plane * (len(SHIFT_EDGES) + 1) + _ERROR_GROUP[error]


def _isqrt(n: IntArray) -> IntArray:
    """``math.isqrt`` of each of ``n`` (0 ≤ n < 2^52): the float square root's floor, made
    exact by one step each way."""
    root = np.floor(np.sqrt(n.astype(np.float64))).astype(np.int64)
    root -= root * root > n
    root += (root + 1) * (root + 1) <= n
    return root


V1 = PredictiveCoder(
    name="iodf-predictive-1",
    label=b"iodfz predictive coder 1 (docs/INTEGER.md)",
    frac_bits=0,
    neighbour_edges=(),
    border_context=False,
    sparse_params=False,
    defaults_sha256="6eb0331dba2de24baeb8ca1d3af4838c20527465162fa1eb396b6c1244c9bddb",
)
V2 = PredictiveCoder(
    name="iodf-predictive-2",
    label=b"iodfz predictive coder 2 (docs/INTEGER.md)",
    frac_bits=3,
    neighbour_edges=(2, 4, 8),
    border_context=True,
    sparse_params=True,
    defaults_sha256="98e930c700db61ba92da2c460dac6b2c9bddc6bb10b72c22b181077a6564c878",
)
V3 = dataclasses.replace(  # version 2 and three rules more
    V2,
    name="iodf-predictive-3",
    label=b"iodfz predictive coder 3 (docs/INTEGER.md)",
    defaults_sha256="924ddbb16f7992957bf28d8c81db91ee4e9339be420006189d0dc2ae5d5c99d1",
    texture_bias=True,
    far_errors=True,
    learned_tables=True,
)
V4 = dataclasses.replace(  # version 3 and weights of the image's own that correct predictions
    V3,
    name="iodf-predictive-4",
    label=b"iodfz predictive coder 4 (docs/INTEGER.md)",
    corrections=True,
    card=V3.name,
)
V5 = dataclasses.replace(  # version 4 and a colour transform chosen per image
    V4,
    name="iodf-predictive-5",
    label=b"iodfz predictive coder 5 (docs/INTEGER.md)",
    transforms=True,
)
#: Newest first; every coder here decodes, new files get the first whose tables are installed
#: intact (:func:`encoding_coder`).
CODERS = (V5, V4, V3, V2, V1)
CODER = V5


def coders_for(prefix: str) -> list[PredictiveCoder]:
    """The coders whose id starts with ``prefix`` (hex)."""
    return [coder for coder in CODERS if coder.model_id.startswith(prefix.lower())]


def logistic_tables() -> coder_tables.Tables:
    return pinned_tables(LOGISTIC_TABLES_HASH, coder_tables.default_tables)


# --- colour -----------------------------------------------------------------------------


#: The colour transforms of docs/INTEGER.md step 1, by the index a version 5 image names
#: (FORMAT.md 3.5); each keeps the planes in PLANE_RANGES.
YCOCG, SUBTRACT_GREEN, SUBTRACT_RED, GREEN_CHROMA = range(4)
TRANSFORMS = 4


def to_planes(rgb: np.ndarray, transform: int = YCOCG) -> IntArray:
    """(..., 3) uint8 RGB → (3, ...) int64 planes of ``transform`` (exactly invertible)."""
    r, g, b = (rgb[..., c].astype(np.int64) for c in range(3))
    if transform == SUBTRACT_GREEN:
        return np.stack([g, r - g, b - g])
    if transform == SUBTRACT_RED:
        return np.stack([r, g - r, b - r])
    if transform == GREEN_CHROMA:
        return np.stack([g, b - g, r - ((g + b) >> 1)])
    co = r - b  # YCoCg-R lifting
    t = b + (co >> 1)
    cg = g - t
    return np.stack([t + (cg >> 1), co, cg])


def to_rgb(planes: IntArray, transform: int = YCOCG) -> np.ndarray:
    """Inverse of :func:`to_planes` ((3, ...) → (..., 3) uint8)."""
    p0, p1, p2 = planes
    if transform == SUBTRACT_GREEN:
        r, g, b = p1 + p0, p0, p2 + p0
    elif transform == SUBTRACT_RED:
        r, g, b = p0, p1 + p0, p2 + p0
    elif transform == GREEN_CHROMA:
        g, b = p0, p1 + p0
        r = p2 + ((g + b) >> 1)
    else:
        t = p0 - (p2 >> 1)
        g = p2 + t
        b = t - (p1 >> 1)
        r = b + p1
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


# --- prediction -------------------------------------------------------------------------


def _predictors(n: IntArray, w: IntArray, nw: IntArray, ne: IntArray) -> IntArray:
    """The six predictions (6, ...)."""
    grad = n + w - nw
    med = np.where(
        nw >= np.maximum(n, w),
        np.minimum(n, w),
        np.where(nw <= np.minimum(n, w), np.maximum(n, w), grad),
    )
    return np.stack([n, w, grad, (n + ne) >> 1, w + ne - n, med])


def _blend(
    coder: PredictiveCoder,
    preds: IntArray,
    n_plus_ne: IntArray,
    errors: IntArray,
    low: IntArray,
    high: IntArray,
) -> tuple[IntArray, IntArray]:
    """(prediction in units of ``2^-frac_bits``, error context) from the six predictions, N + NE
    (P3 exactly) and their neighbourhood errors ``errors`` (6, ...): weights
    ``2^24 // (E + 1)``, rounded weighted mean, clamped to the plane's range."""
    bits = coder.frac_bits
    weights = coder.weights.take(errors)
    total = weights.sum(0)
    scaled = preds << bits
    scaled[3] = (n_plus_ne << bits) >> 1
    scaled *= weights
    blended = scaled.sum(0)
    blended += total >> 1
    blended //= total
    context = _ERROR_CONTEXT.take(errors.min(0))
    return np.clip(blended, low << bits, high << bits), context


def _rounded(coder: PredictiveCoder, pred: IntArray) -> IntArray:
    """The prediction rounded to a whole sample (what residual contexts are measured from)."""
    return (pred + ((1 << coder.frac_bits) >> 1)) >> coder.frac_bits


def _local_context(
    coder: PredictiveCoder, error_context: IntArray, neighbour_residual: IntArray, border: BoolArray
) -> IntArray:
    """A plane's context before Co's and Cg's residual buckets: the error context, then the
    bucket of the largest |residual| among N, W, NE, NW, then the tile's first row or column."""
    context = error_context
    if coder.neighbour_edges:
        context = context + ERROR_CONTEXTS * coder.neighbour_bucket.take(neighbour_residual)
    if coder.border_context:
        context = context + (coder.local_contexts // 2) * border
    return context


def _plane_contexts(coder: PredictiveCoder, local: IntArray, residual: IntArray) -> IntArray:
    """Each plane's contexts (numbered across the planes, plane-major) from planes (3, ...) of
    local contexts and residuals: Co's and Cg's also by the bucket of the previous plane's
    |residual| at the same pixel."""
    previous = _RESIDUAL_BUCKET.take(np.abs(residual[:-1]))
    chroma = local[1:] + coder.local_contexts * previous
    shape = (2,) + (1,) * (chroma.ndim - 1)
    return np.concatenate([local[:1], chroma + coder.plane_first[1:].reshape(shape)])


def _plane_bounds(shape: tuple[int, ...]) -> tuple[IntArray, IntArray]:
    low = np.array([r[0] for r in PLANE_RANGES]).reshape((3,) + (1,) * (len(shape) - 1))
    high = np.array([r[1] for r in PLANE_RANGES]).reshape(low.shape)
    return low, high


def _bordered(a: np.ndarray) -> np.ndarray:
    """``a`` with a zero row above and a zero column on each side of its last two axes."""
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 0), (1, 1)])


def _around(bordered: np.ndarray, h: int) -> list[np.ndarray]:
    """The N, W, NE and NW neighbours' values of every position of a bordered grid (zero
    outside)."""
    return [
        bordered[..., :h, 1:-1],
        bordered[..., 1:, :-2],
        bordered[..., :h, 2:],
        bordered[..., :h, :-2],
    ]


def _texture_key(
    coder: PredictiveCoder,
    preds: IntArray,
    far: tuple[IntArray, IntArray, IntArray],
    nw: IntArray,
    pred: IntArray,
    error_context: IntArray,
    plane: IntArray,
) -> IntArray:
    """Each sample's texture key (docs/INTEGER.md "Predictive coders", step 7): which of 12
    neighbour values and extrapolations exceed its prediction ``pred`` (units of
    ``2^-frac_bits``), with its plane and error context. ``preds`` are the six predictors (N,
    W, N + W − NW, …, W + NE − N), ``far`` NN, WW and NNE."""
    n, west, grad, _, ne_west, _ = preds
    nn, ww, nne = far
    ne = ne_west - west + n
    values = (n, west, nw, ne, nn, ww, 2 * n - nn, 2 * west - ww, nne, n + ne - nne, ne_west, grad)
    whole = pred >> coder.frac_bits  # v·2^F > p  ⇔  v > p >> F for a whole v
    texture = (values[0] > whole).astype(np.int16)
    for bit, value in enumerate(values[1:], start=1):
        texture |= (value > whole).astype(np.int16) << bit
    return ((plane << TEXTURE_BITS) + texture) * ERROR_CONTEXTS + error_context


def _biased(pred: IntArray, bias: IntArray, low: IntArray, high: IntArray, bits: int) -> IntArray:
    """The prediction moved by its texture key's bias, clamped to the plane's range."""
    return np.clip(pred + bias, low << bits, high << bits)


def predict(
    coder: PredictiveCoder, x: IntArray, bias: IntArray | None = None
) -> tuple[IntArray, IntArray]:
    """(prediction in units of ``2^-frac_bits``, context) of every sample of planes ``x``
    (3, T, h, w): what the decoder computes one anti-diagonal at a time, here at once from the
    known samples. ``bias``: a coder's texture biases (TEXTURE_KEYS,), by default its shipped
    ones."""
    if coder.texture_bias and bias is None:
        bias = shipped_bias(coder)
    pred, error_context, keys = _unbiased(coder, x)
    low, high = _plane_bounds(x.shape)
    if keys is not None:
        pred = _biased(pred, bias.take(keys), low, high, coder.frac_bits)
    h, w = x.shape[-2:]
    rows, cols = np.indices((h, w))
    residual = x - _rounded(coder, pred)
    largest = np.maximum.reduce(_around(_bordered(np.abs(residual)), h))
    local = _local_context(coder, error_context, largest, (rows == 0) | (cols == 0))
    return pred, _plane_contexts(coder, local, residual)


def texture_keys(coder: PredictiveCoder, x: IntArray) -> tuple[IntArray, IntArray]:
    """(prediction before the texture bias, texture key) of every sample of planes ``x``
    (3, T, h, w): what a coder's biases are fitted on."""
    pred, _, keys = _unbiased(coder, x)
    if keys is None:
        raise ValueError(f"{coder.name} has no texture biases")
    return pred, keys


def _near(x: IntArray) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """The N, W, NW and NE samples of every sample of ``x`` after the edge rules."""
    h, w = x.shape[-2:]
    rows, cols = np.indices((h, w))
    has_up, has_left, has_right = rows > 0, cols > 0, cols < w - 1
    p = _bordered(x)
    n = np.where(has_up, p[..., :h, 1:-1], p[..., 1:, :-2])  # the zero border at (0, 0)
    west = np.where(has_left, p[..., 1:, :-2], n)
    nw = np.where(has_up & has_left, p[..., :h, :-2], n)
    ne = np.where(has_up & has_right, p[..., :h, 2:], n)
    return n, west, nw, ne


def _far(x: IntArray, n: IntArray, west: IntArray, ne: IntArray) -> tuple[IntArray, ...]:
    """The NN, WW and NNE samples of every sample of ``x`` after the edge rules."""
    h, w = x.shape[-2:]
    rows, cols = np.indices((h, w))
    far = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(2, 0), (2, 0)])  # two rows above, two left
    up2 = rows > 1
    nn = np.where(up2, far[..., :h, 2:], n)
    ww = np.where(cols > 1, far[..., 2:, :w], west)
    nne = np.where(up2, np.where(cols < w - 1, _shifted_left(far[..., :h, 2:]), nn), ne)
    return nn, ww, nne


def correction_features(coder: PredictiveCoder, x: IntArray, pred: IntArray) -> IntArray:
    """The 23 correction features (23, ...) of every sample of planes ``x`` (3, T, h, w) with
    predictions ``pred`` (eighths): :func:`correction.features`, then the previous plane's
    residual at the sample (what the decoder computes one anti-diagonal at a time)."""
    h, w = x.shape[-2:]
    n, west, nw, ne = _near(x)
    residual = x - _rounded(coder, pred)
    # residual (i, j) at (i + 2, j + 2): zero two rows above, two columns left and one right
    bordered = np.pad(residual, [(0, 0)] * (x.ndim - 2) + [(2, 0), (2, 1)])
    previous = np.zeros_like(bordered)
    previous[1:] = bordered[:-1]

    def at(a: IntArray, up: int, left: int) -> IntArray:
        return a[..., 2 - up : 2 - up + h, 2 - left : 2 - left + w]

    near = ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2))
    residuals = [at(bordered, *d) for d in near]
    residuals += [at(previous, 1, 0), at(previous, 0, 1), at(previous, 0, 0)]
    return correction.features([n, west, nw, ne, *_far(x, n, west, ne)], pred, residuals)


def _unbiased(coder: PredictiveCoder, x: IntArray) -> tuple[IntArray, IntArray, IntArray | None]:
    """(blended prediction, error context, texture key or None) of every sample of ``x``."""
    h, w = x.shape[-2:]
    n, west, nw, ne = _near(x)
    preds = _predictors(n, west, nw, ne)
    # absent: 0; int16 holds them and their sums E (at most coder.max_error, 9 180)
    errors = np.zeros((PREDICTORS, *x.shape[:-2], h + 2, w + 3), np.int16)
    for k, pk in enumerate(preds):
        np.abs(x - pk, out=errors[k, ..., 2:, 2:-1], casting="unsafe")
    e_n, e_w, e_ne, e_nw = (
        errors[..., 1:-1, 2:-1],
        errors[..., 2:, 1:-2],
        errors[..., 1:-1, 3:],
        errors[..., 1:-1, 1:-2],
    )
    near = e_n + e_w
    near += e_ne
    near *= 2
    near += e_nw
    if coder.far_errors:
        near += errors[..., :-2, 2:-1]  # NN
        near += errors[..., 2:, :-3]  # WW
    pred, error_context = _blend(coder, preds, n + ne, near, *_plane_bounds(x.shape))
    if not coder.texture_bias:
        return pred, error_context, None
    plane = np.arange(3).reshape((3,) + (1,) * (x.ndim - 1))
    keys = _texture_key(coder, preds, _far(x, n, west, ne), nw, pred, error_context, plane)
    return pred, error_context, keys


def _shifted_left(a: np.ndarray) -> np.ndarray:
    """``a[..., j + 1]`` at column ``j`` (the last column repeated)."""
    return np.concatenate([a[..., 1:], a[..., -1:]], axis=-1)


# --- parameters -------------------------------------------------------------------------


_KEY_VALUES = 2047  # residuals −1023 … 1023 (clipped)


def coding_tables(coder: PredictiveCoder) -> coder_tables.Tables:
    """The tables a coder codes samples with: the logistic tables, or its shipped ones
    (PredictiveError if they are not installed intact)."""
    if not coder.learned_tables:
        return logistic_tables()
    tables = shipped(coder)
    if tables is None or tables.tables is None:
        raise PredictiveError(f"needs {coder.defaults_file}, which is not installed intact")
    return tables.tables


def _scale_bits(tables: coder_tables.Tables) -> np.ndarray:
    """Ideal bits (64 scales, 8 phases, value −1023 … 1023) of a set of tables on the logistic
    tables' grid; an escape counts 24 bits. A view of :func:`_shift_bits`."""
    rows = coder_tables.NUM_SCALES * coder_tables.NUM_PHASES
    padding = _SHIFT_PAD * coder_tables.NUM_PHASES * _KEY_VALUES
    middle = _shift_bits(tables)[padding : padding + rows * _KEY_VALUES]
    return middle.reshape(coder_tables.NUM_SCALES, coder_tables.NUM_PHASES, -1)


_SHIFT_PAD = 8  # copies of the first and of the last scale around the grid (shifts −8 … 7)


@functools.lru_cache(maxsize=4)
def _shift_bits(tables: coder_tables.Tables) -> np.ndarray:
    """:func:`_scale_bits` flat, with 8 copies of the first scale before it and 8 of the last
    after it: scale index ``s + shift`` clamped to the grid is row ``s + 8 + shift``. Built in
    one array (the fits read it; ~10 MB)."""
    return _shift_bits_of(tables, -1023, 1023)


def _shift_bits_of(tables: coder_tables.Tables, first: int, last: int) -> np.ndarray:
    """:func:`_shift_bits` of the values ``first`` … ``last`` only: the columns of the values
    a batch's counts hold (the shift search's table for 95 photos of 32 × 32 is a fifth of the
    whole, and every MB of new memory costs a short command ~0.3–1 ms here)."""
    ideal = -np.log2(tables.freq / float(1 << tables.precision))  # as coder_tables.symbol_bits
    scales, phases, width = coder_tables.NUM_SCALES, coder_tables.NUM_PHASES, last - first + 1
    out = np.empty((scales + 2 * _SHIFT_PAD, phases, width))
    grid = out[_SHIFT_PAD : _SHIFT_PAD + scales].reshape(scales * phases, width)
    grid[:] = (ideal[tables.base + tables.nsym] + 16.0)[:, None]  # escapes
    # each table's symbols are a run of values from its lo: those within the columns
    table = np.repeat(np.arange(tables.count), tables.nsym)
    index = np.arange(len(table)) - np.repeat(np.cumsum(tables.nsym) - tables.nsym, tables.nsym)
    column = tables.lo.take(table) + index - first
    inside = (column >= 0) & (column < width)
    grid[table[inside], column[inside]] = ideal.take((tables.base.take(table) + index)[inside])
    out[:_SHIFT_PAD] = out[_SHIFT_PAD]
    out[_SHIFT_PAD + scales :] = out[_SHIFT_PAD + scales - 1]
    return out.ravel()


class Counts(NamedTuple):
    """How often each (phase, residual) falls in each context — phase: the prediction's
    eighths (0 … 7), residual: the sample less the prediction's whole part (clipped to
    ±1023) — the nonzero counts, ordered by context, phase, residual."""

    context: IntArray
    phase: IntArray
    residual: IntArray
    count: IntArray

    @staticmethod
    def of(keys: IntArray, weights: IntArray | None = None) -> Counts:
        if weights is None:
            unique, count = np.unique(_narrowed(keys), return_counts=True)
            return Counts.of_unique(unique.astype(np.int64), count.astype(np.int64))
        unique, inverse = np.unique(keys, return_inverse=True)
        count = np.bincount(inverse.ravel(), weights, len(unique)).astype(np.int64)
        return Counts.of_unique(unique, count)

    @staticmethod
    def of_unique(keys: IntArray, count: IntArray) -> Counts:
        """The counts ``count`` of the distinct, ascending ``keys``."""
        rest, residual = np.divmod(keys, _KEY_VALUES)
        context, phase = np.divmod(rest, coder_tables.NUM_PHASES)
        return Counts(context, phase, residual - 1023, count)

    def keys(self) -> IntArray:
        return _keys(self.context, self.phase, self.residual)

    def __add__(self, other: Counts) -> Counts:
        keys = np.concatenate([self.keys(), other.keys()])
        return Counts.of(keys, np.concatenate([self.count, other.count]))


def _narrowed(keys: IntArray) -> np.ndarray:
    """``keys`` as int32 where they fit (sorting them is then twice as fast)."""
    return keys.astype(np.int32) if keys.size and int(keys.max()) < 1 << 31 else keys


def _keys(context: IntArray, phase: IntArray, residual: IntArray) -> IntArray:
    residual = np.clip(residual, -1023, 1023) + 1023
    return (context * coder_tables.NUM_PHASES + phase) * _KEY_VALUES + residual


def _sample_keys(
    coder: PredictiveCoder, x: IntArray, pred: IntArray, contexts: IntArray
) -> IntArray:
    eighths = pred.astype(np.int64) << (3 - coder.frac_bits)
    residual = x.astype(np.int64) - (eighths >> 3)
    return _keys(contexts.astype(np.int64), eighths & 7, residual)


def histograms(coder: PredictiveCoder, x: IntArray, pred: IntArray, contexts: IntArray) -> Counts:
    """The samples' counts per context, with predictions ``pred`` (units of 2^-frac_bits)."""
    return Counts.of(_sample_keys(coder, x, pred, contexts).ravel())


def histograms_many(
    coder: PredictiveCoder, x: np.ndarray, pred: np.ndarray, contexts: np.ndarray, images: int
) -> list[Counts]:
    """:func:`histograms` of each of ``images`` images whose tiles are planes (3, tiles, h, w)
    (image-major): one sort for the samples of as many images as make ``HISTOGRAM_SAMPLES``."""
    per_image = x.size // images
    step = max(1, HISTOGRAM_SAMPLES // per_image)
    out = []
    for first in range(0, images, step):
        n = min(step, images - first)
        part = (a.reshape(3, images, -1)[:, first : first + n] for a in (x, pred, contexts))
        keys = _sample_keys(coder, *part).transpose(1, 0, 2).reshape(n, -1)
        space = coder.contexts * coder_tables.NUM_PHASES * _KEY_VALUES
        keys += space * np.arange(n)[:, None]
        unique, count = np.unique(_narrowed(keys), return_counts=True)
        image, key = np.divmod(unique.astype(np.int64), space)
        bounds = np.searchsorted(image, np.arange(n + 1))
        out += [Counts.of_unique(key[a:b], count[a:b]) for a, b in itertools.pairwise(bounds)]
    return out


def _mean_costs(
    counts: Counts, scales: IntArray, means: IntArray, tables: coder_tables.Tables
) -> np.ndarray:
    """Ideal bits of each count under its (scale, mean) (arrays broadcasting with the counts)."""
    total = counts.phase + means
    at = np.clip(counts.residual - (total >> 3), -1023, 1023) + 1023
    return _scale_bits(tables)[scales, total & 7, at] * counts.count


def fit(
    coder: PredictiveCoder, counts: Counts, tables: coder_tables.Tables | None = None
) -> IntArray:
    """(contexts, 2): the scale index and mean (1/8 units) of each context minimising the
    ideal code length of its samples (0, 0 for a context no sample falls in): the means
    within 4 of the samples' average; for each, every fourth scale, then the 7 scales around
    the best of those; the first of equals (means ascending, then scales). All contexts at
    once, one mean at a time. ``tables``: what the samples are coded with (by default the
    coder's)."""
    params = np.zeros((coder.contexts, 2), np.int64)
    if not len(counts.count):
        return params
    starts = np.flatnonzero(np.diff(counts.context, prepend=-1))
    entries = np.diff(starts, append=len(counts.count))
    weights = counts.count.astype(np.float64)
    average = np.add.reduceat((8 * counts.residual - counts.phase) * weights, starts)
    centre = np.rint(average / np.add.reduceat(weights, starts)).astype(np.int64)
    bits = _scale_bits(coding_tables(coder) if tables is None else tables)
    rows = bits.reshape(coder_tables.NUM_SCALES, -1)  # (scale, phase · value)
    coarse = rows[::FIT_STEP]
    best = np.full(len(starts), np.inf)
    chosen = np.zeros((len(starts), 2), np.int64)
    for offset in range(-4, 5):
        mean = centre + offset
        total = counts.phase + np.repeat(mean, entries)
        at = np.clip(counts.residual - (total >> 3), -1023, 1023) + 1023 + (total & 7) * _KEY_VALUES
        near = np.add.reduceat(coarse.take(at, axis=1) * weights, starts, axis=1).argmin(0)
        first = np.clip(
            near * FIT_STEP - FIT_STEP + 1, 0, coder_tables.NUM_SCALES - 2 * FIT_STEP + 1
        )
        scales = first + np.arange(2 * FIT_STEP - 1)[:, None]  # (7, contexts)
        flat = np.repeat(scales, entries, axis=1) * rows.shape[1] + at
        costs = np.add.reduceat(rows.ravel().take(flat) * weights, starts, axis=1)
        pick = costs.argmin(0)
        lowest = costs[pick, np.arange(len(starts))]
        better = (lowest < best) & (np.abs(mean) <= MAX_MEAN)
        best[better] = lowest[better]
        chosen[better] = np.stack([scales[pick, np.arange(len(starts))], mean], axis=1)[better]
    params[counts.context[starts]] = chosen
    return params


def cost(counts: Counts, params: IntArray, tables: coder_tables.Tables) -> float:
    """Ideal bits of the counted samples with ``params`` (context by context) and ``tables``."""
    chosen = params[counts.context]
    return float(_mean_costs(counts, chosen[:, 0], chosen[:, 1], tables).sum())


def shifted(coder: PredictiveCoder, defaults: IntArray, shifts: IntArray) -> IntArray:
    """``defaults`` with each context's scale index moved by its group's shift (clamped to
    the grid)."""
    params = defaults.copy()
    moved = defaults[:, 0] + shifts[coder.shift_groups]
    params[:, 0] = np.clip(moved, 0, coder_tables.NUM_SCALES - 1)
    return params


def pack_shifts(shifts: IntArray) -> bytes:
    """Two 4-bit two's complement shifts a byte, the first in the low half."""
    nibbles = (shifts & 15).reshape(-1, 2)
    return (nibbles[:, 0] | nibbles[:, 1] << 4).astype(np.uint8).tobytes()


def unpack_shifts(data: bytes) -> IntArray:
    raw = np.frombuffer(data, np.uint8).astype(np.int64)
    nibbles = np.stack([raw & 15, raw >> 4], axis=1).ravel()
    return nibbles - 16 * (nibbles >= 8)


def choose_params(coder: PredictiveCoder, counts: Counts) -> tuple[float, bytes, IntArray]:
    """(ideal bits, parameter part, parameters): the shipped defaults with the best shift
    per group, or parameters fitted to this image when that is smaller, parameter part
    included in the bits (not tried below OWN_FROM samples, where parameters of its own
    never pay)."""
    return choose_many(coder, [counts])[0]


def choose_many(
    coder: PredictiveCoder, counts: Sequence[Counts]
) -> list[tuple[float, bytes, IntArray]]:
    """:func:`choose_params` of each image's counts, the defaults' shifts found for all at
    once."""
    defaults = default_params(coder)
    tables = coding_tables(coder)
    if defaults is not None:
        shifts, bits = _best_shifts(coder, defaults, counts, tables)
    out = []
    for k, image in enumerate(counts):
        candidates = []
        if defaults is not None:
            part = bytes([MODE_DEFAULTS]) + pack_shifts(shifts[k])
            candidates.append((bits[k] + 8 * len(part), part, shifted(coder, defaults, shifts[k])))
        if defaults is None or image.count.sum() >= OWN_FROM:
            own = fit(coder, image, tables)
            used = np.zeros(coder.contexts, bool)
            used[image.context] = True
            part = bytes([MODE_OWN]) + pack_params(coder, own, used)
            candidates.append((cost(image, own, tables) + 8 * len(part), part, own))
        out.append(min(candidates, key=lambda c: c[0]))
    return out


def _best_shifts(
    coder: PredictiveCoder,
    defaults: IntArray,
    counts: Sequence[Counts],
    tables: coder_tables.Tables,
) -> tuple[IntArray, np.ndarray]:
    """Each image's best shift (−8 … 7) per group of its counts (images, SHIFT_COUNT), the
    first of equals, and the bits of its samples with them (images,). The counts of as many
    images as make ``SHIFT_KEYS`` at a time, with the bits of the values they can reach only
    (:func:`_shift_bits_of`)."""
    means = defaults[:, 1]
    held = [c.residual for c in counts if len(c.residual)]
    if held:  # value = residual − ((phase + mean) >> 3), clipped: its least and greatest
        least = min(int(r.min()) for r in held) - ((7 + int(means.max())) >> 3)
        most = max(int(r.max()) for r in held) - (int(means.min()) >> 3)
        first, last = max(least, -1023), min(most, 1023)
    else:
        first, last = 0, 0
    flat = _shift_bits_of(tables, first, last)
    per_slot = np.empty((len(counts) * SHIFT_COUNT, 16))
    begin = 0
    while begin < len(counts):
        end, keys = begin + 1, len(counts[begin].count)
        while end < len(counts) and keys + len(counts[end].count) <= SHIFT_KEYS:
            keys += len(counts[end].count)
            end += 1
        rows = slice(begin * SHIFT_COUNT, end * SHIFT_COUNT)
        per_slot[rows] = _shift_costs(coder, defaults, counts[begin:end], flat, first, last)
        begin = end
    shifts = (per_slot.argmin(1) - 8).reshape(len(counts), SHIFT_COUNT)
    return shifts, per_slot.min(1).reshape(len(counts), SHIFT_COUNT).sum(1)


def _shift_costs(
    coder: PredictiveCoder,
    defaults: IntArray,
    counts: Sequence[Counts],
    flat: np.ndarray,
    first: int,
    last: int,
) -> np.ndarray:
    """The bits of each group of each image's counts with each shift −8 … 7 (images ·
    SHIFT_COUNT, 16), from ``flat``: :func:`_shift_bits_of` the values ``first`` … ``last``."""
    fields = ("context", "phase", "residual", "count")
    joined = Counts(*(np.concatenate([getattr(c, f) for c in counts]) for f in fields))
    image = np.repeat(np.arange(len(counts)), [len(c.count) for c in counts])
    context = joined.context
    total = joined.phase + defaults[context, 1]
    width = last - first + 1
    span = coder_tables.NUM_PHASES * width  # one scale's bits in the flat table
    at = np.clip(joined.residual - (total >> 3), -1023, 1023) - first + (total & 7) * width
    at += defaults[context, 0] * span  # the default scale shifted by −8, in the padded table
    slot = image * SHIFT_COUNT + coder.shift_groups[context]
    slots = len(counts) * SHIFT_COUNT
    count = joined.count.astype(np.float64)
    per_slot = np.empty((slots, 16))
    for k in range(16):  # shifts −8 … 7
        per_slot[:, k] = np.bincount(slot, flat.take(at) * count, slots)
        at += span
    return per_slot


def split_params(
    coder: PredictiveCoder, first: bytes, defaults: IntArray | None
) -> tuple[IntArray, IntArray | None, int, bytes]:
    """(parameters, correction weights or None, colour transform, first stream) of a
    payload's first part, which begins with the parameter part (FORMAT.md 3.5), given the
    coder's ``default_params``; PredictiveError if it is damaged, or needs default parameters
    that are not installed intact."""
    if not first:
        raise PredictiveError("parameter part is empty")
    mode, transform, parity, packed = first[0], YCOCG, False, False
    if coder.transforms and mode < 2 * MODE_PACKED:
        transform = (mode >> TRANSFORM_SHIFT) % TRANSFORMS
        parity, packed = bool(mode & MODE_PARITY), bool(mode & MODE_PACKED)
        mode &= (1 << TRANSFORM_SHIFT) - 1  # the mode proper: own or defaults, corrected
    corrected = coder.corrections and bool(mode & MODE_CORRECTED)
    mode = mode & ~MODE_CORRECTED if corrected else mode
    if parity and not corrected:
        raise PredictiveError("bad parameter part")
    body, stream = _unpacked(coder, first[1:]) if packed else (first[1:], b"")
    if mode == MODE_DEFAULTS and len(body) >= SHIFTS_BYTES:
        if defaults is None:
            raise PredictiveError(f"needs {coder.defaults_file}, which is not installed intact")
        params, rest = (
            shifted(coder, defaults, unpack_shifts(body[:SHIFTS_BYTES])),
            body[SHIFTS_BYTES:],
        )
    elif mode == MODE_OWN:
        params, size = unpack_params(coder, body)
        rest = body[size:]
    else:
        raise PredictiveError("bad parameter part")
    weights = None
    if corrected:
        try:
            block = correction.unpack(rest, parity)
        except ValueError as exc:
            raise PredictiveError(str(exc)) from None
        weights = correction.expand(block, parity)
        rest = rest[correction.block_bytes(parity) :]
    if packed and rest:  # a packed frame holds the parameter part and nothing else
        raise PredictiveError("bad parameter part")
    return params, weights, transform, stream if packed else rest


def _unpacked(coder: PredictiveCoder, data: bytes) -> tuple[bytes, bytes]:
    """(parameter part after the mode byte, first stream) of a packed parameter part's rest:
    a uint length, then a zstd frame of that many bytes (codec.zframe) holding at most the
    longest parameter part there is (FORMAT.md 3.5)."""
    try:
        size, at = varint.decode(data, 0)
    except varint.VarintError:
        raise PredictiveError("parameter part is cut short") from None
    if at + size > len(data):
        raise PredictiveError("parameter part is cut short")
    longest = -(-coder.contexts // 8) + 2 * coder.contexts + correction.block_bytes(True)
    try:
        body = zframe.unpack(data[at : at + size], longest)
    except zframe.FrameError as exc:
        raise PredictiveError(f"parameter part {exc}") from None
    return body, data[at + size :]


class Shipped(NamedTuple):
    """A coder's shipped tables (models/<name>.json): default parameters and, for a coder
    with texture biases, the bias of each texture key (eighths of a sample), and with learned
    tables its rANS tables."""

    params: IntArray
    bias: IntArray | None
    tables: coder_tables.Tables | None


def default_params(coder: PredictiveCoder) -> IntArray | None:
    """The coder's shipped default parameters (fitted on the training photos by
    scripts/fit_predictive.py) if found intact, else None."""
    tables = shipped(coder)
    return None if tables is None else tables.params


def shipped_bias(coder: PredictiveCoder) -> IntArray:
    """The coder's shipped texture biases; PredictiveError if they are not installed intact
    (a coder with texture biases cannot code without them)."""
    tables = shipped(coder)
    if tables is None or tables.bias is None:
        raise PredictiveError(f"needs {coder.defaults_file}, which is not installed intact")
    return tables.bias


def every_transform(coder: PredictiveCoder) -> PredictiveCoder:
    """The coder as the max level's encoder: trying every colour transform it can name."""
    if not coder.transforms:
        return coder
    return dataclasses.replace(coder, colours=tuple(range(TRANSFORMS)))


def encoding_coder() -> PredictiveCoder:
    """What new files get: the newest coder whose shipped tables it cannot do without are
    installed intact (a coder without texture biases can fit parameters of the image's own)."""
    for coder in CODERS:
        if not coder.texture_bias or shipped(coder) is not None:
            return coder
    raise AssertionError("a coder without texture biases is always usable")


def shipped(coder: PredictiveCoder) -> Shipped | None:
    """The coder's shipped tables (models/<name>.json) if found with their pinned hash, else
    None. Read once per state of the files (path, size, modification time), like the model
    cards: a process whose model folders change sees the change."""
    found = []
    for folder in zoo.model_dirs():
        path = folder / coder.defaults_file
        with contextlib.suppress(OSError):
            stat = path.stat()
            found.append((str(path), stat.st_size, stat.st_mtime_ns))
    return _shipped_in(coder, tuple(found))


@functools.lru_cache(maxsize=8)
def _shipped_in(coder: PredictiveCoder, files: tuple[tuple[str, int, int], ...]) -> Shipped | None:
    for path, _, _ in files:
        try:
            card = json.loads(Path(path).read_text())
            packed = np.array(card["scales"], np.uint8).tobytes()
            packed += np.array(card["means"], np.int8).tobytes()
            bias = _card_bytes(card["biases"], TEXTURE_KEYS) if coder.texture_bias else b""
            size = 2 * int((coder_tables.logistic_grid()[1] + 1).sum())  # u16 a symbol
            freq = _card_bytes(card["tables"], size) if coder.learned_tables else b""
        except (OSError, ValueError, KeyError, TypeError, zlib.error):
            continue
        if hashlib.sha256(packed + bias + freq).hexdigest() != coder.defaults_sha256:
            continue
        params = unpack_params(dataclasses.replace(coder, sparse_params=False), packed)[0]
        table = np.frombuffer(bias, np.int8).astype(np.int64) if bias else None
        try:
            learned = learned_tables(np.frombuffer(freq, "<u2")) if freq else None
        except CoderError:
            continue
        return Shipped(params, table, learned)
    return None


def learned_tables(freq: np.ndarray) -> coder_tables.Tables:
    """Tables on the logistic tables' grid (each table's values and escape where the
    logistic table has them) with frequencies ``freq``, in the logistic tables' order. Built
    from the grid alone: the logistic tables' own frequencies are never needed (reading and
    checking them cost a command ~6 ms)."""
    lo, nsym = coder_tables.logistic_grid()
    return coder_tables.tables_from_flat(lo, nsym, freq.astype(np.int64), coder_tables.PRECISION)


def card_array(raw: bytes) -> str:
    """Bytes of a shipped array (texture biases, table frequencies) as a card stores them:
    deflated, base64."""
    return base64.b64encode(zlib.compress(raw, 9)).decode()


def _card_bytes(text: str, size: int) -> bytes:
    """The bytes of a card's array (ValueError unless exactly ``size`` of them)."""
    inflate = zlib.decompressobj()
    raw = inflate.decompress(base64.b64decode(text, validate=True), size + 1)
    if len(raw) != size or not inflate.eof:
        raise ValueError("a shipped array of the wrong size")
    return raw


def defaults_bytes(params: IntArray) -> bytes:
    """Default parameters as their pinned hash covers them: every context's scale index (u8),
    then every context's mean (i8); a coder's texture biases and tables follow them under the
    hash (FORMAT.md 3.5)."""
    return params[:, 0].astype(np.uint8).tobytes() + params[:, 1].astype(np.int8).tobytes()


def pack_params(coder: PredictiveCoder, params: IntArray, used: BoolArray) -> bytes:
    """Parameters of an image's own (FORMAT.md 3.5): every context's (``sparse_params``: a
    bitmap of the contexts used, then the used ones') scale indices, then their means."""
    if not coder.sparse_params:
        return defaults_bytes(params)
    return np.packbits(used, bitorder="little").tobytes() + defaults_bytes(params[used])


def unpack_params(coder: PredictiveCoder, data: bytes) -> tuple[IntArray, int]:
    """(parameters, bytes read) of parameters of an image's own at the start of ``data``;
    contexts a bitmap leaves out get (0, 0)."""
    contexts = coder.contexts
    used = np.ones(contexts, bool)
    start = 0
    if coder.sparse_params:
        start = -(-contexts // 8)
        if len(data) < start:
            raise PredictiveError("parameter part is cut short")
        bitmap = np.frombuffer(data[:start], np.uint8)
        used = np.unpackbits(bitmap, count=contexts, bitorder="little").astype(bool)
    k = int(used.sum())
    if len(data) < start + 2 * k:
        raise PredictiveError("parameter part is cut short")
    raw = np.frombuffer(data[start : start + 2 * k], np.uint8)
    scales = raw[:k].astype(np.int64)
    means = raw[k:].view(np.int8).astype(np.int64)
    if k and (int(scales.max()) >= coder_tables.NUM_SCALES or int(np.abs(means).max()) > MAX_MEAN):
        raise PredictiveError("parameter out of range")
    params = np.zeros((contexts, 2), np.int64)
    params[used] = np.stack([scales, means], axis=-1)
    return params, start + 2 * k


FlatParams = tuple[IntArray, IntArray]


def _flat_params(params: IntArray) -> tuple[FlatParams, IntArray]:
    """Parameters (rows, contexts, 2) as their scales and their means, each flat, and where
    each row starts in them: a sample's parameters are then one 1-d take away, which numpy
    does several times faster than indexing by row and context."""
    rows, contexts, _ = params.shape
    flat = (params[..., 0].ravel(), params[..., 1].ravel())
    return flat, np.arange(rows, dtype=np.int64) * contexts


def _coding(
    coder: PredictiveCoder, params: FlatParams, at: IntArray, pred: IntArray
) -> tuple[IntArray, IntArray]:
    """(table index, offset) of samples with predictions ``pred`` whose contexts' parameters
    are at ``at`` in ``params`` (:func:`_flat_params`): the logistic table of the context's
    scale, centred on the prediction plus the context's mean."""
    scales, means = params
    mean = (pred << (3 - coder.frac_bits)) + means.take(at)
    return coder_tables.logistic_index(scales.take(at), mean)


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
    return list(tiling.batches(height, width, TILE))


def batch_count(height: int, width: int) -> int:
    return tiling.batch_count(height, width, TILE)


def encode(
    rgb: np.ndarray, coder: PredictiveCoder = CODER, progress: Share | None = None
) -> list[bytes]:
    """(H, W, 3) uint8 → one compact rANS stream per batch, the first after the parameter
    part."""
    if len(coder.colours) > 1:  # each transform's coding a share of the progress
        tries = []
        for k, one in enumerate(_one_colour_each(coder)):
            share = None if progress is None else _share_of(progress, k, len(coder.colours))
            tries.append(_encode_shapes(one, [[rgb]], share)[0])
        return _smallest(tries)[0]
    return _encode_shapes(coder, [[rgb]], progress)[0][0]


def _share_of(progress: Share, k: int, parts: int) -> Share:
    """The progress of the ``k``-th of ``parts`` equal parts of one image's coding."""
    return lambda done: progress((k + done) / parts)


def _one_colour_each(coder: PredictiveCoder) -> list[PredictiveCoder]:
    return [dataclasses.replace(coder, colours=(c,)) for c in coder.colours]


def _smallest(tries: Sequence[list[list[bytes]]]) -> list[list[bytes]]:
    """Each image's smallest streams of ``tries`` (per try, each image's streams)."""
    return [min(image, key=lambda s: sum(map(len, s))) for image in zip(*tries, strict=True)]


def encode_many(rgbs: Sequence[np.ndarray], coder: PredictiveCoder = CODER) -> list[list[bytes]]:
    """``[encode(rgb) for rgb in rgbs]`` (each the very bytes ``encode`` gives): images of one
    shape predicted together, each image's parameters chosen alone, and the streams of images
    of any shapes pushed in lockstep — as many images as make ``GROUP_PIXELS`` at a time. A
    coder with several ``colours`` codes the images with each, keeping each image's smallest."""
    if len(coder.colours) > 1:
        return _smallest([encode_many(rgbs, one) for one in _one_colour_each(coder)])
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for k, rgb in enumerate(rgbs):
        by_shape.setdefault(rgb.shape, []).append(k)
    units = []  # images of one shape predicted together
    for (h, w, _), members in by_shape.items():
        per_group = max(1, GROUP_PIXELS // (h * w))
        units += [members[i : i + per_group] for i in range(0, len(members), per_group)]
    calls: list[list[list[int]]] = []  # units pushed together: GROUP_PIXELS (a larger alone)
    pixels = 0
    for unit in units:
        size = len(unit) * rgbs[unit[0]].shape[0] * rgbs[unit[0]].shape[1]
        if calls and pixels + size <= GROUP_PIXELS:
            calls[-1].append(unit)
            pixels += size
        else:
            calls.append([unit])
            pixels = size
    out: list[list[bytes]] = [[] for _ in rgbs]
    for call in calls:
        coded = _encode_shapes(coder, [[rgbs[k] for k in unit] for unit in call])
        for unit, streams in zip(call, coded, strict=True):
            for k, image_streams in zip(unit, streams, strict=True):
                out[k] = image_streams
    return out


def _encode_shapes(
    coder: PredictiveCoder, groups: Sequence[Sequence[np.ndarray]], progress: Share | None = None
) -> list[list[list[bytes]]]:
    """The streams of each image of each group (images of one shape each). A group's images
    are predicted batch by batch (their tiles together, image-major) and their parameters
    chosen; then every batch of every group pushes its streams in lockstep, all batches in
    one step loop a round at a time (:func:`lockstep.push_together`): the same number of
    rows of lanes each, so that the batches' steps run together rather than one after the
    other."""
    tables = coding_tables(coder)
    encoders, pushes, parts = [], [], []
    for rgbs in groups:
        images = len(rgbs)
        coded, chosen = _chosen(coder, rgbs)
        params = np.stack([p for _, _, p in chosen])
        parts.append([part for _, part, _ in chosen])
        group = []
        for batch in coded:
            _, tiles, h, w = batch[0].shape
            tiles //= images
            by_image = [
                a.reshape(3, images, -1).transpose(1, 0, 2).reshape(images, -1) for a in batch
            ]
            group.append(lockstep.Encoder(images, _lanes(tiles, h, w)))
            pushes.append((group[-1], params, by_image, _push_order(tiles, h, w)))
        encoders.append(group)
    rows = max(1, ROUND_SYMBOLS // sum(e.lanes * len(e.x) for e, *_ in pushes))
    rounds = [
        (encoder, _pieces(coder, params, *by_image, *order, encoder.lanes, rows))
        for encoder, params, by_image, order in pushes
    ]
    total, done = sum(len(order[0]) * len(e.x) for e, _, _, order in pushes), 0
    while rounds:
        now = [(encoder, next(pieces, None)) for encoder, pieces in rounds]
        rounds = [r for r, (_, piece) in zip(rounds, now, strict=True) if piece is not None]
        ready = [(encoder, tables, *piece) for encoder, piece in now if piece is not None]
        lockstep.push_together(ready)
        done += sum(np.size(piece[0]) for _, _, *piece in ready)
        if progress and ready:
            progress(done / total)
    out = []
    for group, image_parts in zip(encoders, parts, strict=True):
        streams = [encoder.finish() for encoder in group]
        out.append(
            [
                [image_parts[k] + streams[0][k], *(s[k] for s in streams[1:])]
                for k in range(len(image_parts))
            ]
        )
    return out


def _chosen(
    coder: PredictiveCoder, rgbs: Sequence[np.ndarray]
) -> tuple[list[tuple[np.ndarray, ...]], list[tuple[float, bytes, IntArray]]]:
    """Images of one shape predicted batch by batch — (planes, predictions, contexts), their
    tiles together, image-major — and each image's parameters chosen (ideal bits, parameter
    part, parameters); an image that sends correction weights has its batches' predictions
    corrected."""
    height, width, _ = rgbs[0].shape
    images, samples = len(rgbs), 3 * height * width
    transform = encoder_transform(coder, height, width)
    coded = [
        _predicted(
            coder, [rgb[y : y + h, x : x + w] for rgb in rgbs for y, x, h, w in rects], transform
        )
        for rects in _batches(height, width)
    ]
    if not coder.corrections or samples < OWN_FROM:
        return coded, _final_parts(coder, _choose(coder, coded, images), transform)
    fits = [correction.Fit() for _ in range(images)]
    for batch in coded:
        _fit_pass(coder, batch, images, fits)
    solved = [_solved(fit, coder.transforms, samples) for fit in fits]
    weights = np.stack([correction.expand(w, parity) for w, parity, _ in solved])
    parities = [parity for _, parity, _ in solved]
    moved = [_corrected_pass(coder, batch, weights, parities) for batch in coded]
    corrected = _choose(
        coder, [(x, p, c) for (x, _, c), p in zip(coded, moved, strict=True)], images
    )
    blocks = [8 * correction.block_bytes(parity) for _, parity, _ in solved]
    # where the fit promises far more than the weights cost, the plain coding is not tried
    sure = [
        saving * samples > SURE_SAVING * block
        for (_, _, saving), block in zip(solved, blocks, strict=True)
    ]
    plain = None if all(sure) else _choose(coder, coded, images)
    chosen, use = [], []
    for k in range(images):
        bits, part, own = corrected[k]
        block, parity = blocks[k], solved[k][1]
        if sure[k] or plain is None or bits + block < plain[k][0]:
            mode = part[0] | MODE_CORRECTED | (MODE_PARITY if parity else 0)
            part = bytes([mode]) + part[1:] + correction.pack(solved[k][0])
            chosen.append((bits + block, part, own))
            use.append(True)
        else:
            chosen.append(plain[k])
            use.append(False)
    for (x, pred, _), better in zip(coded, moved, strict=True):  # in place: no third copy
        tiles = np.repeat(use, x.shape[1] // images)
        pred[:, tiles] = better[:, tiles]
    return coded, _final_parts(coder, chosen, transform)


def _solved(fit: correction.Fit, parities: bool, samples: int) -> tuple[IntArray, bool, float]:
    """(block, whether it has weights per parity, bits it should save per sample): with
    ``parities``, the block per parity where its estimated saving beyond the one without
    pays for its greater size."""
    block, saving = fit.solve(parity=False)
    if not parities:
        return block, False, saving
    split, split_saving = fit.solve(parity=True)
    more = 8 * (correction.block_bytes(True) - correction.block_bytes(False))
    if (split_saving - saving) * samples > more:
        return split, True, split_saving
    return block, False, saving


def _final_parts(
    coder: PredictiveCoder, chosen: list[tuple[float, bytes, IntArray]], transform: int
) -> list[tuple[float, bytes, IntArray]]:
    """``chosen`` (bits, parameter part, parameters) with the colour transform in each
    parameter part's mode byte, and the rest of it packed where that makes it shorter (a
    coder that names its transform)."""
    if not coder.transforms:
        return chosen
    out = []
    for bits, part, params in chosen:
        mode, body = part[0] | transform << TRANSFORM_SHIFT, part[1:]
        if len(body) >= PACK_FROM:
            frame = zframe.pack(body)
            packed = varint.encode(len(frame)) + frame
            if len(packed) < len(body):
                mode, body = mode | MODE_PACKED, packed
        out.append((bits, bytes([mode]) + body, params))
    return out


def encoder_transform(coder: PredictiveCoder, height: int, width: int) -> int:
    """The colour transform the encoder gives an image of this size: the first of the coder's
    ``colours`` where it has them; else, for a coder that names one, subtract-green from
    OWN_FROM samples and YCoCg-R below (docs/HISTORY.md "Session 25": subtract-green codes Kodak in
    1.1 % fewer bits, YCoCg-R the 32 × 32 and 64 × 64 photos in 0.2–0.4 % fewer)."""
    if not coder.transforms:
        return YCOCG
    if coder.colours:
        return coder.colours[0]
    return SUBTRACT_GREEN if 3 * height * width >= OWN_FROM else YCOCG


def chosen_counts(coder: PredictiveCoder, rgb: np.ndarray) -> tuple[Counts, bytes, IntArray]:
    """An image's samples counted as its encoder codes them (the predictions corrected where
    it sends weights), its parameter part and its parameters."""
    coded, ((_, part, params),) = _chosen(coder, [rgb])
    counts = [histograms_many(coder, *batch, 1)[0] for batch in coded]
    return functools.reduce(operator.add, counts), part, params


def _choose(
    coder: PredictiveCoder, coded: Sequence[tuple[np.ndarray, ...]], images: int
) -> list[tuple[float, bytes, IntArray]]:
    """:func:`choose_many` of each image of batches ``coded`` (planes, predictions, contexts;
    tiles image-major)."""
    per_batch = [histograms_many(coder, *batch, images) for batch in coded]
    return choose_many(
        coder, [functools.reduce(operator.add, c) for c in zip(*per_batch, strict=True)]
    )


def _fit_pass(
    coder: PredictiveCoder, batch: tuple[np.ndarray, ...], images: int, fits: list[correction.Fit]
) -> None:
    """A batch's samples (planes, predictions, contexts; tiles image-major) added to each
    image's least-squares fit: of each tile, bands of FIT_BAND rows, one in FIT_SHARE (a
    quarter of its samples is plenty for 24 weights), each with the two rows above it that its
    features read."""
    x, pred, context = batch
    tiles = x.shape[1] // images
    h, w = x.shape[2:]
    for t in range(x.shape[1]):
        feats, target, group = [], [], []
        for top in range(0, h, FIT_BAND * FIT_SHARE):
            above = min(top, 2)
            rows = slice(top - above, min(h, top + FIT_BAND))
            xs = x[:, t : t + 1, rows].astype(np.int64)
            ps = pred[:, t : t + 1, rows].astype(np.int64)
            band = correction_features(coder, xs, ps)[:, :, :, above:]
            feats.append(band.reshape(correction.FEATURES, 3, -1))
            target.append(((xs << 3) - ps)[:, :, above:].reshape(3, -1))
            shift_group = coder.shift_groups[context[:, t, rows][:, above:]]
            parity = correction.position_parity(np.arange(top, rows.stop)[:, None], np.arange(w))
            plane, error_group = np.divmod(shift_group, correction.ERROR_GROUPS)
            group.append(correction.table_row(plane, parity, error_group).reshape(3, -1))
        a = np.concatenate(feats, axis=2)
        a = np.concatenate([a, np.full((1, *a.shape[1:]), correction.CONSTANT, a.dtype)])
        y, g = np.concatenate(target, axis=1), np.concatenate(group, axis=1)
        for k in range(3):
            fits[t // tiles].add(a[:, k].astype(np.float64), y[k], g[k])


def _corrected_pass(
    coder: PredictiveCoder,
    batch: tuple[np.ndarray, ...],
    weights: IntArray,
    parities: Sequence[bool],
) -> np.ndarray:
    """The predictions of a batch (planes, predictions, contexts; tiles image-major)
    corrected by each image's ``weights`` (images, correction.TABLE, WEIGHTS), a tile at a
    time (its features are 23 words a sample), one parity of positions at a time for an
    image that sends weights per parity (tiles start on even rows and columns)."""
    x, pred, context = batch
    images = len(parities)
    tiles = x.shape[1] // images
    out = np.empty_like(pred)
    low, high = _plane_bounds(x.shape)
    table = weights.reshape(images, 3, correction.PARITIES, correction.ERROR_GROUPS, -1)
    for t in range(x.shape[1]):
        xs, ps = x[:, t : t + 1].astype(np.int64), pred[:, t : t + 1].astype(np.int64)
        feats = correction_features(coder, xs, ps)
        group = coder.shift_groups[context[:, t : t + 1]] % correction.ERROR_GROUPS
        total = np.empty(xs.shape, np.int64)
        each = [(0, 0), (0, 1), (1, 0), (1, 1)] if parities[t // tiles] else [(0, 0)]
        for i, j in each:
            at = (...,) if len(each) == 1 else (..., slice(i, None, 2), slice(j, None, 2))
            sums = correction.plane_sums(
                feats[at].reshape(correction.FEATURES, 3, -1),
                group[at].reshape(3, -1),
                table[t // tiles, :, 2 * i + j],
            )
            total[at] = sums.reshape(total[at].shape)
        out[:, t : t + 1] = correction.corrected(total, ps, low, high)
    return out


def _predicted(
    coder: PredictiveCoder, tiles: Sequence[np.ndarray], transform: int
) -> tuple[np.ndarray, ...]:
    """(planes int16, prediction int32, context int16) of RGB tiles of one shape in colour
    ``transform``, each (3, tiles, h, w): predicted ``PREDICT_PIXELS`` at a time, kept narrow
    (8 bytes a sample)."""
    h, w, _ = tiles[0].shape
    per_part = max(1, PREDICT_PIXELS // (h * w))
    parts: list[tuple[np.ndarray, ...]] = []
    for i in range(0, len(tiles), per_part):
        x = to_planes(np.stack(tiles[i : i + per_part]), transform)
        pred, context = predict(coder, x)
        parts.append((x.astype(np.int16), pred.astype(np.int32), context.astype(np.int16)))
    return tuple(np.concatenate(a, axis=1) for a in zip(*parts, strict=True))


def _pieces(
    coder: PredictiveCoder,
    params: IntArray,
    x: np.ndarray,
    pred: np.ndarray,
    context: np.ndarray,
    order: IntArray,
    ends: Sequence[int],
    lanes: int,
    rows: int,
) -> Iterator[tuple[IntArray, IntArray, IntArray, list[int]]]:
    """Each image's samples (rows of ``x``, ``pred``, ``context``; image k's parameters
    ``params[k]``) in push order ``order``, the chunks ending at ``ends``
    (:func:`_push_order`), as pushes of whole chunks of about ``rows`` rows of ``lanes`` lanes
    each: (values, table index, offset, chunk ends) — the tables and offsets of a push's
    samples only are worked out at a time (a few words a symbol)."""
    flat, starts = _flat_params(params)
    start, last, piece, piece_rows = 0, 0, [], 0
    for k, end in enumerate(ends):
        piece.append(end - start)
        piece_rows += -(-(end - last) // lanes)
        last = end
        if piece_rows >= rows or k == len(ends) - 1:
            at = order[start:end]
            values, where = x[:, at].astype(np.int64), context[:, at] + starts[:, None]
            index, offset = _coding(coder, flat, where, pred[:, at].astype(np.int64))
            yield values, index, offset, piece
            start, piece, piece_rows = end, [], 0


def decode(
    parts: list[bytes],
    height: int,
    width: int,
    coder: PredictiveCoder = CODER,
    progress: Share | None = None,
) -> np.ndarray:
    """Inverse of :func:`encode`; PredictiveError (or the coder's CoderError) when the parts
    are damaged. Batches of different tile shapes are decoded in one sweep of anti-diagonals
    (:func:`_unit_sweeps`), each from its own stream."""
    batches = _batches(height, width)
    if len(parts) != len(batches):
        raise PredictiveError("wrong number of parts")
    params, weights, transform, first = split_params(coder, parts[0], default_params(coder))
    member = (0, params, weights, transform, [first, *parts[1:]])
    rgb = np.empty((height, width, 3), np.uint8)
    done = 0
    for sweep in _unit_sweeps([_Unit([member], b, rects) for b, rects in enumerate(batches)]):
        if not _decode_units(coder, sweep, {0: rgb}, strict=True)[0]:
            raise PredictiveError("a decoded sample is out of range")
        done += sum(h * w for unit in sweep for _, _, h, w in unit.rects)
        if progress:
            progress(done / (height * width))
    return rgb


@functools.lru_cache(maxsize=8)
def _gathers(h: int, w: int) -> list[tuple[IntArray, ...]]:
    """Per anti-diagonal of an h×w tile: flat indices of its samples, of their N, W, NW, NE
    samples after the edge rules (index ``h·w`` is a slot that stays 0), of the samples' own
    places in the zero-bordered (h+2)×(w+3) grids of errors and residuals and (stacked) those
    of their N, W, NW, NE, NN and WW, whether each is in
    the tile's first row or column, its NN, WW and NNE samples after the edge rules, and its
    row and column. Worked out for every sample at once, in diagonal order, then cut."""
    diagonals = _diagonals(h, w)
    rows = np.concatenate([r for r, _ in diagonals])
    cols = np.concatenate([c for _, c in diagonals])
    here = rows * w + cols
    zero = np.full(rows.shape, h * w)
    n = np.where(rows > 0, here - w, np.where(cols > 0, here - 1, zero))
    west = np.where(cols > 0, here - 1, n)
    nw = np.where((rows > 0) & (cols > 0), here - w - 1, n)
    ne = np.where((rows > 0) & (cols + 1 < w), here - w + 1, n)
    stride = w + 3
    at = (rows + 2) * stride + cols + 2
    border = (rows == 0) | (cols == 0)
    nn = np.where(rows > 1, here - 2 * w, n)
    ww = np.where(cols > 1, here - 2, west)
    nne = np.where(rows > 1, np.where(cols + 1 < w, here - 2 * w + 1, nn), ne)
    near = np.stack(
        [at - stride, at - 1, at - stride - 1, at - stride + 1, at - 2 * stride, at - 2]
    )
    ends = np.cumsum([len(r) for r, _ in diagonals])
    out = []
    for a, b in zip([0, *ends[:-1]], ends, strict=True):
        cut = slice(a, b)
        gathers = (here[cut], n[cut], west[cut], nw[cut], ne[cut], at[cut], near[:, cut])
        far = (nn[cut], ww[cut], nne[cut])
        out.append((*gathers, border[cut, None], far, rows[cut], cols[cut]))
    return out


class _Group(NamedTuple):
    """Tiles of one shape decoded from one unit's streams."""

    tiles: int
    height: int
    width: int


# A diagonal's pops: (group, table index, offset) of its samples in each group that has some
# there, (samples, tiles) each, in; their values out.
Pops = Callable[[list[tuple[int, IntArray, IntArray]]], list[IntArray]]
# The same for a sweep whose groups are one stream each, all popped together: every group's
# (table index, offset) flat, back to back in group order, each tile's samples together, and
# how many each group has, in; their values out in that order.
StreamPops = Callable[[IntArray, IntArray, IntArray], IntArray]


def _picks(
    groups: Sequence[_Group], first: IntArray, rows: IntArray, cols: IntArray
) -> list[tuple[int, int, int, slice | IntArray]]:
    """Each group's samples on a diagonal (``rows``, ``cols``): (group, its first and end
    tile, the diagonal's rows in its tiles: all or some), for the groups that have some."""
    picks: list[tuple[int, int, int, slice | IntArray]] = []
    for g, (group, start, stop) in enumerate(zip(groups, first[:-1], first[1:], strict=True)):
        real = (rows < group.height) & (cols < group.width)
        if real.all():
            picks.append((g, int(start), int(stop), slice(None)))
        elif real.any():
            picks.append((g, int(start), int(stop), np.flatnonzero(real)))
    return picks


def _decode_tiles(
    coder: PredictiveCoder,
    groups: Sequence[_Group],
    params: IntArray,
    weights: IntArray | None,
    pops: Pops,
    stream_pops: StreamPops | None = None,
) -> tuple[list[IntArray], BoolArray]:
    """Each tile's planes (3, h, w) — the tiles of ``groups`` with parameters ``params``
    (tiles, contexts, 2) and correction weights ``weights`` (tiles, correction.TABLE, 24;
    None: no tile is corrected), their samples from ``pops`` (or, where given, from
    ``stream_pops``: a few numpy calls a plane instead of a few per group, for sweeps of many
    odd-sized tiles) — and whether each tile's samples all fell in their planes' ranges (a
    damaged stream's may not).

    One sweep of the anti-diagonals of the groups' largest tile shape (H, W), every tile in it
    from the top left: a sample of a smaller tile sees the same neighbours there as in its
    own tile, given two things — positions outside it keep errors and residuals 0 (as outside
    a tile), and the position right of its last column holds a copy of the last sample, so
    that NE = N there, as the edge rule says. Position-major layouts, so that each gather of
    a diagonal's neighbours reads whole rows of (predictor,) plane and tile."""
    height, width = max(g.height for g in groups), max(g.width for g in groups)
    tiles = sum(g.tiles for g in groups)
    first = np.cumsum([0, *(g.tiles for g in groups)])
    lanes = 3 * tiles  # (plane, tile) pairs
    x = np.zeros((height * width + 1, lanes), np.int64)  # the last position stays 0
    grid = (height + 2) * (width + 3)  # zero border: absent
    errors = np.zeros((grid, PREDICTORS, lanes), np.int16)  # as the encoder's
    residuals = np.zeros((grid, lanes), np.int16)  # sample − rounded prediction
    low, high = (np.repeat(b.ravel(), tiles)[None, :] for b in _plane_bounds((3, 1)))
    tile_heights = np.repeat([g.height for g in groups], [g.tiles for g in groups])
    tile_widths = np.repeat([g.width for g in groups], [g.tiles for g in groups])
    ragged = bool((tile_heights < height).any() or (tile_widths < width).any())
    lane_heights, lane_widths = np.tile(tile_heights, 3), np.tile(tile_widths, 3)
    flat_params, tile_starts = _flat_params(params)
    inside = np.ones(lanes, bool)
    bias = shipped_bias(coder) if coder.texture_bias else None
    lane_plane = np.repeat(np.arange(3), tiles)[None, :]
    if weights is not None:  # each lane's (plane, tile) weights by (parity, error group)
        lane_weights = weights.reshape(tiles, 3, -1, correction.WEIGHTS).transpose(1, 0, 2, 3)
        lane_weights = lane_weights.reshape(lanes, -1, correction.WEIGHTS)
        lane = np.arange(lanes)[None, :]
    for *gathers, far, rows, cols in _gathers(height, width):
        here, n, west, nw, ne, at, near_at, border = gathers
        at_n, at_w, at_nw, at_ne, at_nn, at_ww = near_at
        # gathers of whole rows: take, which numpy does faster than indexing
        near_residuals = residuals.take(near_at if weights is not None else near_at[:4], 0)
        xn, xne, xnw = x.take(n, 0), x.take(ne, 0), x.take(nw, 0)
        preds = _predictors(xn, x.take(west, 0), xnw, xne)
        near = 2 * (errors.take(at_n, 0) + errors.take(at_w, 0) + errors.take(at_ne, 0))
        near += errors.take(at_nw, 0)
        if coder.far_errors:
            near += errors.take(at_nn, 0) + errors.take(at_ww, 0)
        pred, error_context = _blend(coder, preds, xn + xne, near.transpose(1, 0, 2), low, high)
        if bias is not None:
            far_values = tuple(x.take(f, 0) for f in far)
            key = _texture_key(coder, preds, far_values, xnw, pred, error_context, lane_plane)
            pred = _biased(pred, bias.take(key), low, high, coder.frac_bits)
        if weights is not None:
            parity = correction.position_parity(rows, cols)[:, None]
            chosen = lane_weights[
                lane, correction.table_row(0, parity, _ERROR_GROUP.take(error_context))
            ]
            inputs = np.empty((correction.RESIDUALS, *pred.shape), np.int64)
            inputs[:6] = near_residuals
            inputs[6:, :, tiles:] = near_residuals[:2, :, :-tiles]  # the plane before's N, W
            inputs[6:, :, :tiles] = 0  # Y has no plane before it
            feats = correction.features([xn, preds[1], xnw, xne, *far_values], pred, inputs)
            partial = correction.weighted_sum(feats, chosen)
        largest = np.abs(near_residuals[:4]).max(0)  # of N, W, NW and NE
        local = _local_context(coder, error_context, largest, border)
        rounded = _rounded(coder, pred)
        value = rounded.copy()  # samples outside their tile keep a harmless value
        if ragged or stream_pops is not None:  # which lanes' tiles hold each position
            real = (rows[:, None] < lane_heights) & (cols[:, None] < lane_widths)
        if stream_pops is None:
            picks = _picks(groups, first, rows, cols)
        else:  # tile-major, as every plane's are: each tile's samples on it, in row order
            held = real[:, :tiles].T
            counts = np.add.reduceat(held.sum(1), first[:-1])
        for k in range(3):  # Y, Co, Cg: each plane's context needs the last one's residual
            plane = slice(k * tiles, (k + 1) * tiles)
            context = local[:, plane] + coder.plane_first[k]
            if k:
                before = slice((k - 1) * tiles, k * tiles)
                previous = value[:, before] - rounded[:, before]
                bucket = _RESIDUAL_BUCKET.take(np.abs(previous), mode="clip")  # damaged: any
                context += coder.local_contexts * bucket
            plane_pred = pred[:, plane]
            if weights is not None:
                total = partial[:, plane]
                if k:
                    last = correction.compress(previous << 3)
                    total = total + chosen[:, plane, correction.FEATURES - 1] * last
                plane_pred = correction.corrected(total, plane_pred, low[:, plane], high[:, plane])
            where = context + tile_starts
            index, offset = _coding(coder, flat_params, where, plane_pred)
            if stream_pops is not None:
                value[:, plane].T[held] = stream_pops(index.T[held], offset.T[held], counts)
                continue
            asked = [(g, index[at, a:b], offset[at, a:b]) for g, a, b, at in picks]
            for (_, start, stop, at_rows), popped in zip(picks, pops(asked), strict=True):
                value[at_rows, k * tiles + start : k * tiles + stop] = popped
        if ragged:
            inside &= ((value >= low) & (value <= high) | ~real).all(0)
            value = np.clip(value, low, high)  # a damaged stream's lanes stay bounded
            x[here] = np.where(real, value, x[here])
            last = real & (cols[:, None] == lane_widths - 1) & (lane_widths < width)
            at_rows, at_lanes = np.nonzero(last)
            x[here[at_rows] + 1, at_lanes] = value[at_rows, at_lanes]  # NE = N right of a tile
            errors[at] = np.abs(value[:, None, :] - preds.transpose(1, 0, 2)) * real[:, None, :]
            residuals[at] = (value - rounded) * real
        else:
            inside &= ((value >= low) & (value <= high)).all(0)
            value = np.clip(value, low, high)  # a damaged stream's lanes stay bounded
            x[here] = value
            errors[at] = np.abs(value[:, None, :] - preds.transpose(1, 0, 2))
            residuals[at] = value - rounded
    planes = x[:-1].T.reshape(3, tiles, height, width)
    out = [
        planes[:, t, : group.height, : group.width]
        for group, start, stop in zip(groups, first[:-1], first[1:], strict=True)
        for t in range(start, stop)
    ]
    return out, inside.reshape(3, tiles).all(0)


def decode_many(
    parts: Sequence[list[bytes]], shapes: Sequence[tuple[int, int]], coder: PredictiveCoder = CODER
) -> list[np.ndarray | None]:
    """``decode(p, height, width, coder)`` of each of ``parts``, of the (height, width) of
    ``shapes``: the streams of images of one shape decoded in lockstep, the tiles of several
    images in one sweep of anti-diagonals (as many as make ``GROUP_PIXELS``), so that the
    sweep's steps serve them all; None for an image that is damaged, or shares a sweep with
    one whose stream ends early (decoding it alone says how)."""
    defaults = default_params(coder)
    by_shape: dict[tuple[int, int], list[_Member]] = {}
    for k, (image_parts, shape) in enumerate(zip(parts, shapes, strict=True)):
        with contextlib.suppress(PredictiveError):
            if len(image_parts) == batch_count(*shape):
                params, weights, transform, first = split_params(coder, image_parts[0], defaults)
                member = (k, params, weights, transform, [first, *image_parts[1:]])
                by_shape.setdefault(shape, []).append(member)
    units = []
    for (h, w), members in by_shape.items():
        per_group = max(1, GROUP_PIXELS // (h * w))
        for i in range(0, len(members), per_group):
            group = members[i : i + per_group]
            units += [_Unit(group, b, rects) for b, rects in enumerate(_batches(h, w))]
    found = [k for members in by_shape.values() for k, *_ in members]
    rgbs = {k: np.empty((*shapes[k], 3), np.uint8) for k in found}
    whole = dict.fromkeys(rgbs, True)
    for sweep in _unit_sweeps(units):
        try:
            for k, ok in _decode_units(coder, sweep, rgbs).items():
                whole[k] &= ok
        except (CoderError, PredictiveError):  # a lone stream's pop: the sweep's images fail
            whole.update((k, False) for unit in sweep for k, *_ in unit.members)
    return [rgbs[k] if whole.get(k) else None for k in range(len(parts))]


#: an image's index, parameters, correction weights (or None), colour transform and streams
_Member = tuple[int, IntArray, IntArray | None, int, list[bytes]]


class _Unit(NamedTuple):
    """One batch (index ``batch``, tiles ``rects``) of images of one shape (``members``)."""

    members: Sequence[_Member]
    batch: int
    rects: list[tuple[int, int, int, int]]

    @property
    def tiles(self) -> int:
        return len(self.members) * len(self.rects)

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.rects[0][2], self.rects[0][3]


def _unit_sweeps(units: Sequence[_Unit]) -> list[list[_Unit]]:
    """Units decoded in one sweep, tallest tiles first, then widest: runs whose tiles, each
    as large as the run's tallest and widest, hold at most ``GROUP_PIXELS`` pixels (a larger
    unit alone). A sweep has 2·height + width diagonals: height first keeps them few."""
    out: list[list[_Unit]] = []
    tiles = height = width = 0
    for unit in sorted(units, key=lambda u: (-u.tile_shape[0], -u.tile_shape[1])):
        h, w = unit.tile_shape
        grown = (tiles + unit.tiles) * max(height, h) * max(width, w)
        if out and grown <= GROUP_PIXELS:
            out[-1].append(unit)
            tiles, height, width = tiles + unit.tiles, max(height, h), max(width, w)
        else:
            out.append([unit])
            tiles, height, width = unit.tiles, h, w
    return out


def _decode_units(
    coder: PredictiveCoder,
    sweep: Sequence[_Unit],
    rgbs: dict[int, np.ndarray],
    strict: bool = False,
) -> dict[int, bool]:
    """Decode the tiles of ``sweep``'s units into their images ``rgbs`` (by index), their
    samples from :class:`_Sources` (with ``strict``, a stream not used whole raises
    CoderError). Whether each image's tiles here decoded whole."""
    sources = _Sources(sweep, coding_tables(coder))
    groups = [_Group(unit.tiles, *unit.tile_shape) for unit in sweep]
    tile_params = [
        np.repeat(np.stack([p for _, p, *_ in unit.members]), len(unit.rects), axis=0)
        for unit in sweep
    ]
    weights = None
    if any(w is not None for unit in sweep for _, _, w, *_ in unit.members):
        none = np.zeros((correction.TABLE, correction.WEIGHTS), np.int64)
        tile_weights = [
            np.repeat(
                np.stack([none if w is None else w for _, _, w, *_ in unit.members]),
                len(unit.rects),
                axis=0,
            )
            for unit in sweep
        ]
        weights = np.concatenate(tile_weights)
    params = np.concatenate(tile_params)
    stream_pops = sources.pop_streams if sources.one_stream_per_unit else None
    planes, inside = _decode_tiles(coder, groups, params, weights, sources.pop, stream_pops)
    whole: dict[int, bool] = {}
    at = 0
    for unit, finished in zip(sweep, sources.finish(strict), strict=True):
        ok = finished & inside[at : at + unit.tiles].reshape(len(unit.members), -1).all(1)
        for (k, _, _, transform, _), image_ok in zip(unit.members, ok, strict=True):
            whole[k] = whole.get(k, True) and bool(image_ok)
            for y, x, h, w in unit.rects:
                rgbs[k][y : y + h, x : x + w] = to_rgb(planes[at], transform)
                at += 1
    return whole


class _Sources:
    """Where the units of a sweep pop their samples from. The streams of units of several
    images whose batches have one layout (tile shape and count): one lockstep decoder, every
    stream popping as many symbols as the others. The streams of units of one image each:
    one ragged decoder (each stream its own lane count and symbol count per pop), or alone
    when there is one (faster). Each decoder runs one step loop per pop for all its units.
    CoderError once a unit's streams have all failed: a sweep does not go on decoding what
    (hostile) headers declare for nothing."""

    def __init__(self, sweep: Sequence[_Unit], tables: coder_tables.Tables) -> None:
        self.tables = tables
        kinds: dict[tuple[int, ...], list[int]] = {}  # batch layout (() for one image) → units
        for u, unit in enumerate(sweep):
            layout = (*unit.tile_shape, len(unit.rects)) if len(unit.members) > 1 else ()
            kinds.setdefault(layout, []).append(u)
        self.decoders: list[ans.Decoder | lockstep.Decoder | lockstep.RaggedDecoder] = []
        self.units: list[list[tuple[int, slice]]] = []  # per decoder: (unit, its stream rows)
        self.where: dict[int, tuple[int, slice]] = {}  # per unit: (decoder, its stream rows)
        for layout, units in kinds.items():
            streams = [s[sweep[u].batch] for u in units for *_, s in sweep[u].members]
            rows = np.cumsum([0, *(len(sweep[u].members) for u in units)])
            owned = [(u, slice(a, b)) for u, a, b in zip(units, rows[:-1], rows[1:], strict=True)]
            self.where.update((u, (len(self.decoders), at)) for u, at in owned)
            self.units.append(owned)
            lanes = [_lanes(len(sweep[u].rects), *sweep[u].tile_shape) for u in units]
            if layout:
                self.decoders.append(lockstep.Decoder(streams, lanes[0]))
            elif len(streams) > 1:
                self.decoders.append(lockstep.RaggedDecoder(streams, lanes))
            else:
                self.decoders.append(ans.compact_decoder(streams[0], lanes[0]))
                continue
            self._check(len(self.decoders) - 1)

    @property
    def one_stream_per_unit(self) -> bool:
        """Whether the sweep's units are one ragged decoder's streams, one each, in order
        (a sweep of photos of several sizes), so that :meth:`pop_streams` serves them."""
        return (
            len(self.decoders) == 1
            and isinstance(self.decoders[0], lockstep.RaggedDecoder)
            and all(at == slice(u, u + 1) for u, at in self.units[0])
        )

    def pop_streams(self, t: IntArray, o: IntArray, counts: IntArray) -> IntArray:
        """:data:`StreamPops` of a sweep where :attr:`one_stream_per_unit` holds."""
        decoder = self.decoders[0]
        assert isinstance(decoder, lockstep.RaggedDecoder)
        values = decoder.pop_ragged(self.tables, t, o, counts)
        self._check(0)
        return values

    def pop(self, asked: list[tuple[int, IntArray, IntArray]]) -> list[IntArray]:
        """:data:`Pops` of the sweep's units (by their place in it)."""
        out: list[IntArray] = [np.empty(0, np.int64)] * len(asked)
        by_decoder: dict[int, list[int]] = {}
        for r, (u, _, _) in enumerate(asked):
            by_decoder.setdefault(self.where[u][0], []).append(r)
        for d, requests in by_decoder.items():
            decoder = self.decoders[d]
            if isinstance(decoder, lockstep.RaggedDecoder):
                self._pop_ragged(decoder, asked, requests, out)
            elif isinstance(decoder, lockstep.Decoder):
                self._pop_lockstep(decoder, asked, requests, out)
            else:
                (r,) = requests
                _, index, offset = asked[r]
                flat = index.T.ravel(), offset.T.ravel()  # int64, in range: checked
                out[r] = ans.pop_flat(decoder, self.tables, *flat).reshape(index.shape[1], -1).T
                continue
            self._check(d)
        return out

    def _pop_lockstep(
        self,
        decoder: lockstep.Decoder,
        asked: list[tuple[int, IntArray, IntArray]],
        requests: list[int],
        out: list[IntArray],
    ) -> None:
        """Each stream's symbols in (tile, row) order, the streams in order: its units have
        one batch layout, so each has as many samples on a diagonal as the others."""
        requests = sorted(requests, key=lambda r: self.where[asked[r][0]][1].start)
        rows = [self.where[asked[r][0]][1] for r in requests]
        members = [streams.stop - streams.start for streams in rows]
        t, o = (
            [asked[r][a].T.reshape(m, -1) for r, m in zip(requests, members, strict=True)]
            for a in (1, 2)
        )
        # one unit (the usual case): its arrays as they are, no copy
        t, o = (t[0], o[0]) if len(t) == 1 else (np.concatenate(t), np.concatenate(o))
        values = decoder.pop_flat(self.tables, t, o)
        at = 0
        for r, m in zip(requests, members, strict=True):
            samples, tiles = asked[r][1].shape
            out[r] = values[at : at + m].reshape(tiles, samples).T
            at += m

    def _pop_ragged(
        self,
        decoder: lockstep.RaggedDecoder,
        asked: list[tuple[int, IntArray, IntArray]],
        requests: list[int],
        out: list[IntArray],
    ) -> None:
        """Each stream's symbols in (tile, row) order, the streams in order."""
        rows = {self.where[asked[r][0]][1].start: r for r in requests}
        requests = [rows[row] for row in sorted(rows)]
        counts = np.zeros(len(decoder.failed), np.int64)
        counts[sorted(rows)] = [asked[r][1].size for r in requests]
        t = np.concatenate([asked[r][1].T.ravel() for r in requests])
        o = np.concatenate([asked[r][2].T.ravel() for r in requests])
        values = decoder.pop_ragged(self.tables, t, o, counts)
        at = 0
        for r in requests:
            samples, tiles = asked[r][1].shape
            out[r] = values[at : at + samples * tiles].reshape(tiles, samples).T
            at += samples * tiles

    def _check(self, d: int) -> None:
        failed = self.decoders[d].failed
        if failed.any() and any(failed[streams].all() for _, streams in self.units[d]):
            raise CoderError("every stream of a batch decoded in lockstep is damaged")

    def finish(self, strict: bool) -> list[BoolArray]:
        """Per unit of the sweep, which of its images' streams decoded whole (with
        ``strict``, CoderError unless all did)."""
        done = [
            _finished(decoder, strict) if isinstance(decoder, ans.Decoder) else decoder.finish()
            for decoder in self.decoders
        ]
        if strict and not all(ok.all() for ok in done):
            raise CoderError("rANS stream damaged (not used whole)")
        return [done[d][streams] for d, streams in (self.where[u] for u in range(len(self.where)))]


def _finished(dec: ans.Decoder, strict: bool) -> BoolArray:
    """Whether a lone stream decoded whole (``ans.check_finished``; ``strict``: it raises if
    not), as a lockstep decoder's ``finish`` says it of each of its streams."""
    try:
        ans.check_finished(dec)
    except CoderError:
        if strict:
            raise
        return np.zeros(1, bool)
    return np.ones(1, bool)
