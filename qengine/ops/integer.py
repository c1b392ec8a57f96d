"""Graph ops for static int8 quantization (made by qengine.workflows.ptq.quantize_static).

Values inside an int8 region are uint8 arrays; their (scale, zero point) are static and written
on the ops as attributes (`x_scale`, `x_zero_point`, `y_scale`, `y_zero_point`). 4-D values are
NHWC inside the region (the kernels' layout); QuantizeU8 / DequantizeU8 convert from / to the
graph's NCHW at the region's edges. Weights are initializers in a portable form — int8 OIHW or
[N, K] plus float32 per-channel scales and a float32 bias — and are packed for the CPU's kernels
when a Session is built. Fused activations become the output clamp: `activation` is "",
"relu" or "clip" (with `activation_min` / `activation_max`). QConv and the pools take ONNX's
`auto_pad`: SAME_UPPER / SAME_LOWER are resolved for each input's spatial size at run time.
QConv / QConvAdd / QGemm take `weight_bits` (0: 4 when every int8 weight lies in [−7, 7], else 8;
8; 4): how the layer holds its weights in memory — the same output bytes either way
(qengine/quantized/conv.py).
"""
from __future__ import annotations

import numpy as np

from .. import _runtime
from .._ext import _quant
from ..errors import ConfigError, ShapeError
from ..qtypes import check_scale_zp
from ..quantized import params as S
from ..quantized.conv import QConv2d, QConvAdd2d, QConvTranspose2d
from ..quantized.elementwise import QAdd, QConcat, QLookupTable, QMul
from ..quantized.pool import QAveragePool2d, QGlobalAveragePool, QMaxPool2d
from ..quantized.linear import QLinear, QMatMul
from .base import REQUIRED, Op, register_op

_QP = {"x_scale": ("float", 1.0), "x_zero_point": ("int", 0), "y_scale": ("float", 1.0),
       "y_zero_point": ("int", 0)}
_ACT = {"activation": ("string", ""), "activation_min": ("float", 0.0),
        "activation_max": ("float", 0.0)}
_WINDOW = {"kernel_shape": ("ints", None), "strides": ("ints", None), "pads": ("ints", None),
           "dilations": ("ints", None), "auto_pad": ("string", "NOTSET")}
_POOL_WINDOW = {**_WINDOW, "kernel_shape": ("ints", REQUIRED)}  # conv takes it from W
_WBITS = {"weight_bits": ("int", 0)}


def _weight_bits(attrs):
    bits = attrs["weight_bits"]
    if bits not in (0, 4, 8):
        raise ConfigError(f"weight_bits must be 0 (chosen from the weights), 4 or 8, got {bits}")
    return bits or None


def _activation(attrs, prefix=""):
    a = attrs[f"{prefix}activation"]
    if a == "":
        return None
    if a == "relu":
        return "relu"
    if a == "clip":
        return ("clip", attrs[f"{prefix}activation_min"], attrs[f"{prefix}activation_max"])
    raise ConfigError(f"{prefix}activation must be '', 'relu' or 'clip', got {a!r}")


def _padding(attrs):
    """The layers' padding from the ONNX attributes. SAME_UPPER / SAME_LOWER stay symbolic: the
    layer resolves them for each input's size (pads fixed at quantization time would be wrong
    for every other input size); VALID is no padding."""
    auto = attrs["auto_pad"]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return auto.lower()
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto != "NOTSET":
        raise ConfigError(f"auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got "
                          f"{auto!r}")
    return tuple(attrs["pads"] or (0, 0, 0, 0))


def _qp(attrs, p):
    return {f"{p}_scale": attrs[f"{p}_scale"], f"{p}_zero_point": attrs[f"{p}_zero_point"]}


def _arena_out(arena, shape):
    """Last run's uint8 output buffer when its shape still fits, else a new one kept there."""
    y = None if arena is None else arena.get("y")
    if y is None or y.shape != shape:
        y = np.empty(shape, np.uint8)
        if arena is not None:
            arena["y"] = y
    return y


