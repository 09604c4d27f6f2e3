"""The coder tables a model codes with: the shared logistic set and its per-channel mixture.

Both are rebuilt from integers (docs/FORMAT.md §2) and checked against the hashes stored in the
model file, so encoder and decoder on any machine code against identical tables.
"""

from __future__ import annotations

from iodfz.coder import tables as coder_tables
from iodfz.engine.model import Model

_CACHE: dict[str, tuple[coder_tables.Tables, coder_tables.Tables]] = {}


def mixture_tables(model: Model) -> coder_tables.Tables:
    """The top prior's per-channel tables from the model's integer mixture parameters."""
    t = model.tables
    lo, hi = (int(v) for v in t["mix_support"])
    return coder_tables.build_mixture_table(
        t["mix_logits_fp"], t["mix_means_fp"], t["mix_scale_index"], (lo, hi)
    )


def model_tables(model: Model) -> tuple[coder_tables.Tables, coder_tables.Tables]:
    """(logistic tables, mixture tables) of ``model``, hash-checked, built once per process."""
    if model.model_id not in _CACHE:
        logistic = coder_tables.check_tables(
            coder_tables.default_tables(), model.config["tables_hash"]
        )
        mixture = coder_tables.check_tables(mixture_tables(model), model.config["mixture_hash"])
        _CACHE[model.model_id] = (logistic, mixture)
    return _CACHE[model.model_id]
