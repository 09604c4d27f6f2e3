"""The GPU path without a GPU: backend choice and refusals, the TensorRT backend's cache and
checks (with fake engines that run the same int32 graph on onnxruntime), the CLI's error."""

from __future__ import annotations

import gc
import importlib.util
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from iodfz import zoo
from iodfz.codecs import FLOW_FROM
from iodfz.engine import backends
from iodfz.engine.backends import BackendUnavailable, backend_for, backend_name, check_test_vectors

ort = pytest.importorskip("onnxruntime")

from iodfz.engine import tensorrt_backend as trt_backend  # noqa: E402
from iodfz.engine.tensorrt_backend import GpuInfo, TensorRTBackend, cache_key  # noqa: E402

GPU = GpuInfo("Fake GPU 80GB", (9, 0))
SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "synthetic-photo.png"


@pytest.fixture(scope="module")
def model():
    found = zoo.for_level(FLOW_FROM)
    if found is None:
        pytest.skip("no shipped model installed")
    return found


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_VERIFIED", {})
    monkeypatch.setattr(backends, "_SKIPPED", {})
    monkeypatch.delenv("IODFZ_BACKEND", raising=False)


class FakeRunner:
    def __init__(self, graph: bytes, error: int) -> None:
        self.session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        self.error = error

    def run(self, x: np.ndarray) -> np.ndarray:
        assert x.dtype == np.int32 and x.shape[0] <= trt_backend.MAX_BATCH
        return self.session.run(["y"], {"x": x})[0] + self.error


class FakeEngines:
    """Stands in for TensorRT: a 'plan' is a tag and the ONNX graph; b'BAD!' plans are off
    by one, anything else without a tag cannot be loaded."""

    version = "fake-10.0"

    def __init__(self, tag: bytes = b"GOOD") -> None:
        self.tag = tag
        self.builds = self.loads = 0

    def build(self, graph: bytes) -> bytes:
        self.builds += 1
        return self.tag + graph

    def load(self, plan: bytes) -> FakeRunner:
        self.loads += 1
        if plan[:4] not in (b"GOOD", b"BAD!"):
            raise BackendUnavailable("TensorRT could not load the engine")
        return FakeRunner(plan[4:], error=int(plan[:4] == b"BAD!"))


def test_fake_tensorrt_engines_pass_the_test_vectors_and_are_cached(model, tmp_path) -> None:
    engines = FakeEngines()
    assert check_test_vectors(model, TensorRTBackend(engines, GPU, tmp_path)) == []
    nets = len(model.nets())
    assert engines.builds == nets and len(list(tmp_path.glob("*.plan"))) == nets
    again = FakeEngines()
    assert check_test_vectors(model, TensorRTBackend(again, GPU, tmp_path)) == []
    assert (again.builds, again.loads) == (0, nets)


def test_a_cached_engine_that_differs_or_is_damaged_is_rebuilt(model, tmp_path) -> None:
    bad = TensorRTBackend(FakeEngines(b"BAD!"), GPU, tmp_path)
    with pytest.raises(BackendUnavailable, match="differs from the reference"):
        bad.run_net(model.priors[0], np.zeros((1, 4, 4, 6), np.int64))
    plans = sorted(tmp_path.glob("*.plan"))
    assert plans == []  # a refused build is not cached
    engines = FakeEngines()
    net = model.couplings[0][0]
    TensorRTBackend(engines, GPU, tmp_path).run_net(net, np.zeros((1, 4, 4, 6), np.int64))
    (plan,) = tmp_path.glob("*.plan")
    plan.write_bytes(b"BAD!" + plan.read_bytes()[4:])  # a cached engine that now differs
    rebuilt = FakeEngines()
    TensorRTBackend(rebuilt, GPU, tmp_path).run_net(net, np.zeros((1, 4, 4, 6), np.int64))
    assert (rebuilt.loads, rebuilt.builds) == (2, 1)
    assert plan.read_bytes()[:4] == b"GOOD"
    plan.write_bytes(b"garbage")  # damaged
    rebuilt = FakeEngines()
    TensorRTBackend(rebuilt, GPU, tmp_path).run_net(net, np.zeros((1, 4, 4, 6), np.int64))
    assert rebuilt.builds == 1 and plan.read_bytes()[:4] == b"GOOD"


