"""Train the integer discrete flow on ../shared/data/train (resumable).

Stages, by step: float (bf16 autocast where the hardware has bf16, else fp32) → learnable
gates with a sparsity push → 8-bit quantization-aware fine-tuning (fp32). Checkpoints every
few minutes to RUN/ckpt.pt and logs dev bits per sub-pixel to RUN/log.csv; rerunning the same
command resumes. scripts/export.py leaves a slim checkpoint in models/checkpoints/ so a later
session (a fresh clone) can go on with `--init`. Data: the pack of scripts/pack_data.py (built
on first use).

    python scripts/train.py --run runs/w64 --steps 30000 --gates-from 6000 --decay-from 16000 \
        --qat-from 24000

On a GPU, with a time budget instead of a step count (stage boundaries as fractions of the
steps this call trains, counted from where it starts or resumes):

    python scripts/train.py --run OUT --device cuda --minutes 7 --batch 256 --sizes 32 64 \
        --gates-from 0.35 --decay-from 0.55 --qat-from 0.85 --slim
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from iodfz.flow.data import (
    PACK_RECIPE,
    SHARED,
    build_pack,
    load_dev_sets,
    load_pack,
    pack_recipe,
    pack_to_device,
    sample_batch,
    save_pack,
)
from iodfz.flow.model import FlowConfig, IntegerFlow, load_grown
from iodfz.machine import native_bf16

# QAT steps run in fp32 with fake quantization: about twice the time of a bf16 step.
QAT_STEP_COST = 2.0
SLIM_WARMUP_STEPS = 500  # steps of learning-rate ramp after a checkpoint without optimizer state


def evaluate(model: IntegerFlow, dev: dict[str, torch.Tensor]) -> dict[str, float]:
    model.eval()
    device = next(model.parameters()).device
    out = {}
    with torch.no_grad():
        for name, images in dev.items():
            x = torch.as_tensor(images).to(device)
            bpsp = torch.cat([model(x[i : i + 32]) for i in range(0, len(x), 32)])
            out[name] = float(bpsp.mean())
    model.train()
    return out


STAGE_HELP = "step, or a fraction (< 1) of the steps this call trains"


def stage_step(value: float, start: int, steps: int) -> int:
    """A stage boundary: a step count, or, below 1, that fraction of the steps from ``start``
    (where this call starts or resumes) to ``steps`` — so a budget continuing a checkpoint
    at step 44 500 runs its own stages instead of finding them all in the past."""
    return start + int(value * (steps - start)) if value < 1 else int(value)


def resolve_schedule(args: argparse.Namespace, start: int) -> None:
    args.gates_step = stage_step(args.gates_from, start, args.steps)
    args.decay_step = stage_step(args.decay_from, start, args.steps)
    args.qat_step = stage_step(args.qat_from, start, args.steps)


def learning_rate(args: argparse.Namespace, step: int) -> float:
    """Constant, then cosine decay to a tenth until QAT starts; QAT cosine-decays a quarter."""

    def cosine(start: int, end: int, high: float, low: float) -> float:
        frac = min(1.0, (step - start) / max(1, end - start))
        return low + (high - low) * 0.5 * (1 + np.cos(np.pi * frac))

    if step >= args.qat_step:
        return cosine(args.qat_step, args.steps, args.lr * 0.25, 0.0)
    if step >= args.decay_step:
        return cosine(args.decay_step, args.qat_step, args.lr, args.lr * 0.1)
    return args.lr


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--config", type=json.loads, default={}, help="FlowConfig overrides (JSON)")
    ap.add_argument("--steps", type=int, default=30000)
    ap.add_argument(
        "--minutes", type=float, help="time budget: sets --steps from the measured step rate"
    )
    ap.add_argument("--gates-from", type=float, default=6000, help=STAGE_HELP)
    ap.add_argument("--qat-from", type=float, default=24000, help=STAGE_HELP)
    ap.add_argument("--batch", type=int, default=64, help="images per step at the largest size")
    ap.add_argument("--sizes", type=int, nargs="+", default=[32], help="crop sizes, in turn")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument(
        "--decay-from", type=float, default=20000, help="cosine decay until QAT; " + STAGE_HELP
    )
    ap.add_argument("--gate-penalty", type=float, default=2e-4)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--ckpt-minutes", type=float, default=4.0)
    ap.add_argument(
        "--init",
        type=Path,
        help="start from a slim checkpoint (models/checkpoints/*.pt); --config may grow it",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="float stages' autocast; auto: bf16 where the hardware has it",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pack", type=Path, default=Path("runs/pack"), help="scripts/pack_data.py")
    ap.add_argument("--slim", action="store_true", help="checkpoints without optimizer state")
    ap.add_argument(
        "--smooth-share",
        type=float,
        default=0.0,
        help="share of each batch drawn from the pack's smooth regions (full-resolution-like)",
    )
    ap.add_argument(
        "--grain", type=float, default=1.5, help="smooth crops get Gaussian grain of σ in [0, G)"
    )
    ap.add_argument(
        "--whole-share",
        type=float,
        default=0.25,
        help="share of each batch that is whole photos resized to the crop size (thumbnails)",
    )
    ap.add_argument(
        "--clip-share",
        type=float,
        default=0.0,
        help="share of each batch contrast-stretched until 10-60 %% of it saturates",
    )
    ap.add_argument(
        "--pad-share",
        type=float,
        default=0.0,
        help="share of each batch edge-padded at the bottom and right, as the codec pads",
    )
    ap.add_argument(
        "--area-power",
        type=float,
        default=0.5,
        help="a photo is drawn with weight area**POWER (0.5: √area; 1: large photos by area)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    native = device.type == "cuda" or native_bf16()
    bf16 = args.precision == "bf16" or (args.precision == "auto" and native)
    print("float stages in", "bf16 autocast" if bf16 else "fp32", flush=True)
    args.run.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.run / "ckpt.pt"

    source = ckpt_path if ckpt_path.exists() else args.init
    if source is not None:
        ckpt = torch.load(source, map_location="cpu", weights_only=False)
        overrides = args.config if source == args.init else {}
        cfg = FlowConfig.from_dict({**ckpt["config"], **overrides})
    else:
        ckpt = None
        cfg = FlowConfig(**args.config)
    model = IntegerFlow(cfg)
    gate_params = [p for net in model.nets() for p in net.gate_params()]
    gate_ids = {id(p) for p in gate_params}
    others = [p for p in model.parameters() if id(p) not in gate_ids]
    opt = torch.optim.Adamax([{"params": others}, {"params": gate_params}], lr=args.lr)
    step = first_step = ckpt["step"] if ckpt is not None else 0
    resolve_schedule(args, first_step)
    if ckpt is not None:
        if step >= args.qat_step:
            model.set_quantized(True)
        grown = load_grown(model, ckpt["model"])
        print(f"resumed at step {step}" + (f", {grown} new tensors" if grown else ""))
    model = model.to(device, memory_format=torch.channels_last)
    if ckpt is not None and "opt" in ckpt:  # a slim checkpoint carries no optimizer state
        opt.load_state_dict(ckpt["opt"])
    # Without its state Adamax's first steps move every weight by ~lr (dev imagenet32 4.53 →
    # 4.81 in 9 steps at 1e-3): the learning rate ramps up after a slim checkpoint instead.
    warm_from = step if ckpt is not None and "opt" not in ckpt else None
    gen = torch.Generator().manual_seed(step)

    recipe = pack_recipe(args.pack)
    if recipe != PACK_RECIPE:
        found = "no pack" if recipe is None else f"a recipe-{recipe} pack"
        print(f"{args.pack}: {found}, building recipe {PACK_RECIPE} there", flush=True)
        save_pack(build_pack(SHARED, max_regions=12000), args.pack)
    pack = pack_to_device(load_pack(args.pack), device)
    # Pack weights draw each photo by √area; (1/√area)^(2 - 2·POWER) draws it by area^POWER.
    pack["region_weights"] = pack["region_weights"] ** (2 - 2 * args.area_power)
    dev = load_dev_sets(SHARED)  # empty where ../shared is absent (e.g. on a GPU machine)
    log_path = args.run / "log.csv"
    new_log = not log_path.exists()
    log = log_path.open("a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(
            ["step", "minutes", "stage", "train_bpsp", *dev, "active_gates", "macs_per_pixel"]
        )
    (args.run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    last_ckpt = started = time.time()
    t0 = time.time() - (ckpt["minutes"] * 60 if ckpt else 0.0)
    # With a time budget, steps 100–300 (past warm-up) measure the rate that sets --steps.
    probe_from, probe_until = (step + 100, step + 300) if args.minutes else (None, None)
    largest = max(args.sizes)
    running = []
    while step < args.steps:
        if step == probe_from:
            probe_start = time.time()
        if step == probe_until:
            rate = (probe_until - probe_from) / (time.time() - probe_start)
            remaining = args.minutes * 60 - (time.time() - started)
            qat_share = 1 - args.qat_from if args.qat_from < 1 else 0.0
            args.steps = step + int(remaining * rate / (1 + (QAT_STEP_COST - 1) * qat_share))
            resolve_schedule(args, first_step)
            pixels = rate * args.batch * largest**2  # every step holds batch·largest² pixels
            print(
                f"{rate:.1f} steps/s, {pixels / 1e6:.1f} Mpixel/s: training to step {args.steps}",
                flush=True,
            )
        quantized = step >= args.qat_step
        if quantized and not model.nets()[0].quantized:
            model.set_quantized(True)
            evaluate(model, {"calib": sample_batch(pack, gen, 32, largest)})
        lr = learning_rate(args, step)
        if warm_from is not None:
            lr *= min(1.0, (step - warm_from + 1) / SLIM_WARMUP_STEPS)
        for g, scale in zip(opt.param_groups, (1.0, 0.25), strict=True):
            g["lr"] = lr * scale
        size = args.sizes[step % len(args.sizes)]
        n = args.batch * (largest // size) ** 2
        x = sample_batch(
            pack,
            gen,
            n,
            size,
            smooth_share=args.smooth_share,
            grain=args.grain,
            pad_share=args.pad_share,
            whole_share=args.whole_share,
            clip_share=args.clip_share,
        )
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and not quantized):
            bpsp = model(x).mean()
        loss = bpsp
        if step >= args.gates_step:
            loss = loss + args.gate_penalty * model.gate_penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step < args.gates_step:
            for p in gate_params:
                p.grad = None
        opt.step()
        running.append(bpsp.detach())
        step += 1
        if args.minutes and time.time() - started > args.minutes * 60:
            args.steps = step  # out of time: evaluate and checkpoint now
        if step % args.eval_every == 0 or step == args.steps:
            scores = evaluate(model, dev)
            active, total = model.gate_stats()
            stage = "qat" if quantized else ("gates" if step > args.gates_step else "float")
            minutes = (time.time() - t0) / 60
            writer.writerow(
                [
                    step,
                    f"{minutes:.1f}",
                    stage,
                    f"{float(torch.stack(running).mean()):.4f}",
                    *(f"{v:.4f}" for v in scores.values()),
                    f"{active}/{total}",
                    f"{model.macs_per_pixel():.0f}",
                ]
            )
            log.flush()
            print(
                step,
                f"{minutes:.1f}min",
                stage,
                f"train {float(torch.stack(running).mean()):.3f}",
                {k: round(v, 3) for k, v in scores.items()},
                f"gates {active}/{total}",
                flush=True,
            )
            running = []
        if time.time() - last_ckpt > args.ckpt_minutes * 60 or step == args.steps:
            state = {
                "step": step,
                "config": cfg.to_dict(),
                "model": model.state_dict(),
                "minutes": (time.time() - t0) / 60,
            }
            if not args.slim:
                state["opt"] = opt.state_dict()
            torch.save(state, args.run / "ckpt.tmp")
            (args.run / "ckpt.tmp").replace(ckpt_path)
            last_ckpt = time.time()


if __name__ == "__main__":
    main()
