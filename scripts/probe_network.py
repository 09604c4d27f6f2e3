"""Probe (float, ideal bits): how much could a small network that maps each sample's causal
neighbourhood to a (mean, scale) of a discretized logistic take off `iodf-predictive-3`, and
how much of that needs adapting to the image? Nothing here is a codec.

    python scripts/probe_network.py [--photos 240] [--steps 4000] [--hidden 64]
        [--every 6] [--modes pretrained head tuned top-bottom] [--json out.json]

The network (30 features → hidden → hidden → 2, ReLU) sees what the decoder would know before
a sample: 13 neighbours' values and 8 neighbours' residuals against version 3's prediction P
(signed log), the previous plane's residuals at the pixel and 3 neighbours, the plane, the
error context, and P itself; it outputs a mean shift from P and a log-scale. It is trained on
crops of the training photos (box-downsampled 2×, one 128×128 crop each), then on each tested
Kodak image:

- ``pretrained``: as trained;
- ``head``: its last layer (2 × hidden + 2 numbers) refitted to the image (what an encoder
  could send);
- ``tuned``: every weight refitted to the image (an oracle: ~6 k numbers);
- ``top-bottom``: every weight refitted to the image's top half, scored on its bottom half
  against version 3 there (how well an adaptation learned from what is already decoded
  carries over).

The baseline is version 3's prediction and contexts with parameters fitted to each image
(``predictive.fit``) on the logistic tables, and on its learned tables (what files get).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from iodfz.codec import predictive

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CODER = predictive.CODER
#: (rows up, columns left) of the neighbours whose values the network sees (all decoded
#: before the sample in the anti-diagonal order 2·i + j)
VALUE_AT = (
    (1, 0),
    (0, 1),
    (1, 1),
    (1, -1),
    (2, 0),
    (0, 2),
    (2, -1),
    (2, 1),
    (1, 2),
    (2, -2),
    (0, 3),
    (3, 0),
    (2, 2),
)
RESIDUAL_AT = VALUE_AT[:8]
PREVIOUS_AT = ((1, 0), (0, 1), (1, -1))


def shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a[..., i - dy, j - dx]`` at (i, j), zero outside."""
    out = np.zeros_like(a)
    h, w = a.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = a[
        ..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def features(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Each sample's features, value, version 3's prediction (in samples) and what the
    baseline needs (planes, prediction in eighths, contexts)."""
    x = predictive.to_planes(rgb[None])  # (3, 1, h, w)
    pred, contexts = predictive.predict(CODER, x)
    p = pred / 8.0
    residual = (x - predictive._rounded(CODER, pred)).astype(np.float64)
    values = x.astype(np.float64)
    previous = np.zeros_like(residual)
    previous[1:] = residual[:-1]
    columns = [shifted(values, dy, dx) - p for dy, dx in VALUE_AT]
    columns += [shifted(residual, dy, dx) for dy, dx in RESIDUAL_AT]
    columns += [previous] + [shifted(previous, dy, dx) for dy, dx in PREVIOUS_AT]
    columns = [np.sign(c) * np.log1p(np.abs(c)) for c in columns]
    plane = np.broadcast_to(np.arange(3).reshape(3, 1, 1, 1), x.shape)
    error_context = contexts % CODER.local_contexts % predictive.ERROR_CONTEXTS
    columns += [plane == 0, plane == 1, plane == 2, error_context / 16.0, (p - 128) / 128.0]
    return {
        "features": np.stack([c.astype(np.float32).ravel() for c in columns], 1),
        "value": x.ravel().astype(np.float32),
        "prediction": p.ravel().astype(np.float32),
        "planes": x,
        "pred": pred,
        "contexts": contexts,
    }


class Net(torch.nn.Module):
    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(inputs, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        )  # fmt: skip
        self.head = torch.nn.Linear(hidden, 2)

    def forward(self, f: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.body(f))
        return p + out[:, 0], out[:, 1]


def bits(value: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Ideal bits of each integer ``value`` under a logistic discretized to integers."""
    scale = torch.exp(log_scale)
    mass = torch.sigmoid((value + 0.5 - mean) / scale) - torch.sigmoid((value - 0.5 - mean) / scale)
    return -torch.log2(torch.clamp(mass, min=1e-9))


def train(net: torch.nn.Module, data: dict, rows: torch.Tensor | None, steps: int, lr: float,
          params: list | None = None) -> None:  # fmt: skip
    """Adam on the mean bits of batches of 8 192 samples (of ``rows`` only, if given)."""
    f, v, p = (torch.from_numpy(data[k]) for k in ("features", "value", "prediction"))
    opt = torch.optim.Adam(params if params is not None else net.parameters(), lr)
    for _ in range(steps):
        pick = torch.randint(0, len(v) if rows is None else len(rows), (8192,))
        if rows is not None:
            pick = rows[pick]
        loss = bits(v[pick], *net(f[pick], p[pick])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def total_bits(net: torch.nn.Module, data: dict, rows: np.ndarray | None = None) -> float:
    f, v, p = (torch.from_numpy(data[k]) for k in ("features", "value", "prediction"))
    with torch.no_grad():
        b = bits(v, *net(f, p)).numpy()
    return float(b.sum() if rows is None else b[rows].sum())


def baseline(data: dict, tables: object, rows: slice = slice(None)) -> float:
    """Version 3's ideal bits with parameters fitted to the whole image (of the image rows
    ``rows`` only, if given)."""
    x, pred, ctx = data["planes"], data["pred"], data["contexts"]
    params = predictive.fit(CODER, predictive.histograms(CODER, x, pred, ctx), tables)
    part = (a[..., rows, :] for a in (x, pred, ctx))
    return predictive.cost(predictive.histograms(CODER, *part), params, tables)


def training_crops(photos: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    files = sorted((DATA / "train").glob("*/*.jpg"))
    rng.shuffle(files)
    crops = []
    for path in files[:photos]:
        im = Image.open(path).convert("RGB")
        a = np.asarray(im.resize((im.width // 2, im.height // 2), Image.BOX))
        if min(a.shape[:2]) >= size:
            y, x = (int(rng.integers(0, n - size + 1)) for n in a.shape[:2])
            crops.append(a[y : y + size, x : x + size])
    return crops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=240)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--every", type=int, default=6, help="test every n-th Kodak image")
    ap.add_argument("--modes", nargs="+", default=["pretrained", "head", "tuned", "top-bottom"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.manual_seed(0)
    parts = [features(a) for a in training_crops(args.photos, 128, np.random.default_rng(0))]
    pooled = {k: np.concatenate([d[k] for d in parts]) for k in ("features", "value", "prediction")}
    net = Net(pooled["features"].shape[1], args.hidden)
    train(net, pooled, None, args.steps, 2e-3)
    logistic, learned = predictive.logistic_tables(), predictive.coding_tables(CODER)
    rows = []
    for path in sorted((DATA / "kodak").glob("*.png"))[:: args.every]:
        data = features(np.asarray(Image.open(path).convert("RGB")))
        n = data["value"].size
        row = {"image": path.name, "v3 logistic": baseline(data, logistic) / n,
               "v3 learned tables": baseline(data, learned) / n}  # fmt: skip
        if "pretrained" in args.modes:
            row["pretrained"] = total_bits(net, data) / n
        if "head" in args.modes:
            tuned = copy.deepcopy(net)
            train(tuned, data, None, 400, 3e-3, list(tuned.head.parameters()))
            row["head"] = total_bits(tuned, data) / n
        if "tuned" in args.modes:
            tuned = copy.deepcopy(net)
            train(tuned, data, None, 1500, 1e-3)
            row["tuned"] = total_bits(tuned, data) / n
        if "top-bottom" in args.modes:
            h = data["planes"].shape[-2]
            top = np.tile(np.repeat(np.arange(h) < h // 2, data["planes"].shape[-1]), 3)
            tuned = copy.deepcopy(net)
            train(tuned, data, torch.from_numpy(np.flatnonzero(top)), 1500, 1e-3)
            bottom = int((~top).sum())
            row["bottom: v3"] = baseline(data, logistic, slice(h // 2, None)) / bottom
            row["bottom: tuned on top"] = total_bits(tuned, data, ~top) / bottom
        rows.append(row)
        print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else v for k, v in row.items()),
              flush=True)  # fmt: skip
    keys = [k for k in rows[0] if k != "image"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    print("\nmean bpsp over", len(rows), "Kodak images (each image's own, equal weight):")
    for k in keys:
        ref = mean["bottom: v3" if k.startswith("bottom") else "v3 logistic"]
        print(f"  {k:22s} {mean[k]:.4f}  ({100 * (mean[k] / ref - 1):+.2f} % of v3 logistic)")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "rows": rows, "mean": mean}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
