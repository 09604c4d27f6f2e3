"""torch backend (CPU, CUDA): the integer networks as one GEMM per conv, all on the device.

Each 3×3 conv gathers its nine taps side by side (im2col, padded to the shapes cuBLASLt's int8
GEMM accepts) and does a single GEMM for a whole batch of tiles: int8 × int8 → int32 with
``int8=True`` (``torch._int_mm``: tensor cores on CUDA, VNNI/AMX on CPU), else float32 with
TF32 off — exact in any summation order by the 2^24 bound of docs/INTEGER.md. The bias, the
requantization ``(acc·M + 2^(s-1)) >> s`` (int64) and the clamps run on the device too, so a
network's activations never leave it. The same code runs on CPU torch, which is how it is
tested where no GPU is present. A backend is only used after it reproduced the model's test
vectors (:mod:`iodfz.engine.backends`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from iodfz.engine.backends import IdentityCache
from iodfz.engine.model import Conv, Net
from iodfz.engine.reference import TAPS

ALIGN = 8  # torch._int_mm on CUDA: both GEMM widths multiples of 8 ...
MIN_ROWS = 24  # ... and more than 16 rows


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


@dataclass
class Prepared:
    """One conv's weights as a (9·c_in rounded up, c_out rounded up) GEMM operand (rows tap by
    tap, then input channel: the im2col column order), and its per-channel integers."""

    weight: torch.Tensor
    bias: torch.Tensor
    mult: torch.Tensor
    shift: torch.Tensor
    half: torch.Tensor  # 2^(s-1), 0 where s = 0
    c_out: int


def prepare(conv: Conv, dtype: torch.dtype, device: torch.device) -> Prepared:
    _, c_in, c_out = conv.weight.shape
    k = 9 * c_in
    weight = np.zeros((_round_up(max(k, 1), ALIGN), _round_up(max(c_out, 1), ALIGN)), np.int8)
    weight[:k, :c_out] = conv.weight.reshape(k, c_out)
    shift = conv.shift.astype(np.int64)

    def on_device(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    operand = on_device(weight).to(dtype)
    if dtype == torch.int8:  # column-major, the layout cuBLASLt's int8 GEMM takes natively
        operand = operand.t().contiguous().t()
    return Prepared(
        weight=operand,
        bias=on_device(conv.bias.astype(np.int64)),
        mult=on_device(conv.mult.astype(np.int64)),
        shift=on_device(shift),
        half=on_device(np.where(shift > 0, np.left_shift(1, np.maximum(shift, 1) - 1), 0)),
        c_out=c_out,
    )


class TorchBackend:
    """``int8=True``: int8 GEMMs (``torch._int_mm``); exact by construction, though some CPUs'
    int8 kernels might saturate intermediate sums — the test vectors would catch it."""

    def __init__(self, device: str = "cpu", int8: bool = False) -> None:
        self.device = torch.device(device)
        self.int8 = int8
        self.name = f"torch-{self.device.type}" + ("-int8" if int8 else "")
        self._dtype = torch.int8 if int8 else torch.float32
        self._prepared: IdentityCache[Conv, Prepared] = IdentityCache()
        if self.device.type == "cuda":  # full fp32 products: no TF32
            if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
                torch.backends.cuda.matmul.fp32_precision = "ieee"
            else:
                torch.backends.cuda.matmul.allow_tf32 = False

    def _im2col(self, x: torch.Tensor, k_cols: int) -> torch.Tensor:
        """(B, H, W, C) → (rows, k_cols): row (b, i, j) holds the nine taps' C values, then
        zeros; rows beyond B·H·W (padding up to MIN_ROWS) are zero."""
        b, h, w, c = x.shape
        padded = torch.zeros((b, h + 2, w + 2, c), dtype=self._dtype, device=self.device)
        padded[:, 1:-1, 1:-1] = x
        rows = b * h * w
        cols = torch.empty((max(rows, MIN_ROWS), k_cols), dtype=self._dtype, device=self.device)
        cols[rows:] = 0
        cols[:rows, 9 * c :] = 0
        taps = cols[:rows, : 9 * c].view(b, h, w, 9, c)
        for k, (dy, dx) in enumerate(TAPS):
            taps[:, :, :, k] = padded[:, dy : dy + h, dx : dx + w]
        return cols

    def conv_requant(self, x: torch.Tensor, conv: Conv) -> torch.Tensor:
        """requant(conv(x) + b) as int64 (B, H, W, c_out), for integer activations x."""
        p = self._prepared.get(conv, lambda c: prepare(c, self._dtype, self.device))
        b, h, w, _ = x.shape
        cols = self._im2col(x.to(self._dtype), p.weight.shape[0])
        rows = b * h * w
        if self.int8:
            acc = torch._int_mm(cols, p.weight)[:rows, : p.c_out].long()
        else:  # integers below 2^24: exact in float32, and so is the conversion
            acc = (cols @ p.weight)[:rows, : p.c_out].long()
        y = torch.bitwise_right_shift((acc + p.bias) * p.mult + p.half, p.shift)
        return y.view(b, h, w, p.c_out)

    def run_net(self, net: Net, a: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.clip(a, -128, 127).astype(np.int8)).to(self.device)
            s = self.conv_requant(x, net.conv_in).clamp_(0, 127)
            for c1, c2 in net.blocks:
                h = self.conv_requant(s, c1).clamp_(0, 127)
                s = (s + self.conv_requant(h, c2)).clamp_(-128, 127)
            return self.conv_requant(s.clamp_(min=0), net.conv_out).cpu().numpy()
