"""Backend selection: every backend proves itself on the model's test vectors before use.

``IODFZ_BACKEND`` (one of BACKEND_NAMES, or auto) picks one; auto tries CUDA (only where
an NVIDIA driver is loaded and torch is installed: importing torch alone costs over a second),
then the numpy reference — torch on CPU is no faster than numpy here, see the engine benchmark.
A backend that cannot be imported or whose latents differ from the test vectors is skipped
(with the reason kept for ``iodfz selftest``) and the reference is used.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from iodfz.engine import flow
from iodfz.engine.model import Model
from iodfz.engine.reference import NumpyBackend

BACKEND_NAMES = ("numpy", "torch-cpu", "torch-cpu-int8", "torch-cuda", "onnxruntime")


class BackendUnavailable(RuntimeError):
    pass


def make_backend(name: str) -> flow.Backend:
    if name == "numpy":
        return NumpyBackend()
    if name not in BACKEND_NAMES:
        raise BackendUnavailable(
            f"unknown backend {name!r} (choose from {', '.join(BACKEND_NAMES)})"
        )
    if name == "onnxruntime":
        try:
            from iodfz.engine.onnx_backend import OnnxBackend
        except ImportError:
            raise BackendUnavailable(
                "onnx/onnxruntime are not installed (pip install 'iodfz[onnx]')"
            ) from None
        return OnnxBackend()
    try:
        import torch

        from iodfz.engine.torch_backend import TorchBackend
    except ImportError:
        raise BackendUnavailable("torch is not installed (pip install 'iodfz[torch]')") from None
    device = name.removeprefix("torch-").removesuffix("-int8")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA device")
    return TorchBackend(device, int8=name.endswith("-int8"))


def check_test_vectors(model: Model, backend: flow.Backend) -> list[str]:
    """Names of the test-vector hashes this backend does not reproduce (empty: it passes)."""
    splits, top = flow.forward(model, backend, flow.test_input(model.levels))
    got = flow.latent_hashes(splits, top)
    expected = model.test_vectors
    return sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))


_VERIFIED: dict[tuple[str, str], flow.Backend] = {}


def _verified(model: Model, name: str) -> flow.Backend:
    key = (model.model_id, name)
    if key not in _VERIFIED:
        backend = make_backend(name)
        differs = check_test_vectors(model, backend)
        if differs:
            raise BackendUnavailable(f"differs from the test vectors ({', '.join(differs[:3])})")
        _VERIFIED[key] = backend
    return _VERIFIED[key]


def cuda_may_work() -> bool:
    """An NVIDIA driver is loaded and torch is installed (checked without importing torch)."""
    driver = Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))
    return driver and importlib.util.find_spec("torch") is not None


def backend_for(model: Model) -> flow.Backend:
    """The backend to run ``model`` on: the requested or fastest one that passes its vectors."""
    wanted = os.environ.get("IODFZ_BACKEND", "auto")
    if wanted == "auto":
        order = ["torch-cuda", "numpy"] if cuda_may_work() else ["numpy"]
    else:
        order = [wanted, "numpy"]
    for name in order:
        try:
            return _verified(model, name)
        except BackendUnavailable:
            continue
    raise BackendUnavailable("the numpy reference does not reproduce the model's test vectors")
