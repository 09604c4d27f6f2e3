"""TensorRT backend: each network's int32-only ONNX graph as a TensorRT engine (NVIDIA GPUs).

Used only where a CUDA device exists and ``tensorrt`` and ``cuda-python`` import. The device is
looked for first, through cuda-python, and TensorRT is imported only once one is found:
importing TensorRT on a machine without a CUDA device can crash the process.

The engines come from :func:`iodfz.engine.onnx_backend.net_to_onnx` — integer arithmetic
only, with convolutions TensorRT runs in INT8 whose int32 sums are exact in float32 by the 2^24
bound — built as strongly typed networks with TF32 off. An engine is built once and cached
under ``zoo.cache_dir("tensorrt")``, keyed by :func:`cache_key` (GPU, TensorRT version, and
the SHA-256 of the graph, which covers the model's weights and the graph's own version).
Every engine, freshly built or loaded from the cache, must give the numpy reference's integers
on a probe input before use (a loaded one that does not is deleted and rebuilt); the backend
as a whole must then reproduce the model's test vectors like any other
(:mod:`iodfz.engine.backends`).

Nothing here has run on a machine with TensorRT: none of the project's machines can install it
(docs/GPU.md). The code around the engines — device check, cache keys, build/load/verify,
refusals — is tested with fakes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from iodfz import zoo
from iodfz.engine.backends import BackendUnavailable, IdentityCache
from iodfz.engine.model import Net
from iodfz.engine.onnx_backend import latents_to_int32, net_to_onnx
from iodfz.engine.reference import NumpyBackend

ENGINE_FORMAT = 1  # bump when the build settings or the runner's input/output layout change
MAX_BATCH = 16  # tiles per engine call: the codec's largest batch of 256-pixel tiles
MAX_SIDE = 256  # largest latent side an engine accepts (tiles up to 512 pixels)
OPT_SIDE = 64


@dataclass(frozen=True)
class GpuInfo:
    name: str
    capability: tuple[int, int]


class Runner(Protocol):
    def run(self, x: np.ndarray) -> np.ndarray:
        """int32 (B, H, W, C_in) → int32 (B, H, W, C_out)."""
        ...


class Engines(Protocol):
    """What the backend needs from TensorRT (a fake stands in for it in the tests)."""

    version: str

    def build(self, graph: bytes) -> bytes: ...

    def load(self, plan: bytes) -> Runner: ...


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python ≥ 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # older cuda-python
        except ImportError:
            raise BackendUnavailable(
                "cuda-python is not installed (pip install 'iodfz[gpu]')"
            ) from None
    return runtime


def _ok(result: tuple) -> Any:
    """The value of a cuda-python call's (error, value...) tuple; raises on an error."""
    err, *values = result
    if int(err) != 0:
        raise BackendUnavailable(f"CUDA error {err}")
    return values[0] if values else None


def cuda_gpu() -> GpuInfo:
    """CUDA device 0, found through cuda-python without importing TensorRT."""
    cudart = _cudart()
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        raise BackendUnavailable("no CUDA device")
    props = _ok(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else props.name
    return GpuInfo(name.rstrip("\0"), (int(props.major), int(props.minor)))


def cache_key(gpu: GpuInfo, trt_version: str, graph: bytes) -> str:
    """Name of a cached engine: anything that may change the engine changes the key."""
    fields = [
        ENGINE_FORMAT,
        gpu.name,
        list(gpu.capability),
        trt_version,
        hashlib.sha256(graph).hexdigest(),
        [MAX_BATCH, MAX_SIDE, OPT_SIDE],
    ]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:40]


def probe_input(net: Net) -> np.ndarray:
    """A fixed input for checking an engine against the reference: 2 tiles of 8×12, values
    spread over [-160, 160] (so the input clamp is exercised too)."""
    c_in = net.conv_in.weight.shape[1]
    return np.random.default_rng(20240917).integers(-160, 161, (2, 8, 12, c_in))


