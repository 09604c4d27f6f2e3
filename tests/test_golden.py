"""Golden containers: files written by earlier iodfz versions (tests/golden/, made by
tests/golden/generate.py and never regenerated) must decode byte-exact forever — the format's
promise (docs/FORMAT.md). A container whose version a reader does not know is refused by
version, never misread; these are all versions this reader knows: version 1 (every codec),
and version 2 (``v2-*``: the compact image containers, frozen when that version came)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from iodfz import api, zoo
from iodfz.container import codec_name

GOLDEN = Path(__file__).resolve().parent / "golden"
MANIFEST: dict[str, dict] = json.loads((GOLDEN / "manifest.json").read_text())


def test_every_golden_file_is_in_the_manifest() -> None:
    assert sorted(p.name for p in GOLDEN.glob("*.iodf")) == sorted(MANIFEST)
    assert {m["codec"] for m in MANIFEST.values()} == {0, 1, 2}


def test_golden_files_cover_both_versions() -> None:
    for name in MANIFEST:
        assert (GOLDEN / name).read_bytes()[4] == (2 if name.startswith("v2-") else 1), name


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_golden_container_decodes_byte_exact(name: str) -> None:
    expect = MANIFEST[name]
    if expect["codec"] == 2 and not zoo.cards():
        pytest.skip("no model installed in models/")
    container = (GOLDEN / name).read_bytes()
    out = io.BytesIO()
    info = api.decompress(io.BytesIO(container), out)
    data = out.getvalue()
    assert len(data) == expect["length"]
    assert hashlib.sha256(data).hexdigest() == expect["sha256"]
    assert info.verified and info.compressed_size == len(container)
    d = info.to_dict()
    assert d["codec_id"] == expect["codec"]
    assert d["frame_codecs"] == expect["frame_codecs"]
    for key in ("name", "mode", "mtime_ns"):
        assert d[key] == expect.get(key), key


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_golden_container_info_without_decoding(name: str) -> None:
    info = api.info(io.BytesIO((GOLDEN / name).read_bytes()))
    assert codec_name(info.codec) in ("stored", "zstd", "neural-image")
    assert info.original_size == MANIFEST[name]["length"]
