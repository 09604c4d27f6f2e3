"""Export a training checkpoint to an integer model file in models/, with its model card.

    python scripts/export.py runs/w64/ckpt.pt --name iodf-w64 --levels 1 19

The card records the data, steps, MACs per pixel, pruned fraction, the float model's
likelihood and the integer model's actual coded size on the dev sets (bits per sub-pixel).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from iodfz.codec import pixels as pixel_codec
from iodfz.engine import flow
from iodfz.engine import model as engine_model
from iodfz.engine.export import export_model
from iodfz.engine.reference import NumpyBackend
from iodfz.engine.tables import latent_bits
from iodfz.flow.data import SHARED, load_dev_sets
from iodfz.flow.model import FlowConfig, IntegerFlow


def float_bpsp(model: IntegerFlow, images: np.ndarray, quantized: bool) -> float:
    model.set_quantized(quantized)
    with torch.no_grad():
        x = torch.from_numpy(images)
        return float(torch.cat([model(x[i : i + 16]) for i in range(0, len(x), 16)]).mean())


def integer_bpsp(model: engine_model.Model, images: np.ndarray) -> float:
    """The exported integer model's likelihood: its latents under its integer coder tables."""
    splits, top = flow.forward(model, NumpyBackend(), images.transpose(0, 2, 3, 1))
    return sum(float(bits.sum()) for bits in latent_bits(model, splits, top)) / images.size


def coded_bpsp(model: engine_model.Model, images: np.ndarray) -> float:
    backend = NumpyBackend()
    total_bits = 0
    for img in images.transpose(0, 2, 3, 1):
        total_bits += 8 * sum(
            map(len, pixel_codec.encode(model, backend, np.ascontiguousarray(img)))
        )
    return total_bits / images.size


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--levels", type=int, nargs=2, default=[1, 19], help="--level range served")
    ap.add_argument("--out", type=Path, default=Path("models"))
    ap.add_argument(
        "--data",
        default="../shared/data/train (box-downsampled ≥2× crops, whole images resized to 32/64)",
        help="what the model was trained on, for its card",
    )
    args = ap.parse_args()

    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    flow = IntegerFlow(FlowConfig.from_dict(ckpt["config"]))
    flow.load_state_dict(ckpt["model"], strict=False)
    flow.eval()
    dev = load_dev_sets(SHARED)
    card: dict = {
        "name": args.name,
        "levels": args.levels,
        "steps": ckpt["step"],
        "train_minutes": round(ckpt["minutes"], 1),
        "data": args.data,
        "config": flow.cfg.to_dict(),
    }
    active, total = flow.gate_stats()
    card["gates_active"] = f"{active}/{total}"
    card["pruned_fraction"] = round(1 - active / total, 4)
    card["macs_per_pixel"] = round(flow.macs_per_pixel())
    card["float_bpsp"] = {k: round(float_bpsp(flow, v, False), 4) for k, v in dev.items()}
    calibration = dev.get("imagenet32", next(iter(dev.values())))[:32]
    model = export_model(flow, calibration)
    card["qat_bpsp"] = {k: round(float_bpsp(flow, v, True), 4) for k, v in dev.items()}
    args.out.mkdir(exist_ok=True)
    path = args.out / f"{args.name}.iodfm"
    card["model_id"] = engine_model.save(model, path)
    model = engine_model.load(path)
    card["integer_bpsp"] = {k: round(integer_bpsp(model, v), 4) for k, v in dev.items()}
    card["export_cost_bpsp"] = {
        k: round(card["integer_bpsp"][k] - card["float_bpsp"][k], 4) for k in dev
    }
    t = time.time()
    card["coded_bpsp"] = {k: round(coded_bpsp(model, v), 4) for k, v in dev.items()}
    card["coded_seconds"] = round(time.time() - t, 1)
    card["file_bytes"] = path.stat().st_size
    path.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    slim = args.out / "checkpoints" / f"{args.name}.pt"
    slim.parent.mkdir(exist_ok=True)
    keep = ("step", "config", "model", "minutes")
    torch.save({k: ckpt[k] for k in keep}, slim)
    log = args.checkpoint.parent / "log.csv"
    if log.exists():
        shutil.copyfile(log, slim.with_suffix(".log.csv"))
    print(json.dumps(card, indent=1))


if __name__ == "__main__":
    main()
