"""Fuzz target: the container reader (versions 1 and 2) and its section accessors.

Any byte string, and any damage to the golden containers, must give a clean IodfError or the
very same content — never another exception, never different data. ``make fuzz SECONDS=N``
runs each target for N seconds (tests/fuzz_budget.py)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import zlib
from pathlib import Path

import fuzz_budget
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iodfz import api
from iodfz.container import (
    SECTION_MODEL_ID,
    SECTION_SHAPE,
    SECTION_TILING,
    ContainerReader,
    Sections,
)
from iodfz.errors import IodfError

GOLDEN = Path(__file__).resolve().parent / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
BLOBS = {name: (GOLDEN / name).read_bytes() for name in sorted(MANIFEST)}
ZSTD = sorted(name for name in BLOBS if MANIFEST[name]["codec"] != 2)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=not fuzz_budget.SECONDS,
    suppress_health_check=list(HealthCheck),
)


def _read_all(blob: bytes) -> None:
    """What ``info`` does, then every accessor ``info`` may call."""
    info = api.info(io.BytesIO(blob))
    sections = info.header.sections
    for accessor in (sections.shape, sections.model_id, sections.tiling):
        with contextlib.suppress(IodfError):
            accessor()


def _damage(blob: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(blob)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


def _recrc_version_2(blob: bytes) -> bytes:
    """Damage that passes a version 2 container's CRC (so the parsers after it see it)."""
    if len(blob) > 9 and blob[4] == 2:
        return blob[:-4] + zlib.crc32(blob[:-4]).to_bytes(4, "little")
    return blob


@FUZZ
@given(
    st.sampled_from(sorted(BLOBS)),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4),
    st.none() | st.integers(0, 1 << 16),
    st.booleans(),
)
def _damaged_golden(name: str, edits: list, cut: int | None, recrc: bool) -> None:
    blob = _damage(BLOBS[name], edits, cut)
    if recrc:
        blob = _recrc_version_2(blob)
    try:
        _read_all(blob)
    except IodfError:
        return
    if name in ZSTD:  # decoding is cheap here: it must give the content back or refuse
        out = io.BytesIO()
        try:
            api.decompress(io.BytesIO(blob), out)
        except IodfError:
            return
        assert hashlib.sha256(out.getvalue()).hexdigest() == MANIFEST[name]["sha256"]


def test_damaged_golden_containers_give_clean_errors() -> None:
    fuzz_budget.run(_damaged_golden)


@FUZZ
@given(st.sampled_from([b"IODF\x01", b"IODF\x02"]), st.binary(max_size=200))
def _any_bytes(prefix: bytes, rest: bytes) -> None:
    blob = prefix + rest
    for candidate in (blob, _recrc_version_2(blob)):
        with contextlib.suppress(IodfError):
            _read_all(candidate)


def test_any_bytes_after_the_magic_give_clean_errors() -> None:
    fuzz_budget.run(_any_bytes)


@FUZZ
@given(st.sampled_from([SECTION_SHAPE, SECTION_MODEL_ID, SECTION_TILING]), st.binary(max_size=80))
def _sections(type_id: int, value: bytes) -> None:
    sections = Sections([(type_id, value)])
    for accessor in (sections.shape, sections.model_id, sections.tiling):
        with contextlib.suppress(IodfError):
            accessor()


def test_malformed_known_sections_give_clean_errors() -> None:
    fuzz_budget.run(_sections)


def test_reader_walks_every_golden_container() -> None:
    for name, blob in BLOBS.items():
        reader = ContainerReader(io.BytesIO(blob))
        assert sum(frame.raw_len for frame in reader.frames()) == MANIFEST[name]["length"]
