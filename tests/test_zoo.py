"""Model cards: which --level each shipped model encodes."""

from __future__ import annotations

from iodfz import zoo


def test_served_levels() -> None:
    assert list(zoo.served_levels({"levels": [3, 19]})) == list(range(3, 20))
    assert list(zoo.served_levels({})) == list(range(1, 20))
    assert not zoo.served_levels({"levels": []})  # kept to decode older files only


def test_every_level_has_one_model_and_decode_only_models_serve_none() -> None:
    owners: dict[int, str] = {}
    for card in zoo.cards():
        for level in zoo.served_levels(card):
            assert level not in owners, f"--level {level}: {owners[level]} and {card['name']}"
            owners[level] = card["name"]
    if zoo.cards():
        assert sorted(owners) == list(range(1, 20))
