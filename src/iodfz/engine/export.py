"""Export a trained (quantization-aware) torch flow to the integer model of docs/INTEGER.md.

Weights become int8 per output channel (step max|w|/127, as in training), biases int32 in
accumulator units, and every change of scale a dyadic multiplier M·2^-s with M in [2^15, 2^16).
Gated-off hidden channels are removed. The overflow bounds are proved per layer
(:meth:`iodfz.engine.model.Conv.check`); a model that breaks one is refused.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from iodfz.coder import tables as coder_tables
from iodfz.engine import flow as engine_flow
from iodfz.engine.model import Conv, Model, ModelError, Net
from iodfz.engine.reference import NumpyBackend
from iodfz.engine.tables import mixture_tables
from iodfz.flow import model as flow_model
from iodfz.flow.quant import ConvNet, QConv

MIX_SUPPORT = (-2048, 2047)  # the widest support the top prior's tables may have


class ExportError(ModelError):
    """The trained model cannot be expressed within the integer semantics."""


def dyadic(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (M, s) with M·2^-s ≈ m, M in [2^15, 2^16); m ≤ 2^-47 becomes M = 0."""
    m = np.asarray(m, np.float64)
    mult = np.zeros(m.shape, np.int64)
    shift = np.zeros(m.shape, np.int64)
    for i, v in np.ndenumerate(m):
        if v < 0:
            raise ExportError("negative requantization multiplier")
        if v <= 2.0**-47:
            continue
        s = 15 - math.floor(math.log2(v))
        q = round(v * 2.0**s)
        if q == 1 << 16:
            q, s = q // 2, s - 1
        if s < 0:
            raise ExportError(f"requantization multiplier {v:g} ≥ 2^15")
        mult[i], shift[i] = q, s
    return mult, shift