class _QOp(Op):
    """Builds its layer in `prepare`; a layer error becomes a ModelError naming the node."""

    def prepare(self, initializers):
        try:
            self.layer = self.build(initializers)
        except (ConfigError, ShapeError, ValueError) as e:
            self.fail(str(e))

    def build(self, initializers):
        raise NotImplementedError

    # The executor hands every op that sets USES_ARENA a per-thread dict that persists across
    # runs (see graph/executor.py): the layer writes into last run's output buffer.
    USES_ARENA = True
    #: input shapes whose kernel call is kept resolved (layer.prepare_call), per op
    MAX_PREPARED = 8

    def call(self, *args, arena=None):
        x = args[0]
        prepared = self.__dict__.get("_prepared")
        fast = prepared.get(x.shape) if prepared is not None and len(args) == 1 else None
        if fast is not None and x.dtype == np.uint8 and x.flags.c_contiguous:
            # the steady state: the same input shape as before, one compiled call
            out_shape, fn = fast
            y = _arena_out(arena, out_shape)
            fn(x, y)
            return y
        try:
            y = self.layer(*args, out=None if arena is None else arena.get("y"))
        except ShapeError as e:
            self.fail(str(e), ShapeError)
        if arena is not None:
            arena["y"] = y
        if len(args) == 1 and hasattr(self.layer, "prepare_call"):
            # x passed the layer's checks: resolve its kernel call for this shape once (a dict
            # shared by all threads; concurrent fills of one key store equal entries)
            prepared = self.__dict__.setdefault("_prepared", {})
            if len(prepared) < self.MAX_PREPARED and y.flags.c_contiguous:
                prepared[x.shape] = self.layer.prepare_call(x.shape)
        return y


def _weight_inputs(op, inits, wi):
    """(int8 W, W_scale, bias or None) of an integer op: inputs wi, wi + 1, optional wi + 2."""
    b = op.const_input(inits, wi + 2) if len(op.node.inputs) > wi + 2 else None
    return op.const_input(inits, wi, True, "W"), op.const_input(inits, wi + 1, True, "W_scale"), b


def _tensor_qparams(op):
    """(float scale, int zero point) of a per-tensor uint8 QuantizeU8 / DequantizeU8, validated
    once at session build so that `run` only calls the kernel."""
    try:
        s, z, _ = check_scale_zp(op.attrs["scale"], op.attrs["zero_point"], None, None, 0, 255)
    except (ConfigError, ShapeError) as e:
        op.fail(str(e))
    return float(s), int(z)


def _to_nhwc(q, out):
    """NCHW q → NHWC `out`. With few channels (RGB input) one strided copy per channel is
    ~4× faster than NumPy's generic transpose copy, whose innermost run is then C bytes long."""
    if q.shape[1] > 4:
        np.copyto(out, q.transpose(0, 2, 3, 1))
        return out
    for c in range(q.shape[1]):
        out[..., c] = q[:, c]
    return out


@register_op
class QuantizeU8(Op):
    """float → uint8 (numerics.md "Quantize"); `to_nhwc` moves channels last for 4-D inputs.
    Calls the compiled kernel directly: on a tiny model (LeNet) the generic quantize() API's
    per-call validation would cost more than the whole kernel."""
    op_type = "QuantizeU8"
    ATTRS = {"scale": ("float", 1.0), "zero_point": ("int", 0), "to_nhwc": ("int", 0)}

    def prepare(self, initializers):
        self._scale, self._zp = _tensor_qparams(self)
        self._nhwc = bool(self.attrs["to_nhwc"])
        self._isa = _runtime.isa_index(None)

    USES_ARENA = True

    def run(self, x, arena=None):
        if x is None or x.dtype.kind != "f":
            self.fail(f"expects a float tensor, got {None if x is None else x.dtype}",
                      ShapeError)
        arena = {} if arena is None else arena
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, np.float32)
        nhwc = self._nhwc and x.ndim == 4
        shape = (x.shape[0], x.shape[2], x.shape[3], x.shape[1]) if nhwc else x.shape
        q = arena.get("y")
        if q is None or q.shape != shape:
            q = arena["y"] = np.empty(shape, np.uint8)
        if not nhwc or shape[3] == 1:          # one channel: NCHW and NHWC are the same bytes
            _quant.quantize_u8(x, q, self._scale, self._zp, self._isa)
            return (q,)
        # convert in the input's layout, then move the bytes: 4× less data than the floats
        t = arena["t"] = S.output(arena.get("t"), x.shape)
        _quant.quantize_u8(x, t, self._scale, self._zp, self._isa)
        return (_to_nhwc(t, q),)


