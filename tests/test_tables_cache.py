"""The coder tables kept on disk are used only when they are the very tables the model pins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iodfz.coder import tables as coder_tables
from iodfz.coder.errors import CoderError
from iodfz.engine import tables as engine_tables

MIX = ([[0, 256, -512]], [[0, 2560, -1280]], [[20, 30, 25]], (-255, 255))


def _mixture() -> coder_tables.Tables:
    return coder_tables.build_mixture_table(*MIX)


def _same(a: coder_tables.Tables, b: coder_tables.Tables) -> bool:
    fields = ("lo", "nsym", "base", "freq", "start", "lut")
    return a.precision == b.precision and all(
        np.array_equal(getattr(a, f), getattr(b, f)) for f in fields
    )


def test_cached_tables_are_read_back_and_checked(tmp_path: Path) -> None:
    built = _mixture()
    pinned = coder_tables.tables_hash(built)
    path = tmp_path / "sub" / f"{pinned}.npy"
    assert engine_tables.read_cached(path, pinned) is None  # nothing there yet
    engine_tables.write_cached(path, built)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    read = engine_tables.read_cached(path, pinned)
    assert read is not None and _same(read, built)
    assert engine_tables.read_cached(path, "0" * 64) is None  # other pinned tables


def test_altered_or_broken_cache_files_are_not_used(tmp_path: Path) -> None:
    built = _mixture()
    pinned = coder_tables.tables_hash(built)
    path = tmp_path / f"{pinned}.npy"
    engine_tables.write_cached(path, built)
    flat = np.load(path)
    k = 2 + 2 * built.count + 40  # move one unit of frequency: sums still right, tables not
    flat[k] += 1
    flat[k + 1] -= 1
    np.save(path, flat)
    assert engine_tables.read_cached(path, pinned) is None
    for junk in (b"", b"not numpy", np.arange(5).astype("<i4").tobytes()):
        path.write_bytes(junk)
        assert engine_tables.read_cached(path, pinned) is None
    np.save(path, np.array([16, 10**6, 1, 2, 3], "<i8"))  # counts that do not add up
    assert engine_tables.read_cached(path, pinned) is None


def test_pinned_tables_rebuild_a_bad_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IODFZ_CACHE", str(tmp_path))
    monkeypatch.setattr(engine_tables, "_BY_HASH", {})
    built = _mixture()
    pinned = coder_tables.tables_hash(built)
    path = tmp_path / "tables" / f"{pinned}.npy"
    path.parent.mkdir()
    path.write_bytes(b"junk")
    got = engine_tables.pinned_tables(pinned, _mixture)
    assert _same(got, built) and engine_tables.read_cached(path, pinned) is not None
    monkeypatch.setattr(engine_tables, "_BY_HASH", {})
    with pytest.raises(CoderError):  # what is built must match the pin, cache or not
        engine_tables.pinned_tables("0" * 64, _mixture)


def test_tables_build_their_decoding_lookup_on_first_use() -> None:
    tables = _mixture()
    assert "lut" not in vars(tables)
    assert tables.lut.size == tables.count << tables.precision
    starts = tables.start[tables.base[0] + tables.lut[: 1 << tables.precision]]
    assert np.all(np.diff(starts) >= 0)
