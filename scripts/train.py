"""Train the integer discrete flow on ../shared/data/train (resumable).

Stages, by step: float (bf16 autocast) → learnable gates with a sparsity push → 8-bit
quantization-aware fine-tuning (fp32). Checkpoints every few minutes to RUN/ckpt.pt and logs
dev bits per sub-pixel to RUN/log.csv; rerunning the same command resumes. scripts/export.py
leaves a slim checkpoint in models/checkpoints/ so a later session (a fresh clone) can go on
with `--init`.

    python scripts/train.py --run runs/w64 --steps 30000 --gates-from 6000 --decay-from 16000 \
        --qat-from 24000
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from iodfz.flow.data import SHARED, build_training_pool, load_dev_sets, sample_batch
from iodfz.flow.model import FlowConfig, IntegerFlow


def evaluate(model: IntegerFlow, dev: dict[str, np.ndarray]) -> dict[str, float]:
    model.eval()
    out = {}
    with torch.no_grad():
        for name, images in dev.items():
            x = torch.from_numpy(images)
            bpsp = torch.cat([model(x[i : i + 32]) for i in range(0, len(x), 32)])
            out[name] = float(bpsp.mean())
    model.train()
    return out


def learning_rate(args: argparse.Namespace, step: int) -> float:
    """Constant, then cosine decay to a tenth until QAT starts; QAT cosine-decays a quarter."""

    def cosine(start: int, end: int, high: float, low: float) -> float:
        frac = min(1.0, (step - start) / max(1, end - start))
        return low + (high - low) * 0.5 * (1 + np.cos(np.pi * frac))

    if step >= args.qat_from:
        return cosine(args.qat_from, args.steps, args.lr * 0.25, 0.0)
    if step >= args.decay_from:
        return cosine(args.decay_from, args.qat_from, args.lr, args.lr * 0.1)
    return args.lr


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--config", type=json.loads, default={}, help="FlowConfig overrides (JSON)")
    ap.add_argument("--steps", type=int, default=30000)
    ap.add_argument("--gates-from", type=int, default=6000)
    ap.add_argument("--qat-from", type=int, default=24000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--decay-from", type=int, default=20000, help="cosine decay until --qat-from")
    ap.add_argument("--gate-penalty", type=float, default=2e-4)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--ckpt-minutes", type=float, default=4.0)
    ap.add_argument(
        "--init", type=Path, help="start from a slim checkpoint (models/checkpoints/*.pt)"
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.run.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.run / "ckpt.pt"

    source = ckpt_path if ckpt_path.exists() else args.init
    if source is not None:
        ckpt = torch.load(source, weights_only=False)
        cfg = FlowConfig.from_dict(ckpt["config"])
    else:
        ckpt = None
        cfg = FlowConfig(**args.config)
    model = IntegerFlow(cfg)
    gate_params = [p for net in model.nets() for p in net.gate_params()]
    gate_ids = {id(p) for p in gate_params}
    others = [p for p in model.parameters() if id(p) not in gate_ids]
    opt = torch.optim.Adamax([{"params": others}, {"params": gate_params}], lr=args.lr)
    step = 0
    rng = np.random.default_rng(0)
    if ckpt is not None:
        step = ckpt["step"]
        if step >= args.qat_from:
            model.set_quantized(True)
        model.load_state_dict(ckpt["model"])
        if "opt" in ckpt:  # a slim checkpoint (--init) carries no optimizer state
            opt.load_state_dict(ckpt["opt"])
        rng = np.random.default_rng(step)
        print(f"resumed at step {step}")
    model = model.to(memory_format=torch.channels_last)

    pool = build_training_pool(SHARED, Path("runs/cache/train_pool.pkl"))
    dev = load_dev_sets(SHARED)
    log_path = args.run / "log.csv"
    new_log = not log_path.exists()
    log = log_path.open("a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(
            ["step", "minutes", "stage", "train_bpsp", *dev, "active_gates", "macs_per_pixel"]
        )
    (args.run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    last_ckpt = time.time()
    t0 = time.time() - (ckpt["minutes"] * 60 if ckpt else 0.0)
    running = []
    while step < args.steps:
        quantized = step >= args.qat_from
        if quantized and not model.nets()[0].quantized:
            model.set_quantized(True)
            evaluate(model, {"calib": np.concatenate([sample_batch(pool, rng, 32, args.size)])})
        lr = learning_rate(args, step)
        for g, scale in zip(opt.param_groups, (1.0, 0.25), strict=True):
            g["lr"] = lr * scale
        x = torch.from_numpy(sample_batch(pool, rng, args.batch, args.size))
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not quantized):
            bpsp = model(x).mean()
        loss = bpsp
        if step >= args.gates_from:
            loss = loss + args.gate_penalty * model.gate_penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step < args.gates_from:
            for p in gate_params:
                p.grad = None
        opt.step()
        running.append(float(bpsp))
        step += 1
        if step % args.eval_every == 0 or step == args.steps:
            scores = evaluate(model, dev)
            active, total = model.gate_stats()
            stage = "qat" if quantized else ("gates" if step > args.gates_from else "float")
            minutes = (time.time() - t0) / 60
            writer.writerow(
                [
                    step,
                    f"{minutes:.1f}",
                    stage,
                    f"{np.mean(running):.4f}",
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
                f"train {np.mean(running):.3f}",
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
                "opt": opt.state_dict(),
                "minutes": (time.time() - t0) / 60,
            }
            torch.save(state, args.run / "ckpt.tmp")
            (args.run / "ckpt.tmp").replace(ckpt_path)
            last_ckpt = time.time()


if __name__ == "__main__":
    main()