@register_op
class DequantizeU8(Op):
    """uint8 → float32, s·(q − z); `from_nhwc` moves channels back to NCHW for 4-D values."""
    op_type = "DequantizeU8"
    ATTRS = {"scale": ("float", 1.0), "zero_point": ("int", 0), "from_nhwc": ("int", 0)}

    def prepare(self, initializers):
        self._scale, self._zp = _tensor_qparams(self)
        self._nhwc = bool(self.attrs["from_nhwc"])
        self._isa = _runtime.isa_index(None)

    USES_ARENA = True

    def run(self, q, arena=None):
        if q is None or q.dtype != np.uint8:
            self.fail(f"expects uint8, got {None if q is None else q.dtype}", ShapeError)
        arena = {} if arena is None else arena
        if self._nhwc and q.ndim == 4 and q.shape[3] != 1:
            # transpose the bytes, then convert: 4× less to move
            t = arena["t"] = S.output(arena.get("t"), (q.shape[0], q.shape[3], *q.shape[1:3]))
            np.copyto(t, q.transpose(0, 3, 1, 2))
            q = t
        elif self._nhwc and q.ndim == 4:       # one channel: the same bytes in either layout
            q = q.reshape(q.shape[0], 1, q.shape[1], q.shape[2])
        if not q.flags.c_contiguous:
            q = np.ascontiguousarray(q)
        y = arena.get("y")
        if y is None or y.shape != q.shape:
            y = arena["y"] = np.empty(q.shape, np.float32)
        _quant.dequantize_u8(q, y, self._scale, self._zp, self._isa)
        return (y,)


@register_op
class QConvOp(_QOp):
    """Conv on uint8 NHWC: inputs x, W int8 OIHW, W_scale float32 [Cout], B float32 (optional)."""
    op_type = "QConv"
    WEIGHT_INPUTS, BIAS_INPUT, NHWC_OUTPUT = ((1, 2),), 3, True
    INPUTS = (3, 4)
    # channel_scales=1: x_scale / y_scale are nominal (1.0) and W_scale carries per-channel
    # activation scales folded in (qengine/qdq/lower.py channel_fold); informational
    ATTRS = {**_WINDOW, "group": ("int", 1), **_QP, **_ACT, "channel_scales": ("int", 0),
             **_WBITS}

    def build(self, inits):
        return self.qconv(inits, 1, "y_", "")

    def qconv(self, inits, wi, out, act):
        """The QConv2d of weights input wi (then W_scale, optional B), output qparams attrs
        `out`scale / `out`zero_point and activation attrs prefixed `act`."""
        w, ws, b = _weight_inputs(self, inits, wi)
        a = self.attrs
        if w.ndim != 4:
            raise ShapeError(f"only 2-D convolution runs in int8, W has shape {w.shape}")
        return QConv2d(w, b, weight_scale=ws, input_scale=a["x_scale"],
                       input_zero_point=a["x_zero_point"], output_scale=a[f"{out}scale"],
                       output_zero_point=a[f"{out}zero_point"],
                       stride=tuple(a["strides"] or (1, 1)), padding=_padding(a),
                       dilation=tuple(a["dilations"] or (1, 1)), groups=a["group"],
                       activation=_activation(a, act), weight_bits=_weight_bits(a))

    def run(self, x, *_, arena=None):
        return (self.call(x, arena=arena),)


@register_op
class QConvTransposeOp(_QOp):
    """ConvTranspose (group 1) on uint8 NHWC: inputs x, W int8 [Cout, Cin, kh, kw] (the ONNX
    weights with their channel axes swapped), W_scale float32 [Cout], B float32 (optional);
    qengine/quantized/conv.py QConvTranspose2d."""
    op_type = "QConvTranspose"
    WEIGHT_INPUTS, BIAS_INPUT, NHWC_OUTPUT = ((1, 2),), 3, True
    INPUTS = (3, 4)
    ATTRS = {"kernel_shape": ("ints", None), "strides": ("ints", None), "pads": ("ints", None),
             "dilations": ("ints", None), "output_padding": ("ints", None), **_QP, **_ACT}

    def build(self, inits):
        w, ws, b = _weight_inputs(self, inits, 1)
        a = self.attrs
        return QConvTranspose2d(w, b, weight_scale=ws, input_scale=a["x_scale"],
                                input_zero_point=a["x_zero_point"], output_scale=a["y_scale"],
                                output_zero_point=a["y_zero_point"],
                                stride=tuple(a["strides"] or (1, 1)),
                                padding=tuple(a["pads"] or (0, 0, 0, 0)),
                                output_padding=tuple(a["output_padding"] or (0, 0)),
                                dilation=tuple(a["dilations"] or (1, 1)),
                                activation=_activation(a))

    def run(self, x, *_, arena=None):
        try:
            y = self.layer(x, out=None if arena is None else arena.get("y"))
        except ShapeError as e:
            self.fail(str(e), ShapeError)
        if arena is not None:
            arena["y"] = y
        return (y,)


