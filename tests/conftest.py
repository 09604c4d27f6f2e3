"""Shared test fixtures."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_script", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """scripts/NAME.py as a module (scripts are not a package), for tests of their pieces."""
    return _load_script


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
def flow_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Images coded by a flow alone, as ``--level FLOW_FROM`` picks it (that level also tries
    the predictive coder and keeps the smaller; the levels below use no flow), so that a test
    sees the flow's files."""
    from iodfz.codec import image
    from iodfz.codecs import FLOW_FROM

    def flows(level: int, height: int, width: int) -> list:
        return image._flow_coders(max(level, FLOW_FROM), height, width)

    monkeypatch.setattr(image, "_coders_for", flows)


@pytest.fixture
def run_iodfz() -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """The iodfz command line as a function: ``run_iodfz("compress", path).returncode``."""
    return _run_iodfz
