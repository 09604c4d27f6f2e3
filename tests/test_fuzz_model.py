"""Fuzz target: the model-file reader. A model file whose header was altered and whose hash was
then recomputed (so that the damage reaches the parser) must load or give a clean ModelError —
never another exception. ``make fuzz SECONDS=N`` runs it for N seconds (tests/fuzz_budget.py)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
import tempfile
from pathlib import Path
from typing import Any

import fuzz_budget
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iodfz.engine.model import MAGIC, ModelError, load

MODEL = Path(__file__).resolve().parents[1] / "models" / "iodf-w64-fast.iodfm"
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in a JSON tree."""
    out = [prefix]
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        out += _paths(child, (*prefix, key))
    return out


def _with_header(data: bytes, header: Any) -> bytes:
    (hlen,) = struct.unpack_from("<I", data, len(MAGIC))
    blob = data[len(MAGIC) + 4 + hlen : -32]
    head = json.dumps(header).encode()
    body = MAGIC + struct.pack("<I", len(head)) + head + blob
    return body + hashlib.sha256(body).digest()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data(), JSON_VALUES)
def _altered_header(data: st.DataObject, value: Any) -> None:
    original = MODEL.read_bytes()
    (hlen,) = struct.unpack_from("<I", original, len(MAGIC))
    header = json.loads(original[len(MAGIC) + 4 : len(MAGIC) + 4 + hlen])
    path = data.draw(st.sampled_from(_paths(header)))
    if not path:
        header = value
    else:
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "m.iodfm"
        target.write_bytes(_with_header(original, header))
        with contextlib.suppress(ModelError):
            load(target)


def test_altered_model_headers_give_clean_errors() -> None:
    if not MODEL.exists():
        pytest.skip(f"{MODEL.name} is not in this checkout")
    fuzz_budget.run(_altered_header)
