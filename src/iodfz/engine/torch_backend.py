"""torch backend (CPU, CUDA when present): the integer networks as GEMMs in torch.

One float32 GEMM per 3×3 tap over the zero-padded layout of :mod:`iodfz.engine.reference` and
the same float64 requantization, so the exactness argument of docs/INTEGER.md carries over;
TF32 is switched off for our matmuls. A backend is only used after it reproduced the model's
test vectors (:mod:`iodfz.engine.backends`).
"""

from __future__ import annotations

import numpy as np
import torch

from iodfz.engine.model import Conv, Net
from iodfz.engine.reference import TAPS


class TorchBackend:
    """``int8=True`` (CPU): int8 × int8 → int32 GEMMs (``torch._int_mm``, VNNI/AMX where the
    CPU has them) instead of float32; exact by construction, but some CPUs' int8 kernels
    saturate intermediate sums, which the test vectors would catch."""

    def __init__(self, device: str = "cpu", int8: bool = False) -> None:
        self.device = torch.device(device)
        self.int8 = int8
        self.name = f"torch-{self.device.type}" + ("-int8" if int8 else "")
        self._dtype = torch.int8 if int8 else torch.float32
        self._weights: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        if self.device.type == "cuda":  # full fp32 products: no TF32
            if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
                torch.backends.cuda.matmul.fp32_precision = "ieee"
            else:
                torch.backends.cuda.matmul.allow_tf32 = False

    def _prepared(self, conv: Conv) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = id(conv)
        if key not in self._weights:
            acc_type = np.int32 if self.int8 else np.float32
            self._weights[key] = (
                torch.from_numpy(conv.weight.astype(np.int8 if self.int8 else np.float32)).to(
                    self.device
                ),
                torch.from_numpy(conv.bias.astype(acc_type)).to(self.device),
                torch.from_numpy(conv.scale).to(self.device),
            )
        return self._weights[key]

    def _mm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch._int_mm(a, b) if self.int8 else a @ b

    def _conv_requant(self, x: torch.Tensor, conv: Conv) -> torch.Tensor:
        weight, bias, scale = self._prepared(conv)
        b, h, w, c_in = x.shape
        wp = w + 2
        padded = torch.zeros((b, h + 2, wp, c_in), dtype=self._dtype, device=self.device)
        padded[:, 1:-1, 1:-1] = x
        flat = padded.reshape(b * (h + 2) * wp, c_in)
        span = flat.shape[0] - 2 * wp - 2
        acc = self._mm(flat[:span], weight[0])
        for k, (dy, dx) in enumerate(TAPS[1:], start=1):
            off = dy * wp + dx
            acc += self._mm(flat[off : off + span], weight[k])
        acc += bias
        out = torch.zeros((flat.shape[0], weight.shape[2]), dtype=torch.float64, device=self.device)
        out[wp + 1 : wp + 1 + span] = torch.floor(acc.double() * scale + 0.5)
        return out.reshape(b, h + 2, wp, weight.shape[2])[:, 1:-1, 1:-1]

    def run_net(self, net: Net, a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            act = self._dtype
            s = torch.from_numpy(np.clip(a, -128, 127).astype(np.float32)).to(self.device).to(act)
            s = self._conv_requant(s, net.conv_in).clamp(0, 127).to(act)
            for c1, c2 in net.blocks:
                h = self._conv_requant(s, c1).clamp(0, 127).to(act)
                s = (s.double() + self._conv_requant(h, c2)).clamp(-128, 127).to(act)
            s = s.clamp_min(0)
            return self._conv_requant(s, net.conv_out).cpu().numpy().astype(np.int64)
