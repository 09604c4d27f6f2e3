"""The integer discrete flow (IDF, Hoogeboom et al. 2019) in its integer-only form (IODF).

x (uint8 pixels) → optional YCoCg-R colour lifting → x - 128 (luma) → for each level: squeeze
2×2 (optionally an integer Haar lifting at level 0), K additive couplings
(z_b ← z_b + round(NN(z_a)) after a fixed channel permutation), then factor out half the
channels under a discretized logistic conditioned on the rest; the last level's latents get a
per-channel mixture of logistics. Every map is integer → integer and exactly invertible.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

from iodfz.coder import tables
from iodfz.engine import transforms
from iodfz.engine.model import CONTEXTS
from iodfz.flow.quant import ConvNet, round_ste


@dataclass(frozen=True)
class FlowConfig:
    levels: int = 3
    couplings: int = 4
    width: int = 64
    blocks: int = 1
    prior_width: int = 32
    prior_blocks: int = 1
    mixture: int = 5
    seed: int = 0
    colour: str = "none"  # engine.transforms.COLOUR_TRANSFORMS
    wavelet: str = "none"  # engine.transforms.WAVELETS, applied at the first squeezes:
    wavelet_levels: int = 1  # how many
    split: str = "random"  # SPLITS: which channels the first levels keep
    context: str = "none"  # CONTEXTS: what else the split priors see

    def __post_init__(self) -> None:
        if self.colour not in transforms.COLOUR_TRANSFORMS:
            raise ValueError(f"unknown colour transform {self.colour!r}")
        if self.wavelet not in transforms.WAVELETS:
            raise ValueError(f"unknown wavelet {self.wavelet!r}")
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}")
        if self.context not in CONTEXTS:  # checkerboard: docs/INTEGER.md
            raise ValueError(f"unknown context {self.context!r}")
        if not 1 <= self.wavelet_levels <= self.levels:
            raise ValueError(f"wavelet_levels must be in [1, levels], not {self.wavelet_levels}")
        if self.split == "pyramid" and (self.wavelet == "none" or self.wavelet_levels < 2):
            raise ValueError("the pyramid split needs a wavelet at the first two levels")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FlowConfig:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


SPLITS = ("random", "lowpass", "pyramid")


def split_keep(split: str, level: int) -> list[int]:
    """The channels (in squeeze order, ``4c + slot``) that level ``level`` keeps, in order;
    [] where the split is random.

    ``lowpass``: level 0 keeps the three low-pass bands (slot 0: LL after a wavelet squeeze)
    and luma's three detail bands, and factors out the chroma details, which the luma details
    predict. Level 1 keeps the four slots of those low-pass bands (kept channels 0–2) and
    factors out the luma details. So the low-pass image goes on down the levels, as in a
    wavelet codec, instead of being factored out at full resolution when a random permutation
    puts it there.

    ``pyramid`` (a wavelet at levels 0 and 1) goes on one scale down: level 1 keeps the three
    low-pass bands' four bands, ordered as level 0's output (the three LL first, then luma's
    details, then chroma's); level 2 keeps the four phases of the first six of them (factoring
    out the chroma details of the second scale) and level 3 those of the three LL (factoring out
    the luma details).
    """
    if split == "random":
        return []
    if level == 0:
        return [0, 4, 8, 1, 2, 3]
    if split == "lowpass":
        return list(range(12)) if level == 1 else []
    return {1: [0, 4, 8, 1, 2, 3, 5, 6, 7, 9, 10, 11], 2: list(range(24)), 3: list(range(48))}.get(
        level, []
    )


def arrange_split(couplings: list[Coupling], keep: list[int]) -> None:
    """Set the last coupling's permutation so that the level's split keeps ``keep`` first (the
    earlier couplings' permutations stay random); the rest follow in ascending order."""
    channels = len(couplings[-1].perm)
    ids = torch.arange(channels)
    for coupling in couplings[:-1]:
        ids = ids[coupling.perm]
    where = {int(v): i for i, v in enumerate(ids)}
    order = keep + [c for c in range(channels) if c not in keep]
    couplings[-1].perm.copy_(torch.tensor([where[c] for c in order]))


# The coder's grids that split-prior outputs are mapped to (docs/INTEGER.md, "Split prior
# output"): mean in units of 1/MEAN_PHASES, log-scale on LOG_SCALE_MIN + i * LOG_SCALE_STEP.
MEAN_PHASES = tables.NUM_PHASES
LOG_SCALE_STEP = math.log(2.0) / tables.SCALES_PER_OCTAVE
LOG_SCALE_MIN = -tables.SCALE_INDEX_OF_ONE * LOG_SCALE_STEP
SCALE_COUNT = tables.NUM_SCALES
MIX_UNIT = float(1 << tables.MIX_MEAN_BITS)
assert tables.MIX_MEAN_BITS == tables.MIX_LOGIT_BITS


def squeeze(z: torch.Tensor) -> torch.Tensor:
    """Space-to-depth 2×2: (B, C, H, W) → (B, 4C, H/2, W/2), channel order (c, dy, dx)."""
    b, c, h, w = z.shape
    z = z.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return z.reshape(b, c * 4, h // 2, w // 2)


def input_map(x: torch.Tensor, colour: str) -> torch.Tensor:
    """uint8-valued (B, 3, H, W) → centred integer-valued float latents (docs/INTEGER.md)."""
    z = x.float()
    if colour == "ycocg-r":
        y, co, cg = transforms.ycocg_r(z[:, 0], z[:, 1], z[:, 2])
        return torch.stack([y - 128.0, co, cg], dim=1)
    return z - 128.0


def wavelet_squeeze(z: torch.Tensor, wavelet: str) -> torch.Tensor:
    """squeeze, then each channel's four slots hold its (LL, HL, LH, HH) bands (as the engine's
    ``flow.wavelet_squeeze``). On latents that carry gradients (a wavelet past the first
    level), the floors of the lifting steps pass them straight through."""
    if wavelet == "none":
        return squeeze(z)
    if not z.requires_grad:
        return _wavelet_bands(z, wavelet)
    with torch.no_grad():
        exact = _wavelet_bands(z, wavelet)
    linear = _wavelet_bands(z.as_subclass(_Unfloored), wavelet).as_subclass(torch.Tensor)
    return exact + (linear - linear.detach())


class _Unfloored(torch.Tensor):
    """A tensor whose ``//`` divides exactly: the lifting steps without their floors, for the
    gradient of the integer ones."""

    def __floordiv__(self, other: object) -> torch.Tensor:  # type: ignore[override]
        return torch.true_divide(self, other)


def _wavelet_bands(z: torch.Tensor, wavelet: str) -> torch.Tensor:
    b, c, h, w = z.shape
    if wavelet == "haar":
        groups = squeeze(z).reshape(b, c, 4, h // 2, w // 2)
        bands = transforms.haar(*(groups[:, :, k] for k in range(4)))
    else:
        bands = transforms.legall53(z)
    return torch.stack(bands, dim=2).reshape(b, 4 * c, h // 2, w // 2)


def log_discretized_logistic(
    z: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """log P(z) for integer z under a logistic discretized to unit bins."""
    inv = torch.exp(-log_scale)
    upper = torch.sigmoid((z + 0.5 - mean) * inv)
    lower = torch.sigmoid((z - 0.5 - mean) * inv)
    return torch.log(torch.clamp(upper - lower, min=1e-9))


class Coupling(nn.Module):
    def __init__(self, channels: int, cfg: FlowConfig, generator: torch.Generator) -> None:
        super().__init__()
        self.register_buffer("perm", torch.randperm(channels, generator=generator))
        self.split = channels // 2
        self.net = ConvNet(self.split, channels - self.split, cfg.width, cfg.blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z[:, self.perm]
        za, zb = z[:, : self.split], z[:, self.split :]
        return torch.cat([za, zb + round_ste(self.net(za))], dim=1)


class SplitPrior(nn.Module):
    """Discretized logistic for the factored-out half, conditioned on the kept half — and,
    with a checkerboard context, at the second pass's positions on the first pass's values."""

    def __init__(self, channels: int, cfg: FlowConfig) -> None:
        super().__init__()
        self.keep = channels // 2
        out = channels - self.keep
        self.net = ConvNet(self.keep, 2 * out, cfg.prior_width, cfg.prior_blocks)
        self.context = (
            ConvNet(channels, 2 * out, cfg.prior_width, cfg.prior_blocks)
            if cfg.context == "checkerboard"
            else None
        )

    def params(
        self, kept: torch.Tensor, extra: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-scale from the prior network's output, plus ``extra`` (the context
        network's output) where given: on the coder's grids each is rounded on its own and
        the sum is clamped, as the engine adds the two networks' integer outputs."""
        h = self.net(kept).float()
        mean, log_scale = h.chunk(2, dim=1)
        log_scale = log_scale + 1.0  # start wide: scale ≈ e
        lo, step = LOG_SCALE_MIN, LOG_SCALE_STEP
        if self.net.quantized:  # the coder's grids
            mean = round_ste(mean * MEAN_PHASES) / MEAN_PHASES
            log_scale = round_ste((log_scale - lo) / step) * step + lo
        if extra is not None:
            extra_mean, extra_log_scale = extra.float().chunk(2, dim=1)
            if self.net.quantized:
                extra_mean = round_ste(extra_mean * MEAN_PHASES) / MEAN_PHASES
                extra_log_scale = round_ste(extra_log_scale / step) * step
            mean, log_scale = mean + extra_mean, log_scale + extra_log_scale
        log_scale = torch.clamp(log_scale, lo, lo + step * (SCALE_COUNT - 1))
        return mean, log_scale

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, out = z[:, : self.keep], z[:, self.keep :]
        mean, log_scale = self.params(kept)
        logp = log_discretized_logistic(out, mean, log_scale)
        if self.context is not None:
            anchors = checkerboard(out.shape[-2], out.shape[-1], out.device)
            seen = torch.cat([kept, out * anchors], dim=1)
            mean2, log_scale2 = self.params(kept, self.context(seen))
            logp2 = log_discretized_logistic(out, mean2, log_scale2)
            logp = torch.where(anchors.bool(), logp, logp2)
        return kept, logp.sum(dim=(1, 2, 3))


def checkerboard(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(1, 1, h, w): 1 at the first pass's positions (row + column even), else 0."""
    rows = torch.arange(h, device=device).view(-1, 1)
    cols = torch.arange(w, device=device).view(1, -1)
    return ((rows + cols) % 2 == 0).float().view(1, 1, h, w)


class MixturePrior(nn.Module):
    """Per-channel mixture of discretized logistics for the top level (any image size)."""

    def __init__(self, channels: int, components: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(channels, components))
        self.means = nn.Parameter(torch.linspace(-40, 40, components).repeat(channels, 1))
        self.log_scales = nn.Parameter(torch.full((channels, components), 2.0))
        self.quantized = False

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.float().unsqueeze(-1)  # (B, C, H, W, 1)
        shape = (1, -1, 1, 1, self.logits.shape[1])
        means, log_scales, logits = self.means, self.log_scales, self.logits
        log_scales = log_scales.clamp(
            LOG_SCALE_MIN, LOG_SCALE_MIN + LOG_SCALE_STEP * (SCALE_COUNT - 1)
        )
        if self.quantized:  # the integer parameters of tables.build_mixture_table
            means = round_ste(means * MIX_UNIT) / MIX_UNIT
            logits = round_ste(logits * MIX_UNIT) / MIX_UNIT
            steps = round_ste((log_scales - LOG_SCALE_MIN) / LOG_SCALE_STEP)
            log_scales = LOG_SCALE_MIN + steps * LOG_SCALE_STEP
        lp = log_discretized_logistic(z, means.view(shape), log_scales.view(shape))
        lw = F.log_softmax(logits, dim=1).view(shape)
        return torch.logsumexp(lp + lw, dim=-1).sum(dim=(1, 2, 3))


class IntegerFlow(nn.Module):
    def __init__(self, cfg: FlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        self.levels = nn.ModuleList()
        self.priors = nn.ModuleList()
        channels = 3
        for level in range(cfg.levels):
            channels *= 4
            couplings = nn.ModuleList(Coupling(channels, cfg, g) for _ in range(cfg.couplings))
            self.levels.append(couplings)
            if level < cfg.levels - 1:
                self.priors.append(SplitPrior(channels, cfg))
                channels //= 2
        self.top = MixturePrior(channels, cfg.mixture)
        self.arrange_splits(range(cfg.levels))

    def arrange_splits(self, levels: Iterable[int]) -> None:
        """Set the last permutation of each of ``levels`` that the split arranges."""
        for level in levels:
            keep = split_keep(self.cfg.split, level)
            if keep and level < self.cfg.levels - 1 and len(self.levels[level]):
                arrange_split(list(self.levels[level]), keep)

    def nets(self) -> list[ConvNet]:
        return [m for m in self.modules() if isinstance(m, ConvNet)]

    def set_quantized(self, on: bool) -> None:
        for net in self.nets():
            net.set_quantized(on)
        self.top.quantized = on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood in bits per sub-pixel, per image. x: uint8-valued (B,3,H,W)."""
        z = input_map(x, self.cfg.colour)
        logp = torch.zeros(x.shape[0], device=x.device)
        for level, couplings in enumerate(self.levels):
            first = level < self.cfg.wavelet_levels
            z = wavelet_squeeze(z, self.cfg.wavelet if first else "none")
            for coupling in couplings:
                z = coupling(z)
            if level < len(self.priors):
                z, lp = self.priors[level](z)
                logp = logp + lp
        logp = logp + self.top(z)
        return -logp / (x[0].numel() * math.log(2.0))

    def gate_penalty(self) -> torch.Tensor:
        return sum(p.sum() for net in self.nets() for p in net.gate_params())

    def gate_stats(self) -> tuple[int, int]:
        params = [p for net in self.nets() for p in net.gate_params()]
        total = sum(p.numel() for p in params)
        active = sum(int((p > 0.5).sum()) for p in params)
        return active, total

    def macs_per_pixel(self) -> float:
        """Multiply-accumulates per image pixel of all networks, pruned channels removed."""
        total = 0.0
        for level, couplings in enumerate(self.levels):
            positions = 1.0 / 4 ** (level + 1)
            nets = [c.net for c in couplings]
            if level < len(self.priors):
                nets.append(self.priors[level].net)
                if self.priors[level].context is not None:
                    nets.append(self.priors[level].context)
            for net in nets:
                total += positions * net_macs(net)
        return total


def load_grown(model: IntegerFlow, state: dict[str, torch.Tensor]) -> int:
    """Load ``state`` into ``model``, which may have more couplings per level, more blocks per
    network or more levels than the checkpoint. New couplings and blocks start as the identity,
    so a model grown that way codes exactly as well as the one it grew from: a new coupling's
    output conv is zero-initialised; new couplings of an existing level come in pairs whose
    channel permutations undo each other (a lone one keeps the order), so the split priors see
    the channels they were trained on; a new residual block's second conv is zeroed. New levels
    start fresh, and the top prior with them (its channels change). Returns the number of new
    tensors."""
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise ValueError(f"checkpoint does not fit the model: {unexpected[:3]} ...")
    old_levels = len({k.split(".")[1] for k in state if k.startswith("levels.")})
    if old_levels < len(model.levels):
        state = {k: v for k, v in state.items() if not k.startswith("top.")}
    new = [k for k in own if k not in state]
    for key in new:
        if ".blocks." in key and ".conv2." in key:
            own[key] = torch.zeros_like(own[key])
    for level in range(old_levels):
        fresh = [k for k in new if k.startswith(f"levels.{level}.") and k.endswith(".perm")]
        for first, second in zip(fresh[0::2], fresh[1::2], strict=False):
            own[second] = torch.argsort(own[first])
        if len(fresh) % 2:
            own[fresh[-1]] = torch.arange(len(own[fresh[-1]]))
    own.update(state)
    model.load_state_dict(own)
    # A checkpoint of another split (say lowpass, continued as pyramid): the split's own
    # arrangement, from the permutations loaded before it; the same split arranges the same.
    model.arrange_splits(
        level
        for level, couplings in enumerate(model.levels)
        if f"levels.{level}.{len(couplings) - 1}.perm" in state
    )
    return len(new)


def net_macs(net: ConvNet) -> float:
    k = 9
    width = net.conv_in.out_channels
    macs = k * net.conv_in.in_channels * width + k * width * net.conv_out.out_channels
    for blk in net.blocks:
        active = int(blk.gate.active().sum())
        macs += 2 * k * width * active
    return float(macs)
