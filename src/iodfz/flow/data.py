"""Training and dev data from ../shared/data (see its README for what each folder is).

Training photos are JPEG-derived, so they are box-downsampled ≥ 2× (or resized whole to 32/64 px,
the ImageNet32/64 construction) before use: the model must not learn 8×8 JPEG block artefacts.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def box_downsample(img: Image.Image, factor: int) -> np.ndarray:
    w, h = img.size
    return np.asarray(img.resize((w // factor, h // factor), Image.BOX))


def build_training_pool(root: Path, cache: Path) -> dict[str, list[np.ndarray]]:
    """Whole images resized to 32 and 64 px, plus 2×/4×/8× box-downsampled photos for crops."""
    if cache.exists():
        with cache.open("rb") as f:
            return pickle.load(f)
    pool: dict[str, list[np.ndarray]] = {"whole32": [], "whole64": [], "crops": []}
    files = sorted(
        p for p in (root / "train").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    for path in files:
        img = Image.open(path).convert("RGB")
        pool["whole32"].append(np.asarray(img.resize((32, 32), Image.BOX)))
        pool["whole64"].append(np.asarray(img.resize((64, 64), Image.BOX)))
        for factor in (2, 4, 8):
            small = box_downsample(img, factor)
            if min(small.shape[:2]) >= 64:
                pool["crops"].append(small)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("wb") as f:
        pickle.dump(pool, f)
    return pool


def sample_batch(
    pool: dict[str, list[np.ndarray]], rng: np.random.Generator, batch: int, size: int
) -> np.ndarray:
    """(batch, 3, size, size) uint8: a quarter whole resized images, the rest random crops."""
    out = np.empty((batch, size, size, 3), np.uint8)
    whole = pool.get(f"whole{size}", [])
    crops = pool["crops"]
    areas = np.array([c.shape[0] * c.shape[1] for c in crops], np.float64)
    weights = np.sqrt(areas) / np.sqrt(areas).sum()
    for i in range(batch):
        if whole and rng.random() < 0.25:
            img = whole[rng.integers(len(whole))]
        else:
            src = crops[rng.choice(len(crops), p=weights)]
            y = rng.integers(src.shape[0] - size + 1)
            x = rng.integers(src.shape[1] - size + 1)
            img = src[y : y + size, x : x + size]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        out[i] = img
    return out.transpose(0, 3, 1, 2)


def load_dev_sets(root: Path) -> dict[str, np.ndarray]:
    """dev/imagenet32, dev/imagenet64 (whole) and 128×128 centre crops of 6 kodak images."""
    sets: dict[str, np.ndarray] = {}
    for name in ("imagenet32", "imagenet64"):
        files = sorted((root / "dev" / name).glob("*.png"))
        if files:
            sets[name] = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    kodak = sorted((root / "kodak").glob("*.png"))[::4]
    if kodak:
        crops = []
        for f in kodak:
            a = np.asarray(Image.open(f).convert("RGB"))
            y, x = a.shape[0] // 2 - 64, a.shape[1] // 2 - 64
            crops.append(a[y : y + 128, x : x + 128])
        sets["kodak_crops"] = np.stack(crops)
    return {k: v.transpose(0, 3, 1, 2).copy() for k, v in sets.items()}
