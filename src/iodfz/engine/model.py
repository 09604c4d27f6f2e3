"""The exported integer model: its in-memory form and its file (docs/FORMAT.md §4).

A model file holds the architecture, every conv's int8 weights, int32 biases and per-channel
requantization (M, s) of docs/INTEGER.md, the coupling permutations, the coder's integer tables
and the test vectors, followed by the SHA-256 of everything before it. That hash is the model
id stored in every neural container.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from iodfz.engine import transforms

MAGIC = b"IODFMDL\x01"
ACC_BOUND = 1 << 24  # docs/INTEGER.md, "Overflow bounds"
MAX_HEADER = 1 << 24
MAX_TENSOR_BYTES = 1 << 28
CONTEXTS = ("none", "checkerboard")  # docs/INTEGER.md, "Checkerboard context"


class ModelError(ValueError):
    """A model file is damaged, truncated, inconsistent or breaks an overflow bound."""


@dataclass
class Conv:
    """One 3×3 conv: weight (9 taps, c_in, c_out) int8, bias/mult/shift per output channel."""

    weight: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray

    @cached_property
    def float_weight(self) -> np.ndarray:
        """The weights as float32 (exact: int8 values), converted once."""
        return self.weight.astype(np.float32)

    @cached_property
    def float_weight_by_tap(self) -> np.ndarray:
        """(c_in, 9·c_out) float32: the nine taps' weights side by side."""
        w = self.float_weight
        return np.ascontiguousarray(w.transpose(1, 0, 2).reshape(w.shape[1], 9 * w.shape[2]))

    @cached_property
    def scale(self) -> np.ndarray:
        """M·2^-s per output channel as float64 (exact: 16-bit M, power-of-two scale)."""
        return np.ldexp(self.mult.astype(np.float64), -self.shift.astype(np.int64))

    def check(self, name: str) -> None:
        w = self.weight
        if w.ndim != 3 or w.shape[0] != 9 or w.dtype != np.int8:
            raise ModelError(
                f"{name}: weight must be int8 (9, c_in, c_out), got {w.dtype} {w.shape}"
            )
        c_out = w.shape[2]
        for arr, what in ((self.bias, "bias"), (self.mult, "mult"), (self.shift, "shift")):
            if arr.shape != (c_out,):
                raise ModelError(f"{name}: {what} must have shape ({c_out},), got {arr.shape}")
        if np.any(w == -128):
            raise ModelError(f"{name}: weights must lie in [-127, 127]")
        bound = 128 * np.abs(w.astype(np.int64)).sum(axis=(0, 1)) + np.abs(
            self.bias.astype(np.int64)
        )
        if np.any(bound >= ACC_BOUND):
            worst = int(bound.max())
            raise ModelError(f"{name}: accumulator bound {worst} ≥ 2^24 (docs/INTEGER.md)")
        m = self.mult.astype(np.int64)
        if np.any((m != 0) & ((m < 1 << 15) | (m >= 1 << 16))):
            raise ModelError(f"{name}: multipliers must be 0 or in [2^15, 2^16)")
        if np.any((self.shift < 0) | (self.shift > 62)):
            raise ModelError(f"{name}: shifts must lie in [0, 62]")


@dataclass
class Net:
    conv_in: Conv
    blocks: list[tuple[Conv, Conv]]
    conv_out: Conv

    def convs(self) -> list[tuple[str, Conv]]:
        out = [("in", self.conv_in)]
        for i, (c1, c2) in enumerate(self.blocks):
            out += [(f"b{i}.1", c1), (f"b{i}.2", c2)]
        return [*out, ("out", self.conv_out)]


@dataclass
class Model:
    config: dict
    perms: list[list[np.ndarray]]  # [level][coupling] channel permutation
    couplings: list[list[Net]]  # [level][coupling]
    priors: list[Net]  # split prior network per level but the last
    tables: dict[str, np.ndarray]  # coder tables, integer arrays (docs/FORMAT.md §2)
    test_vectors: dict = field(default_factory=dict)
    model_id: str = ""
    contexts: list[Net] = field(default_factory=list)  # checkerboard context net per split

    @property
    def context(self) -> str:
        """What the split priors see besides the kept half (docs/INTEGER.md)."""
        return self.config.get("context", "none")

    @property
    def levels(self) -> int:
        return len(self.couplings)

    def nets(self) -> list[tuple[str, Net]]:
        named = [(f"l{i}.c{k}", n) for i, lv in enumerate(self.couplings) for k, n in enumerate(lv)]
        named += [(f"l{i}.prior", n) for i, n in enumerate(self.priors)]
        return named + [(f"l{i}.context", n) for i, n in enumerate(self.contexts)]

    def check(self) -> None:
        colour = self.config.get("colour", "none")
        wavelet = self.config.get("wavelet", "none")
        if colour not in transforms.COLOUR_TRANSFORMS or wavelet not in transforms.WAVELETS:
            raise ModelError(f"unknown input transform {colour!r} / {wavelet!r} (newer iodfz?)")
        first = self.config.get("wavelet_levels", 1)
        if type(first) is not int or not 1 <= first <= self.levels:
            raise ModelError(f"bad wavelet_levels {first!r} for {self.levels} levels")
        if self.context not in CONTEXTS:
            raise ModelError(f"unknown split context {self.context!r} (newer iodfz?)")
        if len(self.contexts) != (len(self.priors) if self.context == "checkerboard" else 0):
            raise ModelError(f"{len(self.contexts)} context networks for {self.context!r}")
        for name, net in self.nets():
            for cname, conv in net.convs():
                conv.check(f"{name}.{cname}")


