"""The training pack: lossless storage and on-device sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from iodfz.flow.data import (  # noqa: E402
    MOSAIC_COLUMNS,
    PACK_RECIPE,
    REGION,
    load_pack,
    pack_recipe,
    pack_to_device,
    sample_batch,
    save_pack,
    subset_pack,
    thumb_box,
)


def test_pack_round_trips_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pack = {
        "whole32": rng.integers(0, 256, (MOSAIC_COLUMNS + 3, 32, 32, 3), dtype=np.uint8),
        "regions": rng.integers(0, 256, (5, REGION, REGION, 3), dtype=np.uint8),
        "region_weights": rng.random(5),
    }
    assert pack_recipe(tmp_path) is None
    save_pack(pack, tmp_path)
    assert pack_recipe(tmp_path) == PACK_RECIPE  # train.py rebuilds packs of other recipes
    back = load_pack(tmp_path)
    assert back.keys() == pack.keys()
    for name, tiles in pack.items():
        assert np.array_equal(back[name], tiles)


def test_subset_keeps_regions_evenly_with_their_weights() -> None:
    regions = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones(
        (1, REGION, REGION, 3), np.uint8
    )
    pack = {
        "whole32": np.zeros((2, 32, 32, 3), np.uint8),
        "regions": regions,
        "region_weights": np.arange(10.0),
        "smooth": regions[:3].copy(),
    }
    small = subset_pack(pack, 4, 3)
    assert small["regions"][:, 0, 0, 0].tolist() == [0, 3, 6, 9]  # first and last photo kept
    assert small["region_weights"].tolist() == [0.0, 3.0, 6.0, 9.0]
    assert small["smooth"] is pack["smooth"] and small["whole32"] is pack["whole32"]
    assert len(subset_pack(pack, 4, 3, max_whole=1)["whole32"]) == 1
    assert subset_pack(pack, 10, 2)["regions"] is regions
    assert subset_pack(pack, 10, 2)["smooth"][:, 0, 0, 0].tolist() == [0, 2]


def test_thumbnail_crops_stay_inside_the_photo_and_keep_a_third_of_it() -> None:
    rng = np.random.default_rng(7)
    for size in ((500, 375), (375, 500), (64, 48), (4000, 300)):
        for _ in range(200):
            x0, y0, x1, y1 = thumb_box(size, rng)
            assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
            assert (x1 - x0) * (y1 - y0) >= 0.3 * size[0] * size[1]


def test_batches_are_crops_of_the_pack() -> None:
    regions = np.arange(2 * REGION * REGION * 3, dtype=np.int64).reshape(2, REGION, REGION, 3)
    pack = pack_to_device(
        {"regions": regions % 251, "region_weights": np.array([1.0, 0.5])}, torch.device("cpu")
    )
    gen = torch.Generator().manual_seed(1)
    batch = sample_batch(pack, gen, 6, 32)
    assert batch.shape == (6, 3, 32, 32)
    for crop in batch.permute(0, 2, 3, 1).numpy():
        found = False
        for region in pack["regions"].numpy():
            for tile in (crop, crop[:, ::-1]):
                hits = np.argwhere(region[:, :, 0] == tile[0, 0, 0])
                found |= any(np.array_equal(region[y : y + 32, x : x + 32], tile) for y, x in hits)
        assert found


def _crop_of(crop: np.ndarray, regions: np.ndarray) -> bool:
    for region in regions:
        for tile in (crop, crop[:, ::-1]):
            for y, x in np.argwhere(region[:, :, 0] == tile[0, 0, 0]):
                if np.array_equal(region[y : y + len(tile), x : x + tile.shape[1]], tile):
                    return True
    return False


def test_smooth_share_of_a_batch_comes_from_the_smooth_regions() -> None:
    rng = np.random.default_rng(2)
    pack = pack_to_device(
        {
            "regions": rng.integers(0, 256, (2, REGION, REGION, 3), dtype=np.uint8),
            "region_weights": np.array([1.0, 1.0]),
            "smooth": rng.integers(0, 256, (3, REGION, REGION, 3), dtype=np.uint8),
        },
        torch.device("cpu"),
    )
    gen = torch.Generator().manual_seed(3)
    batch = sample_batch(pack, gen, 8, 16, smooth_share=0.5, grain=0.0)  # no grain: exact crops
    crops = batch.permute(0, 2, 3, 1).numpy()
    smooth = [_crop_of(c, pack["smooth"].numpy()) for c in crops]
    assert smooth == [True] * 4 + [False] * 4
    assert all(_crop_of(c, pack["regions"].numpy()) for c in crops[4:])


@pytest.mark.parametrize(("share", "thumbnails"), [(0.25, 2), (0.0, 0), (0.5, 4)])
def test_whole_share_sets_how_many_thumbnails_lead_the_batch(share: float, thumbnails: int) -> None:
    rng = np.random.default_rng(4)
    pack = pack_to_device(
        {
            "regions": rng.integers(0, 256, (2, REGION, REGION, 3), dtype=np.uint8),
            "region_weights": np.array([1.0, 1.0]),
            "whole16": rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8),
        },
        torch.device("cpu"),
    )
    batch = sample_batch(pack, torch.Generator().manual_seed(5), 8, 16, whole_share=share)
    whole = pack["whole16"].numpy()
    found = [
        any(np.array_equal(c, t) or np.array_equal(c[:, ::-1], t) for t in whole)
        for c in batch.permute(0, 2, 3, 1).numpy()
    ]
    assert found == [True] * thumbnails + [False] * (8 - thumbnails)


def test_clipped_exposure_saturates_a_tenth_or_more_of_each_crop() -> None:
    rng = np.random.default_rng(8)
    ramp = np.linspace(20, 200, REGION)[None, :, None, None] + rng.normal(0, 3, (4, 1, 1, 3))
    noisy = ramp + rng.normal(0, 2, (4, REGION, REGION, 3))
    regions = np.clip(np.round(noisy), 0, 255).astype(np.uint8).transpose(0, 2, 1, 3)
    pack = pack_to_device({"regions": regions, "region_weights": np.ones(4)}, torch.device("cpu"))
    plain = sample_batch(pack, torch.Generator().manual_seed(9), 16, 32)
    batch = sample_batch(pack, torch.Generator().manual_seed(9), 16, 32, clip_share=1.0)
    assert torch.equal(plain, sample_batch(pack, torch.Generator().manual_seed(9), 16, 32))
    for before, after in zip(plain.permute(0, 2, 3, 1), batch.permute(0, 2, 3, 1), strict=True):
        bright = (after == 255).any(-1).float().mean()
        dark = (after == 0).any(-1).float().mean()
        assert max(bright, dark) >= 0.09, (bright, dark)
        # a contrast stretch: the order of values is kept, within one channel
        b, a = before[..., 0].flatten().float(), after[..., 0].flatten().float()
        order = torch.argsort(b)
        assert (a[order].diff() >= 0).all()


def test_grain_moves_smooth_crops_by_about_its_deviation() -> None:
    flat = np.full((1, REGION, REGION, 3), 128, np.uint8)
    pack = pack_to_device(
        {"regions": flat, "region_weights": np.array([1.0]), "smooth": flat},
        torch.device("cpu"),
    )
    gen = torch.Generator().manual_seed(4)
    batch = sample_batch(pack, gen, 64, 32, smooth_share=1.0, grain=2.0).float() - 128
    per_crop = batch.flatten(1).std(dim=1)
    assert float(per_crop.max()) < 2.2  # σ drawn from [0, 2), then rounded
    assert float(per_crop.mean()) > 0.5


def test_smooth_regions_are_deterministic_full_size_tiles() -> None:
    from PIL import Image

    from iodfz.flow.data import SMOOTH_PER_PHOTO, smooth_regions

    photo = Image.fromarray(np.random.default_rng(5).integers(0, 256, (400, 600, 3), np.uint8))
    a = smooth_regions(photo, np.random.default_rng(6))
    b = smooth_regions(photo, np.random.default_rng(6))
    assert len(a) == SMOOTH_PER_PHOTO
    assert all(t.shape == (REGION, REGION, 3) and t.dtype == np.uint8 for t in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    # box-downsampled ≥ 2.4×, then upsampled: far smoother than the noise photo
    assert np.abs(np.diff(a[0].astype(int), axis=1)).mean() < 40
    tiny = Image.fromarray(np.zeros((100, 100, 3), np.uint8))  # too small once downsampled
    assert smooth_regions(tiny, np.random.default_rng(7)) == []


def test_padded_share_repeats_the_last_real_row_and_column() -> None:
    rng = np.random.default_rng(5)
    pack = pack_to_device(
        {
            "regions": rng.integers(0, 256, (3, REGION, REGION, 3), dtype=np.uint8),
            "region_weights": np.ones(3),
        },
        torch.device("cpu"),
    )
    batch = sample_batch(pack, torch.Generator().manual_seed(6), 16, 32, pad_share=0.5)
    crops = batch.permute(0, 2, 3, 1).numpy()
    for i, crop in enumerate(crops):
        # real rows/columns end where a row (column) first equals all the ones after it
        rows = next(y for y in range(32) if (crop[y:] == crop[y]).all())
        cols = next(x for x in range(32) if (crop[:, x:] == crop[:, x : x + 1]).all())
        assert (i >= 8) or (rows, cols) == (31, 31)  # random content: no repeats by chance
        assert rows > 15 and cols > 15  # fewer than half the crop padded
        assert _crop_of(crop[: rows + 1, : cols + 1], pack["regions"].numpy())
    assert sum(crop[-1, 0, 0] == crop[-2, 0, 0] for crop in crops[8:]) >= 4
