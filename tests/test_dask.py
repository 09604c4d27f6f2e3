"""Compressing a tree on a Dask LocalCluster (iodfz.dask)."""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from PIL import Image  # noqa: E402

from iodfz import api  # noqa: E402
from iodfz.dask import STAGING_SUFFIX, FileResult, compress_tree  # noqa: E402

SLOW = "slow.bin"


def photo(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(h * w)
    yy, xx = np.mgrid[0:h, 0:w]
    planes = [30 + yy + 0.5 * xx + 15 * np.sin(xx / (5.0 + k)) for k in range(3)]
    noisy = np.stack(planes, -1) + rng.normal(0, 3, (h, w, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def make_tree(root: Path) -> Path:
    tree = root / "tree"
    (tree / "sub" / "deep").mkdir(parents=True)
    (tree / "a.txt").write_text("the same line again\n" * 500)
    (tree / "sub" / "b.bin").write_bytes(os.urandom(20_000))
    (tree / "sub" / "empty").write_bytes(b"")
    Image.fromarray(photo(40, 48)).save(tree / "sub" / "deep" / "c.png")
    pnm = b"P6\n48 40\n255\n" + photo(40, 48)[::-1].tobytes()
    (tree / "sub" / "deep" / "d.ppm").write_bytes(pnm)
    (tree / "old.iodf").write_bytes(b"not ours")
    (tree / "link").symlink_to("a.txt")
    return tree


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def decoded(container: str) -> bytes:
    out = io.BytesIO()
    with open(container, "rb") as f:
        api.decompress(f, out)
    return out.getvalue()


def assert_round_trip(results: list[FileResult]) -> None:
    for r in results:
        if r.ok:
            assert r.dst is not None
            assert decoded(r.dst) == Path(r.src).read_bytes(), r.src


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def test_tree_beside_inputs(tmp_path: Path, client: distributed.Client) -> None:
    tree = make_tree(tmp_path)
    results = compress_tree([tree], client)
    by_name = {os.path.relpath(r.src, tree): r for r in results}
    assert by_name["link"].note == "symbolic link -- skipped"
    assert by_name["old.iodf"].note is not None and "suffix" in by_name["old.iodf"].note
    compressed = [r for r in results if r.ok]
    assert len(compressed) == 5
    assert all(r.dst == r.src + ".iodf" for r in compressed)
    assert_round_trip(results)
    codecs = {
        os.path.basename(r.src): api.info(open(r.dst, "rb")).to_dict()["codec"]  # noqa: SIM115
        for r in compressed
        if r.dst
    }
    assert codecs["d.ppm"] == "neural-image"
    # a small, smooth PNG may stay smaller in zstd: the workers choose as the local API does
    local = io.BytesIO()
    with open(tree / "sub" / "deep" / "c.png", "rb") as f:
        api.compress(f, local)
    assert codecs["c.png"] == api.info(io.BytesIO(local.getvalue())).to_dict()["codec"]
    assert not [p for p in files_under(tmp_path) if STAGING_SUFFIX in p or p.endswith(".tmp")]


def test_output_dir_mirrors_the_cli(tmp_path: Path, client: distributed.Client, run_iodfz) -> None:
    tree = make_tree(tmp_path)
    cli = run_iodfz("compress", "-q", "-r", tree, tree / "a.txt", "--output-dir", tmp_path / "cli")
    assert cli.returncode == 0, cli.stderr
    results = compress_tree([tree, tree / "a.txt"], client, output_dir=tmp_path / "dask")
    assert all(r.ok or r.note for r in results)
    assert files_under(tmp_path / "dask") == files_under(tmp_path / "cli")
    assert len(files_under(tmp_path / "dask")) == 6  # the tree's 5 files and a.txt again
    assert_round_trip(results)


def test_failing_file_is_reported(tmp_path: Path, client: distributed.Client) -> None:
    tree = make_tree(tmp_path)
    (tree / "sub2").mkdir()
    (tree / "sub2" / "x.txt").write_text("x\n")
    out = tmp_path / "out"
    (out / "tree").mkdir(parents=True)
    (out / "tree" / "sub2").write_text("a file where the output directory should be")
    (out / "tree" / "a.txt.iodf").write_bytes(b"someone else's")
    results = compress_tree([tree], client, output_dir=out)
    failed = {os.path.relpath(r.src, tree): r.error for r in results if r.error}
    assert set(failed) == {"sub2/x.txt", "a.txt"}
    assert "already exists" in failed["a.txt"]
    assert failed["sub2/x.txt"] and "\n" not in failed["sub2/x.txt"]
    assert (out / "tree" / "a.txt.iodf").read_bytes() == b"someone else's"
    assert len([r for r in results if r.ok]) == 4
    assert_round_trip(results)
    forced = compress_tree([tree / "a.txt"], client, output_dir=out, force=True)
    assert forced[0].ok and decoded(forced[0].dst or "") == (tree / "a.txt").read_bytes()


def test_nothing_to_do(client: distributed.Client) -> None:
    assert compress_tree([], client) == []


def test_one_output_per_file(tmp_path: Path, client: distributed.Client) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    first, second = compress_tree([tmp_path / "a.txt"] * 2, client)
    assert first.ok
    assert second.error == f"{tmp_path / 'a.txt.iodf'} is already an output here"


def _slow_down_compress(pid_file: str, seconds: float) -> None:
    """On a worker: make the compression of ``slow.bin`` leave a partial output on disk,
    note the worker's pid and wait, so that the test can kill the worker mid-write."""
    import iodfz.api

    compress = iodfz.api.compress

    def slow(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        if getattr(src, "name", "").endswith(SLOW):
            dst.write(b"partial output")
            dst.flush()
            Path(pid_file + ".part").write_text(str(os.getpid()))
            os.replace(pid_file + ".part", pid_file)
            time.sleep(seconds)
            dst.seek(0)
            dst.truncate()
        return compress(src, dst, *args, **kwargs)

    iodfz.api.compress = slow


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_worker_killed_mid_write(tmp_path: Path) -> None:
    cloudpickle = pytest.importorskip("cloudpickle")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    tree = make_tree(tmp_path)
    (tree / SLOW).write_bytes(os.urandom(1000) * 50)
    pid_file = tmp_path / "pid"
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.run(_slow_down_compress, str(pid_file), 3.0)
        results: list[FileResult] = []
        run = threading.Thread(target=lambda: results.extend(compress_tree([tree], client)))
        run.start()
        deadline = time.monotonic() + 300  # generous: a loaded machine starts workers slowly
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        staged = [p for p in files_under(tree) if STAGING_SUFFIX in p]
        assert staged, "the slow file is being written"
        assert not (tree / f"{SLOW}.iodf").exists()
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        run.join(300)
        assert not run.is_alive()
    slow = [r for r in results if r.src.endswith(SLOW)]
    assert slow and slow[0].ok, slow
    assert len([r for r in results if r.ok]) == 6
    assert_round_trip(results)
    assert not [p for p in files_under(tmp_path) if STAGING_SUFFIX in p or p.endswith(".tmp")]
