"""Fuzz target: the rANS stream decoder (FORMAT.md 2.1 and the compact form of 2.4).

Any bytes, and any damage to a valid stream, must give CoderError from ``decoder`` / ``pop`` /
``check_finished`` or the very values that were coded (damage to the raw escape bytes aside)
— never another exception or a hang.
``make fuzz SECONDS=N`` runs each target for N seconds (tests/fuzz_budget.py)."""

from __future__ import annotations

import contextlib

import fuzz_budget
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iodfz.coder import CoderError, ans, default_tables, logistic_index

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=not fuzz_budget.SECONDS,
    suppress_health_check=list(HealthCheck),
)
TABLES = default_tables()


def _symbols(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, table index, offset) of n logistic symbols, a few of them escapes."""
    rng = np.random.default_rng(seed)
    scale = rng.integers(10, 40, n)
    mean = rng.integers(-400, 400, n)
    index, offset = logistic_index(scale, mean)
    values = (mean >> 3) + np.round(rng.logistic(0, 2.0, n)).astype(np.int64)
    values[:: max(1, n // 3)] += 5000  # escapes
    return values, index, offset


def _decode(data: bytes, compact: bool, lanes: int, index: np.ndarray, offset: np.ndarray):
    dec = ans.compact_decoder(data, lanes) if compact else ans.decoder(data)
    out = ans.pop(dec, TABLES, index, offset)
    ans.check_finished(dec)
    return out


@FUZZ
@given(
    st.integers(1, 3000),
    st.integers(0, 1 << 30),
    st.integers(1, 5),
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=3),
    st.none() | st.integers(0, 1 << 20),
)
def _damaged_stream(n: int, seed: int, lanes: int, compact: bool, edits: list, cut) -> None:
    values, index, offset = _symbols(n, seed)
    enc = ans.encoder(lanes)
    ans.push(enc, TABLES, values, index, offset)
    blob = bytearray(ans.finish(enc, compact))
    assert np.array_equal(_decode(bytes(blob), compact, lanes, index, offset), values)
    # Escape bytes (the stream's tail in both layouts) hold raw excess values outside the rANS
    # state: damage there may decode to other values, which the container's digest refuses.
    escapes = sum(map(len, enc.escapes))
    raw_tail = False
    for pos, value in edits:
        raw_tail |= pos % len(blob) >= len(blob) - escapes
        blob[pos % len(blob)] = value
    if cut is not None:
        del blob[cut % (len(blob) + 1) :]
    try:
        back = _decode(bytes(blob), compact, lanes, index, offset)
    except CoderError:
        return
    assert raw_tail or np.array_equal(back, values)


def test_damaged_streams_give_coder_errors() -> None:
    fuzz_budget.run(_damaged_stream)


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 500), st.integers(1, 4), st.booleans())
def _any_bytes(data: bytes, n: int, lanes: int, compact: bool) -> None:
    _, index, offset = _symbols(n, n)
    with contextlib.suppress(CoderError):
        _decode(data, compact, lanes, index, offset)


def test_any_bytes_give_coder_errors() -> None:
    fuzz_budget.run(_any_bytes)
