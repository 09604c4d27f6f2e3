"""The lockstep coder writes and reads every stream exactly as coding it alone does."""

from __future__ import annotations

import numpy as np
import pytest

from iodfz.codec import lockstep
from iodfz.coder import CoderError, ans
from iodfz.coder.tables import build_mixture_table, default_tables, logistic_index, symbol_bits


def _symbols(rng: np.random.Generator, streams: int, n: int, escapes: float = 0.01) -> list[tuple]:
    """Two pushes per stream: logistic symbols (a share ``2·escapes`` far out: escapes) and
    mixture symbols."""
    tables = default_tables()
    mixture = build_mixture_table(
        [[0, 256], [30, -40]], [[0, 2560], [-700, 900]], [[20, 30], [25, 18]], (-60, 60)
    )
    scale = rng.integers(0, 64, (streams, n))
    mean = rng.integers(-4000, 4000, (streams, n))
    noise = rng.logistic(0, 2 ** ((scale - 20) / 6)).round().astype(np.int64)
    values = (mean >> 3) + noise
    values[rng.random((streams, n)) < escapes] += 5000  # escapes, both sides
    values[rng.random((streams, n)) < escapes] -= 5000
    index, offset = logistic_index(scale, mean)
    top = rng.integers(-80, 80, (streams, n // 2 + 1))
    channel = rng.integers(0, 2, top.shape)
    return [(tables, values, index, offset), (mixture, top, channel, np.zeros_like(top))]


@pytest.mark.parametrize(
    ("lanes", "n", "escapes"),
    [
        (1, 700, 0.01),
        (3, 700, 0.01),
        (4, 64, 0.01),
        (1, 900, 0.2),  # escape bytes far beyond what the decoder parses ahead at first
        (128, 2000, 0.05),  # steps wide enough to look symbols up (lockstep.LOOKUP_FROM_WIDTH)
    ],
)
def test_lockstep_streams_equal_streams_coded_alone(lanes: int, n: int, escapes: float) -> None:
    rng = np.random.default_rng(lanes * 1000 + n)
    streams = 5
    pushes = _symbols(rng, streams, n, escapes)
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


def _chunked(rng: np.random.Generator, streams: int, n: int) -> tuple:
    """Logistic symbols with escapes far out (several-byte codes) and just outside the support
    (one-byte codes), but none in stream 1; and random chunk ends over them (empty chunks,
    lengths that are no multiple of the lanes)."""
    tables, values, index, offset = _symbols(rng, streams, n)[0]
    lo, nsym = tables.lo[index] + offset, tables.nsym[index]
    near = rng.random((streams, n))
    values = np.where(near < 0.01, lo + nsym + rng.integers(0, 3, (streams, n)), values)
    values = np.where(near > 0.99, lo - 1 - rng.integers(0, 3, (streams, n)), values)
    values[1] = lo[1] + nsym[1] // 2
    ends = [*sorted(rng.integers(0, n + 1, n // 4).tolist()), n]
    return tables, values, index, offset, ends


def _chunks(ends: list[int]) -> list[slice]:
    return [slice(a, b) for a, b in zip([0, *ends[:-1]], ends, strict=True)]


@pytest.mark.parametrize("lanes", [1, 3])
def test_push_chunks_is_a_push_per_chunk(lanes: int) -> None:
    rng = np.random.default_rng(lanes)
    streams = 6
    tables, values, index, offset, ends = _chunked(rng, streams, 400)
    escaped = symbol_bits(tables, values, index, offset)[1].reshape(streams, -1)
    assert escaped.any(axis=1).tolist() == [k != 1 for k in range(streams)]
    mixture, top, channel, zero = _symbols(rng, streams, 60)[1]

    group = lockstep.Encoder(streams, lanes)
    group.push_chunks(tables, values, index, offset, ends)
    group.push(mixture, top, channel, zero)
    one_by_one = lockstep.Encoder(streams, lanes)
    for chunk in _chunks(ends):
        one_by_one.push(tables, values[:, chunk], index[:, chunk], offset[:, chunk])
    one_by_one.push(mixture, top, channel, zero)
    together = group.finish()
    assert together == one_by_one.finish()
    for k in range(streams):
        enc = ans.encoder(lanes)
        for chunk in _chunks(ends):
            ans.push(enc, tables, values[k, chunk], index[k, chunk], offset[k, chunk])
        ans.push(enc, mixture, top[k], channel[k], zero[k])
        assert together[k] == ans.finish(enc, compact=True), k

    decoder = lockstep.Decoder(together, lanes)
    np.testing.assert_array_equal(decoder.pop(mixture, channel, zero), top)
    for chunk in _chunks(ends)[::-1]:
        got = decoder.pop(tables, index[:, chunk], offset[:, chunk])
        np.testing.assert_array_equal(got, values[:, chunk])
    assert decoder.finish().all()


@pytest.mark.parametrize("ends", [[3], [5, 4, 6], [2, 8], []])
def test_push_chunks_refuses_ends_that_do_not_cover_the_symbols(ends: list[int]) -> None:
    rng = np.random.default_rng(0)
    tables, values, index, offset = _symbols(rng, 2, 6)[0]
    with pytest.raises(CoderError):
        lockstep.Encoder(2, 1).push_chunks(tables, values, index, offset, ends)


def _alone(stream: bytes, lanes: int, pops: list[tuple]) -> list[np.ndarray] | None:
    """What decoding ``stream`` alone gives: its pops' values, or None if it is damaged."""
    try:
        dec = ans.compact_decoder(stream, lanes)
        got = [ans.pop(dec, tables, index, offset) for tables, index, offset in pops]
        ans.check_finished(dec)
    except CoderError:
        return None
    return got


@pytest.mark.parametrize(("lanes", "seed"), [(1, 1), (1, 2), (3, 3), (3, 4)])
def test_damaged_streams_fail_as_they_do_alone(lanes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    streams = 12
    tables, values, index, offset, ends = _chunked(rng, streams, 300)
    group = lockstep.Encoder(streams, lanes)
    group.push_chunks(tables, values, index, offset, ends)
    coded = group.finish()
    for k in range(2, streams):  # a bit flipped: among the escape bytes (at the end) or anywhere
        damaged = bytearray(coded[k])
        tail = len(damaged) - 1 - int(rng.integers(0, 6))
        damaged[tail if k % 3 else int(rng.integers(len(damaged)))] ^= 1 << int(rng.integers(8))
        coded[k] = bytes(damaged)
    chunks = _chunks(ends)[::-1]

    decoder = lockstep.Decoder(coded, lanes)
    got = [decoder.pop(tables, index[:, c], offset[:, c]) for c in chunks]
    ok = decoder.finish()
    assert ok[:2].all()
    for k in range(streams):
        alone = _alone(coded[k], lanes, [(tables, index[k, c], offset[k, c]) for c in chunks])
        assert ok[k] == (alone is not None), k
        if alone is not None:
            for mine, theirs in zip(got, alone, strict=True):
                np.testing.assert_array_equal(mine[k], theirs)


def test_bad_arguments_are_refused() -> None:
    rng = np.random.default_rng(5)
    tables, values, index, offset = _symbols(rng, 2, 6)[0]
    stream = lockstep.Encoder(2, 1)
    stream.push(tables, values, index, offset)
    decoder = lockstep.Decoder(stream.finish(), 1)
    for bad_index in (index - 10**6, index + tables.count):
        with pytest.raises(CoderError, match="table index"):
            lockstep.Encoder(2, 1).push(tables, values, bad_index, offset)
        with pytest.raises(CoderError, match="table index"):
            decoder.pop(tables, bad_index, offset)
    with pytest.raises(CoderError, match="range"):
        lockstep.Encoder(2, 1).push(tables, values + 2**47, index, offset)
    with pytest.raises(CoderError, match="range"):
        decoder.pop(tables, index, offset - 2**47)
    with pytest.raises(CoderError, match="streams"):
        lockstep.Encoder(3, 1).push(tables, values, index, offset)


def _pushed_alone(rng: np.random.Generator, lanes: list[int], counts: np.ndarray) -> tuple:
    """Streams of ``lanes[k]`` lanes, each coded alone: pop j gives stream k ``counts[j, k]``
    logistic symbols (some escapes). Their streams and each pop's (values, index, offset) per
    stream."""
    tables = default_tables()
    pops = []
    for row in counts:
        per_stream = []
        for n in row:
            scale, mean = rng.integers(0, 64, n), rng.integers(-4000, 4000, n)
            values = (mean >> 3) + rng.logistic(0, 2 ** ((scale - 20) / 6), n).round().astype(int)
            values[rng.random(n) < 0.02] += 5000
            per_stream.append((values, *logistic_index(scale, mean)))
        pops.append(per_stream)
    streams = []
    for k, count in enumerate(lanes):
        enc = ans.encoder(count)
        for per_stream in pops[::-1]:  # rANS: the last pop is pushed first
            values, index, offset = per_stream[k]
            ans.push(enc, tables, values, index, offset)
        streams.append(ans.finish(enc, compact=True))
    return tables, streams, pops


@pytest.mark.parametrize(
    ("seed", "most_lanes"), [(0, 8), (1, 8), (2, 8), (3, 8), (4, 200), (5, 200)]
)
def test_ragged_streams_pop_as_each_pops_alone(seed: int, most_lanes: int) -> None:
    """Streams of different lane counts, each popping its own number of symbols (0 too) in
    one step loop, read what each gives alone; and a damaged one fails alone. With many
    lanes, the first steps are wide enough to look their symbols up."""
    rng = np.random.default_rng(seed)
    lanes = [int(n) for n in rng.integers(1, most_lanes + 1, 6)]
    counts = rng.integers(0, 8 * most_lanes, (4, len(lanes)))
    assert most_lanes < 100 or counts[0].clip(max=lanes).sum() >= lockstep.LOOKUP_FROM_WIDTH
    tables, streams, pops = _pushed_alone(rng, lanes, counts)
    if seed % 2:
        streams[2] = streams[2][: len(streams[2]) // 2]
    decoder = lockstep.RaggedDecoder(streams, lanes)
    for row, per_stream in zip(counts, pops, strict=True):
        values, index, offset = (np.concatenate([p[a] for p in per_stream]) for a in range(3))
        got = decoder.pop_ragged(tables, index, offset, row)
        owner = np.repeat(np.arange(len(lanes)), row)
        good = owner != 2 if seed % 2 else slice(None)
        np.testing.assert_array_equal(got[good], values[good])
    finished = decoder.finish()
    assert finished.tolist() == [not (seed % 2 and k == 2) for k in range(len(lanes))]
