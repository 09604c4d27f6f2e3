"""Training and dev data from ../shared/data (see its README for what each folder is).

Training photos are JPEG-derived, so they are box-downsampled ≥ 2× (or resized whole to 32/64 px,
the ImageNet32/64 construction) before use: the model must not learn 8×8 JPEG block artefacts.

The training set is a *pack*: whole images at 32 and 64 px plus fixed 64×64 regions of the
photos box-downsampled 2×, 4×, 8× and by RANDOM_FACTORS more factors drawn per photo from
[2, 8) (so that the model sees every scale between a tile of a photo and a thumbnail), stored
as lossless WebP mosaics so that it is small enough to travel to a GPU machine (recipe 3:
87 MiB; scripts/pack_data.py --from makes a smaller copy that fits the carry) and be sampled there
on the device.
Each region carries a sampling weight 1/√(area of its downsampled photo): a photo is drawn with
weight √area, so that the few very large wallpapers do not crowd out the ImageNet and BSDS
photos.

From recipe 4 each photo gives 1 + THUMBS_PER_PHOTO thumbnails of each size: the photo resized
whole, then random crops of it (a third of its area or more, aspect changed by up to 4/3)
resized whole, as ImageNet32 / 64 were made.

From recipe 3 the pack also holds ``smooth`` regions, like full-resolution photos rather than
thumbnails: a photo box-downsampled by a factor in [2.4, 4) (no JPEG blocks survive), then
upsampled bicubically by [1.2, 2). Downsampled photos are sharper per pixel than a
full-resolution scan; iodfz coded a noise-free smooth synthetic image in 1.9 bpsp where JPEG-XL
needs 0.8, and smooth kodak images ~18 % above JPEG-XL. ``sample_batch`` adds grain on the fly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
REGION = 64
MOSAIC_COLUMNS = 64
RANDOM_FACTORS = 2
SMOOTH_PER_PHOTO = 6  # smooth regions drawn from each photo (recipe 3)
SMOOTH_DOWN = (2.4, 4.0)
SMOOTH_UP = (1.2, 2.0)
THUMBS_PER_PHOTO = 15  # more whole32 / whole64 per photo: random crops resized (recipe 4)
THUMB_AREA = (0.35, 1.0)  # a crop's share of the photo's area
THUMB_ASPECT = (3 / 4, 4 / 3)  # a crop's aspect (width / height) over the photo's
CLIP_SHARE = (0.1, 0.6)  # share of a clipped-exposure crop's pixels that saturate
MAX_CLIP_GAIN = 4.0
PACK_RECIPE = 4  # bump when build_pack changes: train.py rebuilds a pack of another recipe


def box_downsample(img: Image.Image, factor: float) -> np.ndarray:
    """Area-average to 1/factor of each side (any factor ≥ 1, not only integers)."""
    w, h = img.size
    return np.asarray(img.resize((int(w / factor), int(h / factor)), Image.BOX))


def build_pack(root: Path, max_regions: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays (N, h, w, 3) uint8: ``whole32``, ``whole64`` (each photo resized whole, then
    THUMBS_PER_PHOTO random crops of it resized, as ImageNet32 / 64 resize whole photos: 635
    thumbnails alone were seen ~1 300 times each in a long run), ``regions`` (at most
    ``max_regions`` 64×64 tiles, non-overlapping within one downsampled photo, drawn uniformly)
    and ``smooth`` (64×64, up to SMOOTH_PER_PHOTO per photo), and ``region_weights`` (N,)
    float64. The smooth regions come from their own random stream: ``regions`` are those of
    recipe 2."""
    files = sorted(
        p for p in (root / "train").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    rng = np.random.default_rng(seed)
    smooth_rng = np.random.default_rng(seed + 1)
    thumb_rng = np.random.default_rng(seed + 2)
    whole32, whole64, regions, weights, smooth = [], [], [], [], []
    for path in files:
        img = Image.open(path).convert("RGB")
        for box in [None, *(thumb_box(img.size, thumb_rng) for _ in range(THUMBS_PER_PHOTO))]:
            whole32.append(np.asarray(img.resize((32, 32), Image.BOX, box)))
            whole64.append(np.asarray(img.resize((64, 64), Image.BOX, box)))
        for factor in (2, 4, 8, *rng.uniform(2, 8, RANDOM_FACTORS)):
            small = box_downsample(img, factor)
            weight = 1 / np.sqrt(small.shape[0] * small.shape[1])
            for y in range(0, small.shape[0] - REGION + 1, REGION):
                for x in range(0, small.shape[1] - REGION + 1, REGION):
                    regions.append(small[y : y + REGION, x : x + REGION])
                    weights.append(weight)
        smooth.extend(smooth_regions(img, smooth_rng))
    keep = np.sort(rng.permutation(len(regions))[:max_regions])
    return {
        "whole32": np.stack(whole32),
        "whole64": np.stack(whole64),
        "regions": np.stack([regions[i] for i in keep]),
        "region_weights": np.array(weights)[keep],
        "smooth": np.stack(smooth),
    }


def thumb_box(size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random crop (left, top, right, bottom) of a photo of ``size`` (w, h) for a thumbnail:
    THUMB_AREA of its area, its aspect changed by a factor in THUMB_ASPECT (log-uniform)."""
    w, h = size
    area = rng.uniform(*THUMB_AREA) * w * h
    aspect = np.exp(rng.uniform(*np.log(THUMB_ASPECT)))
    cw = int(min(w, max(1, round(np.sqrt(area * aspect * w / h)))))
    ch = int(min(h, max(1, round(area / cw))))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return x, y, x + cw, y + ch


def smooth_regions(img: Image.Image, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to SMOOTH_PER_PHOTO random 64×64 regions of ``img`` box-downsampled by a factor in
    SMOOTH_DOWN, then upsampled bicubically by one in SMOOTH_UP."""
    down, up = rng.uniform(*SMOOTH_DOWN), rng.uniform(*SMOOTH_UP)
    small = Image.fromarray(box_downsample(img, down))
    w, h = small.size
    big = np.asarray(small.resize((int(w * up), int(h * up)), Image.BICUBIC))
    if min(big.shape[:2]) < REGION:
        return []
    ys = rng.integers(0, big.shape[0] - REGION + 1, SMOOTH_PER_PHOTO)
    xs = rng.integers(0, big.shape[1] - REGION + 1, SMOOTH_PER_PHOTO)
    return [big[y : y + REGION, x : x + REGION] for y, x in zip(ys, xs, strict=True)]


def subset_pack(
    pack: dict[str, np.ndarray], max_regions: int, max_smooth: int, max_whole: int = 1 << 30
) -> dict[str, np.ndarray]:
    """At most ``max_regions`` regions (with their weights), ``max_smooth`` smooth regions and
    ``max_whole`` thumbnails of each size, evenly strided so that every photo keeps its share:
    all are stored photo by photo."""
    out = dict(pack)
    limits = [("regions", max_regions), ("smooth", max_smooth)]
    limits += [(name, max_whole) for name in pack if name.startswith("whole")]
    for name, most in limits:
        if name in pack and len(pack[name]) > most:
            keep = np.linspace(0, len(pack[name]) - 1, most).round().astype(np.int64)
            out[name] = pack[name][keep]
            if name == "regions":
                out["region_weights"] = pack["region_weights"][keep]
    return out


def save_pack(pack: dict[str, np.ndarray], folder: Path) -> None:
    """Each image array as lossless WebP mosaics of MOSAIC_COLUMNS tiles a row; pack.json
    lists them and holds the region weights. WebP's fastest lossless mode (method 0): on an
    8-Mpixel mosaic it wrote 20× faster than method 4 for 10 % more bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    index: dict = {"recipe": PACK_RECIPE, "region_weights": pack["region_weights"].tolist()}
    for name, tiles in pack.items():
        if name == "region_weights":
            continue
        n, h, w, _ = tiles.shape
        files = []
        per_mosaic = MOSAIC_COLUMNS * max(1, 8192 // h)
        for start in range(0, n, per_mosaic):
            part = tiles[start : start + per_mosaic]
            rows = -(-len(part) // MOSAIC_COLUMNS)
            grid = np.zeros((rows * MOSAIC_COLUMNS, h, w, 3), np.uint8)
            grid[: len(part)] = part
            grid = grid.reshape(rows, MOSAIC_COLUMNS, h, w, 3).transpose(0, 2, 1, 3, 4)
            file = f"{name}-{len(files)}.webp"
            Image.fromarray(grid.reshape(rows * h, MOSAIC_COLUMNS * w, 3)).save(
                folder / file, lossless=True, quality=0, method=0
            )
            files.append(file)
        index[name] = {"count": n, "height": h, "width": w, "files": files}
    (folder / "pack.json").write_text(json.dumps(index, indent=1))


def pack_recipe(folder: Path) -> int | None:
    """The recipe a saved pack was built with (1 for packs that predate the field)."""
    path = folder / "pack.json"
    return json.loads(path.read_text()).get("recipe", 1) if path.exists() else None


def load_pack(folder: Path) -> dict[str, np.ndarray]:
    index = json.loads((folder / "pack.json").read_text())
    index.pop("recipe", None)
    pack = {"region_weights": np.array(index.pop("region_weights"), np.float64)}
    for name, meta in index.items():
        h, w = meta["height"], meta["width"]
        parts = []
        for file in meta["files"]:
            grid = np.asarray(Image.open(folder / file).convert("RGB"))
            rows = grid.shape[0] // h
            grid = grid.reshape(rows, h, MOSAIC_COLUMNS, w, 3).transpose(0, 2, 1, 3, 4)
            parts.append(grid.reshape(-1, h, w, 3))
        pack[name] = np.concatenate(parts)[: meta["count"]]
    return pack


def pack_to_device(pack: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Images to ``device``; the region weights stay on the CPU, where batches are drawn."""
    return {
        k: torch.from_numpy(v).to("cpu" if k == "region_weights" else device)
        for k, v in pack.items()
    }


def sample_batch(
    pack: dict[str, torch.Tensor],
    gen: torch.Generator,
    batch: int,
    size: int,
    smooth_share: float = 0.0,
    grain: float = 1.5,
    pad_share: float = 0.0,
    whole_share: float = 0.25,
    clip_share: float = 0.0,
) -> torch.Tensor:
    """(batch, 3, size, size) uint8 on the pack's device: ``whole_share`` (rounded down) whole
    resized images (when the pack has them at this size), ``smooth_share`` random crops of
    smooth regions with Gaussian grain of a standard deviation drawn from [0, ``grain``) per
    crop, the rest random crops of regions drawn by their weights; random h-flips. Then the
    last ``pad_share`` of the batch get their last rows and columns (fewer than half the crop
    each) replaced by edge replication, as the codec pads an image to multiples of 2^levels
    and codes the padding too. Last, ``clip_share`` of the batch, at random, get a clipped
    exposure (:func:`clipped_exposure`)."""
    regions = pack["regions"]
    device = regions.device

    def randint(high: int, n: int) -> torch.Tensor:
        return torch.randint(high, (n,), generator=gen).to(device)

    span = torch.arange(size, device=device)

    def crops(tiles: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
        """A random size×size crop of each picked 64×64 tile."""
        oy, ox = randint(REGION - size + 1, len(pick)), randint(REGION - size + 1, len(pick))
        rows = (oy[:, None] + span)[:, :, None]
        cols = (ox[:, None] + span)[:, None, :]
        return tiles[pick[:, None, None], rows, cols]

    weights = pack["region_weights"]
    pick = torch.multinomial(weights, batch, replacement=True, generator=gen).to(device)
    out = crops(regions, pick)
    whole = pack.get(f"whole{size}")
    n = 0
    if whole is not None:
        n = int(batch * whole_share)
        out[:n] = whole[randint(len(whole), n)]
    smooth = pack.get("smooth")
    m = min(batch - n, round(batch * smooth_share)) if smooth is not None else 0
    if m:
        grained = crops(smooth, randint(len(smooth), m)).float()
        sigma = torch.rand(m, 1, 1, 1, generator=gen).to(device) * grain
        grained += torch.randn(grained.shape, generator=gen).to(device) * sigma
        out[n : n + m] = torch.clamp(torch.round(grained), 0, 255).to(torch.uint8)
    flip = (torch.rand(batch, generator=gen) < 0.5).to(device)
    out = torch.where(flip[:, None, None, None], out.flip(2), out)
    k = min(batch, round(batch * pad_share))
    if k:
        rows = torch.minimum(span, size - 1 - randint(size // 2, k)[:, None])
        cols = torch.minimum(span, size - 1 - randint(size // 2, k)[:, None])
        padded = torch.arange(batch - k, batch, device=device)
        out[padded] = out[padded[:, None, None], rows[:, :, None], cols[:, None, :]]
    c = min(batch, round(batch * clip_share))
    if c:
        chosen = torch.randperm(batch, generator=gen)[:c].to(device)
        out[chosen] = clipped_exposure(out[chosen], gen)
    return out.permute(0, 3, 1, 2)


def clipped_exposure(crops: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(N, S, S, 3) uint8 crops with their contrast stretched until a share in CLIP_SHARE of
    their pixels has a channel at 255 (x·g; one crop in four towards 0 instead: 255 − (255 −
    x)·g), each channel clipped there, as in an over- or under-exposed photo: flat, saturated
    regions, which photos downsampled ≥ 2× rarely hold and Kodak often does (half of
    kodim20's pixels). The gain g is at most MAX_CLIP_GAIN."""
    n = len(crops)
    x = crops.float()
    share = CLIP_SHARE[0] + torch.rand(n, generator=gen) * (CLIP_SHARE[1] - CLIP_SHARE[0])
    dark = (torch.rand(n, generator=gen) < 0.25).to(crops.device)
    x = torch.where(dark[:, None, None, None], 255 - x, x)  # darkening is brightening 255 - x
    brightest = x.amax(-1).flatten(1).sort(dim=1).values
    rank = ((1 - share) * (brightest.shape[1] - 1)).round().long().to(crops.device)
    level = brightest.gather(1, rank[:, None])[:, 0].clamp(min=255 / MAX_CLIP_GAIN)
    x = torch.clamp(torch.round(x * (255 / level)[:, None, None, None]), 0, 255)
    return torch.where(dark[:, None, None, None], 255 - x, x).to(torch.uint8)


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
