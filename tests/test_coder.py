"""Tests for the numpy rANS coder (src/iodfz/coder)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iodfz.coder import (
    NUM_PHASES,
    NUM_SCALES,
    PRECISION,
    CoderError,
    Tables,
    build_mixture_table,
    check_finished,
    check_tables,
    concat_tables,
    decode,
    decoder,
    default_tables,
    encode,
    encoder,
    finish,
    logistic_index,
    pop,
    push,
    scale_grid,
    tables_from_freqs,
    tables_hash,
)
from iodfz.coder.tables import det_exp, logistic_grid, quantize_pmf

I32 = (-(2**31), 2**31 - 1)

# Pinned: any change to the tables or to the stream layout must change these on purpose.
DEFAULT_TABLES_SHA256 = "724e3d9069a3206f29f5a7963e991af169fbd3fd27f561c3e6d0e205c7185706"
MIXTURE_TABLE_SHA256 = "81ca6ead2630f631f631fcdc0119d6402f72cde2b18ee1ea0a94a995a05a7a93"
VECTOR_STREAM_SHA256 = "a465862b744f153aa4ca269f90388bf29469c3180bb8b8bcceafd83d4ae84612"


def _random_tables(draw: st.DrawFn) -> Tables:
    precision = draw(st.integers(9, 16))
    n_tables = draw(st.integers(1, 4))
    los, freqs = [], []
    for _ in range(n_tables):
        nsym = draw(st.integers(0, 200))
        weights = draw(
            st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=nsym + 1, max_size=nsym + 1)
        )
        p = np.asarray(weights, dtype=np.float64) + 1e-9
        freqs.append(quantize_pmf(p, precision))
        los.append(draw(st.integers(-1000, 1000)))
    return tables_from_freqs(los, freqs, precision)


@st.composite
def _case(draw: st.DrawFn) -> tuple[Tables, int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    tables = _random_tables(draw)
    lanes = draw(st.integers(1, 40))
    segments = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, 300))
        t = np.asarray(draw(st.lists(st.integers(0, tables.count - 1), min_size=n, max_size=n)))
        t = t.astype(np.int64).reshape(n)
        off = np.asarray(draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n)), np.int64)
        base = tables.lo[t] + off if n else np.zeros(0, np.int64)
        inside = st.integers(-3, 210)
        extreme = st.sampled_from([I32[0], I32[1], 0, -1, 1, 1 << 20, -(1 << 20)])
        kinds = draw(st.lists(st.one_of(inside, inside, inside, extreme), min_size=n, max_size=n))
        rel = np.asarray(kinds, dtype=np.int64).reshape(n)
        is_abs = np.isin(rel, [I32[0], I32[1], 1 << 20, -(1 << 20)])
        vals = np.where(is_abs, rel, np.clip(base + rel, *I32)).astype(np.int32)
        segments.append((vals, t, off))
    return tables, lanes, segments


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case())
def test_roundtrip_property(case: tuple) -> None:
    tables, lanes, segments = case
    enc = encoder(lanes)
    for vals, t, off in segments:
        push(enc, tables, vals, t, off)
    data = finish(enc)
    assert finish(enc) == data  # finish does not consume the encoder
    dec = decoder(data)
    for vals, t, off in reversed(segments):
        out = pop(dec, tables, t, off)
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, vals.astype(np.int64))
    check_finished(dec)


def _logistic_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sidx = rng.integers(0, NUM_SCALES, n)
    mu_fp = rng.integers(-4000, 4000, n)
    u = rng.random(n)
    z = np.round(mu_fp / NUM_PHASES + scale_grid()[sidx] * np.log(u / (1 - u)))
    return z.astype(np.int32), sidx, mu_fp


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4095, 4096, 4097, 200_000])
def test_roundtrip_default_tables(n: int) -> None:
    tables = default_tables()
    z, sidx, mu_fp = _logistic_sample(n, n)
    t, off = logistic_index(sidx, mu_fp)
    data = encode(tables, z, t, off)
    np.testing.assert_array_equal(decode(data, tables, t, off), z)


def test_single_lane_fast_path_writes_and_reads_the_same_stream(monkeypatch) -> None:
    """One-lane streams run in plain Python; the numpy step loop must agree byte for byte."""
    from iodfz.coder import ans

    tables = default_tables()
    z, sidx, mu_fp = _logistic_sample(7, 70_000)  # > one block of steps
    z[::997] = 5_000_000  # escapes too
    t, off = logistic_index(sidx, mu_fp)
    fast = encode(tables, z, t, off, lanes=1)
    monkeypatch.setattr(ans, "_SCALAR_MAX_LANES", 0)
    assert encode(tables, z, t, off, lanes=1) == fast
    np.testing.assert_array_equal(decode(fast, tables, t, off), z)
    monkeypatch.undo()
    np.testing.assert_array_equal(decode(fast, tables, t, off), z)
    with pytest.raises(CoderError):
        decode(fast[: len(fast) // 2], tables, t, off)


def test_int32_extremes_and_escape_cost() -> None:
    tables = default_tables()
    vals = np.array([I32[0], I32[1], 0, -1, 1, 12345678, -12345678] * 10, dtype=np.int32)
    t = np.arange(vals.size) % tables.count
    off = np.full(vals.size, 7)
    data = encode(tables, vals, t, off, lanes=3)
    np.testing.assert_array_equal(decode(data, tables, t, off), vals)
    data64 = encode(tables, vals.astype(np.int64), t, off.astype(np.int32), lanes=3)
    assert data64 == data


def test_shared_stream_lifo_and_mixture() -> None:
    mix = build_mixture_table(
        [[0, 256, -512], [0, 0, 0]],
        [[0, 2560, -1280], [10, 20, 30]],
        [[20, 30, 25], [5] * 3],
        (-255, 255),
    )
    tables = concat_tables(default_tables(), mix)
    top = np.array([0, 5, -300, 255, 256, 11, -255], dtype=np.int64)
    top_t = np.array([512, 513] * 3 + [512])
    z, sidx, mu_fp = _logistic_sample(10_000, 5)
    t, off = logistic_index(sidx, mu_fp)
    enc = encoder(7)
    push(enc, tables, z, t, off)  # decoded last
    push(enc, tables, top, top_t, 0)  # decoded first
    dec = decoder(finish(enc))
    np.testing.assert_array_equal(pop(dec, tables, top_t, 0), top)
    np.testing.assert_array_equal(pop(dec, tables, t, off), z)
    check_finished(dec)


def test_tables_invariants_and_hash() -> None:
    tables = default_tables()
    assert tables.count == NUM_SCALES * NUM_PHASES
    assert tables.lut.size == tables.count << PRECISION
    sums = np.add.reduceat(tables.freq, tables.base)
    assert np.all(sums == 1 << PRECISION) and tables.freq.min() >= 1
    assert tables_hash(tables) == DEFAULT_TABLES_SHA256
    check_tables(tables, DEFAULT_TABLES_SHA256)
    with pytest.raises(CoderError):
        check_tables(tables, "0" * 64)
    mix = build_mixture_table([[0, 256, -512]], [[0, 2560, -1280]], [[20, 30, 25]], (-255, 255))
    assert tables_hash(mix) == MIXTURE_TABLE_SHA256
    lo, nsym = logistic_grid()  # what tables on the grid take from it, without building it
    np.testing.assert_array_equal(lo, tables.lo)
    np.testing.assert_array_equal(nsym, tables.nsym)


def test_det_exp_accuracy() -> None:
    x = np.linspace(-700, 0, 10_001)
    ref = np.array([math.exp(v) for v in x])
    assert np.max(np.abs(det_exp(x) / ref - 1)) < 1e-14


def test_quantizer_properties() -> None:
    rng = np.random.default_rng(0)
    for n in [1, 2, 10, 1000, 65536]:
        p = rng.random(n) ** 8
        f = quantize_pmf(p, 16)
        assert f.sum() == 1 << 16 and f.min() >= 1
    with pytest.raises(CoderError):
        quantize_pmf(np.ones(70_000), 16)


def _vector() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i = np.arange(50_000, dtype=np.int64)
    sidx = (i * 7) % NUM_SCALES
    mu_fp = (i * 7919) % 4001 - 2000
    z = (mu_fp >> 3) + ((i * 104729) % 61) - 30
    z[::997] = 1 << 30  # escapes
    return z, sidx, mu_fp


def test_fixed_vector_and_determinism() -> None:
    tables = default_tables()
    z, sidx, mu_fp = _vector()
    t, off = logistic_index(sidx, mu_fp)
    a = encode(tables, z, t, off)
    b = encode(tables, z, t, off)
    assert a == b
    assert hashlib.sha256(a).hexdigest() == VECTOR_STREAM_SHA256
    np.testing.assert_array_equal(decode(a, tables, t, off), z)


def _small_stream() -> tuple[bytes, Tables, np.ndarray, np.ndarray, np.ndarray]:
    tables = default_tables()
    z, sidx, mu_fp = _logistic_sample(3000, 11)
    z[::500] = 1 << 30  # a few escapes
    t, off = logistic_index(sidx, mu_fp)
    return encode(tables, z, t, off, lanes=5), tables, z, t, off


def test_truncated_stream_raises() -> None:
    data, tables, _, t, off = _small_stream()
    for cut in list(range(0, 40)) + list(range(40, len(data), 97)) + [len(data) - 1]:
        with pytest.raises(CoderError):
            decode(data[:cut], tables, t, off)
    with pytest.raises(CoderError):
        decode(data + b"\0", tables, t, off)


def test_corrupted_stream_raises() -> None:
    """Bit flips raise CoderError (and nothing else); the few that pass change the values.

    rANS cannot see every flip: a word that moves cf by exactly one symbol inside a run of equal
    frequencies (the flat tails) decodes to the neighbouring symbol with the same next state, and
    the raw escape bytes carry no check at all (~1.6 % of single-bit flips here). The container's
    checksum covers those.
    """
    data, tables, z, t, off = _small_stream()
    rng = np.random.default_rng(1)
    undetected = 0
    for pos in rng.choice(len(data), 400, replace=False):
        bad = bytearray(data)
        bad[pos] ^= 1 << int(rng.integers(8))
        try:
            out = decode(bytes(bad), tables, t, off)
        except CoderError:
            continue
        undetected += 1
        assert not np.array_equal(out, z)
    assert undetected <= 20
    for junk in [b"garbage", bytes(64), b"\x01" + bytes(15) + b"\xff" * 64]:
        with pytest.raises(CoderError):
            decode(junk, tables, t, off)


def test_bad_inputs_raise() -> None:
    tables = default_tables()
    with pytest.raises(CoderError):
        encode(tables, [1, 2], [0, tables.count], 0)
    with pytest.raises(CoderError):
        encode(tables, [1.5], [0], 0)
    with pytest.raises(CoderError):
        encode(tables, np.array([1 << 50]), [0], 0)
    with pytest.raises(CoderError):
        encoder(0)
