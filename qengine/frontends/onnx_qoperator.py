"""ONNX Runtime's QOperator format → QDQ, rewritten on the protobuf before the importer reads it.

ORT's `quantize_static(..., quant_format=QuantFormat.QOperator)` writes integer-in/integer-out
ops (QLinearConv, QLinearMatMul, com.microsoft QLinearAdd, QGemm, ...). qengine has one quantized
IR, the QDQ graph, so each such node becomes its QDQ equivalent with the same numbers:

    DequantizeLinear on every quantized input → the float op → QuantizeLinear on the output

with the node's own scales and zero points (weights: DQ of the int8/uint8 initializer itself,
per axis when the scale is a vector; an int32 bias: DQ with scale x_scale·w_scale and no zero
point). The float op computes in float32 what the integer kernel computes exactly, so the result
agrees with the ONNX/ORT definition of each op within one step of the output scale (the
quantize of a value within float rounding of a .5 boundary may go either way).

Semantics are those of the ONNX spec (QLinearConv, QLinearMatMul) and of ORT's contrib op
schemas (docs/ContribOperators.md; QGemm as its CPU kernel computes it:
Y = alpha·a_scale·b_scale·(Σ(A − a_zp)(B − b_zp) + C), so C dequantizes with scale
alpha·a_scale·b_scale). Per-axis DQs are written at any opset >= 10: qengine's DequantizeLinear
takes `axis` at every opset (an export back to ONNX below opset 13 would have to refuse them).
Scales and zero points must be constants (initializers or Constant nodes), as ORT writes them;
their shapes are checked here so a malformed file fails naming the node.

Ops ORT leaves running on the quantized tensors themselves (Reshape, Transpose, MaxPool...) are
left alone: they are exact on integers and the QuantizeLinear that the rewrite puts before them
keeps the data's type.
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError
from ..graph.ir import fresh_name

_MS = "com.microsoft"
_DEFAULT = ("", "ai.onnx")

#: (domain, op_type) this module rewrites
QOPERATOR_OPS = frozenset({
    ("", "QLinearConv"), ("", "QLinearMatMul"),
    (_MS, "QLinearAdd"), (_MS, "QLinearMul"), (_MS, "QLinearConcat"),
    (_MS, "QLinearGlobalAveragePool"), (_MS, "QLinearAveragePool"), (_MS, "QLinearSigmoid"),
    (_MS, "QLinearLeakyRelu"), (_MS, "QGemm"), (_MS, "QLinearSoftmax"),
    (_MS, "QLinearReduceMean"), (_MS, "QLinearWhere"),
    (_MS, "QuantizeLinear"), (_MS, "DequantizeLinear"), (_MS, "DynamicQuantizeLSTM"),
})

_INT_TYPES = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32"}


def _key(node):
    return ("" if node.domain in _DEFAULT else node.domain, node.op_type)


def has_qoperator_nodes(model) -> bool:
    return any(_key(n) in QOPERATOR_OPS for n in model.graph.node)


def qoperator_to_qdq(model):
    """A copy of `model` (onnx.ModelProto) with every QOperator node replaced by its QDQ form.
    Raises ModelError naming the node when a node is malformed."""
    import onnx
    opsets = {("" if o.domain in _DEFAULT else o.domain): o.version for o in model.opset_import}
    opset = opsets.get("")
    if opset is None or opset < 10:
        raise ModelError(f"a QOperator model needs a default-domain opset >= 10 (where "
                         f"QuantizeLinear/DequantizeLinear exist), got {opset}")
    rw = _Rewriter(model, opset, onnx)
    nodes = []
    for i, n in enumerate(model.graph.node):
        if _key(n) in QOPERATOR_OPS:
            nodes.extend(rw.rewrite(n, n.name or f"{n.op_type}_{i}"))
        else:
            rw.note_passthrough(n)
            nodes.append(n)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(rw.new_inits)
    return out


class _Rewriter:
    def __init__(self, model, opset: int, onnx):
        self.onnx, self.opset = onnx, opset
        g = model.graph
        self.consts = {t.name: t for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.domain in _DEFAULT and n.output:
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = a.t
        self.names = {t.name for t in g.initializer} | {v.name for v in g.input} | \
            {o for n in g.node for o in n.output} | {n.name for n in g.node}
        self.new_inits = []
        # element types (TensorProto enums) of values, for the zero points an omitted one
        # stands for (an output has its input's type) and for channels_last ranks
        self.types, self.ranks = {}, {}
        for v in list(g.input) + list(g.value_info) + list(g.output):
            tt = v.type.tensor_type
            if tt.elem_type:
                self.types[v.name] = tt.elem_type
            if tt.HasField("shape"):
                self.ranks[v.name] = len(tt.shape.dim)
        for t in g.initializer:
            self.types[t.name] = t.data_type
            self.ranks[t.name] = len(t.dims)
        self.where = ""

    # ---- helpers -----------------------------------------------------------------------------
    def fail(self, msg: str):
        raise ModelError(f"{self.where}: {msg}")

    def fresh(self, base: str) -> str:
        return fresh_name(self.names, base)

    def const(self, name: str, what: str, required=True):
        """The constant array behind input `name`, None when omitted (and not required)."""
        if not name:
            if required:
                self.fail(f"{what} is required but omitted")
            return None
        t = self.consts.get(name)
        if t is None:
            self.fail(f"{what} ({name!r}) must be a constant (an initializer or a Constant "
                      f"node), as ONNX Runtime writes it")
        return self.onnx.numpy_helper.to_array(t)

    def add_init(self, base: str, arr) -> str:
        name = self.fresh(base)
        t = self.onnx.numpy_helper.from_array(np.asarray(arr), name)
        self.new_inits.append(t)
        self.consts[name] = t
        self.types[name] = t.data_type
        return name

    def scalar(self, name: str, what: str, required=True, kind="f"):
        """Check that a scale (kind "f") or zero point (kind "iu") is one element."""
        a = self.const(name, what, required)
        if a is None:
            return None
        if a.size != 1 or a.ndim > 1:
            self.fail(f"{what} must be a scalar (per-tensor), got shape {a.shape}")
        self._kind(a, what, kind)
        return a

    def _kind(self, a, what, kind):
        if a.dtype.kind not in kind or (kind == "f" and a.dtype != np.float32):
            want = "float32" if kind == "f" else "an 8-bit integer type"
            self.fail(f"{what} must be {want}, got {a.dtype}")
        if kind == "f" and not (np.all(np.isfinite(a)) and np.all(a > 0)):
            self.fail(f"{what} must be positive and finite, got {a.reshape(-1)[:4]}")

    def vector(self, name: str, what: str, length, kind="f", required=True):
        """A per-tensor or per-axis scale / zero point: one element or `length` (None: any)."""
        a = self.const(name, what, required)
        if a is None:
            return None
        if a.ndim > 1 or (a.size != 1 and length is not None and a.size != length):
            n = "" if length is None else f" of length {length}"
            self.fail(f"{what} must be a scalar or 1-D{n}, got shape {a.shape}")
        self._kind(a, what, kind)
        return a

    def zero_point_like(self, x: str, what: str) -> str:
        """The zero point an omitted one stands for: 0 in `x`'s integer type."""
        t = self.types.get(x)
        if t not in (2, 3):
            self.fail(f"{what} is omitted and the type of {x!r} is not known to be uint8/int8; "
                      f"give the zero point explicitly")
        return self.add_init(f"{x}_zero_point0", np.zeros((), _INT_TYPES[t]))

    def node(self, op, inputs, outputs, **attrs):
        return self.onnx.helper.make_node(op, list(inputs), list(outputs),
                                          self.fresh(f"{self.base}/{op}"), **attrs)

    def dq(self, out, x, scale, zp, axis=None):
        y = self.fresh(f"{x}__dq")
        ins = [x, scale] + ([zp] if zp else [])
        extra = {} if axis is None else {"axis": axis}
        out.append(self.node("DequantizeLinear", ins, [y], **extra))
        return y

    def q(self, out, x, scale, zp, y, src_type):
        """QuantizeLinear into the node's output `y`; an omitted zero point is 0 of `src_type`'s
        type (QuantizeLinear without one would make uint8)."""
        if not zp:
            zp = self.zero_point_like(src_type, "the output zero point")
        out.append(self.node("QuantizeLinear", [x, scale, zp], [y]))
        self.types[y] = self.types.get(zp)

    def float_out(self, y):
        return self.fresh(f"{y}__f")

    def note_passthrough(self, n):
        """Ops left on integer data keep their input's element type (for omitted zero points)."""
        if n.op_type in ("QuantizeLinear",) and n.domain in _DEFAULT:
            zp = n.input[2] if len(n.input) > 2 and n.input[2] else ""
            self.types[n.output[0]] = self.types.get(zp, 2)
        elif n.input and n.input[0] in self.types and n.op_type in _MOVES:
            for o in n.output[:1]:
                self.types.setdefault(o, self.types[n.input[0]])

    # ---- the rewrite ---------------------------------------------------------------------------
    def rewrite(self, n, name):
        dom = "" if n.domain in _DEFAULT else " " + n.domain
        self.where = f"node {name!r} ({n.op_type}{dom})"
        self.base = name
        attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in n.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        ins = list(n.input)
        if not n.output or not n.output[0]:
            self.fail("output 0 must be named")
        fn = getattr(self, "_" + n.op_type)
        self.outputs = list(n.output)
        out = []
        fn(out, ins + [""] * (12 - len(ins)), n.output[0], attrs, len(ins))
        return out

    def _check_attrs(self, attrs, known):
        extra = sorted(set(attrs) - set(known))
        if extra:
            self.fail(f"attribute(s) {extra} are not supported (known: {sorted(known)})")

    def _arity(self, nin, lo, hi):
        if not lo <= nin <= hi:
            self.fail(f"expected {lo}..{hi} inputs, got {nin}" if lo != hi else
                      f"expected {lo} inputs, got {nin}")

    def _QuantizeLinear(self, out, ins, y, attrs, nin):
        self._arity(nin, 2, 3)
        self._check_attrs(attrs, ("axis",))
        self._com_qdq(out, "QuantizeLinear", ins[:nin], y, attrs)
        zp = ins[2] if nin > 2 else ""
        self.types[y] = self.types.get(zp, 2)

    def _DequantizeLinear(self, out, ins, y, attrs, nin):
        self._arity(nin, 2, 3)
        self._check_attrs(attrs, ("axis",))
        self._com_qdq(out, "DequantizeLinear", ins[:nin], y, attrs)

    def _com_qdq(self, out, op, ins, y, attrs):
        # the com.microsoft forms (older ORT) are the default-domain ops; their `axis` predates
        # opset 13's, and qengine's DequantizeLinear/QuantizeLinear take it at every opset
        out.append(self.node(op, ins, [y], **attrs))

    # QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B)
    def _QLinearConv(self, out, ins, y, attrs, nin):
        self._arity(nin, 8, 9)
        self._check_attrs(attrs, ("auto_pad", "dilations", "group", "kernel_shape", "pads",
                                  "strides"))
        x, xs, xz, w, ws, wz, ys, yz, b = ins[:9]
        sx = self.scalar(xs, "x_scale")
        self.scalar(xz, "x_zero_point", kind="iu")
        self.scalar(ys, "y_scale")
        self.scalar(yz, "y_zero_point", kind="iu")
        wa = self.consts.get(w)
        m = wa.dims[0] if wa is not None and len(wa.dims) else None
        sw = self.vector(ws, "w_scale", m)
        zw = self.vector(wz, "w_zero_point", m, kind="iu")
        if zw.size not in (1, sw.size):
            self.fail(f"w_zero_point has {zw.size} elements, w_scale {sw.size}")
        xf = self.dq(out, x, xs, xz)
        wf = self.dq(out, w, ws, wz, axis=0 if sw.size > 1 else None)
        conv_in = [xf, wf]
        if b:
            conv_in.append(self._bias(out, b, "B", sx.reshape(()) * sw.reshape(-1), m, 0))
        yf = self.float_out(y)
        out.append(self.node("Conv", conv_in, [yf], **attrs))
        self.q(out, yf, ys, yz, y, x)

    def _bias(self, out, b, what, scale, length, axis):
        """DQ of an int32 bias with the product scale (zero point 0)."""
        arr = self.const(b, what)
        if arr.dtype != np.int32:
            self.fail(f"{what} must be int32, got {arr.dtype}")
        if length is not None and arr.ndim == 1 and arr.shape[0] != length:
            self.fail(f"{what} must have {length} elements, got shape {arr.shape}")
        scale = np.asarray(scale, np.float32)
        s = self.add_init(f"{b}_scale", scale.reshape(()) if scale.size == 1 else scale.reshape(-1))
        # an explicit axis even per tensor: qengine's DequantizeLinear checks the default (1)
        # against a 1-D bias's rank
        return self.dq(out, b, s, "", axis=max(axis, 0))

    # QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp)
    def _QLinearMatMul(self, out, ins, y, attrs, nin):
        self._arity(nin, 8, 8)
        self._check_attrs(attrs, ())
        a, as_, az, b, bs, bz, ys, yz = ins[:8]
        self.scalar(as_, "a_scale")
        self.scalar(az, "a_zero_point", kind="iu")
        ba = self.consts.get(b)
        ncols = ba.dims[-1] if ba is not None and len(ba.dims) else None
        sb = self.vector(bs, "b_scale", ncols)
        zb = self.vector(bz, "b_zero_point", ncols, kind="iu")
        if zb.size not in (1, sb.size):
            self.fail(f"b_zero_point has {zb.size} elements, b_scale {sb.size}")
        self.scalar(ys, "y_scale")
        self.scalar(yz, "y_zero_point", kind="iu")
        af = self.dq(out, a, as_, az)
        bf = self.dq(out, b, bs, bz, axis=-1 if sb.size > 1 else None)
        yf = self.float_out(y)
        out.append(self.node("MatMul", [af, bf], [yf]))
        self.q(out, yf, ys, yz, y, a)

    # QGemm(A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp)
    def _QGemm(self, out, ins, y, attrs, nin):
        self._arity(nin, 6, 9)
        self._check_attrs(attrs, ("alpha", "transA", "transB"))
        a, as_, az, b, bs, bz, c, ys, yz = ins[:9]
        alpha = float(attrs.get("alpha", 1.0))
        trans_b = int(attrs.get("transB", 0))
        sa = self.scalar(as_, "a_scale")
        self.scalar(az, "a_zero_point", kind="iu")
        ba = self.consts.get(b)
        n = (ba.dims[0] if trans_b else ba.dims[1]) if ba is not None and len(ba.dims) == 2 \
            else None
        sb = self.vector(bs, "b_scale", n)
        zb = self.vector(bz, "b_zero_point", n, kind="iu", required=False)
        if zb is not None and zb.size not in (1, sb.size):
            self.fail(f"b_zero_point has {zb.size} elements, b_scale {sb.size}")
        if bool(ys) != bool(yz):
            self.fail("y_scale and y_zero_point must be given together (both: quantized "
                      "output; neither: float output)")
        if ys:
            self.scalar(ys, "y_scale")
            self.scalar(yz, "y_zero_point", kind="iu")
        af = self.dq(out, a, as_, az)
        bf = self.dq(out, b, bs, bz, axis=(0 if trans_b else 1) if sb.size > 1 else None)
        gemm_in = [af, bf]
        if c:
            carr = self.const(c, "C")
            if sb.size > 1 and not (carr.ndim >= 1 and carr.shape[-1] == sb.size):
                self.fail(f"C of shape {carr.shape} with a per-column b_scale: C must have "
                          f"N={sb.size} columns")
            gemm_in.append(self._bias(out, c, "C", alpha * sa.reshape(()) * sb.reshape(-1),
                                      None, carr.ndim - 1))
        gattrs = {k: v for k, v in attrs.items() if k != "alpha"}
        if alpha != 1.0:
            gattrs["alpha"] = alpha
        if not ys:
            out.append(self.node("Gemm", gemm_in, [y], **gattrs))
            return
        yf = self.float_out(y)
        out.append(self.node("Gemm", gemm_in, [yf], **gattrs))
        self.q(out, yf, ys, yz, y, a)

    # QLinearAdd / QLinearMul(A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp)
    def _binary(self, out, ins, y, attrs, nin, op):
        self._arity(nin, 7, 8)
        self._check_attrs(attrs, ())
        a, as_, az, b, bs, bz, cs, cz = ins[:8]
        for v, what, kind, req in ((as_, "A_scale", "f", True), (az, "A_zero_point", "iu", False),
                                   (bs, "B_scale", "f", True), (bz, "B_zero_point", "iu", False),
                                   (cs, "C_scale", "f", True), (cz, "C_zero_point", "iu", False)):
            self.scalar(v, what, req, kind)
        af, bf = self.dq(out, a, as_, az), self.dq(out, b, bs, bz)
        yf = self.float_out(y)
        out.append(self.node(op, [af, bf], [yf]))
        self.q(out, yf, cs, cz, y, a)

    def _QLinearAdd(self, out, ins, y, attrs, nin):
        self._binary(out, ins, y, attrs, nin, "Add")

    def _QLinearMul(self, out, ins, y, attrs, nin):
        self._binary(out, ins, y, attrs, nin, "Mul")

    def _unary_params(self, ins, names=("X_scale", "X_zero_point", "Y_scale", "Y_zero_point"),
                      zp_required=False):
        x, xs, xz, ys, yz = ins[:5]
        self.scalar(xs, names[0])
        self.scalar(xz, names[1], zp_required, "iu")
        self.scalar(ys, names[2])
        self.scalar(yz, names[3], zp_required, "iu")
        return x, xs, xz, ys, yz

    def _unary(self, out, ins, y, op, zp_required=False, names=None, **fattrs):
        x, xs, xz, ys, yz = self._unary_params(ins, **({"names": names} if names else {}),
                                               zp_required=zp_required)
        xf = self.dq(out, x, xs, xz)
        yf = self.float_out(y)
        out.append(self.node(op, [xf], [yf], **fattrs))
        self.q(out, yf, ys, yz, y, x)
        return xf

    def _QLinearSigmoid(self, out, ins, y, attrs, nin):
        self._arity(nin, 4, 5)
        self._check_attrs(attrs, ())
        self._unary(out, ins, y, "Sigmoid")

    def _QLinearLeakyRelu(self, out, ins, y, attrs, nin):
        self._arity(nin, 4, 5)
        self._check_attrs(attrs, ("alpha",))
        self._unary(out, ins, y, "LeakyRelu", alpha=float(attrs.get("alpha", 0.01)))

    def _QLinearGlobalAveragePool(self, out, ins, y, attrs, nin):
        self._arity(nin, 5, 5)
        self._check_attrs(attrs, ("channels_last",))
        names = ("x_scale", "x_zero_point", "y_scale", "y_zero_point")
        if not attrs.get("channels_last", 0):
            self._unary(out, ins, y, "GlobalAveragePool", zp_required=True, names=names)
            return
        # NHWC: the mean over the spatial axes 1..rank-2, kept (output N x 1 x 1 x C)
        rank = self.ranks.get(ins[0])
        if rank is None or rank < 3:
            self.fail(f"channels_last=1 needs the input's rank (>= 3) from the model's value "
                      f"info, got {rank}")
        x, xs, xz, ys, yz = self._unary_params(ins, names, zp_required=True)
        xf = self.dq(out, x, xs, xz)
        yf = self.float_out(y)
        out.append(self._reduce_mean(xf, yf, list(range(1, rank - 1)), 1))
        self.q(out, yf, ys, yz, y, x)

    def _reduce_mean(self, x, y, axes, keepdims):
        if self.opset >= 18:   # axes became an input
            ax = self.add_init(f"{self.base}_axes", np.array(axes, np.int64))
            return self.node("ReduceMean", [x, ax], [y], keepdims=keepdims)
        return self.node("ReduceMean", [x], [y], axes=axes, keepdims=keepdims)

    def _QLinearAveragePool(self, out, ins, y, attrs, nin):
        self._arity(nin, 4, 5)
        known = ("auto_pad", "ceil_mode", "channels_last", "count_include_pad", "kernel_shape",
                 "pads", "strides")
        self._check_attrs(attrs, known)
        if "kernel_shape" not in attrs:
            self.fail("attribute 'kernel_shape' is required")
        pattrs = {k: v for k, v in attrs.items() if k != "channels_last"}
        if attrs.get("ceil_mode", 0) and self.opset < 10:
            self.fail("ceil_mode needs opset >= 10")
        names = ("x_scale", "x_zero_point", "y_scale", "y_zero_point")
        if not attrs.get("channels_last", 0):
            self._unary(out, ins, y, "AveragePool", names=names, **pattrs)
            return
        rank = len(attrs["kernel_shape"]) + 2
        x, xs, xz, ys, yz = self._unary_params(ins, names)
        xf = self.dq(out, x, xs, xz)
        nchw, pooled, yf = (self.fresh(f"{y}__{s}") for s in ("nchw", "pool", "f"))
        out.append(self.node("Transpose", [xf], [nchw], perm=[0, rank - 1, *range(1, rank - 1)]))
        out.append(self.node("AveragePool", [nchw], [pooled], **pattrs))
        out.append(self.node("Transpose", [pooled], [yf], perm=[0, *range(2, rank), 1]))
        self.q(out, yf, ys, yz, y, x)

    def _QLinearSoftmax(self, out, ins, y, attrs, nin):
        self._arity(nin, 5, 5)
        self._check_attrs(attrs, ("axis", "opset"))
        if "opset" not in attrs:
            self.fail("attribute 'opset' is required (it selects Softmax's semantics)")
        old = attrs["opset"] < 13
        axis = int(attrs.get("axis", 1 if old else -1))
        x, xs, xz, ys, yz = self._unary_params(
            ins, ("X_scale", "x_zero_point", "y_scale", "y_zero_point"))
        if not yz:
            self.fail("y_zero_point is required")
        xf = self.dq(out, x, xs, xz)
        yf = self.float_out(y)
        if old == (self.opset < 13) or axis == -1:
            # the same semantics as the model's Softmax, or axis -1 where both agree
            out.append(self.node("Softmax", [xf], [yf], axis=axis))
        elif old:   # old (flatten at axis) semantics inside an opset >= 13 model
            shape, flat, soft = (self.fresh(f"{y}__{s}") for s in ("shape", "flat", "soft"))
            out.append(self.node("Shape", [xf], [shape]))
            out.append(self.node("Flatten", [xf], [flat], axis=axis))
            out.append(self.node("Softmax", [flat], [soft], axis=-1))
            out.append(self.node("Reshape", [soft, shape], [yf]))
        else:
            self.fail(f"opset={attrs['opset']} semantics with axis {axis} cannot be written in "
                      f"this opset-{self.opset} model's Softmax (only axis -1 can)")
        self.q(out, yf, ys, yz, y, x)

    def _QLinearReduceMean(self, out, ins, y, attrs, nin):
        self._arity(nin, 4, 5)
        self._check_attrs(attrs, ("axes", "keepdims"))
        for k in ("axes", "keepdims"):
            if k not in attrs:
                self.fail(f"attribute {k!r} is required")
        x, xs, xz, ys, yz = self._unary_params(
            ins, ("data_scale", "data_zero_point", "reduced_scale", "reduced_zero_point"))
        xf = self.dq(out, x, xs, xz)
        yf = self.float_out(y)
        out.append(self._reduce_mean(xf, yf, list(attrs["axes"]), int(attrs["keepdims"])))
        self.q(out, yf, ys, yz, y, x)

    # QLinearWhere(condition, X, x_scale, x_zp, Y, y_scale, y_zp, z_scale, z_zp)
    def _QLinearWhere(self, out, ins, y, attrs, nin):
        self._arity(nin, 9, 9)
        self._check_attrs(attrs, ())
        cond, x, xs, xz, v, vs, vz, zs, zz = ins[:9]
        for s, z, what in ((xs, xz, "x"), (vs, vz, "y"), (zs, zz, "z")):
            self.scalar(s, f"{what}_scale")
            self.scalar(z, f"{what}_zero_point", kind="iu")
        xf, vf = self.dq(out, x, xs, xz), self.dq(out, v, vs, vz)
        yf = self.float_out(y)
        out.append(self.node("Where", [cond, xf, vf], [yf]))
        self.q(out, yf, zs, zz, y, x)

    # DynamicQuantizeLSTM(X, W, R, B, sequence_lens, initial_h, initial_c, P, W_scale,
    #                     W_zero_point, R_scale, R_zero_point): ORT's dynamic LSTM (IntegerOps),
    # weights [D, I, 4H] / [D, H, 4H] (ONNX LSTM's transposed), scales per direction [D] or per
    # direction and column [D, 4H]. It becomes DQ → Transpose → LSTM: the float LSTM on the
    # file's dequantized weights (ORT also quantizes the activations; qengine's dynamic LSTM
    # can take the int8 weights back from this form).
    def _DynamicQuantizeLSTM(self, out, ins, y, attrs, nin, outputs=None):
        self._arity(nin, 12, 12)
        self._check_attrs(attrs, ("activation_alpha", "activation_beta", "activations", "clip",
                                  "direction", "hidden_size", "input_forget"))
        lstm_in = list(ins[:8])
        for k, (w, ws, wz, what) in enumerate(((ins[1], ins[8], ins[9], "W"),
                                               (ins[2], ins[10], ins[11], "R"))):
            wa = self.const(w, what)
            if wa.ndim != 3 or wa.dtype.kind not in "iu" or wa.dtype.itemsize != 1:
                self.fail(f"{what} must be an int8/uint8 [D, in, 4H] initializer, got "
                          f"{wa.dtype} {wa.shape}")
            d, _, g = wa.shape
            sa = self.const(ws, f"{what}_scale")
            za = self.const(wz, f"{what}_zero_point")
            if sa.shape not in ((d,), (d, g)) or za.shape != sa.shape:
                self.fail(f"{what}_scale / {what}_zero_point must both be [{d}] or [{d}, {g}], "
                          f"got {sa.shape} and {za.shape}")
            # as a blocked DQ along axis 1 (one block spanning it): scale [D, 1, 4H or 1]
            shape = (d, 1, g if sa.ndim == 2 else 1)
            s3 = self.add_init(f"{w}_scale3", sa.reshape(shape).astype(np.float32))
            z3 = self.add_init(f"{w}_zp3", za.reshape(shape))
            wf = self.fresh(f"{w}__dq")
            out.append(self.node("DequantizeLinear", [w, s3, z3], [wf], axis=1,
                                 block_size=int(wa.shape[1]))
                       if sa.ndim == 2 else
                       self.node("DequantizeLinear", [w, self.add_init(
                           f"{w}_scale1", sa.astype(np.float32)), self.add_init(
                           f"{w}_zp1", za)], [wf], axis=0))
            wt = self.fresh(f"{w}__t")
            out.append(self.node("Transpose", [wf], [wt], perm=[0, 2, 1]))
            lstm_in[1 + k] = wt
        while lstm_in and not lstm_in[-1]:
            lstm_in.pop()
        out.append(self.node("LSTM", lstm_in, list(self.outputs), **attrs))

    def _QLinearConcat(self, out, ins, y, attrs, nin):
        if nin < 5 or (nin - 2) % 3:
            self.fail(f"expected Y_scale, Y_zero_point and (X, X_scale, X_zero_point) triples, "
                      f"got {nin} inputs")
        self._check_attrs(attrs, ("axis",))
        if "axis" not in attrs:
            self.fail("attribute 'axis' is required")
        ys, yz = ins[0], ins[1]
        self.scalar(ys, "Y_scale")
        self.scalar(yz, "Y_zero_point", kind="iu")
        parts = []
        for k in range(2, nin, 3):
            x, xs, xz = ins[k:k + 3]
            i = (k - 2) // 3
            self.scalar(xs, f"input {i}'s scale")
            self.scalar(xz, f"input {i}'s zero point", kind="iu")
            parts.append(self.dq(out, x, xs, xz))
        yf = self.float_out(y)
        out.append(self.node("Concat", parts, [yf], axis=int(attrs["axis"])))
        self.q(out, yf, ys, yz, y, ins[2])


#: ops ORT runs straight on quantized tensors; their output has their input's element type
_MOVES = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "MaxPool",
                    "Identity", "Slice", "Gather", "Split", "Pad", "Resize", "Expand", "Tile",
                    "DepthToSpace", "SpaceToDepth", "GlobalMaxPool"})
