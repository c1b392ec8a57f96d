"""Shared argument handling for the static-int8 layers (qengine/quantized/{conv,pool,
elementwise,linear}.py): qparams validation, fused-activation clamps, weight quantization,
and the bias / multiplier folding of docs/numerics.md epilogue (b). The multipliers are each
one float64 expression rounded once to float32; qengine/reference/conv.py holds the NumPy
definitions they are tested against (tests/test_architecture.py)."""
import numpy as np

from .. import _runtime
from .._ext import _quant
from ..errors import ConfigError, ShapeError
from ..window import same_pads
from .weights import quantize_per_channel_symmetric

_AVAILABLE = tuple(_runtime.available_isas())


def isa_index(isa):
    if isa is None:
        return _runtime.isa_index(None)
    name = str(isa).lower()
    if name in _AVAILABLE:
        return _runtime.ISA_NAMES.index(name)
    return _runtime.isa_index(isa)


def scale(v, name):
    s = np.float32(v)
    if np.ndim(v) != 0 or not (np.isfinite(s) and s >= np.finfo(np.float32).tiny):
        raise ConfigError(f"{name} must be a finite normal float32 scalar > 0, got {v!r}")
    return s


def zero_point(v, name):
    if np.ndim(v) != 0 or int(v) != v or not 0 <= int(v) <= 255:
        raise ConfigError(f"{name} must be an integer in [0, 255] (uint8), got {v!r}")
    return int(v)


def clamp_range(activation, y_scale, y_zero_point):
    """(lo, hi) for a fused activation on the u8 output: None, 'relu', 'relu6' or ('clip', a, b).
    Quantization is monotonic, so clamp(q(r), q(a), q(b)) = q(clip(r, a, b)) exactly."""
    if activation is None:
        return 0, 255
    if activation == "relu":
        return y_zero_point, 255
    if activation == "relu6":
        a, b = 0.0, 6.0
    elif isinstance(activation, tuple) and len(activation) == 3 and activation[0] == "clip":
        a, b = activation[1], activation[2]
        a = -np.inf if a is None else a
        b = np.inf if b is None else b
    else:
        raise ConfigError(f"activation must be None, 'relu', 'relu6' or ('clip', min, max), "
                          f"got {activation!r}")
    lo, hi = (int(q) for q in quantize_u8([a, b], y_scale, y_zero_point))
    if lo > hi:
        raise ConfigError(f"activation {activation!r}: empty output range")
    return lo, hi


def weights_s8(weight, weight_scale, cout):
    """Float weights (quantized symmetric per output channel, narrow range) or int8 weights with
    their scale(s) -> (int8 array of weight's shape, float32 [cout] scales)."""
    w = np.asarray(weight)
    if w.ndim < 2 or w.shape[0] != cout or w.size == 0:
        raise ShapeError(f"weights must be [Cout, ...] with Cout={cout}, got {w.shape}")
    if w.dtype == np.int8:
        if weight_scale is None:
            raise ConfigError("int8 weights need weight_scale (scalar or one per output channel)")
        sw = np.asarray(weight_scale, np.float32).reshape(-1)
        if sw.size == 1:
            sw = np.full(cout, sw[0], np.float32)
        if sw.shape != (cout,) or not np.all(np.isfinite(sw)) or not np.all(sw > 0):
            raise ConfigError(f"weight_scale must be finite, > 0, scalar or ({cout},)")
        return np.ascontiguousarray(w), sw
    if w.dtype.kind != "f":
        raise ShapeError(f"weights must be float (to quantize) or int8, got {w.dtype}")
    if weight_scale is not None:
        raise ConfigError("weight_scale is only for int8 weights (float weights get their own)")
    q, s = quantize_per_channel_symmetric(w.reshape(cout, -1).astype(np.float32))
    return q.reshape(w.shape), np.asarray(s, np.float32).reshape(cout)


