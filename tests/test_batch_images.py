"""Many images of one shape in one command: they run as a batch (small ones through the flow,
any through the predictive coders) and their streams are coded in lockstep, and every file is
still exactly what it is alone — the same container bytes, the same decoded bytes, its own
error."""

from __future__ import annotations

import io
import os
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_image_codec import encode_file, photo_like

from iodfz import api, cli, zoo
from iodfz.codec import image as image_codec
from iodfz.codec import pixels as pixel_codec
from iodfz.codec import predictive
from iodfz.codecs import FLOW_FROM, Options
from iodfz.container import CODEC_IMAGE

pytestmark = pytest.mark.skipif(not zoo.cards(), reason="no model installed in models/")


def _inputs(tmp_path: Path) -> list[Path]:
    """Small images of three shapes and several formats (gray, alpha, side data), a file that
    is not an image, an image of two tiles, and images the flow does not shrink."""
    files = {}
    for i in range(3):
        files[f"a{i}.ppm"] = encode_file(photo_like(32, 32, seed=i), "PPM")
    files["b0.ppm"] = encode_file(photo_like(48, 64, seed=10), "PPM")
    files["b1.ppm"] = encode_file(photo_like(48, 64, seed=11), "PPM")
    files["b2.bmp"] = encode_file(photo_like(48, 64, seed=12), "BMP")
    files["c0.pgm"] = encode_file(photo_like(40, 90, 1, seed=30), "PPM")  # gray
    files["c1.pgm"] = encode_file(photo_like(40, 90, 1, seed=31), "PPM")
    files["d0.png"] = encode_file(photo_like(32, 32, 4, seed=40), "PNG")  # alpha
    files["d1.png"] = encode_file(photo_like(32, 32, 4, seed=41), "PNG")
    files["flat0.ppm"] = encode_file(np.full((32, 32, 3), 7, np.uint8), "PPM")  # zstd wins
    files["flat1.ppm"] = encode_file(np.full((32, 32, 3), 9, np.uint8), "PPM")
    files["tall.ppm"] = encode_file(photo_like(264, 40, seed=50), "PPM")  # two tiles
    files["notes.txt"] = b"not an image\n" * 100
    paths = []
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.mark.parametrize("level", [3, zoo.TRY_ALL_FROM])  # one model; every model
def test_codec_batch_results_equal_results_alone(level: int) -> None:
    datas = [encode_file(photo_like(32, 32, seed=i), "PPM") for i in range(4)]
    datas += [encode_file(photo_like(40, 24, 4, seed=i), "PNG") for i in range(3)]
    datas.append(encode_file(np.full((32, 32, 3), 7, np.uint8), "PPM"))
    codec = image_codec.CODEC
    together = codec.try_compress_many(datas, level, Options(level=level))
    assert sorted(together) == list(range(len(datas)))
    for i, data in enumerate(datas):
        alone = codec.try_compress(data, level, Options(level=level))
        if alone is None:
            assert together[i] is None
            continue
        got = together[i]
        assert got is not None
        assert (got[0], got[1], got[2]) == alone
    items = [(got[0], got[1]) for got in together.values() if got is not None]
    decoded = codec.decompress_many(items)
    # an image whose model coded no other of its shape is left out, to be decoded alone
    groups = Counter((s.model_id(), s.shape()) for s, _ in items)
    paired = [i for i, (s, _) in enumerate(items) if groups[s.model_id(), s.shape()] > 1]
    assert sorted(decoded) == paired
    for i, data in decoded.items():
        assert data == codec.decompress(*items[i])


