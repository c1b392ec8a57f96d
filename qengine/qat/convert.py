"""qat.convert / qat.export_onnx: the trained model as a QDQ graph, lowered by the one lowering.

Each step writes its engine operator with the trained qparams: activations through
QuantizeLinear → DequantizeLinear, weights as the int8 codes the fake quantizer used (through
DequantizeLinear with their scales), biases as int32 at exactly s_x·s_w — so the lowering
(qengine/qdq/lower.py) takes every number as trained and chooses none of its own.
"""
from __future__ import annotations

import numpy as np

from ..graph.fusion import fuse_residual_add
from ..graph.ir import Graph, Node, ValueInfo, fresh_name
from ..qdq.lower import lower
from .prepare import QATModel


class _Builder:
    def __init__(self, model: QATModel):
        self.model = model
        self.nodes, self.inits, self.vi = [], {}, {}
        self.used = set(model.input_names)
        for _, _, out in model.program:
            self.used.update([out] if isinstance(out, str) else out)
        self.qp = {}                  # quantized value -> (scale, zero point)
        self.pending = {}             # step output -> the float value its Q reads
        self.shapes = dict(model.shapes)

    def fresh(self, base):
        return fresh_name(self.used, base)

    def shape_of(self, name, like, unsqueeze=None):
        s = self.shapes.get(like)
        if s is not None and unsqueeze is not None:
            s = s[:unsqueeze] + (1,) + s[unsqueeze:]
        self.shapes[name] = s

    def _info(self, name, dtype="float32"):
        s = self.shapes.get(name)
        self.vi[name] = ValueInfo(name, dtype, s)

    def init(self, base, arr):
        name = self.fresh(base)
        self.inits[name] = np.ascontiguousarray(arr)
        return name

    def axes(self, axes):
        return self.init("axes", np.asarray(axes, np.int64))

    def scalar(self, v):
        return self.init("bound", np.asarray(np.float32(v)))

    def node(self, op, name, ins, outs, like=None, **attrs):
        self.nodes.append(Node(op, self.fresh(name), list(ins), list(outs), attrs))
        for o in outs:
            if like is not None:
                self.shape_of(o, like)
            self._info(o)

    def dq_const(self, base, q, scale, axis):
        qn = self.init(f"{base}_quantized", q)
        sn = self.init(f"{base}_scale", np.asarray(scale, np.float32))
        zn = self.init(f"{base}_zero_point", np.zeros(np.shape(scale), q.dtype))
        out = self.fresh(f"{base}_dequantized")
        self.nodes.append(Node("DequantizeLinear", self.fresh(f"{base}_dequantize"),
                               [qn, sn, zn], [out], {"axis": axis} if np.ndim(scale) else {}))
        return out

    def qparams_of(self, v):
        return self.qp[v]

    def result(self, out, step):
        """The name step's node writes: `out` itself in float, else the float its Q reads."""
        if not step.quantized:
            return out
        if out not in self.pending:
            self.pending[out] = self.fresh(f"{out}.float")
            self.shape_of(self.pending[out], out)
        return self.pending[out]

    def quantize(self, src, out, qparams):
        s, z = qparams
        sn = self.init(f"{out}.scale", np.asarray(np.float32(s)))
        zn = self.init(f"{out}.zero_point", np.asarray(np.uint8(z)))
        qv = self.fresh(f"{out}.q")
        self.shape_of(qv, out)
        self.shape_of(src, out)
        self.node("QuantizeLinear", f"{out}.quantize", [src, sn, zn], [qv])
        self.vi[qv] = ValueInfo(qv, "uint8", self.shapes.get(out))
        self.node("DequantizeLinear", f"{out}.dequantize", [qv, sn, zn], [out])
        self.qp[out] = (s, z)

    def finish(self, out, step, same_as=None):
        if not step.quantized:
            return
        qp = step.out.qparams() if step.out is not None else self.qp[same_as]
        self.quantize(self.pending.pop(out), out, qp)

    def move(self, op, name, x, extra, dest=None, unsqueeze=None):
        """A data-movement node (Unsqueeze/Squeeze) that keeps x's qparams."""
        y = dest or self.fresh(f"{x}.moved")
        if dest is None:
            self.shape_of(y, x, unsqueeze)
        if x not in self.qp:
            self.node(op, name, [x, *extra], [y])
            return y
        pre = self.fresh(f"{y}.float")
        self.shape_of(pre, y)
        self.node(op, name, [x, *extra], [pre])
        self.quantize(pre, y, self.qp[x])
        return y

    def slice0(self, v, start, end, name):
        """v[start:end] along axis 0 (one layer's rows of an RNN initial state)."""
        y = self.fresh(name)
        self.node("Slice", f"{name}.slice", [v, self.init("starts", np.asarray([start])),
                                             self.init("ends", np.asarray([end])),
                                             self.axes([0])], [y])
        return y

    def activation(self, act, name, x, y, like):
        if act[0] == "relu":
            self.node("Relu", name, [x], [y], like=like)
        else:
            self.node("Clip", name, [x, self.scalar(act[1]), self.scalar(act[2])], [y],
                      like=like)


def to_qdq(model: QATModel) -> Graph:
    """The QDQ graph of a trained QAT model (qengine's quantized IR, before lowering)."""
    if not isinstance(model, QATModel):
        raise TypeError(f"expected a model from qat.prepare, got {type(model).__name__}")
    b = _Builder(model)
    for key, ins, out in model.program:
        model.steps[key].emit(b, ins, out)
    g = Graph(inputs=[ValueInfo(v, "float32", model.shapes.get(v)) for v in model.input_names],
              outputs=[ValueInfo(v, "float32", model.shapes.get(v))
                       for v in model.output_names],
              nodes=b.nodes, initializers=b.inits, opset={"": 21}, name="qat",
              value_info={k: v for k, v in b.vi.items()
                          if k not in model.input_names and k not in model.output_names})
    g.verify()
    return g


def convert(model: QATModel, *, fuse_residual: bool = True) -> Graph:
    """The integer-only qengine graph of a trained QAT model: run it with qengine.Session,
    save it with qengine.save. Its outputs equal the model's eval-mode outputs."""
    g = lower(to_qdq(model))
    return fuse_residual_add(g) if fuse_residual else g


def export_onnx(model: QATModel, path, opset: int | None = None):
    """Write the trained model as a QDQ ONNX file (ONNX Runtime, OpenVINO and TensorRT read
    it; so does qengine.from_onnx)."""
    from ..export import export_onnx as _export
    return _export(convert(model, fuse_residual=False), path, format="qdq", opset=opset)