@register_op
class QConvAddOp(QConvOp):
    """A QConv whose output only a QAdd read, fused with it (qengine/graph/fusion.py
    `fuse_residual_add`): y = QAdd(QConv(x), skip). Inputs x, skip (uint8 NHWC, the conv output's
    shape), W int8 OIHW, W_scale float32 [Cout], B float32 (optional). The conv's attributes are
    QConv's, its output qparams and clamp `conv_scale`, `conv_zero_point`, `conv_activation*`
    (the QAdd's operand a); `skip_scale` / `skip_zero_point` are operand b's, `y_*` and
    `activation*` the QAdd's output and clamp (an absorbed Relu); `fused_nodes` (informational)
    names the QConv and QAdd it replaces. The layer is
    qengine.quantized.conv.QConvAdd2d: the add runs on each conv tile as it is requantized."""
    op_type = "QConvAdd"
    WEIGHT_INPUTS, BIAS_INPUT, NHWC_OUTPUT = ((2, 3),), None, True
    INPUTS = (4, 5)
    ATTRS = {**_WINDOW, "group": ("int", 1), **_QP, **_ACT,
             "conv_scale": ("float", 1.0), "conv_zero_point": ("int", 0),
             "conv_activation": ("string", ""), "conv_activation_min": ("float", 0.0),
             "conv_activation_max": ("float", 0.0),
             "skip_scale": ("float", 1.0), "skip_zero_point": ("int", 0),
             "fused_nodes": ("strings", None), "channel_scales": ("int", 0), **_WBITS}

    def build(self, inits):
        a = self.attrs
        conv = self.qconv(inits, 2, "conv_", "conv_")
        add = QAdd(a["conv_scale"], a["conv_zero_point"], a["skip_scale"], a["skip_zero_point"],
                   a["y_scale"], a["y_zero_point"], activation=_activation(a))
        return QConvAdd2d(conv, add)

    def run(self, x, skip, *_, arena=None):
        fast = self.__dict__.get("_prepared", {}).get((x.shape, skip.shape))
        if fast is not None and x.dtype == np.uint8 and skip.dtype == np.uint8 and \
                x.flags.c_contiguous and skip.flags.c_contiguous:
            # the steady state: the shapes of before, one compiled call
            out_shape, fn = fast
            y = _arena_out(arena, out_shape)
            fn(x, skip, y)
            return (y,)
        try:
            y = self.layer(x, skip, out=None if arena is None else arena.get("y"))
        except ShapeError as e:
            self.fail(str(e), ShapeError)
        if arena is not None:
            arena["y"] = y
        if isinstance(skip, np.ndarray) and skip.dtype == np.uint8:
            prepared = self.__dict__.setdefault("_prepared", {})
            if len(prepared) < self.MAX_PREPARED and y.flags.c_contiguous:
                call = self.layer.prepare_call(x.shape, skip.shape)
                if call is not None:
                    prepared[(x.shape, skip.shape)] = call
        return (y,)


@register_op
class QGemmOp(_QOp):
    """y = x·Wᵀ + B on uint8 [..., K]: inputs x, W int8 [N, K], W_scale [N], B (optional)."""
    op_type = "QGemm"
    WEIGHT_INPUTS, BIAS_INPUT = ((1, 2),), 3
    INPUTS = (3, 4)
    ATTRS = {**_QP, **_ACT, **_WBITS}

    def build(self, inits):
        w, ws, b = _weight_inputs(self, inits, 1)
        a = self.attrs
        return QLinear(w, b, weight_scale=ws, input_scale=a["x_scale"],
                       input_zero_point=a["x_zero_point"], output_scale=a["y_scale"],
                       output_zero_point=a["y_zero_point"], activation=_activation(a),
                       weight_bits=_weight_bits(a))

    def run(self, x, *_, arena=None):
        return (self.call(x, arena=arena),)