class TensorRTBackend:
    name = "tensorrt"

    def __init__(
        self,
        engines: Engines | None = None,
        gpu: GpuInfo | None = None,
        folder: Path | None = None,
    ) -> None:
        self.gpu = gpu or cuda_gpu()  # before TensorRT is imported
        self.engines = engines or TensorRTEngines()
        folder = folder or zoo.cache_dir("tensorrt")
        if folder is None:
            raise BackendUnavailable("no cache directory for engines (set IODFZ_CACHE)")
        self.folder = folder
        self.reference = NumpyBackend(threads=1)
        self._runners: IdentityCache[Net, Runner] = IdentityCache()

    def _agrees(self, net: Net, runner: Runner) -> bool:
        x = probe_input(net)
        return np.array_equal(runner.run(latents_to_int32(x)), self.reference.run_net(net, x))

    def _runner(self, net: Net) -> Runner:
        graph = net_to_onnx(net).SerializeToString()
        path = self.folder / f"{cache_key(self.gpu, self.engines.version, graph)}.plan"
        if path.exists():
            try:
                runner = self.engines.load(path.read_bytes())
                if self._agrees(net, runner):
                    return runner
            except (OSError, RuntimeError, ValueError):
                pass
            path.unlink(missing_ok=True)  # damaged, or refused by the check: rebuild it
        print(f"iodfz: building a TensorRT engine for {self.gpu.name} (once)", file=sys.stderr)
        plan = self.engines.build(graph)
        runner = self.engines.load(plan)
        if not self._agrees(net, runner):
            raise BackendUnavailable(
                f"the TensorRT engine built on {self.gpu.name} differs from the reference"
            )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(plan)
            tmp.replace(path)
        except OSError:
            pass  # an unwritable cache only costs a rebuild next time
        return runner

    def run_net(self, net: Net, a: np.ndarray) -> np.ndarray:
        runner = self._runners.get(net, self._runner)
        b, h, w, _ = a.shape
        if h > MAX_SIDE or w > MAX_SIDE:  # beyond the engines' shapes: the reference's integers
            return self.reference.run_net(net, a)
        x = latents_to_int32(a)
        parts = [runner.run(x[i : i + MAX_BATCH]) for i in range(0, b, MAX_BATCH)]
        return np.concatenate(parts).astype(np.int64)


class TensorRTEngines:
    """Builds and loads engines with the ``tensorrt`` package (imported here, not before)."""

    def __init__(self) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendUnavailable(
                "TensorRT is not installed (NVIDIA's tensorrt package; docs/GPU.md)"
            ) from None
        self.trt = trt
        self.version = str(trt.__version__)
        self.logger = trt.Logger(trt.Logger.ERROR)
        self.runtime = trt.Runtime(self.logger)

    def build(self, graph: bytes) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(graph):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailable(f"TensorRT cannot parse the int32 graph ({errors})")
        config = builder.create_builder_config()
        config.clear_flag(trt.BuilderFlag.TF32)
        c_in = network.get_input(0).shape[3]
        profile = builder.create_optimization_profile()
        profile.set_shape(
            "x",
            (1, 1, 1, c_in),
            (MAX_BATCH, OPT_SIDE, OPT_SIDE, c_in),
            (MAX_BATCH, MAX_SIDE, MAX_SIDE, c_in),
        )
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendUnavailable("TensorRT could not build an engine for the int32 graph")
        return bytes(plan)

    def load(self, plan: bytes) -> Runner:
        engine = self.runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise BackendUnavailable("TensorRT could not load the engine")
        return TensorRTRunner(engine)


class TensorRTRunner:
    """One engine, its execution context, a CUDA stream and device buffers (cuda-python)."""

    def __init__(self, engine: Any) -> None:
        self.cudart = _cudart()
        self.engine = engine
        self.context = engine.create_execution_context()
        self.stream = _ok(self.cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _ok(self.cudart.cudaFree(ptr))
            ptr = int(_ok(self.cudart.cudaMalloc(nbytes)))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, x: np.ndarray) -> np.ndarray:
        cudart, stream = self.cudart, self.stream
        x = np.ascontiguousarray(x, np.int32)
        self.context.set_input_shape("x", x.shape)
        y = np.empty(tuple(self.context.get_tensor_shape("y")), np.int32)
        px, py = self._buffer("x", max(x.nbytes, 4)), self._buffer("y", max(y.nbytes, 4))
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _ok(cudart.cudaMemcpyAsync(px, x.ctypes.data, x.nbytes, to_device, stream))
        self.context.set_tensor_address("x", px)
        self.context.set_tensor_address("y", py)
        if not self.context.execute_async_v3(int(stream)):
            raise BackendUnavailable("TensorRT could not run the engine")
        _ok(cudart.cudaMemcpyAsync(y.ctypes.data, py, y.nbytes, to_host, stream))
        _ok(cudart.cudaStreamSynchronize(stream))
        return y
