"""The lockstep coder writes and reads every stream exactly as coding it alone does."""

from __future__ import annotations

import numpy as np
import pytest

from iodfz.codec import lockstep
from iodfz.coder import ans
from iodfz.coder.tables import build_mixture_table, default_tables, logistic_index


def _symbols(rng: np.random.Generator, streams: int, n: int) -> list[tuple]:
    """Two pushes per stream: logistic symbols (some far out: escapes) and mixture symbols."""
    tables = default_tables()
    mixture = build_mixture_table(
        [[0, 256], [30, -40]], [[0, 2560], [-700, 900]], [[20, 30], [25, 18]], (-60, 60)
    )
    scale = rng.integers(0, 64, (streams, n))
    mean = rng.integers(-4000, 4000, (streams, n))
    noise = rng.logistic(0, 2 ** ((scale - 20) / 6)).round().astype(np.int64)
    values = (mean >> 3) + noise
    values[rng.random((streams, n)) < 0.01] += 5000  # escapes, both sides
    values[rng.random((streams, n)) < 0.01] -= 5000
    index, offset = logistic_index(scale, mean)
    top = rng.integers(-80, 80, (streams, n // 2 + 1))
    channel = rng.integers(0, 2, top.shape)
    return [(tables, values, index, offset), (mixture, top, channel, np.zeros_like(top))]


@pytest.mark.parametrize(("lanes", "n"), [(1, 700), (3, 700), (4, 64)])
def test_lockstep_streams_equal_streams_coded_alone(lanes: int, n: int) -> None:
    rng = np.random.default_rng(lanes * 1000 + n)
    streams = 5
    pushes = _symbols(rng, streams, n)
    group = lockstep.Encoder(streams, lanes)
    for tables, values, index, offset in pushes:
        group.push(tables, values, index, offset)
    together = group.finish()
    for k in range(streams):
        enc = ans.encoder(lanes)
        for tables, values, index, offset in pushes:
            ans.push(enc, tables, values[k], index[k], offset[k])
        assert together[k] == ans.finish(enc, compact=True), k

    decoder = lockstep.Decoder(together, lanes)
    for tables, values, index, offset in pushes[::-1]:
        np.testing.assert_array_equal(decoder.pop(tables, index, offset), values)
    assert decoder.finish().all()


def test_a_damaged_stream_fails_alone() -> None:
    rng = np.random.default_rng(7)
    pushes = _symbols(rng, 4, 500)
    group = lockstep.Encoder(4, 1)
    for tables, values, index, offset in pushes:
        group.push(tables, values, index, offset)
    streams = group.finish()
    streams[1] = streams[1][: len(streams[1]) // 2]  # truncated
    streams[2] = b"\x00"  # cannot even hold its lane state
    damaged = bytearray(streams[3])
    damaged[len(damaged) // 3] ^= 0x40
    streams[3] = bytes(damaged)
    decoder = lockstep.Decoder(streams, 1)
    popped = [decoder.pop(tables, index, offset) for tables, _, index, offset in pushes[::-1]]
    assert decoder.finish().tolist() == [True, False, False, False]
    for got, (_, values, _, _) in zip(popped, pushes[::-1], strict=True):
        np.testing.assert_array_equal(got[0], values[0])
