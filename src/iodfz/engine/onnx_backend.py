"""Each integer network as an int32-only ONNX graph, and the onnxruntime backend that runs it.

The graph spells out docs/INTEGER.md with integer ONNX ops and no float64 anywhere:

- each convolution is ``QuantizeLinear``/``DequantizeLinear`` with scale 1 around a float32
  ``Conv``, then ``Cast`` to int32: the pattern TensorRT runs as an INT8 convolution, whose
  int32 sum it converts to float32 — exact, as is onnxruntime's float32 sum of the same
  products, because every partial sum is below 2^24 (docs/INTEGER.md, "Overflow bounds").
  The bias is added afterwards, in int32;
- the requantization ``(acc·M + 2^(s-1)) >> s`` is int32 ``Mul``/``Add``/``Sub``/``Div`` by
  powers of two, every dividend non-negative (so truncating and flooring division agree), every
  intermediate proved below 2^31 for the model's own constants (:func:`requant_plan`);
- clamps are ``Max``/``Min`` (no ``Clip``), and there is no ``BitShift``.

The derivation is in docs/INTEGER.md, "Backends". Input ``x`` is int32 (B, H, W, C_in), the
latents as the flow stores them; output ``y`` int32 (B, H, W, C_out). Like every backend, the
onnxruntime backend must reproduce the model's test vectors before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from iodfz.engine.backends import IdentityCache
from iodfz.engine.model import Conv, Net
from iodfz.machine import available_cores

OPSET = 17
LOW_BITS = 12  # the accumulator is split into a high part and LOW_BITS low bits
OFFSET = 1 << 24  # added to the accumulator (|acc| < 2^24) so that it is positive
HEADROOM = 1 << 28  # makes the last dividend positive (see requant_plan)
INT32_MAX = (1 << 31) - 1
ZERO_SHIFT = 41  # from this shift on, every output is 0: |acc·M| < 2^40 ≤ 2^(s-1)


class GraphError(ValueError):
    """A network whose requantization cannot be proved to stay within int32."""


def requant_exact(acc: int, mult: int, shift: int) -> int:
    """docs/INTEGER.md's requant on Python integers (exact)."""
    return (acc * mult + (1 << shift >> 1)) >> shift


@dataclass
class RequantPlan:
    """Per-channel int32 constants of ``y = (((hi·M − C1)·E + (lo·M + R1) / D1) + O) / D − K``
    with ``a1 = acc + 2^24``, ``hi = a1 / 2^12``, ``lo = a1 − 2^12·hi``; and the range
    ``[acc_lo, acc_hi]`` (offset by 2^24) the accumulator may be clamped to first, or None."""

    mult: np.ndarray
    c1: np.ndarray
    e: np.ndarray
    r1: np.ndarray
    d1: np.ndarray
    o: np.ndarray
    d: np.ndarray
    k: np.ndarray
    acc_clamp: tuple[np.ndarray, np.ndarray] | None


