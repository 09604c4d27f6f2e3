"""An ONNX graph of each integer network, and an onnxruntime backend that runs it.

The graph spells out docs/INTEGER.md with standard ONNX ops: ``Conv`` in float32 on values that
are integers (exact by the 2^24 bound, whatever the summation order, as long as the
convolution is a plain sum of products: no Winograd, no TF32), then the requantization
``floor((acc + b) · M·2^-s + 1/2)`` in float64 (``Cast``, ``Mul``, ``Add``, ``Floor``), then the
clamps (``Clip``). It is the graph a TensorRT engine would be built from; here it runs on
onnxruntime's CPU provider, and like every backend it must reproduce the model's test vectors
before it is used. Activations are NCHW inside the graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from iodfz.engine.model import Conv, Net
from iodfz.engine.reference import available_cores

OPSET = 17


class _Graph:
    """Accumulates nodes and constant initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}{self._count}"

    def const(self, value: np.ndarray, stem: str = "c") -> str:
        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: object) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def clip(self, x: str, lo: float | None, hi: float | None, dtype: type) -> str:
        low = self.const(np.array(lo, dtype)) if lo is not None else ""
        high = self.const(np.array(hi, dtype)) if hi is not None else ""
        return self.op("Clip", x, low, high)

    def conv_requant(
        self, x: str, conv: Conv, lo: float | None, hi: float | None, to: int = TensorProto.FLOAT
    ) -> str:
        """float32 NCHW integers → requantized, clamped integers as ``to`` (float32 is exact for
        int8-clamped values and for a residual that only meets a clamp; the network output,
        unbounded, stays float64 as in the reference)."""
        weight = conv.weight.astype(np.float32).reshape(3, 3, *conv.weight.shape[1:])
        acc = self.op(
            "Conv",
            x,
            self.const(np.ascontiguousarray(weight.transpose(3, 2, 0, 1)), "w"),
            self.const(conv.bias.astype(np.float32), "b"),
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        )
        y = self.op("Cast", acc, to=TensorProto.DOUBLE)
        y = self.op("Mul", y, self.const(conv.scale.reshape(1, -1, 1, 1), "scale"))
        y = self.op("Floor", self.op("Add", y, self.const(np.array(0.5))))
        if lo is not None or hi is not None:
            y = self.clip(y, lo, hi, np.float64)
        return self.op("Cast", y, to=to)


def net_to_onnx(net: Net) -> onnx.ModelProto:
    """The network as an ONNX model: input ``x`` float32 (B, C_in, H, W) holding integer
    latents, output ``y`` float64 (B, C_out, H, W) holding the integer network output."""
    g = _Graph()
    s = g.clip("x", -128.0, 127.0, np.float32)
    s = g.conv_requant(s, net.conv_in, 0, 127)
    for c1, c2 in net.blocks:
        h = g.conv_requant(s, c1, 0, 127)
        r = g.conv_requant(h, c2, None, None)
        s = g.clip(g.op("Add", r, s), -128.0, 127.0, np.float32)
    s = g.clip(s, 0.0, None, np.float32)
    y = g.conv_requant(s, net.conv_out, None, None, to=TensorProto.DOUBLE)
    g.nodes.append(helper.make_node("Identity", [y], ["y"]))
    c_in, c_out = net.conv_in.weight.shape[1], net.conv_out.weight.shape[2]
    graph = helper.make_graph(
        g.nodes,
        "iodfz_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", c_in, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["B", c_out, "H", "W"])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


class OnnxBackend:
    """Runs each network's ONNX graph with onnxruntime (CPU provider)."""

    name = "onnxruntime"

    def __init__(self, threads: int = 0) -> None:
        self.options = onnxruntime.SessionOptions()
        self.options.intra_op_num_threads = threads or available_cores()
        self._sessions: dict[int, onnxruntime.InferenceSession] = {}

    def _session(self, net: Net) -> onnxruntime.InferenceSession:
        key = id(net)
        if key not in self._sessions:
            self._sessions[key] = onnxruntime.InferenceSession(
                net_to_onnx(net).SerializeToString(),
                self.options,
                providers=["CPUExecutionProvider"],
            )
        return self._sessions[key]

    def run_net(self, net: Net, a: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.clip(a, -128, 127).astype(np.float32).transpose(0, 3, 1, 2))
        (y,) = self._session(net).run(["y"], {"x": x})
        return y.transpose(0, 2, 3, 1).astype(np.int64)