def test_engines_run_large_batches_in_pieces_and_huge_tiles_on_the_reference(model, tmp_path):
    backend = TensorRTBackend(FakeEngines(), GPU, tmp_path)
    net = model.couplings[0][1]
    rng = np.random.default_rng(0)
    reference = backends.make_backend("numpy")
    for shape in [(trt_backend.MAX_BATCH * 2 + 3, 4, 6, 6), (1, trt_backend.MAX_SIDE + 2, 8, 6)]:
        a = rng.integers(-140, 140, shape)
        np.testing.assert_array_equal(backend.run_net(net, a), reference.run_net(net, a))


def test_cache_key_changes_with_gpu_version_and_graph() -> None:
    base = cache_key(GPU, "10.0", b"graph")
    assert base == cache_key(GpuInfo("Fake GPU 80GB", (9, 0)), "10.0", b"graph")
    others = {
        cache_key(GpuInfo("Other GPU", (9, 0)), "10.0", b"graph"),
        cache_key(GpuInfo("Fake GPU 80GB", (8, 9)), "10.0", b"graph"),
        cache_key(GPU, "10.1", b"graph"),
        cache_key(GPU, "10.0", b"graph2"),
    }
    assert base not in others and len(others) == 4


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("IODFZ_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.cache_dir("tensorrt") == tmp_path / "xdg" / "iodfz" / "tensorrt"
    monkeypatch.setenv("IODFZ_CACHE", str(tmp_path / "mine"))
    assert zoo.cache_dir("tensorrt") == tmp_path / "mine" / "tensorrt"


class NoDevice:
    @staticmethod
    def cudaGetDeviceCount() -> tuple[int, int]:
        return 0, 0


def test_without_a_cuda_device_tensorrt_is_never_imported(monkeypatch) -> None:
    monkeypatch.setattr(trt_backend, "_cudart", lambda: NoDevice)

    def imported() -> None:
        raise AssertionError("TensorRT imported without a CUDA device")

    monkeypatch.setattr(trt_backend, "TensorRTEngines", imported)
    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        TensorRTBackend()


def test_explicit_tensorrt_here_is_an_error_naming_the_reason(model, monkeypatch) -> None:
    monkeypatch.setenv("IODFZ_BACKEND", "tensorrt")
    with pytest.raises(BackendUnavailable, match=r"^IODFZ_BACKEND=tensorrt: .+"):
        backend_for(model)
    assert "tensorrt" not in sys.modules


def test_explicit_backend_that_fails_its_test_vectors_is_an_error(model, monkeypatch, tmp_path):
    monkeypatch.setattr(
        backends, "_tensorrt_backend", lambda: TensorRTBackend(FakeEngines(b"BAD!"), GPU, tmp_path)
    )
    monkeypatch.setenv("IODFZ_BACKEND", "tensorrt")
    with pytest.raises(BackendUnavailable, match=r"IODFZ_BACKEND=tensorrt: .*differs"):
        backend_for(model)


@pytest.mark.parametrize("name", ["bogus", "torch-cuda", "onnxruntime-cuda", "NUMPY"])
def test_explicit_unknown_or_unavailable_backend_is_an_error(model, monkeypatch, name) -> None:
    monkeypatch.setenv("IODFZ_BACKEND", name)
    with pytest.raises(BackendUnavailable, match=f"^IODFZ_BACKEND={name}: "):
        backend_for(model)


def test_explicit_backend_is_used_and_named(model, monkeypatch) -> None:
    monkeypatch.setenv("IODFZ_BACKEND", "onnxruntime")
    assert backend_name(model) == "onnxruntime"
    monkeypatch.setenv("IODFZ_BACKEND", " ")
    assert backend_name(model) == "numpy"


def test_auto_tries_gpu_backends_only_where_a_driver_is_loaded(monkeypatch) -> None:
    monkeypatch.setattr(backends, "nvidia_driver_loaded", lambda: False)
    assert backends.auto_order() == ["numpy"]
    monkeypatch.setattr(backends, "nvidia_driver_loaded", lambda: True)
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: object() if n == "torch" else None)
    assert backends.auto_order() == ["torch-cuda-int8", "torch-cuda", "numpy"]
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: object())
    assert backends.auto_order() == ["tensorrt", "torch-cuda-int8", "torch-cuda", "numpy"]
    monkeypatch.setattr(importlib.util, "find_spec", find)


