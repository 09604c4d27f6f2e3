"""The int32-only ONNX graphs: no float64, exact requantization, bit-exact networks."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from iodfz import zoo  # noqa: E402
from iodfz.engine import flow  # noqa: E402
from iodfz.engine.backends import IdentityCache, check_test_vectors  # noqa: E402
from iodfz.engine.model import Conv  # noqa: E402
from iodfz.engine.onnx_backend import (  # noqa: E402
    OFFSET,
    OPSET,
    GraphError,
    OnnxBackend,
    _Graph,
    latents_to_int32,
    net_to_onnx,
    requant_exact,
    requant_plan,
)
from iodfz.engine.reference import NumpyBackend  # noqa: E402
from iodfz.flow.data import SHARED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CPU = "CPUExecutionProvider"
# ops TensorRT's ONNX parser takes on int32 (and the Q/DQ convolution pattern)
ALLOWED_OPS = {
    "Transpose", "Max", "Min", "Add", "Sub", "Mul", "Div", "Cast",
    "QuantizeLinear", "DequantizeLinear", "Conv",
}  # fmt: skip


SHIPPED = [zoo.load_by_id(card["model_id"]) for card in zoo.cards()]


def models() -> list:
    if not SHIPPED:
        pytest.skip("no shipped model installed")
    return SHIPPED


def tensor_types(model: onnx.ModelProto) -> set[int]:
    """Element types of every tensor in the graph: inputs, outputs, initializers, every
    intermediate value (after shape inference) and every Cast target."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    values = [*inferred.input, *inferred.output, *inferred.value_info]
    types = {v.type.tensor_type.elem_type for v in values}
    types |= {init.data_type for init in inferred.initializer}
    for node in inferred.node:
        types |= {a.i for a in node.attribute if node.op_type == "Cast" and a.name == "to"}
    return types


