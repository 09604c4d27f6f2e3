"""The coder tables a model codes with: the shared logistic set and its per-channel mixture.

Both are rebuilt from integers (docs/FORMAT.md §2) and checked against the hashes stored in the
model file, so encoder and decoder on any machine code against identical tables. Building them
takes ~0.1–0.3 s, more than the rest of a small file's start-up, so their frequencies are kept
on disk (``zoo.cache_dir("tables")``, one file per table hash) and read back in a few
milliseconds — and checked against the model's pinned hash like freshly built tables: a cache
file that is damaged, stale or altered is rebuilt, never used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from iodfz import limits, zoo
from iodfz.coder import tables as coder_tables
from iodfz.coder.errors import CoderError

if TYPE_CHECKING:  # annotations only: the predictive coders read tables without the flow
    from iodfz.engine.flow import SplitLatents
    from iodfz.engine.model import Model

_BY_HASH: dict[str, coder_tables.Tables] = {}


def mixture_tables(model: Model) -> coder_tables.Tables:
    """The top prior's per-channel tables from the model's integer mixture parameters."""
    t = model.tables
    lo, hi = (int(v) for v in t["mix_support"])
    return coder_tables.build_mixture_table(
        t["mix_logits_fp"], t["mix_means_fp"], t["mix_scale_index"], (lo, hi)
    )


def latent_bits(model: Model, splits: list[SplitLatents], top: np.ndarray) -> list[np.ndarray]:
    """Ideal code length, in bits, of every latent under the model's own tables (what the
    coder's streams approach): each level's factored-out half, then the top, each array shaped
    like its latents (an escape counts its escape symbol only)."""
    logistic, mixture = model_tables(model)
    bits = [
        coder_tables.symbol_bits(
            logistic, s.values, *coder_tables.logistic_index(s.scale_index, s.mean_fp)
        )[0].reshape(s.values.shape)
        for s in splits
    ]
    channel = np.broadcast_to(np.arange(top.shape[-1]), top.shape)
    return [*bits, coder_tables.symbol_bits(mixture, top, channel)[0].reshape(top.shape)]


def model_tables(model: Model) -> tuple[coder_tables.Tables, coder_tables.Tables]:
    """(logistic tables, mixture tables) of ``model``, hash-checked, built once per process
    (or read from the cache)."""
    logistic = pinned_tables(model.config["tables_hash"], coder_tables.default_tables)
    mixture = pinned_tables(model.config["mixture_hash"], lambda: mixture_tables(model))
    return logistic, mixture


def pinned_tables(expected: str, build: Callable[[], coder_tables.Tables]) -> coder_tables.Tables:
    """The tables whose hash is ``expected``: from this process's memory, else from the disk
    cache, else ``build()`` (then cached). CoderError if what ``build`` gives has another
    hash."""
    if expected not in _BY_HASH:
        folder = zoo.cache_dir("tables")
        path = None if folder is None else folder / f"{expected}.npy"
        tables = None if path is None else read_cached(path, expected)
        if tables is None:
            tables = coder_tables.check_tables(build(), expected)
            if path is not None:
                write_cached(path, tables)
        _BY_HASH[expected] = tables
    return _BY_HASH[expected]


def _flat(tables: coder_tables.Tables) -> np.ndarray:
    """What a cache file holds: precision, table count, each table's lo and symbol count, then
    every frequency (int64)."""
    head = np.array([tables.precision, tables.count], np.int64)
    return np.concatenate([head, tables.lo, tables.nsym, tables.freq]).astype("<i8")


def read_cached(path: Path, expected: str) -> coder_tables.Tables | None:
    """The tables in cache file ``path`` if it holds tables whose hash is ``expected``; None
    when it is missing, unreadable, malformed or holds other tables."""
    try:
        if path.stat().st_size > limits.MAX_TABLE_CACHE_FILE:
            return None
        flat = np.load(path, allow_pickle=False)
        if flat.dtype != np.dtype("<i8") or flat.ndim != 1 or flat.size < 2:
            return None
        precision, count = int(flat[0]), int(flat[1])
        lo, nsym, freq = flat[2 : 2 + count], flat[2 + count : 2 + 2 * count], flat[2 + 2 * count :]
        if count < 1 or nsym.size != count or nsym.min() < 0 or nsym.sum() + count != freq.size:
            return None
        tables = coder_tables.tables_from_flat(lo, nsym, freq, precision)
        return coder_tables.check_tables(tables, expected)
    except (OSError, EOFError, ValueError, CoderError):
        return None


def write_cached(path: Path, tables: coder_tables.Tables) -> None:
    """Store ``tables`` at ``path`` (a whole file or nothing: written beside it, then renamed);
    a cache that cannot be written is simply not used."""
    import tempfile  # here: reading the cache, as every command does, never needs it

    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            np.save(out, _flat(tables), allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