def quant_weight(conv: QConv) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weights as (9, c_in, c_out), per-channel step), exactly as fake_quant_weight."""
    w = conv.weight.detach().double()
    step = w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-8) / 127.0
    q = torch.clamp(torch.floor(w / step.view(-1, 1, 1, 1) + 0.5), -127, 127)
    q = q.permute(2, 3, 1, 0).reshape(9, w.shape[1], w.shape[0])
    return q.numpy().astype(np.int8), step.numpy()


def export_conv(
    conv: QConv,
    in_step: float,
    out_mult: np.ndarray,
    bias_offset: np.ndarray | float = 0.0,
    keep_in: np.ndarray | None = None,
    keep_out: np.ndarray | None = None,
) -> Conv:
    """Conv whose requantized output is ≈ (float output) · out_mult (+ bias_offset · out_mult)."""
    weight, step = quant_weight(conv)
    acc_unit = in_step * step  # float value of one accumulator unit, per output channel
    bias = conv.bias.detach().double().numpy() / acc_unit + bias_offset / acc_unit
    mult, shift = dyadic(acc_unit * out_mult)
    if keep_in is not None:
        weight = weight[:, keep_in]
    if keep_out is not None:
        weight, bias, mult, shift = (
            weight[..., keep_out],
            bias[keep_out],
            mult[keep_out],
            shift[keep_out],
        )
    if np.any(np.abs(bias) >= 2**31):
        raise ExportError("bias does not fit int32")
    return Conv(np.ascontiguousarray(weight), np.floor(bias + 0.5).astype(np.int32), mult, shift)


def export_net(net: ConvNet, out_mult: np.ndarray, out_offset: np.ndarray | float = 0.0) -> Net:
    s_r = float(net.act_stream.step.detach())
    conv_in = export_conv(net.conv_in, 1.0, np.full(net.conv_in.out_channels, 1.0 / s_r))
    blocks = []
    for blk in net.blocks:
        keep = blk.gate.active().numpy()
        # With every hidden channel gated off the block only adds conv2's bias; the hidden
        # step (calibrated on all-zero activations) is then meaningless, so use 1.
        s_h = float(blk.act_hidden.step.detach()) if keep.any() else 1.0
        c1 = export_conv(blk.conv1, s_r, np.full(blk.conv1.out_channels, 1.0 / s_h), keep_out=keep)
        c2 = export_conv(blk.conv2, s_h, np.full(blk.conv2.out_channels, 1.0 / s_r), keep_in=keep)
        blocks.append((c1, c2))
    conv_out = export_conv(net.conv_out, s_r, out_mult, out_offset)
    return Net(conv_in, blocks, conv_out)


def export_mixture(top: flow_model.MixturePrior) -> dict[str, np.ndarray]:
    unit = flow_model.MIX_UNIT
    lo, step = flow_model.LOG_SCALE_MIN, flow_model.LOG_SCALE_STEP
    log_scales = top.log_scales.detach().double().numpy()
    params = {
        "mix_logits_fp": np.floor(top.logits.detach().double().numpy() * unit + 0.5),
        "mix_means_fp": np.floor(top.means.detach().double().numpy() * unit + 0.5),
        "mix_scale_index": np.clip(
            np.floor((log_scales - lo) / step + 0.5), 0, coder_tables.NUM_SCALES - 1
        ),
    }
    out = {k: v.astype(np.int64) for k, v in params.items()}
    out["mix_support"] = mixture_support(out["mix_means_fp"], out["mix_scale_index"])
    return out


def mixture_support(means_fp: np.ndarray, scale_index: np.ndarray) -> np.ndarray:
    """(lo, hi): every component's mean ± (TAIL_WIDTH · scale + 2), within MIX_SUPPORT.

    Every symbol of a table gets at least one of its 2^16 frequency units, so a needlessly wide
    support taxes every coded value (4096 symbols cost ~0.09 bits each); values outside it are
    escaped (docs/FORMAT.md §2), which the logistic tails make rare.
    """
    means = means_fp / float(1 << coder_tables.MIX_MEAN_BITS)
    radius = coder_tables.scale_grid()[scale_index] * coder_tables.TAIL_WIDTH + 2
    lo = max(MIX_SUPPORT[0], math.floor(float((means - radius).min())))
    hi = min(MIX_SUPPORT[1], math.ceil(float((means + radius).max())))
    return np.array((lo, max(lo, hi)), np.int64)


def export_model(model: flow_model.IntegerFlow, calibration: np.ndarray) -> Model:
    """Integer model from a trained flow; ``calibration`` (B, 3, H, W) uint8 calibrates
    activation steps if the model never ran quantized."""
    model = model.float().eval()
    model.set_quantized(True)
    with torch.no_grad():
        model(torch.from_numpy(calibration))
    cfg = model.cfg
    perms, couplings = [], []
    for level in model.levels:
        perms.append([c.perm.numpy().astype(np.int32) for c in level])
        couplings.append([export_net(c.net, np.ones(c.net.conv_out.out_channels)) for c in level])
    priors, contexts = [], []
    for prior in model.priors:
        half = prior.net.conv_out.out_channels // 2
        lo, step = flow_model.LOG_SCALE_MIN, flow_model.LOG_SCALE_STEP
        # mean channels: units of 1/P; log-scale channels: (h + 1 - lo) / step, the grid index
        out_mult = np.concatenate(
            [np.full(half, float(flow_model.MEAN_PHASES)), np.full(half, 1.0 / step)]
        )
        out_offset = np.concatenate([np.zeros(half), np.full(half, 1.0 - lo)])
        priors.append(export_net(prior.net, out_mult, out_offset))
        if prior.context is not None:  # adds to the prior's output: same units, no offset
            contexts.append(export_net(prior.context, out_mult))
    config = {
        **cfg.to_dict(),
        "scale_count": coder_tables.NUM_SCALES,
        "phase_bits": coder_tables.PHASE_BITS,
        "precision": coder_tables.PRECISION,
    }
    result = Model(config, perms, couplings, priors, export_mixture(model.top), contexts=contexts)
    try:
        result.check()
    except ModelError as exc:
        raise ExportError(f"refusing to export: {exc}") from None
    result.config["tables_hash"] = coder_tables.tables_hash(coder_tables.default_tables())
    result.config["mixture_hash"] = coder_tables.tables_hash(mixture_tables(result))
    splits, top = engine_flow.forward(result, NumpyBackend(), engine_flow.test_input(result.levels))
    result.test_vectors = engine_flow.latent_hashes(splits, top)
    return result
