"""Backend selection: every backend proves itself on the model's test vectors before use.

``IODFZ_BACKEND`` names one of BACKEND_NAMES, or ``auto`` (the default). An explicit choice is
never replaced in silence: if that backend is unknown, cannot run here or differs from the
test vectors, :func:`backend_for` raises :class:`BackendUnavailable` naming the reason.
``auto`` tries the GPU backends only where an NVIDIA driver is loaded (checked without
importing torch or TensorRT: importing torch alone costs over a second, and importing TensorRT
without a CUDA device can crash the process) — TensorRT, then torch's int8 and float32 CUDA
paths — and then the numpy reference; torch on CPU is no faster than numpy here (see
``scripts/bench_engine.py``). Each GPU backend auto skips is reported once on stderr with its
reason, and :func:`skipped` keeps the reasons.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from iodfz.engine import flow
from iodfz.engine.model import Model
from iodfz.engine.reference import NumpyBackend

BACKEND_NAMES = (
    "numpy",
    "torch-cpu",
    "torch-cpu-int8",
    "torch-cuda",
    "torch-cuda-int8",
    "onnxruntime",
    "onnxruntime-cuda",
    "tensorrt",
)
GPU_ORDER = ("tensorrt", "torch-cuda-int8", "torch-cuda")

K = TypeVar("K")
V = TypeVar("V")


class BackendUnavailable(RuntimeError):
    pass


class IdentityCache(Generic[K, V]):
    """Values derived from objects, keyed by the object itself (held weakly): an entry dies
    with its object, so a new object that reuses a dead one's ``id()`` never gets its value."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref, V]] = {}

    def get(self, obj: K, make: Callable[[K], V]) -> V:
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry[1]
        key = id(obj)
        entries = self._entries

        def forget(ref: weakref.ref) -> None:
            if entries.get(key, (None,))[0] is ref:
                del entries[key]

        value = make(obj)
        entries[key] = (weakref.ref(obj, forget), value)
        return value

    def __len__(self) -> int:
        return len(self._entries)


def _torch_backend(name: str) -> flow.Backend:
    try:
        import torch

        from iodfz.engine.torch_backend import TorchBackend
    except ImportError:
        raise BackendUnavailable("torch is not installed (pip install 'iodfz[torch]')") from None
    device = name.removeprefix("torch-").removesuffix("-int8")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("torch finds no CUDA device")
    return TorchBackend(device, int8=name.endswith("-int8"))


def _onnx_backend(name: str) -> flow.Backend:
    try:
        import onnxruntime

        from iodfz.engine.onnx_backend import OnnxBackend
    except ImportError:
        raise BackendUnavailable(
            "onnx/onnxruntime are not installed (pip install 'iodfz[onnx]')"
        ) from None
    if name == "onnxruntime-cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise BackendUnavailable("this onnxruntime has no CUDA execution provider")
        return OnnxBackend(cuda=True)
    return OnnxBackend()


def _tensorrt_backend() -> flow.Backend:
    try:  # its graphs are built with onnx (the gpu extra)
        from iodfz.engine.tensorrt_backend import TensorRTBackend
    except ImportError as exc:
        reason = f"{exc.name} is not installed (pip install 'iodfz[gpu]')"
        raise BackendUnavailable(reason) from None
    return TensorRTBackend()


def make_backend(name: str) -> flow.Backend:
    """The backend called ``name``; raises BackendUnavailable saying why it cannot run here."""
    if name == "numpy":
        return NumpyBackend()
    if name not in BACKEND_NAMES:
        raise BackendUnavailable(
            f"unknown backend {name!r} (choose from auto, {', '.join(BACKEND_NAMES)})"
        )
    if name.startswith("onnxruntime"):
        return _onnx_backend(name)
    if name == "tensorrt":
        return _tensorrt_backend()
    return _torch_backend(name)


def _differences(model: Model, backend: flow.Backend) -> list[str]:
    splits, top = flow.forward(model, backend, flow.test_input(model.levels))
    got = flow.latent_hashes(splits, top)
    expected = model.test_vectors
    return sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))


def check_test_vectors(model: Model, backend: flow.Backend) -> list[str]:
    """Names of the test-vector hashes this backend does not reproduce (empty: it passes); a
    backend that fails while running them (e.g. cannot build an engine) gives the reason."""
    try:
        return _differences(model, backend)
    except BackendUnavailable as exc:
        return [f"could not run: {exc}"]


_VERIFIED: dict[tuple[str, str], flow.Backend] = {}
_SKIPPED: dict[tuple[str, str], str] = {}


def _verified(model: Model, name: str) -> flow.Backend:
    key = (model.model_id, name)
    if key not in _VERIFIED:
        backend = make_backend(name)
        differs = _differences(model, backend)
        if differs:
            raise BackendUnavailable(f"differs from the test vectors ({', '.join(differs[:3])})")
        _VERIFIED[key] = backend
    return _VERIFIED[key]


@functools.cache
def nvidia_driver_loaded() -> bool:
    """An NVIDIA kernel driver is loaded (no CUDA library is touched); looked at once per
    process (listing /dev for every image cost more than coding a small one)."""
    return Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def cuda_may_work() -> bool:
    """An NVIDIA driver is loaded and torch is installed (checked without importing torch)."""
    return nvidia_driver_loaded() and importlib.util.find_spec("torch") is not None


def auto_order() -> list[str]:
    """The backends ``auto`` tries, fastest first; the numpy reference always last."""
    if not nvidia_driver_loaded():
        return ["numpy"]
    have = {
        "tensorrt": all(importlib.util.find_spec(m) for m in ("tensorrt", "cuda")),
        "torch-cuda-int8": importlib.util.find_spec("torch") is not None,
        "torch-cuda": importlib.util.find_spec("torch") is not None,
    }
    return [name for name in GPU_ORDER if have[name]] + ["numpy"]


def requested() -> str:
    """The backend asked for in ``IODFZ_BACKEND`` (``auto`` when unset or empty)."""
    return os.environ.get("IODFZ_BACKEND", "").strip() or "auto"


def backend_for(model: Model) -> flow.Backend:
    """The backend to run ``model`` on: the requested one, or the first of :func:`auto_order`
    that passes the model's test vectors. Raises BackendUnavailable with the reason when an
    explicitly requested backend cannot be used."""
    wanted = requested()
    if wanted != "auto":
        try:
            return _verified(model, wanted)
        except BackendUnavailable as exc:
            raise BackendUnavailable(f"IODFZ_BACKEND={wanted}: {exc}") from None
    for name in auto_order():
        try:
            return _verified(model, name)
        except BackendUnavailable as exc:
            key = (model.model_id, name)
            if key not in _SKIPPED and name != "numpy":
                print(f"iodfz: note: backend {name} not used ({exc})", file=sys.stderr)
            _SKIPPED[key] = str(exc)
    raise BackendUnavailable("the numpy reference does not reproduce the model's test vectors")


def backend_name(model: Model) -> str:
    """Name of the backend :func:`backend_for` picks for ``model`` (for ``-v``); raises
    BackendUnavailable like it."""
    return backend_for(model).name


def skipped(model: Model) -> dict[str, str]:
    """Backends ``auto`` passed over for ``model`` in this process, with the reason."""
    return {name: why for (mid, name), why in _SKIPPED.items() if mid == model.model_id}
