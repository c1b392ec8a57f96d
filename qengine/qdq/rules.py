"""The lowering rules: one per node unit (DequantizeLinear inputs → op → QuantizeLinear output).

A rule says which inputs of its op are activations (they must arrive through DQ), whether the
op absorbs a following Relu/Clip as its output clamp, whether its output must keep its input's
qparams (data movement), what makes a node impossible to run in int8 (`refuse`, asked both by
static PTQ when it decides where to put Q/DQ and by the lowering), and how to emit the integer
op (`emit`). Adding an int8 operator is one rule here plus its op in qengine/ops/integer.py.

`u` is a `Unit` (qengine/qdq/lower.py): the node with its constants (dequantized where they
come through DQ), ranks, and — during lowering — its inputs' and output's quantized tensors;
`b` is the lowering (the builder of the integer graph).
"""
from __future__ import annotations

import numpy as np

from ..graph.fusion import _activation_of

# The activation functions a 256-entry table computes (QLut `function`)
LUT_FUNCTIONS = {"Sigmoid": "sigmoid", "Tanh": "tanh", "HardSigmoid": "hardsigmoid",
                 "HardSwish": "hardswish", "LeakyRelu": "leakyrelu", "Relu": "relu",
                 "Clip": "clip"}


def clamp_of(g, node):
    """(activation, lo, hi) when `node` is a Relu / Clip with constant finite bounds, else None."""
    act = _activation_of(g, node) if node.op_type in ("Relu", "Clip") else None
    if act is None:
        return None
    return ("relu", 0.0, 0.0) if act[0] == "Relu" else ("clip", *act[1])


def bias_vector(c, n):
    """c as an (n,) float32 vector if it broadcasts over the last axis only, else None."""
    if c is None:
        return None
    c = np.asarray(c)
    if c.ndim == 0:
        return np.full(n, c, np.float32)
    if c.shape[-1] in (1, n) and all(d == 1 for d in c.shape[:-1]):
        return np.broadcast_to(c.reshape(-1), (n,)).astype(np.float32)
    return None


def window(a) -> dict:
    """The window attributes an int8 conv/pool node carries over. auto_pad stays symbolic: the
    op resolves SAME pads for each input's size. It is written only when set, so engine files
    without it stay readable by older versions (which refuse the attribute rather than run
    with wrong pads)."""
    auto = a.get("auto_pad", "NOTSET")
    return dict(strides=list(a.get("strides") or [1, 1]), pads=list(a.get("pads") or [0] * 4),
                dilations=list(a.get("dilations") or [1, 1]),
                **({} if auto == "NOTSET" else {"auto_pad": auto}))


class Rule:
    ops: tuple = ()
    float_output = False         # may lower with a float output (emit_float_output)
    absorbs_clamp = False        # a sole Relu/Clip consumer becomes the output clamp
    same_qparams = False         # the output is the input's bytes (data movement)
    needs_int8_input = False     # only worth it when the input already is int8 (PTQ plan)
    channel_scales = False       # reads / writes per-channel activation scales (folded)
    moves_bytes = False          # pure data movement: not worth it if the float exists too

    def data_inputs(self, n, is_const=None) -> int:
        """How many leading inputs are activations (the rest: weights, shapes, bounds).
        `is_const(value)`: whether a value is a constant (a weight), for ops whose inputs may
        be either (MatMul); without it such an input counts as a weight."""
        return 1

    def refuse(self, u) -> str | None:
        return None

    def select(self, n, is_const=None) -> "Rule":
        """The rule for this node: itself, or a variant for a form of the op that lowers
        differently (an Add of a scalar constant is a table, of two tensors a QAdd)."""
        return self

    def emit(self, u, b) -> str | None:
        raise NotImplementedError


