"""Model cards: which --level each shipped model encodes."""

from __future__ import annotations

import pytest

from iodfz import zoo
from iodfz.codecs import FLOW_FROM


def test_served_levels() -> None:
    assert list(zoo.served_levels({"levels": [3, 19]})) == list(range(3, 20))
    assert list(zoo.served_levels({})) == list(range(1, 20))
    assert not zoo.served_levels({"levels": []})  # kept to decode older files only


def test_every_level_has_a_model_and_models_sharing_a_level_differ_in_depth_or_size() -> None:
    """Below the max levels, the image's size alone picks between models: their depths differ
    (padding decides), or their pixel ranges do not overlap (the max levels try all)."""
    owners: dict[int, list[tuple[int, tuple[float, float], str]]] = {}
    for card in zoo.cards():
        depth, (lo, hi) = card["config"]["levels"], zoo.served_pixels(card)
        for level in zoo.served_levels(card):
            for other_depth, (other_lo, other_hi), name in owners.get(level, []):
                clash = depth == other_depth and lo <= other_hi and other_lo <= hi
                assert not (clash and level < zoo.TRY_ALL_FROM), (
                    f"--level {level}: {name}, {card['name']}"
                )
            owners.setdefault(level, []).append((depth, (lo, hi), card["name"]))
    if zoo.cards():
        assert sorted(owners) == list(range(FLOW_FROM, 20))  # below: no network


def test_pixel_ranges_give_small_and_large_images_their_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small = {"name": "s", "model_id": "a" * 64, "levels": [3, 19], "pixels": [0, 4096]}
    large = {"name": "l", "model_id": "b" * 64, "levels": [3, 19], "pixels": [4097, None]}
    for card in (small, large):
        card["config"] = {"levels": 5}
    monkeypatch.setattr(zoo, "cards", lambda: (large, small))
    monkeypatch.setattr(zoo, "load_by_id", lambda model_id: model_id[0])
    assert zoo.for_level(3, pixels=64 * 64) == "a"
    assert zoo.for_level(3, pixels=64 * 65) == "b"
    assert zoo.for_level(3) == "b"  # no size given: the first of the deepest
    assert zoo.served_pixels(large) == (4097, float("inf"))
    assert zoo.served_pixels({}) == (0, float("inf"))
    small["pixels"] = [0, 100]
    large["pixels"] = [200, 300]
    assert zoo.for_level(3, pixels=150) == "b"  # in no range: as if none had one


def test_a_level_served_twice_gives_each_image_the_model_that_pads_it_least(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deep = {"name": "deep", "model_id": "d" * 64, "levels": [3, 8], "config": {"levels": 5}}
    shallow = {"name": "shallow", "model_id": "5" * 64, "levels": [3, 8], "config": {"levels": 4}}
    monkeypatch.setattr(zoo, "cards", lambda: (shallow, deep))
    monkeypatch.setattr(zoo, "load_by_id", lambda model_id: model_id[0])

    def padded(height: int, width: int):  # pixels an image pads to at each depth
        return lambda depth: (-(-height >> depth) << depth) * (-(-width >> depth) << depth)

    assert zoo.for_level(3) == "d"  # no size given: the deepest
    assert zoo.for_level(3, padded(512, 768)) == "d"  # both pad nothing
    assert zoo.for_level(3, padded(375, 500)) == "d"  # both pad to 384 × 512
    assert zoo.for_level(3, padded(16, 16)) == "5"  # 16 × 16 against 32 × 32
    assert zoo.for_level(3, padded(40, 64)) == "5"  # 48 × 64 against 64 × 64
    assert zoo.for_level(9, padded(64, 64)) is None  # no model serves --level 9


def test_the_max_levels_get_every_model_serving_them(monkeypatch: pytest.MonkeyPatch) -> None:
    deep = {"name": "deep", "model_id": "d" * 64, "levels": [3, 19], "config": {"levels": 5}}
    other = {"name": "other", "model_id": "e" * 64, "levels": [9, 19], "config": {"levels": 5}}
    stale = {
        "name": "stale",
        "model_id": "0" * 64,
        "levels": [9, 19],
        "config": {"levels": 4},
        "path": "stale.iodfm",
    }

    class Loaded(str):
        model_id = property(lambda self: str(self) * 64)

    def load_by_id(model_id: str) -> str:
        if model_id[0] == "0":
            raise LookupError(model_id)
        return Loaded(model_id[0])

    monkeypatch.setattr(zoo, "cards", lambda: (deep, other, stale))
    monkeypatch.setattr(zoo, "load_by_id", load_by_id)
    assert zoo.models_for(zoo.TRY_ALL_FROM - 1) == ["d"]  # below: the one for_level picks
    assert zoo.models_for(zoo.TRY_ALL_FROM) == ["d", "e"]  # the stale card is left out