def test_auto_says_why_it_passes_a_gpu_backend_over(model, monkeypatch, capsys) -> None:
    monkeypatch.setattr(backends, "auto_order", lambda: ["tensorrt", "numpy"])
    assert backend_for(model).name == "numpy"
    assert backend_for(model).name == "numpy"
    err = capsys.readouterr().err
    assert err.count("iodfz: note: backend tensorrt not used (") == 1
    assert "tensorrt" in backends.skipped(model)


def test_torch_weights_are_kept_per_conv_object(model) -> None:
    torch_backend = pytest.importorskip("iodfz.engine.torch_backend")
    backend = torch_backend.TorchBackend("cpu", int8=True)
    net = model.couplings[0][0]
    x = np.zeros((1, 4, 4, 6), np.int64)
    backend.run_net(net, x)
    kept = len(backend._prepared)
    assert kept == len(net.convs())
    copy = type(net)(replace(net.conv_in), net.blocks, net.conv_out)
    backend.run_net(copy, x)
    assert len(backend._prepared) == kept + 1
    del copy
    gc.collect()
    assert len(backend._prepared) == kept


def png(path: Path) -> Path:
    from PIL import Image

    y, x = np.mgrid[:48, :64]
    noise = np.random.default_rng(1).integers(0, 24, (48, 64, 3))
    rgb = (np.stack([x * 4, y * 5, (x + y) * 2], axis=-1) + noise) % 256
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def iodfz(*args: str, backend: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IODFZ_BACKEND": backend}
    return subprocess.run(
        [sys.executable, "-m", "iodfz", *args], capture_output=True, env=env, timeout=600
    )


def test_cli_compress_with_an_unknown_backend_exits_1_with_one_line(tmp_path) -> None:
    image = png(tmp_path / "a.png")
    out = iodfz("compress", "-c", f"--level={FLOW_FROM}", str(image), backend="bogus")
    assert out.returncode == 1 and out.stdout == b""
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"iodfz: {image}: IODFZ_BACKEND=bogus: unknown backend 'bogus'")
    assert not list(tmp_path.glob("*.iodf"))


def test_cli_files_cross_between_onnxruntime_and_numpy(tmp_path) -> None:
    image = SAMPLE
    flow = f"--level={FLOW_FROM}"  # small images also through a flow
    made = iodfz("compress", "-c", flow, str(image), backend="onnxruntime")
    assert made.returncode == 0, made.stderr
    assert made.stdout == iodfz("compress", "-c", flow, str(image), backend="numpy").stdout
    (tmp_path / "a.png.iodf").write_bytes(made.stdout)
    assert b"neural-image" in iodfz("info", str(tmp_path / "a.png.iodf"), backend="numpy").stdout
    back = iodfz("decompress", "-c", str(tmp_path / "a.png.iodf"), backend="numpy")
    assert back.returncode == 0 and back.stdout == image.read_bytes()


def test_tensorrt_without_onnx_is_unavailable_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core install (no onnx) lists the tensorrt backend as unavailable in selftest."""
    import sys

    from iodfz.engine.backends import BackendUnavailable, make_backend

    for name in ("onnx", "iodfz.engine.onnx_backend", "iodfz.engine.tensorrt_backend"):
        monkeypatch.setitem(sys.modules, name, None)  # import of it raises ImportError
    with pytest.raises(BackendUnavailable, match="not installed"):
        make_backend("tensorrt")