def static_weight_bits(w, requested):
    """The weight storage of a static GEMM layer: `requested` 8 or 4, or None = 4 exactly when
    every int8 weight lies in [−7, 7] (and one is nonzero). Both run the same integer sums and
    the same requantize, so the choice changes memory and speed, never the output bytes."""
    small = bool(np.any(w)) and int(np.abs(w.astype(np.int16)).max()) <= 7
    if requested is None:
        return 4 if small else 8
    if requested not in (4, 8) or isinstance(requested, bool):
        raise ConfigError(f"weight_bits must be None, 8 or 4, got {requested!r}")
    if requested == 4 and not (small or not np.any(w)):
        raise ConfigError("weight_bits=4 needs int8 weights in [-7, 7] (narrow-range int4); "
                          f"these reach {int(np.abs(w.astype(np.int16)).max())}")
    return requested


def pack_w4(wk, isa):
    """int8 weights [groups, N, K] in [−7, 7] → ([(data, colsum, scale, n, k, gs, 1)] per group
    for _conv.conv2d_w4, the ISA's 4-bit kernel name); one group of K per row (the scales are
    the layer's multipliers, so the packing's own are 1)."""
    from .._ext import _gemm
    g, n, k = wk.shape
    if k > _gemm.W4_MAX_K:
        raise ShapeError(f"K = {k} exceeds the 4-bit kernels' limit {_gemm.W4_MAX_K}")
    gs, _ = _gemm.w4_layout(k, 0)
    ones = np.ones((n, 1), np.float32)
    packs = [_gemm.w4_pack(np.ascontiguousarray(wk[i]), ones, gs) + (n, k, gs, 1)
             for i in range(g)]
    names = {r["isa"]: r["name"] for r in _gemm.w4_kernel_table()}
    return packs, names[isa]


def bias_q(bias, x_scale, w_scale):
    """int32 [cout]: an int32 bias is taken as already quantized at scale s_x·s_w (ONNX
    QLinearConv B); a float bias becomes rhe(bias / float32(s_x·s_w[n])) (division in float64)."""
    if bias is None:
        return np.zeros(w_scale.shape[0], np.int32)
    b = np.asarray(bias)
    if b.shape != w_scale.shape:
        raise ShapeError(f"bias must have shape {w_scale.shape}, got {b.shape}")
    if b.dtype.kind in "iu":
        if b.min() < -2**31 or b.max() > 2**31 - 1:
            raise ConfigError("int32 bias out of range")
        return b.astype(np.int32)
    bscale = (np.float32(x_scale) * w_scale).astype(np.float32)
    bq = np.rint(b.astype(np.float64) / bscale.astype(np.float64))
    return np.clip(bq, -2**31, 2**31 - 1).astype(np.int32)


def quantize_u8(r, scale, zero_point):
    """uint8 array of r's shape: the normative quantize (qe_quantize_f32: float32 r / s, clamp
    to [0, 255], half to even; ±Inf saturate, NaN lands on z) through the compiled kernel."""
    x = np.ascontiguousarray(r, np.float32)
    y = np.empty(x.shape, np.uint8)
    _quant.quantize_u8(x, y, float(scale), int(zero_point), _runtime.isa_index(None))
    return y.reshape(np.shape(r))


def multipliers(x_scale, w_scale, y_scale):
    """float32 [cout]: M[n] = float32(s_x·s_w[n] / s_y), evaluated in float64."""
    return (np.float64(x_scale) * w_scale.astype(np.float64) / np.float64(y_scale)).astype(np.float32)


def _f64(scale):
    # scales are float32 by contract; widening first makes a Python float argument agree too
    return np.float64(np.float32(scale))


def rescale_multiplier(x_scale, y_scale):
    """float32(s_x / s_y) in float64: moves a value at scale s_x to scale s_y (QAdd's M_a and
    M_b, QConcat's requant tables)."""
    return np.float32(_f64(x_scale) / _f64(y_scale))


