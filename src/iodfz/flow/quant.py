"""Fake-quantized building blocks that emulate docs/INTEGER.md during training.

Every layer works in two modes: float (fast, bf16 autocast friendly) and quantized
(``quantized=True``): int8 per-output-channel weights, 8-bit activations with learned step
sizes (LSQ), rounding half up — the integer engine's semantics, up to the float rounding of the
requantization multipliers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half up with a straight-through gradient."""
    return x + (torch.floor(x + 0.5) - x).detach()


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 per output channel, step = max|w| / 127."""
    step = w.detach().abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8) / 127.0
    return torch.clamp(round_ste(w / step), -127, 127) * step


class ActQuant(nn.Module):
    """8-bit activation with a learned step (LSQ); range [lo, hi] in integer steps."""

    def __init__(self, lo: int, hi: int) -> None:
        super().__init__()
        self.lo, self.hi = lo, hi
        self.log_step = nn.Parameter(torch.zeros(()))
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))

    @property
    def step(self) -> torch.Tensor:
        return self.log_step.exp()

    def calibrate(self, x: torch.Tensor) -> None:
        """Initialise the step from the 99.9th percentile of |x| on a calibration batch."""
        sample = x.detach().float().abs().flatten()
        sample = sample[torch.randperm(sample.numel(), device=sample.device)[:200_000]]
        q = torch.quantile(sample, 0.999).clamp_min(1e-4)
        self.log_step.data.fill_(float(torch.log(q / self.hi)))
        self.calibrated.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.calibrated:
            self.calibrate(x)
        step = self.step
        # LSQ gradient scale keeps the step's update comparable to the weights'.
        g = 1.0 / (x[0].numel() * self.hi) ** 0.5
        step = step * g + (step - step * g).detach()
        return torch.clamp(round_ste(x / step), self.lo, self.hi) * step


class QConv(nn.Conv2d):
    """3×3 (or 1×1) convolution whose weights are fake-quantized to int8 in quantized mode."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, zero_init: bool = False) -> None:
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        self.quantized = False
        if zero_init:
            nn.init.zeros_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = fake_quant_weight(self.weight) if self.quantized else self.weight
        return F.conv2d(x, w, self.bias, padding=self.padding)


class Gate(nn.Module):
    """Learnable binary gate per channel: on while its parameter is > 0.5 (straight-through)."""

    def __init__(self, channels: int, init: float = 0.9) -> None:
        super().__init__()
        self.param = nn.Parameter(torch.full((channels,), init))

    def mask(self) -> torch.Tensor:
        hard = (self.param > 0.5).to(self.param.dtype)
        return hard + self.param - self.param.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask().to(x.dtype).view(1, -1, 1, 1)

    def active(self) -> torch.Tensor:
        return self.param.detach() > 0.5


class ResBlock(nn.Module):
    """a ← clamp(a + conv2(gate(relu(conv1(a))))), the residual stream on one shared step."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = QConv(width, width)
        self.gate = Gate(width)
        self.act_hidden = ActQuant(0, 127)
        self.conv2 = QConv(width, width)


class ConvNet(nn.Module):
    """conv → ReLU → residual blocks → ReLU → conv, the network of couplings and priors.

    Input: integer latents (clamped to int8, step 1). Output: float; the caller rounds it
    (coupling translation) or maps it to the coder's grids (prior parameters).
    """

    def __init__(self, c_in: int, c_out: int, width: int, blocks: int) -> None:
        super().__init__()
        self.conv_in = QConv(c_in, width)
        self.act_stream = ActQuant(0, 127)
        self.blocks = nn.ModuleList(ResBlock(width) for _ in range(blocks))
        self.conv_out = QConv(width, c_out, zero_init=True)
        self.quantized = False

    def set_quantized(self, on: bool) -> None:
        self.quantized = on
        for m in self.modules():
            if isinstance(m, QConv):
                m.quantized = on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(x, -128, 127)
        a = F.relu(self.conv_in(x))
        if self.quantized:
            a = self.act_stream(a)
            step = self.act_stream.step.detach()
        for blk in self.blocks:
            h = blk.gate(F.relu(blk.conv1(a)))
            if self.quantized:
                h = blk.act_hidden(h)
                r = blk.conv2(h)
                a = torch.clamp(a + round_ste(r / step) * step, -128 * step, 127 * step)
            else:
                a = a + blk.conv2(h)
        return self.conv_out(F.relu(a))

    def gate_params(self) -> list[torch.Tensor]:
        return [blk.gate.param for blk in self.blocks]
