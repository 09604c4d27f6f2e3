"""scripts/bits_breakdown.py: its per-position maps hold every symbol's bits exactly once."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from iodfz import zoo
from iodfz.codec import pixels as pixel_codec
from iodfz.coder import tables as coder_tables
from iodfz.engine import flow
from iodfz.engine.reference import NumpyBackend
from iodfz.engine.tables import model_tables

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bits_breakdown.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bits_breakdown_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tile_bits(model, tile: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    logistic, mixture = model_tables(model)
    splits, top = flow.forward(model, NumpyBackend(1), tile[None])
    bits = sum(
        coder_tables.symbol_bits(
            logistic, s.values, *coder_tables.logistic_index(s.scale_index, s.mean_fp)
        )[0].sum()
        for s in splits
    )
    channel = np.broadcast_to(np.arange(top.shape[-1]), top.shape)
    return float(bits + coder_tables.symbol_bits(mixture, top, channel)[0].sum())


def test_maps_and_blocks_add_up_to_each_tiles_bits(script: ModuleType) -> None:
    card = next(c for c in zoo.cards() if c["name"] == "iodf-lowpass5-v2")
    model = zoo.load_by_id(card["model_id"])
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(128, 30, (300, 40, 3)), 0, 255).astype(np.uint8)
    maps = script.ideal_bit_maps(model, NumpyBackend(1), rgb)
    assert [m.shape for m in maps] == [(320 >> k, 64 >> k) for k in (1, 2, 3, 4, 5)]
    padded = np.pad(rgb, ((0, 20), (0, 24), (0, 0)), mode="edge")
    tiles = [padded[:256], padded[256:]]  # the codec's two tiles
    assert sum(m[: 128 >> k].sum() for m, k in zip(maps, (0, 1, 2, 3, 4), strict=True)) == (
        pytest.approx(tile_bits(model, tiles[0]), rel=1e-12)
    )
    assert sum(m.sum() for m in maps) == pytest.approx(
        sum(tile_bits(model, t) for t in tiles), rel=1e-12
    )
    blocks = script.block_bits(maps, model, 32)
    assert blocks.shape == (10, 2)
    assert blocks.sum() == pytest.approx(sum(m.sum() for m in maps), rel=1e-12)
    assert pixel_codec.TILE == 256
