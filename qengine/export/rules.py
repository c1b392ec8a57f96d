"""Raising rules for ONNX export: qengine's integer ops back to ONNX node units.

`raise_graph(g, fmt, opset)` turns a lowered graph (qengine/ops/integer.py, ops/dynamic.py) into
a Graph of standard ONNX (and com.microsoft) nodes, which qengine/export/onnx.py writes as a
protobuf. It is the inverse of lowering: each integer op becomes its node unit, in NCHW.

Formats. "qdq": every uint8 tensor is the output of a QuantizeLinear and every op reads
DequantizeLinear outputs (one DQ per reader, a clean node unit for ORT / OpenVINO / the
lowering). "qoperator": QLinearConv, QLinearMatMul, QuantizeLinear/DequantizeLinear and the
com.microsoft QLinearAdd/Mul/Concat/GlobalAveragePool/AveragePool/Sigmoid/LeakyRelu and QGemm;
units with no QOperator form (see `_QOp` docstrings) are written as QDQ units.

Numbers. Weights stay int8 with their scales (per tensor when all are equal); a float bias
becomes int32 exactly as the kernels quantize it (qengine/quantized/params.py `bias_q`) with
scale float32(s_x·s_w). A fused Relu/Clip becomes a Relu/Clip node before the output
QuantizeLinear: clamp(q(r), q(lo), q(hi)) = q(clip(r, lo, hi)) because quantization is monotonic.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import ModelError, QuantizationWarning
from .layout import DYNAMIC_OPS, INTEGER_OPS, PASS_OPS, fail, ranks, infer_layouts
from .nodes import (Emitter, activation_nodes, clamp_is_noop, clip_node, float_node,
                           lut_nodes)
from ..graph.ir import Graph, Node
from ..quantized import params as P
from ..quantized.weights import unpack_int4

#: com.microsoft ops the qoperator format writes
MS_OPS = frozenset({"QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearGlobalAveragePool",
                    "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QGemm"})
_NHWC_AXIS_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}

class _Raiser:
    """One pass over the lowered graph; `_<op>` methods are the rules, one per integer op."""

    def __init__(self, g: Graph, fmt: str, opset: int):
        self.g, self.fmt, self.opset = g, fmt, opset
        self.o = Emitter(g)
        self.layout, self.changes = infer_layouts(g)
        self.rank = ranks(g)
        self.alias: dict[str, str] = {}           # uint8 value -> its exported tensor
        self.qp: dict[str, tuple] = {}            # exported uint8 tensor -> (scale, zp)

    # ---- uint8 tensors ----------------------------------------------------------------
    def t(self, v: str) -> str:
        return self.alias.get(v, v)

    def define(self, v: str, qp) -> str:
        """Name the exported tensor of uint8 value v (layout suffixes go: it is NCHW now)."""
        name = v
        if v.endswith(".u8_nhwc") and v[:-5] not in self.o.used:
            name = v[:-5]
            self.o.used.add(name)
        self.alias[v] = name
        self.qp[name] = (float(qp[0]), int(qp[1]))
        return name

    def dq(self, v: str, s=None, z=None) -> str:
        """A DequantizeLinear of uint8 value v for one reader, at the reader's qparams (those
        the integer op interprets the bytes with)."""
        t = self.t(v)
        s, z = (s, z) if s is not None else self.qp[t]
        return self.o.op("DequantizeLinear", [t, self.o.const(s, np.float32),
                                              self.o.const(z, np.uint8)], f"{t}.dq")

    def q(self, f: str, out: str, s, z) -> None:
        self.o.node("QuantizeLinear", [f, self.o.const(s, np.float32), self.o.const(z, np.uint8)],
                    [self.define(out, (s, z))])

    def sz(self, s, z):
        """(scale, zero point) initializers of a QOperator input."""
        return [self.o.const(s, np.float32), self.o.const(z, np.uint8)]

    # ---- weights --------------------------------------------------------------------------
    def weight(self, w_name: str, s_name: str, base: str, qop=False):
        """int8 weights and their scale/zero point initializers: (W, scale, zp, axis or None).
        One scale when all channels share it (per tensor), else per output channel."""
        w = self.g.initializers.get(w_name)
        s = self.g.initializers.get(s_name)
        if w is None or s is None or w.dtype != np.int8:
            raise ModelError(f"{base}: weights {w_name!r} / scales {s_name!r} must be int8 and "
                             f"float initializers")
        s = np.asarray(s, np.float32).reshape(-1)
        per_tensor = bool(np.all(s == s[0]))
        # the graph's own int8 weights and per-channel scales, under their names
        scale = self.o.init(f"{base}.W_scale", s[:1].reshape(())) if per_tensor else s_name
        return w_name, scale, self.o.const(np.zeros(1 if per_tensor else s.shape, np.int8)
                                           .reshape(() if per_tensor else s.shape), np.int8), \
            None if per_tensor else 0

    def bias_int32(self, n: Node, bi: int, x_scale, base: str):
        """(int32 bias, its scale float32(s_x·s_w)) as the kernels compute them, or None."""
        if len(n.inputs) <= bi or not n.inputs[bi]:
            return None
        ws = np.asarray(self.g.initializers[n.inputs[bi - 1]], np.float32).reshape(-1)
        b = self.g.initializers.get(n.inputs[bi])
        if b is None:
            fail(n, "its bias is not an initializer")
        bq = P.bias_q(np.asarray(b).reshape(-1), np.float32(x_scale), ws)
        return bq, (np.float32(x_scale) * ws).astype(np.float32)

    def dq_weight(self, n, wi, base, x_scale, bias_at=None, axis=0, swap=False):
        """DQ(int8 W) and DQ(int32 bias) for a QDQ unit: (W float name, bias float name or "").
        swap: W's first two axes swapped back (ConvTranspose's [Cin, Cout, ...])."""
        W, s, z, ax = self.weight(n.inputs[wi], n.inputs[wi + 1], base)
        if swap:
            W = self.o.init(f"{base}.W_int8_IOHW",
                            np.ascontiguousarray(np.swapaxes(self.g.initializers[W], 0, 1)))
        # axis is written even per tensor, where ONNX ignores it: a reader that checks it
        # against the rank anyway (as the default 1 would fail on a 1-D bias) reads it fine
        wf = self.o.op("DequantizeLinear", [W, s, z], f"{base}.W", axis=axis)
        b = self.bias_int32(n, wi + 2, x_scale, base)
        if b is None:
            return wf, ""
        bq, bs = b
        per = not np.all(bs == bs[0])
        bf = self.o.op("DequantizeLinear",
                       [self.o.init(f"{base}.B_int32", bq),
                        self.o.init(f"{base}.B_scale", bs if per else bs[:1].reshape(())),
                        self.o.init(f"{base}.B_zero_point",
                                    np.zeros(bs.shape if per else (), np.int32))],
                       f"{base}.B", axis=0)
        return wf, bf

    # ---- the walk ---------------------------------------------------------------------------
    def run(self) -> Graph:
        for n in self.g.nodes:
            rule = getattr(self, "_" + n.op_type, None)
            if n.op_type in PASS_OPS and n.inputs[0] in self.layout:
                self._pass(n)
            elif rule is not None and (n.op_type in INTEGER_OPS or n.op_type in DYNAMIC_OPS):
                rule(n)
            else:
                float_node(self.o, n, self.opset)
        g = self.g
        for m in self.o.nodes:         # the graph's own constants the written nodes read
            for v in m.inputs:
                if v in g.initializers and v not in self.o.inits:
                    self.o.inits[v] = g.initializers[v]
        out = Graph(list(g.inputs), list(g.outputs), self.o.nodes, self.o.inits,
                    {"": self.opset, **({"com.microsoft": 1} if any(
                        m.op_type in MS_OPS for m in self.o.nodes) else {})}, g.name)
        for v in g.outputs:
            if v.name in self.layout:
                fail(next(n for n in g.nodes if v.name in n.outputs),
                      "it writes a uint8 graph output (export the graph's float form)")
        return out

    def _QuantizeU8(self, n):
        a = n.attrs
        self.q(n.inputs[0], n.outputs[0], a["scale"], a["zero_point"])

    def _DequantizeU8(self, n):
        a = n.attrs
        self.o.retarget(self.dq(n.inputs[0], a["scale"], a["zero_point"]), n.outputs[0])

    def _pass(self, n):
        """Reshape / Flatten / Squeeze / Unsqueeze / Gather / Slice / Pad / nearest Resize /
        GlobalMaxPool / the model's Transpose on uint8: the input's bytes and qparams; a layout-change Transpose
        disappears."""
        x = self.t(n.inputs[0])
        if n.name in self.changes:
            self.alias[n.outputs[0]] = x
            return
        if self.layout[n.inputs[0]] == "nhwc":
            fail(n, "it reshapes an NHWC uint8 value (the lowering never makes this)")
        if self.fmt == "qoperator":
            op, ins, attrs = n.op_type, [x, *n.inputs[1:]], dict(n.attrs)
            if op == "GlobalMaxPool":   # ONNX's is float-only; ReduceMax takes uint8
                axes = list(range(2, self.rank.get(n.inputs[0]) or 4))
                op, attrs = "ReduceMax", {"keepdims": 1}
                if self.opset >= 18:
                    ins.append(self.o.const(axes, np.int64))
                else:
                    attrs["axes"] = axes
            self.o.node(op, ins, [self.define(n.outputs[0], self.qp[x])], name=n.name, **attrs)
            return
        rest = list(n.inputs[1:])
        if n.op_type == "Pad" and len(rest) > 1 and rest[1]:    # the fill code, as a float
            s, z = self.qp[x]
            code = self.g.initializers[rest[1]]
            rest[1] = self.o.const(np.float32(s) * (np.float32(code) - np.float32(z)),
                                   np.float32)
        y = self.o.op(n.op_type, [self.dq(n.inputs[0]), *rest], f"{n.name}.out", n.name,
                      **n.attrs)
        self.q(y, n.outputs[0], *self.qp[x])

    def _window(self, a: dict, conv: bool) -> dict:
        w = {k: list(a[k]) for k in ("kernel_shape", "strides", "dilations")
             if a.get(k) is not None}
        auto = a.get("auto_pad", "NOTSET")
        if auto != "NOTSET":
            w["auto_pad"] = auto           # (ONNX forbids pads next to a SAME / VALID)
        elif a.get("pads") is not None:
            w["pads"] = list(a["pads"])
        if conv:
            w["group"] = int(a.get("group", 1))
        return w

    def _conv_unit(self, n, wi, out, prefix):
        """The conv of a QConv / QConvAdd (weights at input wi) writing uint8 `out` at the
        `prefix`scale / zero point attributes, with the `prefix`activation clamp."""
        a = n.attrs
        ys, yz = a[f"{prefix}scale"], a[f"{prefix}zero_point"]
        act = "" if prefix == "y_" else "conv_"
        if self.fmt == "qoperator" and clamp_is_noop(a, act, ys, yz):
            W, s, z, _ = self.weight(n.inputs[wi], n.inputs[wi + 1], n.name)
            b = self.bias_int32(n, wi + 2, a["x_scale"], n.name)
            ins = [self.t(n.inputs[0]), *self.sz(a["x_scale"], a["x_zero_point"]), W, s, z,
                   *self.sz(ys, yz)]
            if b is not None:
                ins.append(self.o.init(f"{n.name}.B_int32", b[0]))
            self.o.node("QLinearConv", ins, [self.define(out, (ys, yz))],
                        name=n.name, **self._window(a, True))
            return
        wf, bf = self.dq_weight(n, wi, n.name, a["x_scale"])
        y = self.o.op("Conv", [self.dq(n.inputs[0], a["x_scale"], a["x_zero_point"]), wf, bf],
                      f"{n.name}.out", n.name, **self._window(a, True))
        self.q(activation_nodes(self.o, y, a, act, n.name), out, ys, yz)

    def _QConv(self, n):
        if n.attrs.get("channel_scales"):
            fail(n, "its activations have per-channel scales folded into its weight scales "
                    "(an NNCF file's depthwise input); writing them back is not supported yet")
        self._conv_unit(n, 1, n.outputs[0], "y_")

    def _QConvTranspose(self, n):
        """A QDQ ConvTranspose unit in both formats (ONNX has no QLinearConvTranspose): the
        weights back in ONNX's [Cin, Cout, kh, kw], per output channel on axis 1."""
        a = n.attrs
        wf, bf = self.dq_weight(n, 1, n.name, a["x_scale"], axis=1, swap=True)
        ins = [self.dq(n.inputs[0], a["x_scale"], a["x_zero_point"]), wf, *([bf] if bf else [])]
        attrs = {k: list(a[k]) for k in ("kernel_shape", "strides", "pads", "dilations",
                                          "output_padding") if a.get(k) is not None}
        y = self.o.op("ConvTranspose", ins, f"{n.name}.out", n.name, **attrs)
        self.q(activation_nodes(self.o, y, a, "", n.name), n.outputs[0], a["y_scale"],
               a["y_zero_point"])

    def _QConvAdd(self, n):
        """Conv → Q (at the conv's own qparams) → DQ → Add with the skip → [clamp] → Q."""
        a = n.attrs
        if a.get("channel_scales"):
            fail(n, "its input has per-channel scales folded into its weight scales (an NNCF "
                    "file's depthwise input); writing them back is not supported yet")
        conv_out = self.o.name(f"{n.name}.conv.u8")
        self._conv_unit(n, 2, conv_out, "conv_")
        self._binary(n.replace(inputs=(conv_out, n.inputs[1])), "Add",
                     (a["conv_scale"], a["conv_zero_point"]),
                     (a["skip_scale"], a["skip_zero_point"]), name=f"{n.name}.add")

    def _QGemm(self, n):
        a = n.attrs
        rank2 = self.rank.get(n.inputs[0]) == 2
        has_b = len(n.inputs) > 3 and bool(n.inputs[3])
        if self.fmt == "qoperator" and clamp_is_noop(a, "", a["y_scale"], a["y_zero_point"]) \
                and (rank2 or not has_b):
            ins = [self.t(n.inputs[0]), *self.sz(a["x_scale"], a["x_zero_point"])]
            if rank2:   # com.microsoft QGemm: y = x·Wᵀ + C with int32 C at s_x·s_w
                W, s, z, _ = self.weight(n.inputs[1], n.inputs[2], n.name)
                b = self.bias_int32(n, 3, a["x_scale"], n.name)
                ins += [W, s, z, "" if b is None else self.o.init(f"{n.name}.B_int32", b[0]),
                        *self.sz(a["y_scale"], a["y_zero_point"])]
                self.o.node("QGemm", ins, [self.define(n.outputs[0], (a["y_scale"],
                                                                       a["y_zero_point"]))],
                            name=n.name, transB=1)
                return
            W, s, z, _ = self.weight(n.inputs[1], n.inputs[2], n.name)
            wt = self.o.init(f"{n.name}.W_int8_KN", self.g.initializers[W].T)
            ins += [wt, s, z, *self.sz(a["y_scale"], a["y_zero_point"])]
            self.o.node("QLinearMatMul", ins, [self.define(n.outputs[0], (a["y_scale"],
                                                                           a["y_zero_point"]))],
                        name=n.name)
            return
        x = self.dq(n.inputs[0], a["x_scale"], a["x_zero_point"])
        if rank2:
            wf, bf = self.dq_weight(n, 1, n.name, a["x_scale"])
            y = self.o.op("Gemm", [x, wf, bf] if bf else [x, wf], f"{n.name}.out", n.name,
                          transB=1)
        else:        # x [..., K]: MatMul with Wᵀ [K, N] (per channel on axis 1), then + B
            W, s, z, ax = self.weight(n.inputs[1], n.inputs[2], n.name)
            wt = self.o.init(f"{n.name}.W_int8_KN", self.g.initializers[W].T)
            wf = self.o.op("DequantizeLinear", [wt, s, z], f"{n.name}.W", axis=1)
            y = self.o.op("MatMul", [x, wf], f"{n.name}.out", n.name)
            if has_b:
                _, bf = self.dq_weight(n, 1, n.name + ".bias", a["x_scale"])
                y = self.o.op("Add", [y, bf], f"{n.name}.out")
        self.q(activation_nodes(self.o, y, a, "", n.name), n.outputs[0], a["y_scale"],
               a["y_zero_point"])

    def _QGemmDequant(self, n):
        """u8 in, float out (qengine/ops/integer.py): DQ → Gemm (or MatMul + Add) → the float
        output, no Q (the unit NNCF writes for a model's last layer)."""
        a = n.attrs
        x = self.dq(n.inputs[0], a["x_scale"], a["x_zero_point"])
        if self.rank.get(n.inputs[0]) == 2:
            wf, bf = self.dq_weight(n, 1, n.name, a["x_scale"])
            y = self.o.op("Gemm", [x, wf, bf] if bf else [x, wf], f"{n.name}.out", n.name,
                          transB=1)
        else:
            W, s, z, _ = self.weight(n.inputs[1], n.inputs[2], n.name)
            wt = self.o.init(f"{n.name}.W_int8_KN", self.g.initializers[W].T)
            wf = self.o.op("DequantizeLinear", [wt, s, z], f"{n.name}.W", axis=1)
            y = self.o.op("MatMul", [x, wf], f"{n.name}.out", n.name)
            if len(n.inputs) > 3 and n.inputs[3]:
                _, bf = self.dq_weight(n, 1, n.name + ".bias", a["x_scale"])
                y = self.o.op("Add", [y, bf], f"{n.name}.out")
        self.o.retarget(y, n.outputs[0])

    def _QMaxPool(self, n):
        x = self.t(n.inputs[0])
        attrs = {**self._window(n.attrs, False), "ceil_mode": int(n.attrs.get("ceil_mode", 0))}
        if self.fmt == "qoperator":      # MaxPool runs on uint8 itself (opset 12+)
            self.o.node("MaxPool", [x], [self.define(n.outputs[0], self.qp[x])],
                        name=n.name, **attrs)
            return
        y = self.o.op("MaxPool", [self.dq(n.inputs[0])], f"{n.name}.out", n.name, **attrs)
        self.q(y, n.outputs[0], *self.qp[x])

    def _QAveragePool(self, n):
        a = n.attrs
        attrs = {**self._window(a, False), "ceil_mode": int(a.get("ceil_mode", 0)),
                 "count_include_pad": int(a.get("count_include_pad", 0))}
        dil = attrs.pop("dilations", [1, 1])
        if any(d != 1 for d in dil):     # (neither QLinearAveragePool nor opset < 19 has them)
            if self.opset < 19:
                fail(n, f"AveragePool has dilations {dil} only from opset 19 (asked: "
                         f"{self.opset})")
            attrs["dilations"] = dil
        elif self.fmt == "qoperator":
            self._qop("QLinearAveragePool", n, **attrs)
            return
        self._unary_qdq(n, "AveragePool", **attrs)

    def _QGlobalAveragePool(self, n):
        if self.fmt == "qoperator":
            self._qop("QLinearGlobalAveragePool", n)
        else:
            self._unary_qdq(n, "GlobalAveragePool")

    def _QLut(self, n):
        a = n.attrs
        fn = a.get("function")
        if self.fmt == "qoperator" and fn in ("sigmoid", "leakyrelu"):
            kw = {"alpha": 0.01 if a.get("alpha") is None else float(a["alpha"])} \
                if fn == "leakyrelu" else {}
            self._qop("QLinearSigmoid" if fn == "sigmoid" else "QLinearLeakyRelu", n, **kw)
            return
        x = self.dq(n.inputs[0], a["x_scale"], a["x_zero_point"])
        y = lut_nodes(self.o, x, a, n.name, self.opset)
        self.q(y, n.outputs[0], a["y_scale"], a["y_zero_point"])

    def _qop(self, op, n, **attrs):
        """A com.microsoft unary QLinear op: X, X_scale, X_zp, Y_scale, Y_zp."""
        a = n.attrs
        self.o.node(op, [self.t(n.inputs[0]), *self.sz(a["x_scale"], a["x_zero_point"]),
                         *self.sz(a["y_scale"], a["y_zero_point"])],
                    [self.define(n.outputs[0], (a["y_scale"], a["y_zero_point"]))],
                    name=n.name, **attrs)

    def _unary_qdq(self, n, op, **attrs):
        a = n.attrs
        y = self.o.op(op, [self.dq(n.inputs[0], a["x_scale"], a["x_zero_point"])],
                      f"{n.name}.out", n.name, **attrs)
        self.q(y, n.outputs[0], a["y_scale"], a["y_zero_point"])

    def _QAdd(self, n):
        self._binary(n, "Add")

    def _QMul(self, n):
        self._binary(n, "Mul")

    def _binary(self, n, op, qa=None, qb=None, name=None):
        a = n.attrs
        qa = qa or (a["a_scale"], a["a_zero_point"])
        qb = qb or (a["b_scale"], a["b_zero_point"])
        ys, yz = a["y_scale"], a["y_zero_point"]
        if self.fmt == "qoperator" and clamp_is_noop(a, "", ys, yz):
            self.o.node(f"QLinear{op}", [self.t(n.inputs[0]), *self.sz(*qa),
                                         self.t(n.inputs[1]), *self.sz(*qb), *self.sz(ys, yz)],
                        [self.define(n.outputs[0], (ys, yz))], name=name or self.o.name(n.name))
            return
        y = self.o.op(op, [self.dq(n.inputs[0], *qa), self.dq(n.inputs[1], *qb)],
                      f"{n.name}.out", name or n.name)
        self.q(activation_nodes(self.o, y, a, "", n.name), n.outputs[0], ys, yz)

    def _QMatMul(self, n):
        """QLinearMatMul (ONNX's own, uint8 × uint8, per tensor) in the qoperator format, else
        MatMul between two DequantizeLinear outputs."""
        a = n.attrs
        qa, qb = (a["a_scale"], a["a_zero_point"]), (a["b_scale"], a["b_zero_point"])
        ys, yz = a["y_scale"], a["y_zero_point"]
        if self.fmt == "qoperator" and clamp_is_noop(a, "", ys, yz):
            self.o.node("QLinearMatMul", [self.t(n.inputs[0]), *self.sz(*qa),
                                          self.t(n.inputs[1]), *self.sz(*qb), *self.sz(ys, yz)],
                        [self.define(n.outputs[0], (ys, yz))], name=n.name)
            return
        y = self.o.op("MatMul", [self.dq(n.inputs[0], *qa), self.dq(n.inputs[1], *qb)],
                      f"{n.name}.out", n.name)
        self.q(activation_nodes(self.o, y, a, "", n.name), n.outputs[0], ys, yz)

    def _QConcat(self, n):
        a = n.attrs
        axis = int(a.get("axis", 1))
        if self.layout[n.outputs[0]] == "nhwc":
            axis = _NHWC_AXIS_TO_NCHW[axis % 4]
        pairs = list(zip(a["scales"], a["zero_points"]))
        ys, yz = a["y_scale"], a["y_zero_point"]
        if self.fmt == "qoperator":
            ins = [*self.sz(ys, yz)]
            for v, (s, z) in zip(n.inputs, pairs):
                ins += [self.t(v), *self.sz(s, z)]
            self.o.node("QLinearConcat", ins, [self.define(n.outputs[0], (ys, yz))],
                        name=n.name, axis=axis)
            return
        y = self.o.op("Concat", [self.dq(v, s, z) for v, (s, z) in zip(n.inputs, pairs)],
                      f"{n.name}.out", n.name, axis=axis)
        self.q(y, n.outputs[0], ys, yz)

    # ---- dynamic ops: ORT's IntegerOps form ---------------------------------------------------
    def _dynamic_x(self, n):
        """DynamicQuantizeLinear of X (uint8, per tensor, range widened to 0: the same rule as
        qengine's per-tensor dynamic quantization)."""
        if n.attrs.get("per_row"):
            warnings.warn(f"node {n.name!r} ({n.op_type}) quantizes activations per row; ONNX "
                          f"DynamicQuantizeLinear is per tensor, so the export is per tensor",
                          QuantizationWarning, stacklevel=4)
        xq, xs, xz = (self.o.name(f"{n.name}.x_{k}") for k in ("u8", "scale", "zero_point"))
        self.o.node("DynamicQuantizeLinear", [n.inputs[0]], [xq, xs, xz],
                    name=f"{n.name}.quantize_x")
        return xq, xs, xz

    def _integer_to_float(self, n, acc, xs, ws, bias, shape):
        """float(acc) · (s_x · s_w) + bias: ORT's Cast → Mul → Add tail after MatMulInteger
        (which it fuses with DynamicQuantizeLinear into DynamicQuantizeMatMul)."""
        f = self.o.op("Cast", [acc], f"{n.name}.acc_f32", to=1)
        scale = self.o.op("Mul", [xs, self.o.init(f"{n.name}.W_scale", ws.reshape(shape))],
                          f"{n.name}.scale")
        y = self.o.op("Mul", [f, scale], f"{n.name}.out")
        if bias is not None:
            y = self.o.op("Add", [y, self.o.init(f"{n.name}.B", np.asarray(
                bias, np.float32).reshape(shape))], f"{n.name}.out")
        return y

    def _codes(self, n, i, k):
        """Input i's weights as int8 codes [.., N, K] and float32 scales [.., N, groups] (8-bit
        weights: one group), whatever the storage (int4: qengine's two-per-byte form)."""
        w, s = self.g.initializers[n.inputs[i]], np.asarray(self.g.initializers[n.inputs[i + 1]],
                                                            np.float32)
        if n.attrs.get("weight_bits", 8) == 4:
            return unpack_int4(w, k), s
        return w, s[..., None]

    def _DynamicQuantLinear(self, n):
        g = self.g
        wq, ws = self._codes(n, 1, n.attrs.get("in_features", 0))
        bias = g.initializers.get(n.inputs[3]) if len(n.inputs) > 3 and n.inputs[3] else None
        if ws.shape[-1] > 1:
            # group-wise scales: ONNX has no integer matmul with them; the weights go out as
            # INT4 with blocked DequantizeLinear (opset 21) and the product runs in float
            gs = n.attrs["group_size"]
            wf = self.o.op("DequantizeLinear", [
                self.o.init(f"{n.name}.W_int4_KN", np.ascontiguousarray(wq.T)),
                self.o.init(f"{n.name}.W_scale", np.ascontiguousarray(ws.T)),
                self.o.init(f"{n.name}.W_zero_point", np.zeros(ws.T.shape, np.int8))],
                f"{n.name}.W", axis=0, block_size=gs)
            y = self.o.op("MatMul", [n.inputs[0], wf], f"{n.name}.out", n.name)
            if bias is not None:
                y = self.o.op("Add", [y, self.o.init(f"{n.name}.B", np.asarray(bias,
                                                                           np.float32))],
                              f"{n.name}.out")
            self.o.retarget(y, n.outputs[0])
            return
        ws = ws[:, 0]
        xq, xs, xz = self._dynamic_x(n)
        acc = self.o.op("MatMulInteger", [xq, self.o.init(f"{n.name}.W_int8_KN", wq.T), xz],
                        f"{n.name}.acc")
        self.o.retarget(self._integer_to_float(n, acc, xs, ws, bias, (-1,)), n.outputs[0])

    def _DynamicQuantMatMul(self, n):
        """ONNX's IntegerOps form, per tensor on both sides (DynamicQuantizeLinear has no
        per-row form): DynamicQuantizeLinear ×2 → MatMulInteger → Cast → · s_a·s_b."""
        warnings.warn(f"node {n.name!r} (DynamicQuantMatMul) quantizes A per row and B per "
                      f"column; ONNX DynamicQuantizeLinear is per tensor, so the export is per "
                      f"tensor", QuantizationWarning, stacklevel=3)
        qs = []
        for i, side in enumerate("ab"):
            q = [self.o.name(f"{n.name}.{side}_{k}") for k in ("u8", "scale", "zero_point")]
            self.o.node("DynamicQuantizeLinear", [n.inputs[i]], q,
                        name=f"{n.name}.quantize_{side}")
            qs.append(q)
        acc = self.o.op("MatMulInteger", [qs[0][0], qs[1][0], qs[0][2], qs[1][2]],
                        f"{n.name}.acc")
        f = self.o.op("Cast", [acc], f"{n.name}.acc_f32", to=1)
        scale = self.o.op("Mul", [qs[0][1], qs[1][1]], f"{n.name}.scale")
        self.o.retarget(self.o.op("Mul", [f, scale], f"{n.name}.out"), n.outputs[0])

    def _DynamicQuantConv(self, n):
        g, a = self.g, n.attrs
        wq, ws = g.initializers[n.inputs[1]], np.asarray(g.initializers[n.inputs[2]], np.float32)
        bias = g.initializers.get(n.inputs[3]) if len(n.inputs) > 3 and n.inputs[3] else None
        xq, xs, xz = self._dynamic_x(n)
        attrs = self._window(a, True)
        attrs["kernel_shape"] = list(wq.shape[2:])
        acc = self.o.op("ConvInteger", [xq, self.o.init(f"{n.name}.W_int8", wq), xz],
                        f"{n.name}.acc", **attrs)
        shape = (-1,) + (1,) * (wq.ndim - 2)      # per output channel, over N, C, spatial
        y = self._integer_to_float(n, acc, xs, ws, bias, shape)
        act, params = a.get("fused_activation", ""), list(a.get("fused_activation_params") or [])
        if act == "Relu":
            y = self.o.op("Relu", [y], f"{n.name}.relu")
        elif act == "Clip":
            y = clip_node(self.o, y, params[0], params[1], n.name)
        elif act == "LeakyRelu":
            y = self.o.op("LeakyRelu", [y], f"{n.name}.leakyrelu", alpha=float(params[0]))
        self.o.retarget(y, n.outputs[0])

    def _rnn(self, n, op, x=None, drop=()):
        """ONNX LSTM / GRU has no int8 form: weights are int8 (or INT4) initializers dequantized
        by DequantizeLinear (per row, or blocked along K for group-wise 4-bit weights;
        [D·G·H, K] then reshaped to [D, G·H, K]), run in float. x: another X input; drop:
        attributes of the qengine op that are not ONNX's."""
        ins = list(n.inputs)
        if x is not None:
            ins[0] = x
        hidden = None
        for i in (1, 3):
            k = n.attrs.get("input_size", 0) if i == 1 else hidden
            q, s = self._codes(n, i, k)
            hidden = q.shape[1] // (4 if op == "LSTM" else 3)
            base = f"{n.name}.{'W' if i == 1 else 'R'}"
            rows, groups = q.reshape(-1, q.shape[2]), s.reshape(-1, s.shape[-1])
            if groups.shape[1] == 1:              # per row (4-bit codes become INT4 on export)
                f = self.o.op("DequantizeLinear",
                              [self.o.init(f"{base}_int8", rows),
                               self.o.init(f"{base}_scale", groups[:, 0]),
                               self.o.init(f"{base}_zero_point",
                                           np.zeros(groups.shape[0], np.int8))],
                              f"{base}.rows", axis=0)
            else:                                 # group-wise: blocked DequantizeLinear
                f = self.o.op("DequantizeLinear",
                              [self.o.init(f"{base}_int4", rows),
                               self.o.init(f"{base}_scale", groups),
                               self.o.init(f"{base}_zero_point", np.zeros(groups.shape, np.int8))],
                              f"{base}.rows", axis=1, block_size=n.attrs["group_size"])
            ins[i] = self.o.op("Reshape", [f, self.o.const(q.shape, np.int64)], base)
        rest = ins[5:]
        attrs = {k: v for k, v in n.attrs.items()
                 if k not in ("per_row", "weight_bits", "group_size", "input_size", *drop)}
        self.o.node(op, [ins[0], ins[1], ins[3], *rest], n.outputs, name=n.name,
                    **attrs)

    def _DynamicQuantLSTM(self, n):
        self._rnn(n, "LSTM")

    def _DynamicQuantGRU(self, n):
        self._rnn(n, "GRU")

    def _static_rnn(self, n, op):
        """ONNX has no integer LSTM / GRU (no Q3.12 gates, table sigmoid / tanh or int16 cell):
        the layer is written as the float op with its int8 weights DequantizeLinear-ed, its input
        X through QuantizeLinear → DequantizeLinear on the calibrated grid (uint8 for "int8";
        int16 for "int16", from opset 21 — older opsets get no Q/DQ on X). A runtime then runs
        the recurrence in float: close to qengine's numbers, not equal to them."""
        a = n.attrs
        x = None
        if a["scheme"] == "int8" or self.opset >= 21:
            dtype = np.uint8 if a["scheme"] == "int8" else np.int16
            s = self.o.const(np.float32(a["x_scale"]), np.float32)
            z = self.o.init(f"{n.name}.x_zero_point", np.array(a["x_zero_point"], dtype))
            q = self.o.op("QuantizeLinear", [n.inputs[0], s, z], f"{n.name}.xq")
            x = self.o.op("DequantizeLinear", [q, s, z], f"{n.name}.xdq")
        self._rnn(n, op, x, ("scheme", "x_scale", "x_zero_point", "h_scale", "h_zero_point",
                             "cell_exponent"))

    def _StaticQuantLSTM(self, n):
        self._static_rnn(n, "LSTM")

    def _StaticQuantGRU(self, n):
        self._static_rnn(n, "GRU")


def raise_graph(g: Graph, fmt: str = "qdq", opset: int = 13) -> Graph:
    """The ONNX form of `g` (module docstring) as a Graph of ONNX / com.microsoft nodes."""
    if fmt not in ("qdq", "qoperator"):
        raise ModelError(f"format must be 'qdq' or 'qoperator', got {fmt!r}")
    return _Raiser(g, fmt, opset).run()
