"""A wheel built from the repository carries the shipped models: installed (not editable) in a
fresh venv, ``iodfz selftest`` passes and an image goes through the flow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_BUILD_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")


def _models() -> list[Path]:
    return sorted((ROOT / "models").glob("*.iodfm"))


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done


def _photo_ppm(path: Path, h: int = 96, w: int = 128) -> bytes:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    planes = [120 + 60 * np.sin(y / (9 + 3 * c)) * np.cos(x / 13) for c in range(3)]
    pixels = np.stack(planes, axis=2) + rng.normal(0, 2, (h, w, 3))
    data = b"P6\n%d %d\n255\n" % (w, h) + np.clip(pixels, 0, 255).astype(np.uint8).tobytes()
    path.write_bytes(data)
    return data


@pytest.mark.slow
@pytest.mark.skipif(not _models(), reason="no models/*.iodfm in this checkout")
def test_wheel_in_fresh_venv_uses_the_flow(tmp_path: Path) -> None:
    # Build from a copy holding only what a checkout holds (no build/ or egg-info litter here).
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (source / "models").mkdir()
    for name in _BUILD_FILES:
        shutil.copy(ROOT / name, source / name)
    for path in [*_models(), *(ROOT / "models").glob("*.json")]:  # models, cards, defaults
        shutil.copy(path, source / "models" / path.name)
    env = {k: v for k, v in os.environ.items() if k not in ("IODFZ_MODELS", "PYTHONPATH")}
    env["IODFZ_BACKEND"] = "numpy"
    pip = (sys.executable, "-m", "pip")
    wheels = tmp_path / "wheels"
    _run(
        *pip,
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        wheels,
        ".",
        cwd=source,
        env=env,
    )
    (wheel,) = wheels.glob("iodfz-*.whl")

    # A fresh venv with the wheel installed; its dependencies come from this environment.
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    _run(
        *pip,
        "--python",
        python,
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=tmp_path,
        env=env,
    )
    site = _run(
        python,
        "-c",
        "import sysconfig; print(sysconfig.get_path('purelib'))",
        cwd=tmp_path,
        env=env,
    ).stdout.strip()
    Path(site, "dev-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    where = _run(python, "-c", "import iodfz; print(iodfz.__file__)", cwd=tmp_path, env=env)
    assert where.stdout.startswith(site), where.stdout  # the wheel, not the checkout

    iodfz = venv / "bin" / "iodfz"
    shipped = {p.stem for p in _models()}
    selftest = _run(iodfz, "selftest", cwd=tmp_path, env=env)
    listed = {line.split()[0] for line in selftest.stdout.splitlines()}
    coders = {f"iodf-predictive-{version}" for version in (1, 2, 3, 4, 5)}
    assert listed == shipped | coders
    assert "DIFFERS" not in selftest.stdout

    photo = tmp_path / "photo.ppm"
    original = _photo_ppm(photo)
    done = _run(iodfz, "compress", "-v", photo, cwd=tmp_path, env=env)
    assert "warning" not in done.stderr, done.stderr
    (row,) = json.loads(
        _run(iodfz, "info", "--json", f"{photo}.iodf", cwd=tmp_path, env=env).stdout
    )
    assert row["codec"] == "neural-image", row
    assert row["model_name"] in shipped | coders
    photo.unlink()
    _run(iodfz, "decompress", f"{photo}.iodf", cwd=tmp_path, env=env)
    assert photo.read_bytes() == original