def _acc_range(m: int, s: int, bound: int, out: tuple[int, int] | None) -> tuple[int, int]:
    """Accumulators beyond which a clamp to ``out`` hides any change (requant is monotone)."""
    if out is None or m == 0:
        return -bound, bound
    lo, hi = out
    r = 1 << s >> 1
    first_high = -(-(hi * (1 << s) - r) // m)  # smallest acc with requant ≥ hi
    last_low = -(-((lo + 1) * (1 << s) - r) // m) - 1  # largest acc with requant ≤ lo
    return max(-bound, last_low), min(bound, first_high)


def requant_plan(conv: Conv, out: tuple[int, int] | None) -> RequantPlan:
    """int32 constants for the requantization of ``conv``, and the proof that they fit.

    ``out`` is a range outside which the output may be clamped without changing the network
    (its own clamp, or the residual's), or None. With ``a1 = acc + 2^24`` in (0, 2^25):
    ``hi < 2^13``, ``lo < 2^12``, ``a1·M = hi·M·2^12 + lo·M`` and both products are < 2^29.

    - ``s ≥ 13``: ``u = hi·M + ⌊lo·M / 2^12⌋ = ⌊a1·M / 2^12⌋`` (< 2^29 + 2^16), and
      ``y = ⌊(u − 2^12·M + 2^(s−13)) / 2^(s−12)⌋``; adding ``2^28`` (a multiple of the divisor
      while ``s ≤ 40``) makes the dividend positive and keeps it below 2^31, and ``K =
      2^28 / 2^(s−12)`` is taken off after the division.
    - ``s ≤ 12``: ``y = (hi − 2^12)·M·2^(12−s) + ⌊(lo·M + 2^(s−1)) / 2^s⌋``; the first term is
      ⌊acc / 2^12⌋·M·2^(12−s), bounded by the accumulator's range — the conv's proved bound
      ``128·Σ|w| + |b|``, narrowed to where ``out`` still matters — and checked here.
    - ``M = 0`` or ``s ≥ 41``: ``y = 0``.
    """
    w = conv.weight.astype(np.int64)
    bounds = 128 * np.abs(w).sum(axis=(0, 1)) + np.abs(conv.bias.astype(np.int64))
    rows = []
    clamp_needed = False
    for c in range(w.shape[2]):
        m, s, bound = int(conv.mult[c]), int(conv.shift[c]), int(bounds[c])
        if m == 0 or s >= ZERO_SHIFT:
            rows.append((0, 0, 1, 0, 1 << LOW_BITS, 0, 1, 0, -bound, bound))
        elif s > LOW_BITS:
            d = 1 << (s - LOW_BITS)
            o = (1 << (s - LOW_BITS - 1)) - (m << LOW_BITS) + HEADROOM
            rows.append((m, 0, 1, 0, 1 << LOW_BITS, o, d, HEADROOM // d, -bound, bound))
        else:
            acc_lo, acc_hi = _acc_range(m, s, bound, out)
            clamp_needed |= (acc_lo, acc_hi) != (-bound, bound)
            e, r1 = 1 << (LOW_BITS - s), 1 << s >> 1
            high = max(abs(acc_lo >> LOW_BITS), abs(acc_hi >> LOW_BITS)) * m * e
            if high + ((4095 * m + r1) >> s) > INT32_MAX:
                raise GraphError(
                    f"requantization with M={m}, s={s} over |acc| ≤ {bound} exceeds int32"
                )
            rows.append((m, m << LOW_BITS, e, r1, 1 << s, 0, 1, 0, acc_lo, acc_hi))
    cols = [np.array(col, np.int64) for col in zip(*rows, strict=True)] if rows else []
    if not rows:
        cols = [np.zeros(0, np.int64)] * 10
    acc_clamp = (cols[8] + OFFSET, cols[9] + OFFSET) if clamp_needed else None
    return RequantPlan(*(c.astype(np.int32) for c in cols[:8]), acc_clamp=acc_clamp)


def _channel_const(values: np.ndarray) -> np.ndarray:
    """A per-channel int32 constant, as a scalar when every channel has the same value."""
    if values.size and np.all(values == values[0]):
        return np.array(values[0], np.int32)
    return values.astype(np.int32).reshape(1, -1, 1, 1)


def _trivial(values: np.ndarray, neutral: int) -> bool:
    return bool(np.all(values == neutral))


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
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: object) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def clamp(self, x: str, lo: int | None, hi: int | None) -> str:
        if lo is not None:
            x = self.op("Max", x, self.const(np.array(lo, np.int32)))
        if hi is not None:
            x = self.op("Min", x, self.const(np.array(hi, np.int32)))
        return x

    def _elementwise(self, op: str, x: str, values: np.ndarray, neutral: int) -> str:
        if _trivial(values, neutral):
            return x
        return self.op(op, x, self.const(_channel_const(values)))

    def requant(self, a1: str, plan: RequantPlan) -> str:
        """int32 ``a1 = acc + 2^24`` → requant(acc, M, s) as int32 (:func:`requant_plan`)."""
        if plan.acc_clamp is not None:
            a1 = self.op("Max", a1, self.const(_channel_const(plan.acc_clamp[0])))
            a1 = self.op("Min", a1, self.const(_channel_const(plan.acc_clamp[1])))
        unit = self.const(np.array(1 << LOW_BITS, np.int32))
        hi = self.op("Div", a1, unit)
        lo = self.op("Sub", a1, self.op("Mul", hi, unit))
        mult = self.const(_channel_const(plan.mult))
        t = self.op("Mul", hi, mult)
        t = self._elementwise("Sub", t, plan.c1, 0)
        t = self._elementwise("Mul", t, plan.e, 1)
        q = self.op("Mul", lo, mult)
        q = self._elementwise("Add", q, plan.r1, 0)
        q = self._elementwise("Div", q, plan.d1, 1)
        t = self.op("Add", t, q)
        t = self._elementwise("Add", t, plan.o, 0)
        t = self._elementwise("Div", t, plan.d, 1)
        return self._elementwise("Sub", t, plan.k, 0)

    def conv_sum(self, x: str, conv: Conv) -> str:
        """int32 NCHW activations in [-128, 127] → int32 ``conv(x) + b + 2^24``."""
        weight = np.ascontiguousarray(conv.weight.reshape(3, 3, *conv.weight.shape[1:]))
        one = self.const(np.array(1.0, np.float32))
        zero = self.const(np.array(0, np.int8))
        x = self.op("Cast", x, to=TensorProto.FLOAT)
        x = self.op("DequantizeLinear", self.op("QuantizeLinear", x, one, zero), one, zero)
        w = self.op("DequantizeLinear", self.const(weight.transpose(3, 2, 0, 1), "w"), one, zero)
        acc = self.op("Conv", x, w, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        acc = self.op("Cast", acc, to=TensorProto.INT32)
        bias = conv.bias.astype(np.int64) + OFFSET
        return self.op("Add", acc, self.const(_channel_const(bias)))

    def conv_requant(
        self,
        x: str,
        conv: Conv,
        clamp: tuple[int, int] | None,
        out: tuple[int, int] | None = None,
    ) -> str:
        """requant(conv(x) + b), clamped to ``clamp``; ``out`` (default: ``clamp``) is the
        range the caller is blind beyond."""
        plan = requant_plan(conv, out or clamp)
        y = self.requant(self.conv_sum(x, conv), plan)
        return y if clamp is None else self.clamp(y, *clamp)


def _constant_output(conv: Conv) -> np.ndarray:
    """requant(b) per channel: a conv with no input channels (all gated off) adds only this."""
    parts = zip(conv.bias, conv.mult, conv.shift, strict=True)
    values = [requant_exact(int(b), int(m), int(s)) for b, m, s in parts]
    return np.array(values, np.int32).reshape(1, -1, 1, 1)


def net_to_onnx(net: Net) -> onnx.ModelProto:
    """The network as an int32-only ONNX model (module docstring); raises GraphError when a
    requantization cannot be proved to fit int32."""
    g = _Graph()
    s = g.clamp(g.op("Transpose", "x", perm=[0, 3, 1, 2]), -128, 127)
    s = g.conv_requant(s, net.conv_in, (0, 127))
    for c1, c2 in net.blocks:
        if c1.weight.shape[2] == 0:  # every hidden channel gated off: r = requant(b2)
            r = g.const(_constant_output(c2))
        else:
            h = g.conv_requant(s, c1, (0, 127))
            # s ∈ [-128, 127], so s + r is clamped to the same value once |r| > 255
            r = g.conv_requant(h, c2, None, out=(-255, 255))
        s = g.clamp(g.op("Add", s, r), -128, 127)
    s = g.clamp(s, 0, None)
    y = g.conv_requant(s, net.conv_out, None)
    g.nodes.append(helper.make_node("Transpose", [y], ["y"], perm=[0, 2, 3, 1]))
    c_in, c_out = net.conv_in.weight.shape[1], net.conv_out.weight.shape[2]
    graph = helper.make_graph(
        g.nodes,
        "iodfz_net",
        [helper.make_tensor_value_info("x", TensorProto.INT32, ["B", "H", "W", c_in])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, ["B", "H", "W", c_out])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def latents_to_int32(a: np.ndarray) -> np.ndarray:
    """int64 latents → the graph's int32 input (clamped to int8 range first, as the network
    does: latents beyond int32 cannot reach it)."""
    return np.clip(a, -128, 127).astype(np.int32)


class OnnxBackend:
    """Runs each network's int32-only graph with onnxruntime: the CPU provider, or with
    ``cuda=True`` the CUDA provider (TF32 off) for the nodes it has kernels for."""

    def __init__(self, threads: int = 0, cuda: bool = False) -> None:
        import onnxruntime  # here: building graphs (TensorRT) needs only onnx

        self._ort = onnxruntime
        self.options = onnxruntime.SessionOptions()
        self.options.intra_op_num_threads = threads or available_cores()
        self.name = "onnxruntime-cuda" if cuda else "onnxruntime"
        cpu = "CPUExecutionProvider"
        self.providers = [("CUDAExecutionProvider", {"use_tf32": "0"}), cpu] if cuda else [cpu]
        self._sessions: IdentityCache[Net, Any] = IdentityCache()

    def _session(self, net: Net) -> Any:
        return self._sessions.get(
            net,
            lambda n: self._ort.InferenceSession(
                net_to_onnx(n).SerializeToString(), self.options, providers=self.providers
            ),
        )

    def run_net(self, net: Net, a: np.ndarray) -> np.ndarray:
        (y,) = self._session(net).run(["y"], {"x": latents_to_int32(a)})
        return y.astype(np.int64)