class ConvRule(Rule):
    ops = ("Conv",)
    absorbs_clamp = True
    channel_scales = True

    def refuse(self, u):
        w = u.const(1)
        if w is None:
            return "W is not a constant"
        if w.ndim != 4:
            return f"only 2-D convolution runs in int8 (W has shape {w.shape})"
        if u.node.attrs.get("fused_activation"):
            return "carries a fused_activation attribute"
        if u.has_input(2) and u.const(2) is None:
            return "B is not a constant"
        return None

    def emit(self, u, b):
        n, a = u.node, u.node.attrs
        w = b.weights(u, 1, out_axis=0)
        if isinstance(w, str):
            return w
        if b.qvs[u.qin(0)].per_channel or b.qvs[u.qout].per_channel:
            cin = u.const(1).shape[1] * a.get("group", 1)
            depthwise = a.get("group", 1) == cin == u.const(1).shape[0]
            fold = b.channel_fold(u, w, depthwise)
            if isinstance(fold, str):
                return fold
            xs, ys, ws, bias, clamp = fold
            (_, xz), (_, yz) = b.qp(u.qin(0)), b.qp(u.qout)
            ins = [b.get_q(u.qin(0), "nhwc"), w[0], ws, *([bias] if bias else [])]
            b.emit("QConv", n.name, ins, [b.put_q(u.qout, "nhwc")],
                   kernel_shape=list(u.const(1).shape[2:]), **window(a),
                   group=a.get("group", 1), x_scale=xs, x_zero_point=xz, y_scale=ys,
                   y_zero_point=yz, channel_scales=1, **clamp)
            return None
        bias = [b.bias(u, 2, u.qin(0), w[1])] if u.has_input(2) else []
        if bias and bias[0] not in b.inits:
            return bias[0]
        ins = [b.get_q(u.qin(0), "nhwc"), *w, *bias]
        b.emit("QConv", n.name, ins, [b.put_q(u.qout, "nhwc")],
               kernel_shape=list(u.const(1).shape[2:]), **window(a), group=a.get("group", 1),
               **b.xy(u), **b.clamp_attrs(u))
        return None


def _two_activations(n, is_const) -> bool:
    """A MatMul between two activations (attention's Q·Kᵀ and P·V)."""
    return n.op_type == "MatMul" and is_const is not None and len(n.inputs) > 1 and \
        not is_const(n.inputs[1])


class ConvTransposeRule(Rule):
    """2-D ConvTranspose with group 1: QConvTranspose, an int8 convolution over the input with
    zeros stuffed between its pixels (qengine/quantized/conv.py QConvTranspose2d)."""
    ops = ("ConvTranspose",)
    absorbs_clamp = True

    def refuse(self, u):
        n, a = u.node, u.node.attrs
        w = u.const(1)
        if w is None or w.ndim != 4:
            return "W is not a constant 4-D tensor (only 2-D ConvTranspose runs in int8)"
        if a.get("group", 1) != 1:
            return "group > 1"
        if a.get("auto_pad", "NOTSET") != "NOTSET" or a.get("output_shape"):
            return "auto_pad / output_shape (explicit pads only)"
        if u.has_input(2) and u.const(2) is None:
            return "B is not a constant"
        k, d = w.shape[2:], list(a.get("dilations") or [1, 1])
        pads = list(a.get("pads") or [0, 0, 0, 0])
        if any(p > (k[i % 2] - 1) * d[i % 2] for i, p in enumerate(pads)):
            return "pads larger than (kernel − 1)·dilation"
        return None

    def emit(self, u, b):
        n, a = u.node, u.node.attrs
        w = b.weights(u, 1, out_axis=1)
        if isinstance(w, str):
            return w
        bias = [b.bias(u, 2, u.qin(0), w[1])] if u.has_input(2) else []
        if bias and bias[0] not in b.inits:
            return bias[0]
        b.emit("QConvTranspose", n.name, [b.get_q(u.qin(0), "nhwc"), *w, *bias],
               [b.put_q(u.qout, "nhwc")], kernel_shape=list(u.const(1).shape[2:]),
               strides=list(a.get("strides") or [1, 1]), pads=list(a.get("pads") or [0] * 4),
               dilations=list(a.get("dilations") or [1, 1]),
               output_padding=list(a.get("output_padding") or [0, 0]), **b.xy(u),
               **b.clamp_attrs(u))
        return None


