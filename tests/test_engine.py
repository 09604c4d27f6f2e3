"""The integer flow: exactness, backend agreement, export bounds, model-file integrity."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iodfz.engine import flow
from iodfz.engine.backends import check_test_vectors, cuda_may_work
from iodfz.engine.model import ModelError, load, save
from iodfz.engine.reference import NumpyBackend

torch = pytest.importorskip("torch")

from iodfz.engine.export import ExportError, export_model  # noqa: E402
from iodfz.engine.torch_backend import TorchBackend  # noqa: E402
from iodfz.flow.model import FlowConfig, IntegerFlow  # noqa: E402

SMALL = FlowConfig(levels=2, couplings=2, width=16, blocks=1, prior_width=8, prior_blocks=1)


def random_flow(cfg: FlowConfig = SMALL, seed: int = 0) -> IntegerFlow:
    """An untrained flow whose output convs are random (not zero), so couplings do something."""
    torch.manual_seed(seed)
    model = IntegerFlow(cfg)
    for net in model.nets():
        torch.nn.init.normal_(net.conv_out.weight, std=0.05)
        torch.nn.init.normal_(net.conv_out.bias, std=1.0)
    return model


@pytest.fixture(scope="module", params=["none", "checkerboard"])
def small_model(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    path = tmp_path_factory.mktemp("model") / "small.iodfm"
    cfg = FlowConfig.from_dict({**SMALL.to_dict(), "context": request.param})
    save(export_model(random_flow(cfg), calibration), path)
    return load(path)


BACKENDS = [NumpyBackend(), TorchBackend("cpu"), TorchBackend("cpu", int8=True)]
if torch.cuda.is_available():
    BACKENDS += [TorchBackend("cuda"), TorchBackend("cuda", int8=True)]
try:
    from iodfz.engine.onnx_backend import OnnxBackend

    BACKENDS.append(OnnxBackend())
except ImportError:  # the onnx extra is not installed
    pass


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("size", [(4, 4), (12, 20), (36, 8)])
def test_forward_then_inverse_is_identity(small_model, backend, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(size[0])
    x = rng.integers(0, 256, (2, *size, 3), dtype=np.uint8)
    splits, top = flow.forward(small_model, backend, x)
    assert any(np.any(s.values != 0) for s in splits)
    back = flow.inverse(small_model, backend, top, flow.replay(splits))
    np.testing.assert_array_equal(back, x)


def test_inverse_uses_the_prior_parameters_it_was_given(small_model) -> None:
    x = np.random.default_rng(1).integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    splits, top = flow.forward(small_model, NumpyBackend(), x)

    passes = {level: s.passes()[::-1] for level, s in enumerate(splits)}

    def check(level: int, scale_index: np.ndarray, mean_fp: np.ndarray) -> np.ndarray:
        values, expected_scale, expected_mean = passes[level].pop(0)
        np.testing.assert_array_equal(scale_index.reshape(expected_scale.shape), expected_scale)
        np.testing.assert_array_equal(mean_fp.reshape(expected_mean.shape), expected_mean)
        return values.reshape(scale_index.shape)

    flow.inverse(small_model, NumpyBackend(), top, check)
    assert not any(passes.values())


def test_a_checkerboard_context_changes_only_the_second_pass(small_model) -> None:
    if small_model.context == "none":
        pytest.skip("a model without a context")
    plain = dataclasses.replace(small_model, contexts=[], config={**small_model.config})
    plain.config["context"] = "none"
    x = np.random.default_rng(5).integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    with_context, _ = flow.forward(small_model, NumpyBackend(), x)
    without, _ = flow.forward(plain, NumpyBackend(), x)
    for s, p in zip(with_context, without, strict=True):
        assert s.anchors[0, 0] and not s.anchors[0, 1] and s.anchors.sum() * 2 == s.anchors.size
        np.testing.assert_array_equal(s.values, p.values)
        first, second = s.anchors, ~s.anchors
        np.testing.assert_array_equal(s.mean_fp[:, first], p.mean_fp[:, first])
        np.testing.assert_array_equal(s.scale_index[:, first], p.scale_index[:, first])
        assert np.any(s.mean_fp[:, second] != p.mean_fp[:, second])


@pytest.mark.parametrize(
    "backend",
    [*BACKENDS[1:], NumpyBackend(threads=1), NumpyBackend(threads=3)],
    ids=lambda b: f"numpy-{b.threads}-threads" if isinstance(b, NumpyBackend) else b.name,
)
def test_backends_agree_bit_for_bit(small_model, backend) -> None:
    x = np.random.default_rng(2).integers(0, 256, (5, 24, 16, 3), dtype=np.uint8)
    a_splits, a_top = flow.forward(small_model, NumpyBackend(threads=2), x)
    b_splits, b_top = flow.forward(small_model, backend, x)
    assert flow.latent_hashes(a_splits, a_top) == flow.latent_hashes(b_splits, b_top)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_backends_reproduce_test_vectors(small_model, backend) -> None:
    assert check_test_vectors(small_model, backend) == []


def test_a_backend_that_differs_is_caught(small_model) -> None:
    class OffByOne(NumpyBackend):
        def run_net(self, net, a):
            return super().run_net(net, a) + 1

    assert check_test_vectors(small_model, OffByOne())


def test_exporter_rejects_a_layer_that_could_overflow() -> None:
    model = random_flow(FlowConfig(levels=1, couplings=1, width=128, blocks=1))
    big = model.levels[0][0].net.blocks[0].conv1
    with torch.no_grad():
        big.weight.fill_(1.0)  # int8 weights all 127: 128 · Σ|w| = 128 · 127 · 9 · 128 ≥ 2^24
    with pytest.raises(ExportError, match="2\\^24"):
        export_model(model, np.zeros((1, 3, 8, 8), np.uint8))


def test_model_file_with_wrong_hash_is_refused(small_model, tmp_path: Path) -> None:
    path = tmp_path / "m.iodfm"
    save(small_model, path)
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="hash mismatch"):
        load(path)


@pytest.mark.parametrize("cut", [0, 7, 40, -33, -1])
def test_truncated_model_file_is_refused(small_model, tmp_path: Path, cut: int) -> None:
    path = tmp_path / "m.iodfm"
    save(small_model, path)
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(ModelError):
        load(path)


def test_a_block_with_every_channel_gated_off_exports_and_runs(tmp_path: Path) -> None:
    model = random_flow()
    with torch.no_grad():
        model.levels[0][0].net.blocks[0].gate.param.fill_(0.0)
        model.levels[1][1].net.blocks[0].gate.param[::2] = 0.0
    calibration = np.random.default_rng(3).integers(0, 256, (2, 3, 16, 16), dtype=np.uint8)
    exported = export_model(model, calibration)
    assert exported.couplings[0][0].blocks[0][0].weight.shape[2] == 0
    save(exported, tmp_path / "gated.iodfm")
    loaded = load(tmp_path / "gated.iodfm")
    x = np.random.default_rng(4).integers(0, 256, (1, 12, 20, 3), dtype=np.uint8)
    for backend in BACKENDS:
        assert check_test_vectors(loaded, backend) == []
        splits, top = flow.forward(loaded, backend, x)
        back = flow.inverse(loaded, backend, top, flow.replay(splits))
        np.testing.assert_array_equal(back, x)


@pytest.mark.skipif(cuda_may_work(), reason="an NVIDIA driver is loaded here")
def test_auto_backend_does_not_import_torch_without_a_gpu() -> None:
    code = (
        "import sys; from iodfz import zoo; from iodfz.engine.backends import backend_for; "
        "print(backend_for(zoo.for_level(4)).name, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["numpy", "False"]
