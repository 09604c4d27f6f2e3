"""The numpy reference backend: runs one network of docs/INTEGER.md exactly.

Activations and accumulators travel as float32 arrays holding integers; by the overflow bound
every value is < 2^24 and therefore exact (docs/INTEGER.md, "Backends"). Inside a network the
activations stay in a zero-bordered layout (B, H+2, W+2, C) flattened to rows, so each of a
3×3 conv's nine taps is one contiguous slice of rows, with no copies between layers.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from threadpoolctl import ThreadpoolController

from iodfz.engine.model import Conv, Net
from iodfz.threads import block_termination_signals

TAPS = [(dy, dx) for dy in range(3) for dx in range(3)]


class Padded:
    """Geometry of a batch of zero-bordered tiles flattened to rows."""

    def __init__(self, b: int, h: int, w: int) -> None:
        self.shape = (b, h + 2, w + 2)
        self.rows = b * (h + 2) * (w + 2)
        self.wp = w + 2
        self.span = self.rows - 2 * self.wp - 2  # rows from the first to the last interior one
        self.first = self.wp + 1

    def pad(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((*self.shape, x.shape[-1]), np.float32)
        out[:, 1:-1, 1:-1] = x
        return out.reshape(self.rows, x.shape[-1])

    def interior(self, flat: np.ndarray) -> np.ndarray:
        return flat.reshape(*self.shape, flat.shape[-1])[:, 1:-1, 1:-1]

    def zero_border(self, flat: np.ndarray) -> np.ndarray:
        grid = flat.reshape(*self.shape, flat.shape[-1])
        grid[:, 0] = grid[:, -1] = 0
        grid[:, :, 0] = grid[:, :, -1] = 0
        return flat


_CHUNK_ROWS = 2048  # rows per block: the im2col gather and the requantization stay in cache
_IM2COL_MIN_OUT = 32


def conv_requant(
    geo: Padded,
    flat: np.ndarray,
    conv: Conv,
    lo: float = -np.inf,
    hi: float = np.inf,
    dtype: type = np.float32,
) -> np.ndarray:
    """clamp(requant(conv(x) + b), lo, hi) at every row of the padded layout (border rows hold
    junk), as ``dtype``.

    Wide outputs gather the nine taps of a block of rows side by side and do one GEMM per
    block (im2col); narrow ones multiply a block of rows by all nine taps' weights at once and
    add the nine shifted column groups. Both sum the same integer products, exactly
    (docs/INTEGER.md). The requantization runs block by block in float64:
    clamp(floor((acc + b) · M·2^-s + 1/2), lo, hi), exact; float32 holds the result exactly
    when it is clamped to int8 range, and a value beyond 2^24 only ever meets another clamp.
    """
    weight = conv.float_weight
    c_in, c_out = weight.shape[1], weight.shape[2]
    out = np.empty((geo.rows, c_out), dtype)
    out[: geo.first] = 0
    out[geo.first + geo.span :] = 0
    result = out[geo.first : geo.first + geo.span]
    offsets = [dy * geo.wp + dx for dy, dx in TAPS]
    bias = conv.bias.astype(np.float32)
    wide = np.empty((_CHUNK_ROWS, c_out), np.float64)

    def finish(acc: np.ndarray, start: int) -> None:
        acc += bias
        y = wide[: len(acc)]
        np.multiply(acc, conv.scale, out=y)
        y += 0.5
        np.floor(y, out=y)
        if lo > -np.inf or hi < np.inf:
            np.clip(y, lo, hi, out=y)
        result[start : start + len(acc)] = y

    if c_out >= _IM2COL_MIN_OUT:
        stacked = weight.reshape(9 * c_in, c_out)
        block = np.empty((_CHUNK_ROWS, 9 * c_in), np.float32)
        acc = np.empty((_CHUNK_ROWS, c_out), np.float32)
        for start in range(0, geo.span, _CHUNK_ROWS):
            n = min(_CHUNK_ROWS, geo.span - start)
            for k, off in enumerate(offsets):
                block[:n, k * c_in : (k + 1) * c_in] = flat[start + off : start + off + n]
            np.matmul(block[:n], stacked, out=acc[:n])
            finish(acc[:n], start)
    else:
        side_by_side = conv.float_weight_by_tap
        halo = offsets[-1]
        acc = np.empty((_CHUNK_ROWS, c_out), np.float32)
        for start in range(0, geo.span, _CHUNK_ROWS):
            n = min(_CHUNK_ROWS, geo.span - start)
            taps = flat[start : start + n + halo] @ side_by_side
            np.copyto(acc[:n], taps[:n, :c_out])
            for k, off in enumerate(offsets[1:], start=1):
                acc[:n] += taps[off : off + n, k * c_out : (k + 1) * c_out]
            finish(acc[:n], start)
    return out


def run_net(net: Net, a: np.ndarray) -> np.ndarray:
    """Network output (int64) for integer latents a (B, H, W, C)."""
    geo = Padded(*a.shape[:3])
    s = geo.pad(np.clip(a, -128, 127))
    s = geo.zero_border(conv_requant(geo, s, net.conv_in, 0, 127))
    for c1, c2 in net.blocks:
        h = geo.zero_border(conv_requant(geo, s, c1, 0, 127))
        r = conv_requant(geo, h, c2)
        r += s
        np.clip(r, -128, 127, out=r)
        s = geo.zero_border(r)
    np.maximum(s, 0, out=s)
    out = conv_requant(geo, s, net.conv_out, dtype=np.float64)
    return geo.interior(out).astype(np.int64)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class NumpyBackend:
    """The reference backend (always available).

    A batch of several tiles is shared out over ``threads`` threads, each running whole tiles
    with a single-threaded BLAS: numpy releases the GIL in its GEMMs and ufuncs, and this keeps
    every core busy through the elementwise steps too (about 1.5× faster on 2 cores than one
    thread with a multithreaded BLAS). Tiles are independent, so the result is the same.
    """

    name = "numpy"

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads or available_cores()
        self._pool: ThreadPoolExecutor | None = None
        self._blas: ThreadpoolController | None = None

    def run_net(self, net: Net, a: np.ndarray) -> np.ndarray:
        parts = min(self.threads, a.shape[0])
        if parts < 2:
            return run_net(net, a)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.threads,
                thread_name_prefix="iodfz-engine",
                initializer=block_termination_signals,
            )
            self._blas = ThreadpoolController()
        with self._blas.limit(limits=1, user_api="blas"):
            outs = list(self._pool.map(partial(run_net, net), np.array_split(a, parts)))
        return np.concatenate(outs)
