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