def mul_multiplier(a_scale, b_scale, y_scale):
    """float32(s_a·s_b / s_y) in float64: QMul's requantize multiplier."""
    return np.float32(_f64(a_scale) * _f64(b_scale) / _f64(y_scale))


def avgpool_multipliers(x_scale, y_scale, ntaps):
    """float32 [ntaps + 1] indexed by a window's tap count c: M[c] = float32(s_x / (s_y·c)) in
    float64. M[0] = 0 is never used for a real window (one with no tap sums to 0 → z_y)."""
    m = np.zeros(ntaps + 1, np.float32)
    m[1:] = _f64(x_scale) / (_f64(y_scale) * np.arange(1, ntaps + 1, dtype=np.float64))
    return m


def requant_table(x_scale, x_zero_point, y_scale, y_zero_point):
    """uint8 [256]: code q at (s_x, z_x) ↦ qe_requantize(q − z_x, float32(s_x / s_y), z_y, 0,
    255) — the NumPy mirror of the normative requantize (include/qengine/qe_requant.h), which
    is exact here: 256 float32 products, each clamped and rounded half to even once."""
    z = np.float32(y_zero_point)
    v = (np.arange(256, dtype=np.float32) - np.float32(x_zero_point)) \
        * rescale_multiplier(x_scale, y_scale)
    v = np.clip(v, -z, np.float32(255) - z)
    return (np.rint(v) + z).astype(np.uint8)


def pair(v, name):
    t = (v, v) if np.ndim(v) == 0 else tuple(v)
    if len(t) != 2 or any(int(i) != i or i < 1 for i in t):
        raise ConfigError(f"{name} must be a positive int or a pair of them, got {v!r}")
    return int(t[0]), int(t[1])


#: paddings resolved per input size (ONNX auto_pad SAME_UPPER / SAME_LOWER)
SAME = ("same_upper", "same_lower")


def pads4(padding):
    """int p, (ph, pw), ONNX-order (top, left, bottom, right), or 'same_upper' / 'same_lower'
    (kept as the string: `resolve_pads` turns it into pads for each input size)."""
    if isinstance(padding, str):
        if padding.lower() not in SAME:
            raise ConfigError(f"padding must be an int >= 0, (ph, pw), (top, left, bottom, "
                              f"right) or one of {SAME}, got {padding!r}")
        return padding.lower()
    if np.ndim(padding) == 0:
        t = (padding,) * 4
    else:
        t = tuple(padding)
        if len(t) == 2:
            t = (t[0], t[1], t[0], t[1])
    if len(t) != 4 or any(int(i) != i or i < 0 for i in t):
        raise ConfigError(f"padding must be an int >= 0, (ph, pw) or (top, left, bottom, right), "
                          f"got {padding!r}")
    return tuple(int(i) for i in t)


def resolve_pads(padding, h, w, kernel, stride, dilation):
    """(top, left, bottom, right) of a `pads4` padding for an input of spatial size h × w."""
    if not isinstance(padding, str):
        return padding
    upper = padding == "same_upper"
    (pt, pb), (pl, pr) = (same_pads(i, k, s, d, upper)
                          for i, k, s, d in zip((h, w), kernel, stride, dilation))
    return pt, pl, pb, pr


def nhwc_u8(x, name="x", channels=None):
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
        raise ShapeError(f"{name} must be a uint8 NHWC array [N, H, W, C], got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    if channels is not None and x.shape[3] != channels:
        raise ShapeError(f"{name} must have C={channels} channels (NHWC), got shape {x.shape}")
    return np.ascontiguousarray(x)


def output(out, shape, dtype=np.uint8):
    """`out` when it is a C-contiguous array of exactly this shape and dtype — the buffer a graph
    op kept from its previous call in this thread (qengine/graph/executor.py) — else a new
    array. Reusing it is what lets a steady-state run allocate no activation memory."""
    shape = tuple(shape)
    if out is not None and out.shape == shape and out.dtype == dtype and \
            out.flags.c_contiguous and out.flags.writeable:
        return out
    return np.empty(shape, dtype)
