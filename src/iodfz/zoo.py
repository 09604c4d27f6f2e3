"""The shipped models: ``models/NAME.iodfm`` with a card ``models/NAME.json`` beside it.

Containers name their model by a prefix of its id (the file's SHA-256); ``--level`` picks a
model through the cards' ``levels`` ranges, and where two models serve a level, the image's
size picks between them (:func:`for_level`: the cards' ``pixels`` ranges, then padding) —
except from ``--level 9`` up, where the encoder tries each of them (:func:`models_for`).
Models are looked up in ``$IODFZ_MODELS``, then the repository's ``models/`` folder, then the
copy installed inside the package.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from iodfz.codecs import TRY_ALL_FROM

if TYPE_CHECKING:  # a model file is read only when a flow is asked for
    from iodfz.engine.model import Model

_PACKAGE = Path(__file__).resolve().parent


def model_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("IODFZ_MODELS", "").split(os.pathsep) if p]
    return [*dirs, _PACKAGE.parents[1] / "models", _PACKAGE / "models"]


def cache_dir(kind: str) -> Path | None:
    """Where iodfz keeps ``kind`` of what it can rebuild (coder tables, TensorRT engines):
    ``$IODFZ_CACHE/KIND``, else ``$XDG_CACHE_HOME/iodfz/KIND``, else ``~/.cache/iodfz/KIND``;
    None when there is no home directory to put it in."""
    if os.environ.get("IODFZ_CACHE"):
        return Path(os.environ["IODFZ_CACHE"]) / kind
    try:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    except RuntimeError:  # no $HOME and no password entry
        return None
    return Path(base) / "iodfz" / kind


@cache
def cards() -> tuple[dict, ...]:
    """Every model card found, each with its ``path`` added. The cards are parsed once per
    state of the model folders (each card's path, size and modification time), not once per
    file compressed."""
    return _cards_in(tuple(_card_files(folder) for folder in model_dirs()))


def _card_files(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of each ``*.json`` in ``folder``, sorted; () when unreadable."""
    try:
        with os.scandir(folder) as entries:
            stats = [(e.path, e.stat()) for e in entries if e.name.endswith(".json")]
    except OSError:
        return ()
    return tuple(sorted((path, st.st_size, st.st_mtime_ns) for path, st in stats))


@cache
def _cards_in(folders: tuple[tuple[tuple[str, int, int], ...], ...]) -> tuple[dict, ...]:
    found: dict[str, dict] = {}
    for files in folders:
        for name, _, _ in files:
            card_path = Path(name)
            model_path = card_path.with_suffix(".iodfm")
            if not model_path.exists():
                continue
            try:
                card = json.loads(card_path.read_text())
                found.setdefault(card["model_id"], {**card, "path": str(model_path)})
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a model card; `iodfz selftest` lists the models it found
    return tuple(found.values())


@cache
def load_by_id(model_id: str) -> Model:
    """The installed model whose id (hex SHA-256) starts with ``model_id``, at least 16 hex
    digits: containers name a model by the first 8 bytes of its id (docs/FORMAT.md 3.1).
    ``load`` checks the file's full hash."""
    from iodfz.engine.model import load

    model_id = model_id.lower()
    for card in cards() if len(model_id) >= 16 else ():
        if card["model_id"].startswith(model_id):
            model = load(Path(card["path"]))
            if model.model_id == card["model_id"]:
                return model
    raise LookupError(
        f"model {model_id[:16]} is not installed (searched {', '.join(map(str, model_dirs()))})"
    )


def card_for(model_id: str) -> dict | None:
    """The card of the installed model whose id starts with ``model_id`` (hex), or None."""
    model_id = model_id.lower()
    return next((c for c in cards() if c["model_id"].startswith(model_id)), None)


def served_levels(card: dict) -> range:
    """The ``--level`` values a card's model encodes: its ``levels`` range [lo, hi]. An empty
    list marks a model kept only to decode files made with it (a superseded default)."""
    levels = card.get("levels", [1, 19])
    return range(levels[0], levels[1] + 1) if levels else range(0)


def served_pixels(card: dict) -> tuple[float, float]:
    """The image sizes, in pixels, that a card's model codes below the max levels: its
    ``pixels`` range [lo, hi] (hi null: unbounded); every size when the card has none. Models
    trained on downsampled photos code small images best, and full-resolution ones may be left
    to another model of the same depth."""
    lo, hi = card.get("pixels") or [0, None]
    return lo, math.inf if hi is None else hi


def _holds(bounds: tuple[float, float], value: int) -> bool:
    return bounds[0] <= value <= bounds[1]


def first_levels() -> list[int]:
    """The lowest ``--level`` each installed model serves, ascending, each level once."""
    return sorted({levels[0] for card in cards() if (levels := served_levels(card))}) or [3]


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """Print ``iodfz: warning: MESSAGE`` on stderr the first time this process sees it."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"iodfz: warning: {message}", file=sys.stderr)


def _depth(card: dict) -> int:
    """The number of flow levels of a card's model."""
    return int(card.get("config", {}).get("levels", 0))


def _serving(level: int) -> list[dict]:
    """The cards whose ``levels`` range holds ``level``, deepest model first."""
    return sorted(
        (card for card in cards() if level in served_levels(card)), key=lambda c: -_depth(c)
    )


def for_level(
    level: int, cost: Callable[[int], int] | None = None, pixels: int | None = None
) -> Model | None:
    """The model that codes at ``level``: of the models whose cards' ``levels`` range holds it
    (and, below the max levels, whose ``pixels`` range holds an image of ``pixels`` pixels,
    when some does), the one of least ``cost(its flow levels)`` — the image codec passes how
    many pixels each depth would pad an image to — and the deepest when they cost alike or no
    cost is given. None, with a warning once per process, when no model is installed for it or
    its card is stale (names a model id that its file no longer has): images then go to the
    predictive coder alone (no network)."""
    serving = _serving(level)
    if not serving:
        searched = ", ".join(map(str, model_dirs()))
        warn_once(
            f"no model installed for --level {level} (searched {searched}): "
            "images go to the predictive coder alone"
        )
        return None
    if pixels is not None and level < TRY_ALL_FROM:
        fitting = [c for c in serving if _holds(served_pixels(c), pixels)]
        serving = fitting or serving
    card = min(serving, key=lambda c: cost(_depth(c))) if cost else serving[0]
    return _load(card, "images go to the predictive coder alone")


def models_for(
    level: int, cost: Callable[[int], int] | None = None, pixels: int | None = None
) -> list[Model]:
    """The models an image is coded with at ``level``: the one :func:`for_level` picks, then,
    from ``TRY_ALL_FROM`` up (the max levels), every other model serving the level, deepest
    first; the encoder keeps whichever codes the image smallest (users who archive take slow
    and small)."""
    first = for_level(level, cost, pixels)
    if first is None or level < TRY_ALL_FROM:
        return [] if first is None else [first]
    others = (
        _load(card, f"--level {level} codes without it")
        for card in _serving(level)
        if card["model_id"] != first.model_id
    )
    return [first, *(model for model in others if model is not None)]


def _load(card: dict, otherwise: str) -> Model | None:
    """The model of ``card``; None, with a warning once per process ending in ``otherwise``,
    when the card is stale."""
    try:
        return load_by_id(card["model_id"])
    except LookupError:
        warn_once(
            f"model card {card['name']} does not match its model file {card['path']}: {otherwise}"
        )
        return None
