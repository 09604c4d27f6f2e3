"""A sample of ../shared/data (one file per folder) round-trips through the CLI byte for byte;
scripts/check_data_roundtrip.py checks all of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data not present")
def test_a_sample_of_the_shared_data_round_trips() -> None:
    script = ROOT / "scripts" / "check_data_roundtrip.py"
    done = subprocess.run(
        [sys.executable, str(script), "--sample", "1", "--threads", "1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "round-trip byte-exactly" in done.stdout
