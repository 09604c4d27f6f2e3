"""torch backend (CPU, CUDA when present): the numpy reference's decomposition in torch.

Same nine-GEMM convolution and float64 requantization as :mod:`iodfz.engine.reference`, so the
exactness argument of docs/INTEGER.md carries over; TF32 is switched off for our matmuls. A
backend is only used after it reproduced the model's test vectors (:mod:`iodfz.engine.backends`).
"""

from __future__ import annotations

import numpy as np
import torch

from iodfz.engine.model import Conv, Net
from iodfz.engine.reference import TAPS


class TorchBackend:
    def __init__(self, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.name = f"torch-{self.device.type}"
        self._weights: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False

    def _prepared(self, conv: Conv) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = id(conv)
        if key not in self._weights:
            scale = conv.mult.astype(np.float64) * np.exp2(-conv.shift.astype(np.float64))
            self._weights[key] = (
                torch.from_numpy(conv.weight.astype(np.float32)).to(self.device),
                torch.from_numpy(conv.bias.astype(np.float32)).to(self.device),
                torch.from_numpy(scale).to(self.device),
            )
        return self._weights[key]

    def _conv_requant(self, x: torch.Tensor, conv: Conv) -> torch.Tensor:
        weight, bias, scale = self._prepared(conv)
        b, h, w, c_in = x.shape
        wp = w + 2
        padded = torch.zeros((b, h + 2, wp, c_in), dtype=torch.float32, device=self.device)
        padded[:, 1:-1, 1:-1] = x
        flat = padded.reshape(-1, c_in)
        span = flat.shape[0] - 2 * wp - 2
        acc = flat[:span] @ weight[0]
        for k, (dy, dx) in enumerate(TAPS[1:], start=1):
            off = dy * wp + dx
            acc += flat[off : off + span] @ weight[k]
        acc += bias
        out = torch.zeros((flat.shape[0], weight.shape[2]), dtype=torch.float64, device=self.device)
        out[wp + 1 : wp + 1 + span] = torch.floor(acc.double() * scale + 0.5)
        return out.reshape(b, h + 2, wp, -1)[:, 1:-1, 1:-1]

    def run_net(self, net: Net, a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            s = torch.from_numpy(np.clip(a, -128, 127).astype(np.float32)).to(self.device)
            s = self._conv_requant(s, net.conv_in).clamp(0, 127).float()
            for c1, c2 in net.blocks:
                h = self._conv_requant(s, c1).clamp(0, 127).float()
                s = (s.double() + self._conv_requant(h, c2)).clamp(-128, 127).float()
            s = s.clamp_min(0)
            return self._conv_requant(s, net.conv_out).cpu().numpy().astype(np.int64)
