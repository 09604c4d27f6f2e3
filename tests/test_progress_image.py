"""Progress moves within an image (after each batch of tiles, or round of pushes), never
file, and the command line shows nothing of it where stderr is not a terminal."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_image_codec import encode_file, photo_like

from iodfz import api, zoo
from iodfz.codec import pixels as pixel_codec
from iodfz.codec import predictive, tiling
from iodfz.codecs import FLOW_FROM
from iodfz.container import CODEC_IMAGE

pytestmark = pytest.mark.skipif(not zoo.cards(), reason="no model installed in models/")


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of two 32×32 tiles (the batch bound is read at run time by both directions),
    so that a small image is cut into several batches, and the predictive coder's decoding
    sweeps and encoding rounds of as few pixels (each batch a sweep of its own)."""
    monkeypatch.setattr(tiling, "MAX_BATCH_PIXELS", 2 * 32 * 32)
    monkeypatch.setattr(predictive, "GROUP_PIXELS", 2 * 32 * 32)
    monkeypatch.setattr(predictive, "ROUND_SYMBOLS", 3 * 2 * 32 * 32)


def test_the_pixel_codec_reports_each_batch(small_batches: None) -> None:
    model = zoo.for_level(FLOW_FROM)
    assert model is not None
    from iodfz.engine.backends import backend_for

    backend = backend_for(model)
    rgb = photo_like(64, 96)  # 6 tiles of 32×32: 3 batches
    shares: list[float] = []
    streams = pixel_codec.encode(model, backend, rgb, tile=32, progress=shares.append)
    assert len(streams) == 3 and shares == pytest.approx([1 / 3, 2 / 3, 1])
    shares.clear()
    back = pixel_codec.decode(model, backend, streams, 64, 96, tile=32, progress=shares.append)
    assert (back == rgb).all() and shares == pytest.approx([1 / 3, 2 / 3, 1])


def _steps(run: object) -> list[int]:
    steps: list[int] = []
    run(steps.append)  # type: ignore[operator]
    return steps


def test_files_report_bytes_within_an_image(small_batches: None) -> None:
    # a 300×300 image is 4 tiles of 256² at most 2 to a batch (4 batches of the small bound)
    data = encode_file(photo_like(300, 300), "PPM")
    out = io.BytesIO()
    steps = _steps(lambda report: api.compress(io.BytesIO(data), out, progress=report))
    with io.BytesIO(out.getvalue()) as src:
        assert api.info(src).codec == CODEC_IMAGE
    assert len(steps) >= 3 and min(steps) > 0 and sum(steps) == len(data), steps
    back = io.BytesIO()
    steps = _steps(lambda report: api.decompress(io.BytesIO(out.getvalue()), back, progress=report))
    assert back.getvalue() == data
    assert len(steps) >= 3 and min(steps) > 0 and sum(steps) == len(data), steps


def test_a_declined_image_is_not_counted_twice(small_batches: None) -> None:
    data = encode_file(np.full((300, 300, 3), 9, np.uint8), "PPM")  # zstd wins, after the flow
    out = io.BytesIO()
    steps = _steps(lambda report: api.compress(io.BytesIO(data), out, progress=report))
    with io.BytesIO(out.getvalue()) as src:
        assert api.info(src).codec != CODEC_IMAGE
    assert len(steps) >= 3 and sum(steps) == len(data) and min(steps) > 0, steps


def test_no_bar_and_no_rich_where_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.ppm"
        path.write_bytes(encode_file(photo_like(32, 32, seed=i), "PPM"))
        paths.append(str(path))
    code = (
        "import sys\n"
        "from iodfz import cli\n"
        "sys.argv = ['iodfz', 'compress', *sys.argv[1:]]\n"
        "try:\n"
        "    cli.run_command_line()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('rich', 'multiprocessing')]\n"
        "print(loaded)\n"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run(
        [sys.executable, "-c", code, *paths],
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=src),
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "[]" and done.stderr == b""