@register_op
class QGemmDequantOp(Op):
    """y = s_x·s_w·((x − z_x)·Wᵀ) + B in float32, on uint8 [..., K]: a Gemm whose input is
    quantized and whose output is not (a model's last layer in NNCF's files). Inputs x, W int8
    [N, K], W_scale [N], B (optional; float32, or int32 at s_x·s_w)."""
    op_type = "QGemmDequant"
    INPUTS = (3, 4)
    ATTRS = {"x_scale": ("float", 1.0), "x_zero_point": ("int", 0)}
    WEIGHT_INPUTS, BIAS_INPUT = ((1, 2),), 3

    def prepare(self, inits):
        from .. import functional
        w, ws, b = _weight_inputs(self, inits, 1)
        try:
            s, z, _ = check_scale_zp(self.attrs["x_scale"], self.attrs["x_zero_point"], None,
                                     None, 0, 255)
            w8, sw = S.weights_s8(w, ws, np.shape(w)[0])
            if w8.ndim != 2:
                raise ShapeError(f"W must be [N, K], got {w8.shape}")
            self._wp = functional.pack_weights(w8)
        except (ConfigError, ShapeError, ValueError) as e:
            self.fail(str(e))
        self._s, self._z, self._sw, self._k = float(s), int(z), sw, w8.shape[1]
        if b is not None and np.asarray(b).dtype.kind in "iu":   # int32 at s_x·s_w
            b = np.asarray(b, np.float64) * (np.float32(s) * sw).astype(np.float64)
        self._b = None if b is None else np.ascontiguousarray(b, np.float32).reshape(-1)

    def run(self, x, *_):
        from .. import functional
        if x is None or x.dtype != np.uint8 or x.ndim < 1 or x.shape[-1] != self._k:
            self.fail(f"expects uint8 [..., {self._k}], got "
                      f"{None if x is None else (x.dtype, x.shape)}", ShapeError)
        x2 = np.ascontiguousarray(x.reshape(-1, self._k))
        y = functional.matmul_dequant(x2, self._s, self._z, self._wp, self._sw, self._b)
        return (y.reshape(*x.shape[:-1], y.shape[-1]),)


@register_op
class QMaxPoolOp(_QOp):
    op_type = "QMaxPool"
    NHWC_OUTPUT = True
    ATTRS = {**_POOL_WINDOW, "ceil_mode": ("int", 0)}

    def build(self, inits):
        a = self.attrs
        return QMaxPool2d(tuple(a["kernel_shape"]), tuple(a["strides"] or (1, 1)),
                          _padding(a), tuple(a["dilations"] or (1, 1)),
                          bool(a["ceil_mode"]))

    def run(self, x, arena=None):
        return (self.call(x, arena=arena),)


@register_op
class QAveragePoolOp(_QOp):
    op_type = "QAveragePool"
    NHWC_OUTPUT = True
    ATTRS = {**_POOL_WINDOW, "ceil_mode": ("int", 0), "count_include_pad": ("int", 0), **_QP}

    def build(self, inits):
        a = self.attrs
        return QAveragePool2d(tuple(a["kernel_shape"]), tuple(a["strides"] or (1, 1)),
                              _padding(a), bool(a["ceil_mode"]),
                              bool(a["count_include_pad"]), input_scale=a["x_scale"],
                              input_zero_point=a["x_zero_point"], output_scale=a["y_scale"],
                              output_zero_point=a["y_zero_point"],
                              dilation=tuple(a["dilations"] or (1, 1)))

    def run(self, x, arena=None):
        return (self.call(x, arena=arena),)


@register_op
class QGlobalAveragePoolOp(_QOp):
    op_type = "QGlobalAveragePool"
    NHWC_OUTPUT = True
    ATTRS = dict(_QP)

    def build(self, inits):
        a = self.attrs
        return QGlobalAveragePool(input_scale=a["x_scale"], input_zero_point=a["x_zero_point"],
                                  output_scale=a["y_scale"], output_zero_point=a["y_zero_point"])

    def run(self, x, arena=None):
        return (self.call(x, arena=arena),)