class GemmRule(Rule):
    """Gemm / MatMul by constant weights: QGemm. A MatMul between two activations: QMatMul
    (both uint8 per tensor, the integer products summed exactly; static PTQ leaves these
    float unless StaticQuantConfig(activation_matmul="int8"), a QDQ model lowers them)."""
    ops = ("Gemm", "MatMul")
    absorbs_clamp = True

    def data_inputs(self, n, is_const=None):
        return 2 if _two_activations(n, is_const) else 1

    def refuse(self, u):
        n, a = u.node, u.node.attrs
        if _two_activations(n, u.const_name):
            if u.const_name(n.inputs[0]):
                return "A is a constant"
            r0, r1 = u.rank(n.inputs[0]), u.rank(n.inputs[1])
            if r0 is None or r1 is None or r0 < 2 or r1 < 2:
                return "operands of unknown rank or rank 1"
            return None
        w = u.const(1)
        if w is None or w.ndim != 2:
            return "B is not a constant 2-D matrix"
        if u.const(0) is not None:
            return "A is a constant"
        if n.op_type == "MatMul":
            return None
        if a.get("transA", 0):
            return "transA=1"
        if a.get("fused_activation"):
            return "carries a fused_activation attribute"
        if u.has_input(2):
            c = u.const(2)
            if c is None or bias_vector(c, w.shape[0] if a.get("transB", 0) else w.shape[1]) \
                    is None:
                return "C is not a constant vector over the output features"
        return None

    float_output = True

    def inputs(self, u, b):
        """[x uint8, W int8 [N, K], W scales, (bias)], or the reason the unit stays float."""
        n, a = u.node, u.node.attrs
        gemm = n.op_type == "Gemm"
        # the kernels take W as [N, K]: rows are output features
        w = b.weights(u, 1, out_axis=0 if gemm and a.get("transB", 0) else 1,
                      alpha=float(a.get("alpha", 1.0)) if gemm else 1.0)
        if isinstance(w, str):
            return w
        bias = [b.bias(u, 2, u.qin(0), w[1], beta=float(a.get("beta", 1.0)))] \
            if gemm and u.has_input(2) else []
        if bias and bias[0] not in b.inits:
            return bias[0]
        return [b.get_q(u.qin(0), "plain"), *w, *bias]

    def emit(self, u, b):
        if _two_activations(u.node, u.const_name):
            (sa, za), (sb, zb), (ys, yz) = b.qp(u.qin(0)), b.qp(u.qin(1)), b.qp(u.qout)
            b.emit("QMatMul", u.node.name, [b.get_q(u.qin(0), "plain"),
                                            b.get_q(u.qin(1), "plain")],
                   [b.put_q(u.qout, "plain")], a_scale=sa, a_zero_point=za, b_scale=sb,
                   b_zero_point=zb, y_scale=ys, y_zero_point=yz, **b.clamp_attrs(u))
            return None
        ins = self.inputs(u, b)
        if isinstance(ins, str):
            return ins
        b.emit("QGemm", u.node.name, ins, [b.put_q(u.qout, "plain")], **b.xy(u),
               **b.clamp_attrs(u))
        return None

    def emit_float_output(self, u, b):
        """The unit with a float output: a QGemmDequant writes the node's own output."""
        if _two_activations(u.node, u.const_name):
            return "a MatMul between two activations has no float-output form"
        ins = self.inputs(u, b)
        if isinstance(ins, str):
            return ins
        s, z = b.qp(u.qin(0))
        b.emit("QGemmDequant", u.node.name, ins, [u.node.outputs[0]], x_scale=s,
               x_zero_point=z)
        return None


class PoolRule(Rule):
    ops = ("MaxPool", "AveragePool")

    def refuse(self, u):
        n, a = u.node, u.node.attrs
        if len(n.outputs) > 1 and n.outputs[1]:
            return "the Indices output is read"
        k = a.get("kernel_shape")
        if u.rank(n.inputs[0]) != 4 or k is None or len(k) != 2:
            return "only 2-D pooling runs in int8"
        if a.get("storage_order", 0):
            return "storage_order=1"
        return None

    def emit(self, u, b):
        n, a = u.node, u.node.attrs
        common = dict(kernel_shape=list(a["kernel_shape"]), ceil_mode=a.get("ceil_mode", 0),
                      **window(a))
        x = b.get_q(u.qin(0), "nhwc")
        if n.op_type == "MaxPool":
            b.emit("QMaxPool", n.name, [x], [b.put_q(u.qout, "nhwc")], **common)
        else:
            b.emit("QAveragePool", n.name, [x], [b.put_q(u.qout, "nhwc")],
                   count_include_pad=a.get("count_include_pad", 0), **common, **b.xy(u))
        return None


class MaxPoolRule(PoolRule):
    ops = ("MaxPool",)
    same_qparams = True
    needs_int8_input = True      # quantizing only for a max would just add error


