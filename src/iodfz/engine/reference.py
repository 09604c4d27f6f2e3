"""The numpy reference backend: runs one network of docs/INTEGER.md exactly.

Activations and accumulators travel as float32 arrays holding integers; by the overflow bound
every value is < 2^24 and therefore exact (docs/INTEGER.md, "Backends"). Inside a network the
activations stay zero-bordered, (B, H+2, W+2, C), so a 3×3 conv's taps are views of them.
Each conv computes its output at the interior positions only, in pieces of about
``_PIECE_ROWS`` positions (the pieces' buffers stay in cache), and writes it into a fresh
zero-bordered array: borders are never computed, nor cleared afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from threadpoolctl import ThreadpoolController

from iodfz.engine.model import Conv, Net
from iodfz.machine import available_cores
from iodfz.threads import block_termination_signals

TAPS = [(dy, dx) for dy in range(3) for dx in range(3)]
_PIECE_ROWS = 1536  # output positions per GEMM: best on 32² and 256² tiles (512 … 2048 tried)
_IM2COL_MIN_OUT = 32


def pad(x: np.ndarray) -> np.ndarray:
    """(B, H, W, C) → float32 (B, H+2, W+2, C) with a zero border."""
    out = np.zeros((x.shape[0], x.shape[1] + 2, x.shape[2] + 2, x.shape[3]), np.float32)
    out[:, 1:-1, 1:-1] = x
    return out


def pieces(b: int, h: int, w: int) -> Iterator[tuple[int, int, int, int]]:
    """(first tile, end tile, first row, end row) of each piece of the output: whole tiles
    grouped up to ``_PIECE_ROWS`` positions, or bands of rows of one large tile."""
    if h * w <= _PIECE_ROWS:
        per = _PIECE_ROWS // (h * w)
        for t in range(0, b, per):
            yield t, min(b, t + per), 0, h
        return
    band = max(1, _PIECE_ROWS // w)
    for t in range(b):
        for y in range(0, h, band):
            yield t, t + 1, y, min(h, y + band)


def _requant(acc: np.ndarray, conv: Conv, lo: float, hi: float, y: np.ndarray) -> np.ndarray:
    """clamp(floor((acc + b) · M·2^-s + 1/2), lo, hi) into float64 ``y``, exact: acc + b is
    an integer < 2^24, M has 16 bits and the scale is a power of two."""
    acc += conv.bias.astype(np.float32)
    np.multiply(acc, conv.scale, out=y)
    y += 0.5
    np.floor(y, out=y)
    if lo > -np.inf or hi < np.inf:
        np.clip(y, lo, hi, out=y)
    return y


def conv_requant(
    x: np.ndarray,
    conv: Conv,
    lo: float = -np.inf,
    hi: float = np.inf,
    dtype: type = np.float32,
) -> np.ndarray:
    """clamp(requant(conv(x) + b), lo, hi) of zero-bordered ``x`` (B, H+2, W+2, C_in), as a
    zero-bordered ``dtype`` array (B, H+2, W+2, C_out).

    Wide outputs gather the nine taps of a piece side by side and do one GEMM (im2col);
    narrow ones multiply the piece's bordered rows by all nine taps' weights at once and add
    the nine shifted column groups. Both sum the same integer products, exactly
    (docs/INTEGER.md). The requantization runs in float64; float32 holds its result exactly
    when it is clamped to int8 range, and a value beyond 2^24 only ever meets another clamp.
    """
    weight = conv.float_weight
    c_in, c_out = weight.shape[1], weight.shape[2]
    b, hp, wp, _ = x.shape
    h, w = hp - 2, wp - 2
    out = np.zeros((b, hp, wp, c_out), dtype)
    most = min(b * h * w, max(_PIECE_ROWS, w))
    y = np.empty((most, c_out), np.float64)
    wide = c_out >= _IM2COL_MIN_OUT
    if wide:
        stacked = weight.reshape(9 * c_in, c_out)
        block = np.empty((most, 9, c_in), np.float32)
        acc = np.empty((most, c_out), np.float32)
    for t0, t1, y0, y1 in pieces(b, h, w):
        shape = (t1 - t0, y1 - y0, w)
        n = shape[0] * shape[1] * w
        if wide:
            grid = block[:n].reshape(*shape, 9, c_in)
            for k, (dy, dx) in enumerate(TAPS):
                grid[..., k, :] = x[t0:t1, y0 + dy : y1 + dy, dx : dx + w]
            part = np.matmul(block[:n].reshape(n, 9 * c_in), stacked, out=acc[:n])
        else:
            bordered = (shape[0], shape[1] + 2, wp)  # the piece's rows with their halo
            rows = x[t0:t1, y0 : y1 + 2].reshape(np.prod(bordered), c_in)
            taps = (rows @ conv.float_weight_by_tap).reshape(*bordered, 9, c_out)
            part4 = taps[:, :-2, :w, 0].copy()
            for k, (dy, dx) in enumerate(TAPS[1:], start=1):
                part4 += taps[:, dy : dy + shape[1], dx : dx + w, k]
            part = part4.reshape(n, c_out)
        _requant(part, conv, lo, hi, y[:n])
        out[t0:t1, 1 + y0 : 1 + y1, 1:-1] = y[:n].reshape(*shape, c_out)
    return out


def run_net(net: Net, a: np.ndarray) -> np.ndarray:
    """Network output (int64) for integer latents a (B, H, W, C)."""
    s = conv_requant(pad(np.clip(a, -128, 127)), net.conv_in, 0, 127)
    for c1, c2 in net.blocks:
        r = conv_requant(conv_requant(s, c1, 0, 127), c2)
        r += s
        np.clip(r, -128, 127, out=r)
        s = r
    np.maximum(s, 0, out=s)
    out = conv_requant(s, net.conv_out, dtype=np.float64)
    return out[:, 1:-1, 1:-1].astype(np.int64)


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