def _tensors(model: Model) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, net in model.nets():
        for cname, conv in net.convs():
            for part in ("weight", "bias", "mult", "shift"):
                out[f"{name}.{cname}.{part}"] = getattr(conv, part)
    for i, perms in enumerate(model.perms):
        for k, p in enumerate(perms):
            out[f"l{i}.c{k}.perm"] = p
    for name, arr in model.tables.items():
        out[f"tables.{name}"] = arr
    return out


_DTYPES = {
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
}


def save(model: Model, path: Path) -> str:
    """Write the model file; returns its model id (hex SHA-256)."""
    model.check()
    blobs, index, offset = [], {}, 0
    for name, arr in _tensors(model).items():
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        index[name] = {"dtype": arr.dtype.name, "shape": list(arr.shape), "offset": offset}
        blobs.append(arr.tobytes())
        offset += arr.nbytes
    header = {
        "format": "iodfz-model",
        "version": 1,
        "config": model.config,
        "blocks": {name: len(net.blocks) for name, net in model.nets()},
        "tensors": index,
        "test_vectors": model.test_vectors,
    }
    head = json.dumps(header, sort_keys=True).encode()
    body = MAGIC + struct.pack("<I", len(head)) + head + b"".join(blobs)
    digest = hashlib.sha256(body).digest()
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(body + digest)
    tmp.replace(path)
    return digest.hex()


def load(path: Path) -> Model:
    """Read and verify a model file (hash, sizes, overflow bounds)."""
    data = path.read_bytes()
    if len(data) < len(MAGIC) + 4 + 32 or not data.startswith(MAGIC):
        raise ModelError(f"{path.name}: not an iodfz model file")
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise ModelError(f"{path.name}: hash mismatch (damaged or truncated model file)")
    (hlen,) = struct.unpack_from("<I", body, len(MAGIC))
    start = len(MAGIC) + 4
    if hlen > MAX_HEADER or start + hlen > len(body):
        raise ModelError(f"{path.name}: bad header length")
    try:
        header = json.loads(body[start : start + hlen])
        blob = memoryview(body)[start + hlen :]
        arrays = {}
        for name, meta in header["tensors"].items():
            dtype = np.dtype(_DTYPES[meta["dtype"]]).newbyteorder("<")
            count = int(np.prod(meta["shape"], dtype=np.int64))
            nbytes = count * dtype.itemsize
            off = int(meta["offset"])
            if off < 0 or nbytes > MAX_TENSOR_BYTES or off + nbytes > len(blob):
                raise ModelError(f"{path.name}: tensor {name} out of bounds")
            arr = np.frombuffer(blob[off : off + nbytes], dtype=dtype).reshape(meta["shape"])
            arrays[name] = arr.astype(dtype.newbyteorder("="))
        model = _assemble(header, arrays)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"{path.name}: inconsistent model file ({exc})") from None
    model.model_id = digest.hex()
    model.check()
    return model


def _assemble(header: dict, arrays: dict[str, np.ndarray]) -> Model:
    def conv(prefix: str) -> Conv:
        return Conv(*(arrays[f"{prefix}.{p}"] for p in ("weight", "bias", "mult", "shift")))

    def net(name: str) -> Net:
        blocks = [
            (conv(f"{name}.b{i}.1"), conv(f"{name}.b{i}.2")) for i in range(header["blocks"][name])
        ]
        return Net(conv(f"{name}.in"), blocks, conv(f"{name}.out"))

    cfg = header["config"]
    levels, couplings = int(cfg["levels"]), int(cfg["couplings"])
    return Model(
        config=cfg,
        perms=[[arrays[f"l{i}.c{k}.perm"] for k in range(couplings)] for i in range(levels)],
        couplings=[[net(f"l{i}.c{k}") for k in range(couplings)] for i in range(levels)],
        priors=[net(f"l{i}.prior") for i in range(levels - 1)],
        tables={n[len("tables.") :]: a for n, a in arrays.items() if n.startswith("tables.")},
        test_vectors=header.get("test_vectors", {}),
        contexts=[
            net(f"l{i}.context")
            for i in range(levels - 1)
            if cfg.get("context", "none") == "checkerboard"
        ],
    )