class GlobalAveragePoolRule(Rule):
    ops = ("GlobalAveragePool",)

    def refuse(self, u):
        return None if u.rank(u.node.inputs[0]) == 4 else "only 4-D inputs run in int8"

    def emit(self, u, b):
        x = b.get_q(u.qin(0), "nhwc")
        b.emit("QGlobalAveragePool", u.node.name, [x], [b.put_q(u.qout, "nhwc")], **b.xy(u))
        return None


class ReduceMeanRule(Rule):
    """ReduceMean over H and W of a 4-D tensor (torch's x.mean((2, 3))) is a global average
    pool (then flattened with keepdims=0)."""
    ops = ("ReduceMean",)

    def refuse(self, u):
        n = u.node
        axes = u.const(1) if u.has_input(1) else n.attrs.get("axes")
        if u.rank(n.inputs[0]) != 4 or axes is None or \
                sorted(int(a) % 4 for a in np.asarray(axes).reshape(-1)) != [2, 3]:
            return "only a mean over H and W of a 4-D tensor runs in int8"
        return None

    def emit(self, u, b):
        n = u.node
        x = b.get_q(u.qin(0), "nhwc")
        if n.attrs.get("keepdims", 1):
            b.emit("QGlobalAveragePool", n.name, [x], [b.put_q(u.qout, "nhwc")], **b.xy(u))
            return None
        pooled, plain = b.fresh(f"{n.name}.pooled"), b.fresh(f"{n.name}.pooled_nchw")
        b.emit("QGlobalAveragePool", n.name, [x], [pooled], **b.xy(u))
        # the layout change is a copy of C bytes per image; it keeps every uint8 value of one
        # layout (the ONNX export reads layouts from the graph)
        b.emit("Transpose", b.fresh(f"{n.name}.to_plain"), [pooled], [plain], perm=[0, 3, 1, 2])
        b.emit("Flatten", b.fresh(f"{n.name}.flatten"), [plain], [b.put_q(u.qout, "plain")],
               axis=1)
        return None


class BinaryRule(Rule):
    ops = ("Add", "Mul", "Sum")
    absorbs_clamp = True

    def data_inputs(self, n, is_const=None):
        return 2

    def select(self, n, is_const=None):
        if n.op_type in ScalarRule.ops and len(n.inputs) == 2 and is_const is not None and \
                is_const(n.inputs[1]) and not is_const(n.inputs[0]):
            return SCALAR_RULE
        return self

    def refuse(self, u):
        n = u.node
        if n.op_type == "Sum" and len(n.inputs) != 2:
            return "Sum of more than two inputs"
        if any(not v or u.const_name(v) for v in n.inputs[:2]):
            return "an operand is a constant"
        r0, r1 = u.rank(n.inputs[0]), u.rank(n.inputs[1])
        if r0 is None or r0 != r1:
            return "operands of different or unknown ranks (broadcasting)"
        return None

    def emit(self, u, b):
        n = u.node
        lay = "nhwc" if u.rank(n.inputs[0]) == 4 else "plain"
        xa, xb = b.get_q(u.qin(0), lay), b.get_q(u.qin(1), lay)
        (sa, za), (sb, zb), (ys, yz) = b.qp(u.qin(0)), b.qp(u.qin(1)), b.qp(u.qout)
        b.emit("QMul" if n.op_type == "Mul" else "QAdd", n.name, [xa, xb],
               [b.put_q(u.qout, lay)], a_scale=sa, a_zero_point=za, b_scale=sb,
               b_zero_point=zb, y_scale=ys, y_zero_point=yz, **b.clamp_attrs(u))
        return None


class ScalarRule(Rule):
    """x + c, x − c, x · c, x / c with c a float scalar constant (attention's 1/√d on Q and K,
    a learnt scale): one table lookup from the input's codes to the output's, like a fused
    chain — only worth it where the input already is int8."""
    ops = ("Add", "Sub", "Mul", "Div")
    needs_int8_input = True
    _STEP = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}

    def refuse(self, u):
        c = u.const(1)
        if c is None or u.const_name(u.node.inputs[0]):
            return "not a tensor and a scalar constant"
        c = np.asarray(c)
        if c.size != 1 or c.dtype.kind != "f" or not np.isfinite(c).all() or \
                (c.ndim and c.ndim > (u.rank(u.node.inputs[0]) or 0)):
            return "the constant is not a finite float scalar"
        if u.node.op_type == "Div" and float(c.reshape(-1)[0]) == 0.0:
            return "division by zero"
        return None

    def emit(self, u, b):
        n = u.node
        c = float(np.float32(np.asarray(u.const(1)).reshape(-1)[0]))
        lay = b.layout_of(u.qin(0), u.rank(n.inputs[0]))
        b.emit("QLut", n.name, [b.get_q(u.qin(0), lay)], [b.put_q(u.qout, lay)],
               function="chain", steps=[self._STEP[n.op_type]], registers=[-1], constants=[c],
               **b.xy(u))
        return None