class _QBinary(_QOp):
    NHWC_OUTPUT = True          # in an NHWC region; 2-D operands have no layout to differ
    INPUTS = (2, 2)
    ATTRS = {"a_scale": ("float", 1.0), "a_zero_point": ("int", 0), "b_scale": ("float", 1.0),
             "b_zero_point": ("int", 0), "y_scale": ("float", 1.0), "y_zero_point": ("int", 0),
             **_ACT}
    LAYER = None

    def build(self, inits):
        a = self.attrs
        return type(self).LAYER(a["a_scale"], a["a_zero_point"], a["b_scale"], a["b_zero_point"],
                                a["y_scale"], a["y_zero_point"], activation=_activation(a))

    def run(self, x, y, arena=None):
        return (self.call(x, y, arena=arena),)


@register_op
class QAddOp(_QBinary):
    op_type = "QAdd"
    LAYER = QAdd


@register_op
class QMulOp(_QBinary):
    op_type = "QMul"
    LAYER = QMul


@register_op
class QMatMulOp(_QBinary):
    """A MatMul between two uint8 activations, per tensor (qengine/quantized/linear.py
    QMatMul: exact integer sums, quantized at s_y / (s_a·s_b))."""
    op_type = "QMatMul"
    NHWC_OUTPUT = False
    LAYER = QMatMul

    def build(self, inits):
        a = self.attrs
        return QMatMul(a["a_scale"], a["a_zero_point"], a["b_scale"], a["b_zero_point"],
                       a["y_scale"], a["y_zero_point"], activation=_activation(a))


@register_op
class QConcatOp(_QOp):
    op_type = "QConcat"
    INPUTS = (1, None)
    ATTRS = {"axis": ("int", 1), "scales": ("floats", None), "zero_points": ("ints", None),
             "y_scale": ("float", 1.0), "y_zero_point": ("int", 0)}

    def build(self, inits):
        a = self.attrs
        if not a["scales"] or len(a["scales"]) != len(self.node.inputs) or \
                len(a["zero_points"] or []) != len(self.node.inputs):
            raise ConfigError("scales/zero_points must give one (scale, zero point) per input")
        return QConcat(list(zip(a["scales"], a["zero_points"])), a["y_scale"],
                       a["y_zero_point"], axis=a["axis"])

    def run(self, *xs, arena=None):
        return (self.call(list(xs), arena=arena),)


@register_op
class QLutOp(_QOp):
    """An elementwise function on uint8 through a 256-entry table (Sigmoid, Tanh, HardSigmoid,
    HardSwish, LeakyRelu, Relu...), built from the input and output qparams. function "chain":
    a fused elementwise chain whose program is in steps/registers/constants (as on
    ElementwiseChain, qengine/ops/chain.py), evaluated in float64 for the table."""
    op_type = "QLut"
    ATTRS = {"function": ("string", "relu"), "alpha": ("float", None), "beta": ("float", None),
             "steps": ("strings", None), "registers": ("ints", None),
             "constants": ("floats", None), **_QP}

    @classmethod
    def check_attrs(cls, attrs, node):
        if attrs["function"] == "chain":
            from .chain import ElementwiseChain
            ElementwiseChain.check_attrs(attrs, node)

    def build(self, inits):
        a = self.attrs
        kw = {k: a[k] for k in ("alpha", "beta") if a[k] is not None}
        fn = a["function"]
        if fn == "clip":                  # a standalone Clip: alpha/beta are its bounds
            lo, hi = kw.pop("alpha", -np.inf), kw.pop("beta", np.inf)
            fn = lambda r: np.clip(r, lo, hi)  # noqa: E731
        elif fn == "chain":
            from .chain import chain_ref, steps_of
            steps = steps_of(a)
            fn = lambda r: chain_ref(r, steps)  # noqa: E731
        return QLookupTable(fn, input_scale=a["x_scale"],
                            input_zero_point=a["x_zero_point"], output_scale=a["y_scale"],
                            output_zero_point=a["y_zero_point"], **kw)

    def run(self, x, arena=None):
        return (self.call(x, arena=arena),)
