"""Model cards: which --level each shipped model encodes."""

from __future__ import annotations

import pytest

from iodfz import zoo


def test_served_levels() -> None:
    assert list(zoo.served_levels({"levels": [3, 19]})) == list(range(3, 20))
    assert list(zoo.served_levels({})) == list(range(1, 20))
    assert not zoo.served_levels({"levels": []})  # kept to decode older files only


def test_every_level_has_a_model_and_models_sharing_a_level_differ_in_depth() -> None:
    """Below the max levels, the depth alone picks between models (the max levels try all)."""
    owners: dict[int, dict[int, str]] = {}
    for card in zoo.cards():
        depth = card["config"]["levels"]
        for level in zoo.served_levels(card):
            by_depth = owners.setdefault(level, {})
            shared = depth in by_depth and level < zoo.TRY_ALL_FROM
            assert not shared, f"--level {level}: {by_depth[depth]} and {card['name']}"
            by_depth[depth] = card["name"]
    if zoo.cards():
        assert sorted(owners) == list(range(1, 20))


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