SCALAR_RULE = ScalarRule()


class ConcatRule(Rule):
    ops = ("Concat",)

    def data_inputs(self, n, is_const=None):
        return len(n.inputs)

    def refuse(self, u):
        if any(u.const_name(v) for v in u.node.inputs):
            return "an input is a constant"
        ranks = {u.rank(v) for v in u.node.inputs}
        return None if len(ranks) == 1 and None not in ranks else "inputs of unknown ranks"

    def emit(self, u, b):
        n = u.node
        rank = u.rank(n.inputs[0])
        axis = n.attrs.get("axis", 1)
        axis = axis + rank if axis < 0 else axis
        lay = "nhwc" if rank == 4 else "plain"
        if lay == "nhwc":
            axis = {0: 0, 1: 3, 2: 1, 3: 2}[axis]
        qins = [u.qin(i) for i in range(len(n.inputs))]
        xs = [b.get_q(q, lay) for q in qins]
        qps = [b.qp(q) for q in qins]
        ys, yz = b.qp(u.qout)
        b.emit("QConcat", n.name, xs, [b.put_q(u.qout, lay)], axis=axis,
               scales=[q[0] for q in qps], zero_points=[q[1] for q in qps], y_scale=ys,
               y_zero_point=yz)
        return None


class LutRule(Rule):
    """Elementwise functions through a 256-entry table, built from the qparams."""
    ops = tuple(LUT_FUNCTIONS)

    def refuse(self, u):
        if u.node.op_type == "Clip" and clamp_of(u.g, u.node) is None:
            return "Clip bounds are not constant and finite"
        return None

    def emit(self, u, b):
        n = u.node
        fn = LUT_FUNCTIONS[n.op_type]
        attrs = {}
        if fn == "clip":
            _, lo, hi = clamp_of(u.g, n)
            attrs = {"alpha": lo, "beta": hi}
        elif n.op_type == "LeakyRelu":
            attrs = {"alpha": float(n.attrs.get("alpha", 0.01))}
        elif n.op_type == "HardSigmoid":
            attrs = {"alpha": float(n.attrs.get("alpha", 0.2)),
                     "beta": float(n.attrs.get("beta", 0.5))}
        lay = b.layout_of(u.qin(0), u.rank(n.inputs[0]))
        b.emit("QLut", n.name, [b.get_q(u.qin(0), lay)], [b.put_q(u.qout, lay)], function=fn,
               **attrs, **b.xy(u))
        return None


class ClampLutRule(LutRule):
    """Relu / Clip on their own: a clamp on a float value is exact in float, so PTQ only
    quantizes around one whose input already is int8."""
    ops = ("Relu", "Clip")
    needs_int8_input = True


class ChainRule(Rule):
    """A fused elementwise chain (qengine/graph/chains.py) as one table lookup; after a float
    op it stays one compiled float pass (quantizing just for it would add two conversions)."""
    ops = ("ElementwiseChain",)
    needs_int8_input = True

    def emit(self, u, b):
        n = u.node
        lay = b.layout_of(u.qin(0), u.rank(n.inputs[0]))
        prog = {k: n.attrs[k] for k in ("steps", "registers", "constants")}
        b.emit("QLut", n.name, [b.get_q(u.qin(0), lay)], [b.put_q(u.qout, lay)],
               function="chain", **prog, **b.xy(u))
        return None


class PassThroughRule(Rule):
    """Data movement: the uint8 bytes move, the qparams stay."""
    ops = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Gather", "Slice")
    same_qparams = True
    needs_int8_input = True
    moves_bytes = True

    def refuse(self, u):
        for v in u.node.inputs[1:]:
            if v and u.is_quantized(v):
                return f"its shape input {v!r} is a quantized tensor"
        return None

    def emit(self, u, b):
        n = u.node
        rest = [b.get_float(v) for v in n.inputs[1:]]
        b.emit(n.op_type, n.name, [b.get_q(u.qin(0), "plain"), *rest],
               [b.put_q(u.qout, "plain")], **n.attrs)
        return None


