"""scripts/bits_breakdown.py: its per-position maps hold every symbol's bits exactly once."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest
from PIL import Image
from test_image_codec import photo_like

from iodfz import zoo
from iodfz.codec import predictive, tiling
from iodfz.engine import flow
from iodfz.engine.model import Model
from iodfz.engine.reference import NumpyBackend
from iodfz.engine.tables import latent_bits


@pytest.fixture(scope="module")
def script(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("bits_breakdown")


def tile_bits(model: Model, tile: np.ndarray) -> float:
    splits, top = flow.forward(model, NumpyBackend(1), tile[None])
    return sum(float(bits.sum()) for bits in latent_bits(model, splits, top))


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
    assert tiling.TILE == 256


def test_eighths_sort_by_jpegxl_and_add_up_to_the_excess(script: ModuleType) -> None:
    squares = [(float(2 * i + 8), float(i)) for i in range(16)]  # ours, JPEG-XL's bits
    rows = script.against_jpegxl(squares, 2)
    assert [r[0] for r in rows] == [(2 * k + 0.5) / 2 for k in range(8)]
    assert [r[1] for r in rows] == [(4 * k + 9) / 2 for k in range(8)]
    total = sum(ours - theirs for ours, theirs in squares) / 2 / len(squares)
    assert sum(r[2] for r in rows) == pytest.approx(total)


def test_a_predictive_coder_breaks_down_by_plane(script: ModuleType, tmp_path) -> None:
    """Its planes' ideal bits, parameter part and coder overhead add up to the streams, the
    ideal bits come within 1 % of them (the parameters the encoder chose), and the container
    columns to the whole default-level file."""
    images = [photo_like(48, 40, seed=1), photo_like(300, 270, seed=2)]
    for k, rgb in enumerate(images):
        Image.fromarray(rgb).save(tmp_path / f"{k}.png")
    row = script.predictive_breakdown(predictive.CODER, tmp_path, None)
    subpixels = sum(rgb.size for rgb in images)
    streams = 8 * sum(sum(map(len, predictive.encode(rgb))) for rgb in images)
    parts = row["Y"] + row["Co"] + row["Cg"] + row["params"] + row["coder"]
    assert parts == pytest.approx(streams / subpixels, rel=1e-9)
    assert abs(row["coder"]) < 0.01 * row["ideal"]
    assert row["total"] == pytest.approx(
        row["ideal"] + row["params"] + row["coder"] + row["container"]
    )
    assert row["container_bytes_per_file"] > 0 and row["files"] == 2
