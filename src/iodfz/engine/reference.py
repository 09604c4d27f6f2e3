"""The numpy reference backend: runs one network of docs/INTEGER.md exactly.

Activations and accumulators travel as float32 arrays holding integers; by the overflow bound
every value is < 2^24 and therefore exact (docs/INTEGER.md, "Backends").
"""

from __future__ import annotations

import numpy as np

from iodfz.engine.model import Conv, Net

TAPS = [(dy, dx) for dy in range(3) for dx in range(3)]


def conv3x3(x: np.ndarray, conv: Conv) -> np.ndarray:
    """acc + b for a batch (B, H, W, C_in) of float32 integers: nine GEMMs over one flat image.

    Tiles are zero-padded and stacked, then flattened to rows of C_in: the tap (dy, dx) of
    output position p is input row p + dy·(W+2) + dx - (W+3), so each tap is one contiguous
    slice and one GEMM. Rows landing in the padding are computed and discarded.
    """
    b, h, w, c_in = x.shape
    weight = conv.weight.astype(np.float32)
    c_out = weight.shape[2]
    wp = w + 2
    padded = np.zeros((b, h + 2, wp, c_in), np.float32)
    padded[:, 1:-1, 1:-1] = x
    flat = padded.reshape(-1, c_in)
    span = flat.shape[0] - 2 * wp - 2
    out = np.empty((flat.shape[0], c_out), np.float32)
    acc = out[wp + 1 : wp + 1 + span]
    np.matmul(flat[:span], weight[0], out=acc)
    for k, (dy, dx) in enumerate(TAPS[1:], start=1):
        off = dy * wp + dx
        acc += flat[off : off + span] @ weight[k]
    acc += conv.bias.astype(np.float32)
    return out.reshape(b, h + 2, wp, c_out)[:, 1:-1, 1:-1]


def requant(acc: np.ndarray, conv: Conv) -> np.ndarray:
    """(acc · M + 2^(s-1)) >> s, computed exactly as floor(acc · M·2^-s + 1/2) in float64."""
    scale = conv.mult.astype(np.float64) * np.exp2(-conv.shift.astype(np.float64))
    return np.floor(acc.astype(np.float64) * scale + 0.5)


def run_net(net: Net, a: np.ndarray) -> np.ndarray:
    """Network output (int64) for integer latents a (B, H, W, C)."""
    s = np.clip(a, -128, 127).astype(np.float32)
    s = np.clip(requant(conv3x3(s, net.conv_in), net.conv_in), 0, 127).astype(np.float32)
    for c1, c2 in net.blocks:
        h = np.clip(requant(conv3x3(s, c1), c1), 0, 127).astype(np.float32)
        s = np.clip(s + requant(conv3x3(h, c2), c2), -128, 127).astype(np.float32)
    np.maximum(s, 0, out=s)
    return requant(conv3x3(s, net.conv_out), net.conv_out).astype(np.int64)


class NumpyBackend:
    """The reference backend (always available)."""

    name = "numpy"

    def run_net(self, net: Net, a: np.ndarray) -> np.ndarray:
        return run_net(net, a)