class PadRule(PassThroughRule):
    """Pad moves codes too: reflect / edge / wrap copy input elements, constant mode fills
    with 0's code, the zero point (exactly 0): the same bytes as the op in float between a
    dequantize and a quantize at the input's qparams. Plain layout (a 4-D value in an NHWC
    region is transposed for it)."""
    ops = ("Pad",)
    moves_bytes = False             # it makes new bytes: worth it even next to float

    def refuse(self, u):
        n = u.node
        for i in (1, 2, 3):
            if len(n.inputs) > i and n.inputs[i] and u.const(i) is None:
                return f"input {i} ({('pads', 'constant_value', 'axes')[i - 1]}) is not a " \
                       f"constant"
        if len(n.inputs) > 2 and n.inputs[2] and np.any(u.const(2)):
            # the output keeps the input's qparams (decided before calibration), which hold 0
            # but maybe not another fill: that Pad stays float
            return "a nonzero pad value (it may lie outside the input's int8 range)"
        return super().refuse(u)

    def emit(self, u, b):
        n = u.node
        rest = [b.get_float(v) if v else "" for v in n.inputs[1:]]
        if n.attrs.get("mode", "constant") == "constant":   # fill with 0's code (refuse)
            rest += [""] * (2 - len(rest))
            rest[1] = b.init(f"{n.name}.constant_code", np.array(b.qp(u.qin(0))[1], np.uint8))
        b.emit("Pad", n.name, [b.get_q(u.qin(0), "plain"), *rest], [b.put_q(u.qout, "plain")],
               **n.attrs)
        return None


class ResizeRule(PassThroughRule):
    """Resize on the uint8 codes at the input's qparams (NCHW, the op's own layout). Nearest
    picks input elements: the same bytes. Linear mixes them with weights that are positive
    and sum to 1, so its output stays inside the input's range: the codes are interpolated
    (in float64, as the op does for integers) and rounded once, rint(Σ w·q), within one code
    of the float op between a dequantize and a quantize. Cubic overshoots the input's range:
    it stays float."""
    ops = ("Resize",)
    moves_bytes = False             # an upsample makes new bytes: worth it even next to float

    def refuse(self, u):
        a = u.node.attrs
        if a.get("mode", "nearest") not in ("nearest", "linear"):
            return f"mode {a.get('mode')!r}: only nearest and linear Resize run on int8 codes"
        if a.get("coordinate_transformation_mode") == "tf_crop_and_resize":
            return "tf_crop_and_resize fills with a float extrapolation_value"
        return super().refuse(u)

    def emit(self, u, b):
        n = u.node
        rest = [b.get_float(v) if v else "" for v in n.inputs[1:]]
        b.emit(n.op_type, n.name, [b.get_q(u.qin(0), "plain"), *rest],
               [b.put_q(u.qout, "plain")], **n.attrs)
        return None


class GlobalMaxPoolRule(PassThroughRule):
    """The max of codes is the code of the max (quantizing is monotonic): the uint8 bytes are
    reduced at the input's qparams, bit-identical to a float island (NCHW, the op's layout)."""
    ops = ("GlobalMaxPool",)
    moves_bytes = False             # it shrinks the map: worth it even next to float


RULES: dict[str, Rule] = {}
for _rule in (ConvRule(), ConvTransposeRule(), GemmRule(), MaxPoolRule(), PoolRule(), GlobalAveragePoolRule(),
              ReduceMeanRule(),
              BinaryRule(), SCALAR_RULE, ConcatRule(), ClampLutRule(), LutRule(), ChainRule(),
              PadRule(), ResizeRule(), GlobalMaxPoolRule(), PassThroughRule()):
    for _op in _rule.ops:
        RULES.setdefault(_op, _rule)       # the first rule listed for an op wins


def rule_for(n, is_const=None) -> Rule | None:
    """The lowering rule of node n (`is_const(value)`: whether a value is a constant)."""
    rule = RULES.get(n.op_type)
    return None if rule is None else rule.select(n, is_const)