def test_every_container_is_the_one_made_alone(tmp_path: Path) -> None:
    paths = _inputs(tmp_path)
    options = Options()
    ahead = api.compress_ahead(paths, options)
    assert len(ahead.encoded) == 13  # every image was worked out together, of any shape
    for path in paths:
        alone, together = Path(f"{path}.alone.iodf"), Path(f"{path}.iodf")
        api.compress_file(path, alone, options)
        api.compress_file(path, together, options, ahead=ahead)
        assert together.read_bytes() == alone.read_bytes(), path.name

    containers = [Path(f"{path}.iodf") for path in paths]
    neural = 0
    for container in containers:
        with open(container, "rb") as f:
            neural += api.info(f).codec == CODEC_IMAGE
    assert neural >= 6
    ahead = api.decompress_ahead(containers)
    assert len(ahead.decoded) == neural  # the predictive coder decodes any shapes together
    for path, container in zip(paths, containers, strict=True):
        out = tmp_path / f"{path.name}.out"
        api.decompress_file(container, out, ahead=ahead)
        assert out.read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize(
    ("shape", "count", "level"),
    [((32, 32), 6, 3), ((32, 32), 4, FLOW_FROM), ((300, 270), 3, 3)],
)
def test_images_of_one_shape_take_the_batch_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: tuple[int, int], count: int, level: int
) -> None:
    """Images of one shape are coded together (small ones through the flow too from
    FLOW_FROM; the predictive coder's of any size): each file the container made alone, and
    decoded together too."""
    paths = [tmp_path / f"{i}.ppm" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(encode_file(photo_like(*shape, seed=i), "PPM"))
    options = Options(level=level)
    alone = {p: Path(f"{p}.alone") for p in paths}
    for path in paths:
        api.compress_file(path, alone[path], options)

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was coded alone")

    for module in (pixel_codec, predictive):
        monkeypatch.setattr(module, "encode", refused)
        monkeypatch.setattr(module, "decode", refused)
    jobs = [cli.Job("compress", str(p), f"{p}.iodf", options) for p in paths]
    outcomes: list[cli.Outcome] = []
    cli.execute(jobs, 1, lambda i, n: None, lambda i, o: outcomes.append(o))
    assert [o.error for o in outcomes] == [None] * count
    assert all(o.how.startswith("neural-image,") for o in outcomes)
    for path in paths:
        assert Path(f"{path}.iodf").read_bytes() == alone[path].read_bytes()
    tests = [cli.Job("test", f"{p}.iodf", None, Options()) for p in paths]
    outcomes.clear()
    cli.execute(tests, 1, lambda i, n: None, lambda i, o: outcomes.append(o))
    assert [o.error for o in outcomes] == [None] * count


def test_files_are_worked_out_in_runs_of_bounded_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = [300, 500, 100, 900, 50, 50]
    jobs = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(bytes(size))
        jobs.append(cli.Job("compress", str(path), f"{path}.iodf", Options()))
    jobs.append(cli.Job("compress", str(tmp_path / "missing"), "x.iodf", Options()))
    monkeypatch.setattr(cli, "MAX_AHEAD_BYTES", 800)
    runs = list(cli._runs(jobs))
    assert [(start, len(run)) for start, run in runs] == [(0, 2), (2, 1), (3, 1), (4, 3)]
    monkeypatch.setattr(cli, "MAX_AHEAD_FILES", 2)
    assert [len(run) for _, run in cli._runs(jobs)] == [2, 1, 1, 2, 1]


def _damage_stream(container: Path) -> None:
    """Flip a bit in the middle of a version 2 container's rANS stream and fix its CRC-32, so
    that the damage reaches the decoder."""
    blob = bytearray(container.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    blob[-4:] = zlib.crc32(bytes(blob[:-4])).to_bytes(4, "little")
    container.write_bytes(bytes(blob))


def test_a_bad_file_among_good_ones_fails_alone(tmp_path: Path) -> None:
    originals = {}
    for i in range(6):
        path = tmp_path / f"{i}.ppm"
        originals[path] = encode_file(photo_like(32, 32, seed=i), "PPM")
        path.write_bytes(originals[path])
    jobs = [cli.Job("compress", str(p), f"{p}.iodf", Options(), remove_src=True) for p in originals]
    outcomes: list[cli.Outcome] = []
    cli.execute(jobs, 1, lambda i, n: None, lambda i, o: outcomes.append(o))
    assert [o.error for o in outcomes] == [None] * 6
    assert not any(path.exists() for path in originals)  # --rm: each verified, then removed
    containers = [Path(f"{p}.iodf") for p in originals]
    for c in containers:
        with open(c, "rb") as f:
            assert api.info(f).codec == CODEC_IMAGE
    _damage_stream(containers[2])
    containers[4].write_bytes(containers[4].read_bytes()[:-7])  # truncated
    jobs = [
        cli.Job("decompress", str(c), str(c)[:-5], Options(), remove_src=True) for c in containers
    ]
    outcomes.clear()
    cli.execute(jobs, 1, lambda i, n: None, lambda i, o: outcomes.append(o))
    errors = [o.error for o in outcomes]
    assert [e is None for e in errors] == [True, True, False, True, False, True], errors
    assert "damaged container" in str(errors[2]) and "damaged" in str(errors[4])
    for (path, data), container, error in zip(originals.items(), containers, errors, strict=True):
        if error is None:
            assert path.read_bytes() == data and not container.exists()
        else:
            assert not path.exists() and container.exists()  # no output, input kept
    assert sorted(os.listdir(tmp_path)) == sorted(
        [p.name for p in originals if p.exists()] + [c.name for c in containers if c.exists()]
    )  # no temporary file left


def test_a_damaged_stream_is_reported_as_when_decoded_alone(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.ppm"
        path.write_bytes(encode_file(photo_like(32, 32, seed=i), "PPM"))
        api.compress_file(path, f"{path}.iodf")
        paths.append(Path(f"{path}.iodf"))
    _damage_stream(paths[1])
    with pytest.raises(Exception) as alone:
        api.decompress(io.BytesIO(paths[1].read_bytes()), io.BytesIO())
    ahead = api.decompress_ahead(paths)
    assert len(ahead.decoded) == 2
    with pytest.raises(type(alone.value)) as together:
        api.decompress(io.BytesIO(paths[1].read_bytes()), io.BytesIO(), ahead=ahead)
    assert str(together.value) == str(alone.value)