def test_export_script_writes_int32_graphs_without_float64(tmp_path: Path) -> None:
    model = models()[0]
    name = next(c["name"] for c in zoo.cards() if c["model_id"] == model.model_id)
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export_onnx.py"), "--model", name, "--out",
         str(tmp_path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    files = sorted((tmp_path / name).glob("*.onnx"))
    assert len(files) == len(model.nets())
    reference = NumpyBackend(threads=1)
    widest = max(net.conv_in.weight.shape[1] for _, net in model.nets())
    x = np.random.default_rng(5).integers(-200, 200, (2, 8, 12, widest))
    for path in files:
        graph = onnx.load(path)
        types = tensor_types(graph)
        assert TensorProto.DOUBLE not in types, path.name
        assert types <= {TensorProto.INT32, TensorProto.INT8, TensorProto.FLOAT}, path.name
        assert {n.op_type for n in graph.graph.node} <= ALLOWED_OPS, path.name
        net = dict(model.nets())[path.stem]
        session = ort.InferenceSession(
            graph.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        a = x[..., : net.conv_in.weight.shape[1]]
        (y,) = session.run(["y"], {"x": latents_to_int32(a)})
        assert y.dtype == np.int32
        np.testing.assert_array_equal(y, reference.run_net(net, a))


def single_channel_conv(mult: int, shift: int, bound: int) -> Conv:
    """A conv whose accumulator bound 128·Σ|w| + |b| is ``bound`` (≥ 128·127)."""
    weight = np.zeros((9, 1, 1), np.int8)
    weight[4, 0, 0] = 127
    bias = np.array([bound - 128 * 127], np.int32)
    return Conv(weight, bias, np.array([mult]), np.array([shift]))


def run_requant(conv: Conv, acc: np.ndarray, out: tuple[int, int] | None) -> np.ndarray:
    """The graph's requantization (then the clamp to ``out``) on accumulators ``acc``."""
    g = _Graph()
    y = g.requant("a1", requant_plan(conv, out))
    if out is not None:
        y = g.clamp(y, *out)
    g.nodes.append(helper.make_node("Identity", [y], ["y"]))
    graph = helper.make_graph(
        g.nodes,
        "requant",
        [helper.make_tensor_value_info("a1", TensorProto.INT32, ["N", 1, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["N", 1, 1, 1])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    session = ort.InferenceSession(model.SerializeToString(), providers=[CPU])
    a1 = (acc.astype(np.int64) + OFFSET).astype(np.int32).reshape(-1, 1, 1, 1)
    return session.run(["y"], {"a1": a1})[0].ravel()


def accumulators(bound: int, mult: int, shift: int, seed: int) -> np.ndarray:
    """Random accumulators in [-bound, bound], the ends, and values next to rounding ties."""
    rng = np.random.default_rng(seed)
    picks = [rng.integers(-bound, bound + 1, 3000), np.array([-bound, -1, 0, 1, bound])]
    if mult and shift:
        ties = (np.arange(-40, 41) * (1 << shift) + (1 << (shift - 1))) // mult
        picks.append(np.concatenate([ties - 1, ties, ties + 1]))
    acc = np.concatenate(picks)
    return acc[(acc >= -bound) & (acc <= bound)]


CASES = [  # (M, s, accumulator bound, clamp range or None)
    (1 << 15, 20, (1 << 24) - 1, (0, 127)),
    ((1 << 16) - 1, 28, (1 << 24) - 1, None),
    (40961, 13, (1 << 24) - 1, None),
    (50000, 40, (1 << 24) - 1, None),
    (60000, 41, (1 << 24) - 1, None),
    (33333, 62, (1 << 24) - 1, (-255, 255)),
    (0, 5, 1 << 20, None),
    (45678, 12, (1 << 24) - 1, None),
    ((1 << 16) - 1, 7, 1 << 20, None),
    ((1 << 16) - 1, 1, (1 << 24) - 1, (0, 127)),
    (1 << 15, 0, (1 << 24) - 1, (-255, 255)),
    (1 << 15, 0, 60000, None),
]


@pytest.mark.parametrize(("mult", "shift", "bound", "out"), CASES)
def test_int32_requantization_is_exact(mult: int, shift: int, bound: int, out) -> None:
    conv = single_channel_conv(mult, shift, bound)
    acc = accumulators(bound, mult, shift, seed=shift)
    expected = np.array([requant_exact(int(a), mult, shift) for a in acc])
    if out is not None:
        expected = np.clip(expected, *out)
    np.testing.assert_array_equal(run_requant(conv, acc, out), expected)


def test_a_requantization_that_cannot_fit_int32_is_refused() -> None:
    # s = 0: y = acc·M, up to 2^24 · 2^16 — only a clamp would make it provable
    with pytest.raises(GraphError, match="exceeds int32"):
        requant_plan(single_channel_conv(1 << 15, 0, (1 << 24) - 1), None)


@pytest.mark.parametrize("model", SHIPPED, ids=lambda m: m.model_id[:8])
def test_onnxruntime_runs_the_int32_graphs_on_the_test_vectors(model) -> None:
    assert check_test_vectors(model, OnnxBackend()) == []


@pytest.mark.data
def test_int32_graphs_are_bit_exact_on_kodak_tiles() -> None:
    folder = SHARED / "kodak"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    from PIL import Image

    tiles = []
    for path in sorted(folder.glob("*.png"))[:3]:
        image = np.asarray(Image.open(path).convert("RGB"))
        tiles += [image[:256, :256], image[-256:, -256:]]
    x = np.stack(tiles)
    for model in models():
        expected = flow.latent_hashes(*flow.forward(model, NumpyBackend(), x))
        assert flow.latent_hashes(*flow.forward(model, OnnxBackend(), x)) == expected


def test_sessions_are_kept_per_network_object_and_die_with_it() -> None:
    model = models()[0]
    backend = OnnxBackend(threads=1)
    net = model.couplings[0][0]
    x = np.zeros((1, 4, 4, net.conv_in.weight.shape[1]), np.int64)
    backend.run_net(net, x)
    backend.run_net(net, x)
    assert len(backend._sessions) == 1
    copy = type(net)(net.conv_in, net.blocks, net.conv_out)
    backend.run_net(copy, x)
    assert len(backend._sessions) == 2
    del copy
    gc.collect()
    assert len(backend._sessions) == 1


def test_identity_cache_never_hands_a_dead_objects_value_to_a_new_one() -> None:
    class Thing:
        pass

    cache: IdentityCache[Thing, int] = IdentityCache()
    made = []

    def make(obj: Thing) -> int:
        made.append(obj)
        return len(made)

    first = Thing()
    assert cache.get(first, make) == 1
    assert cache.get(first, make) == 1
    made.clear()
    del first
    gc.collect()
    assert len(cache) == 0
    for _ in range(50):  # new objects, some at a dead one's address: each gets its own value
        obj = Thing()
        assert cache.get(obj, make) == len(made)
        assert made[-1] is obj


def test_graph_input_is_clamped_like_the_network() -> None:
    net = models()[0].couplings[0][0]
    big = np.full((1, 4, 4, net.conv_in.weight.shape[1]), 10**12, np.int64)
    expected = NumpyBackend(threads=1).run_net(net, big)
    np.testing.assert_array_equal(OnnxBackend(threads=1).run_net(net, big), expected)
    assert net_to_onnx(net).graph.input[0].type.tensor_type.elem_type == TensorProto.INT32
