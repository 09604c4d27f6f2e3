"""Shared test fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _run_iodfz(
    *args: str | os.PathLike[str], input: bytes | None = None, **kwargs: object
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m iodfz ARGS`` in a subprocess; stdout (unless redirected) and stderr
    are captured. Never raises on a failed command."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-m", "iodfz", *map(str, args)],
        input=input,
        stderr=subprocess.PIPE,
        env=env,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def run_iodfz() -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """The iodfz command line as a function: ``run_iodfz("compress", path).returncode``."""
    return _run_iodfz
