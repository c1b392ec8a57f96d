"""NumPy references for the static-int8 CNN operators (docs/numerics.md; NHWC, u8 activations,
s8 symmetric per-channel weights). The living definitions: integer parts in int64 (exact), float
parts with the same float32 operations in the same order as the C kernels, so the compiled paths
must equal these bit for bit.

Layouts: activations uint8 NHWC [N, H, W, C]; conv weights int8 OIHW [Cout, Cin/groups, kh, kw]
(ONNX); pads (top, left, bottom, right) (ONNX order for 2-D: x1_begin, x2_begin, x1_end, x2_end).
"""
import math

import numpy as np

from .gemm import requantize_ref


def conv_out_size(size, k, stride, dilation, pad0, pad1, ceil_mode=False):
    """Output length of a conv/pool window sweep (ONNX/PyTorch rule; with ceil_mode, a window
    that would start past the input and its begin padding is dropped)."""
    span = size + pad0 + pad1 - dilation * (k - 1) - 1
    if span < 0:
        return 0
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad0:
        out -= 1
    return out


def same_pads(size, k, stride, dilation, upper=True):
    """(begin, end) padding of ONNX auto_pad SAME_UPPER (upper=True) / SAME_LOWER on one axis:
    out = ceil(size / stride); the total max(0, (out − 1)·stride + (k − 1)·dilation + 1 − size)
    is split evenly, the odd element going to the end (UPPER) or the beginning (LOWER). It
    depends on the input size, so it is resolved per input shape, never fixed in a graph."""
    total = max(0, (-(-size // stride) - 1) * stride + (k - 1) * dilation + 1 - size)
    small, big = total // 2, total - total // 2
    return (small, big) if upper else (big, small)


def _windows(xp, kh, kw, sh, sw, dh, dw, oh, ow):
    """For each tap (ky, kx) the strided [N, oh, ow, C] view of the padded input."""
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            yield ky, kx, xp[:, y0:y0 + (oh - 1) * sh + 1:sh, x0:x0 + (ow - 1) * sw + 1:sw, :]


def qconv2d_acc_ref(x_u8, x_zero_point, w_s8, stride=(1, 1), pads=(0, 0, 0, 0),
                    dilation=(1, 1), groups=1):
    """int64 NHWC [N, OH, OW, Cout]: Σ (x − z_x)·w over each receptive field, zero padding
    (the padded value is z_x, i.e. real 0)."""
    n, h, w_, c = x_u8.shape
    cout, cin_g, kh, kw = w_s8.shape
    if cin_g * groups != c or cout % groups:
        raise ValueError(f"channels: input C={c}, weights {w_s8.shape}, groups={groups}")
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = stride, dilation, pads
    oh = conv_out_size(h, kh, sh, dh, pt, pb)
    ow = conv_out_size(w_, kw, sw, dw, pl, pr)
    xc = x_u8.astype(np.int64) - int(x_zero_point)
    # pad with 0 = (z_x − z_x); extra room so that every strided slice is in bounds
    xp = np.pad(xc, ((0, 0), (pt, pb + sh), (pl, pr + sw), (0, 0)))
    cout_g = cout // groups
    wg = w_s8.astype(np.int64).reshape(groups, cout_g, cin_g, kh, kw)
    acc = np.zeros((n, oh, ow, groups, cout_g), np.int64)
    for ky, kx, win in _windows(xp, kh, kw, sh, sw, dh, dw, oh, ow):
        acc += np.einsum("nhwgc,goc->nhwgo", win.reshape(n, oh, ow, groups, cin_g),
                         wg[:, :, :, ky, kx])
    return acc.reshape(n, oh, ow, cout)


def _wrap32(v):
    return ((np.asarray(v, np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


def qconv2d_ref(x_u8, x_zero_point, w_s8, bias_i32, multiplier, y_zero_point, lo=0, hi=255,
                stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """uint8 NHWC: qe_requantize(acc + bias_q[o], M[o], z_y, lo, hi) per output channel o."""
    acc = qconv2d_acc_ref(x_u8, x_zero_point, w_s8, stride, pads, dilation, groups)
    if bias_i32 is not None:
        acc = acc + np.asarray(bias_i32, np.int64)
    assert np.all(np.abs(acc) < 2**31), "accumulator outside int32"
    cout = w_s8.shape[0]
    m = np.broadcast_to(np.asarray(multiplier, np.float32), (cout,))
    return requantize_ref(_wrap32(acc), m, y_zero_point, lo, hi).astype(np.uint8)


def avgpool_multipliers(x_scale, y_scale, ntaps):
    """float32 [ntaps + 1]: M[count] = float32(s_x / (s_y·count)) (float64, one rounding);
    M[0] is unused (a window with no tap gives acc = 0 → z_y)."""
    cnt = np.arange(ntaps + 1, dtype=np.float64)
    cnt[0] = 1.0
    m = (np.float64(np.float32(x_scale)) / (np.float64(np.float32(y_scale)) * cnt)).astype(np.float32)
    m[0] = 0.0
    return m


def qpool_ref(x_u8, kind, kernel, stride, pads=(0, 0, 0, 0), dilation=(1, 1), ceil_mode=False,
              count_include_pad=False, x_scale=1.0, x_zero_point=0, y_scale=None,
              y_zero_point=None, lo=0, hi=255):
    """kind 'max' (u8 max over the taps inside the input; no requantize) or 'avg':
    acc = Σ_valid (x − z_x) exact, count = valid taps (or taps inside the padded extent with
    count_include_pad), y = qe_requantize(acc, avgpool_multipliers(...)[count], z_y, lo, hi)."""
    n, h, w_, c = x_u8.shape
    (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = kernel, stride, dilation, pads
    oh = conv_out_size(h, kh, sh, dh, pt, pb, ceil_mode)
    ow = conv_out_size(w_, kw, sw, dw, pl, pr, ceil_mode)
    ey = max(0, (oh - 1) * sh + (kh - 1) * dh + 1 - (h + pt)) + sh
    ex = max(0, (ow - 1) * sw + (kw - 1) * dw + 1 - (w_ + pl)) + sw
    inside = np.pad(np.ones((1, h, w_, 1), np.int64), ((0, 0), (pt, ey), (pl, ex), (0, 0)))
    padded = np.zeros_like(inside)
    padded[:, :pt + h + pb, :pl + w_ + pr] = 1
    if kind == "max":
        xp = np.pad(x_u8.astype(np.int64), ((0, 0), (pt, ey), (pl, ex), (0, 0)),
                    constant_values=-1)
        out = np.full((n, oh, ow, c), -1, np.int64)
        for _, _, win in _windows(xp, kh, kw, sh, sw, dh, dw, oh, ow):
            out = np.maximum(out, win)
        return np.maximum(out, 0).astype(np.uint8)
    ys = x_scale if y_scale is None else y_scale
    yz = x_zero_point if y_zero_point is None else y_zero_point
    xp = np.pad(x_u8.astype(np.int64) - int(x_zero_point), ((0, 0), (pt, ey), (pl, ex), (0, 0)))
    acc = np.zeros((n, oh, ow, c), np.int64)
    cnt = np.zeros((1, oh, ow, 1), np.int64)
    src = padded if count_include_pad else inside
    for (_, _, win), (_, _, cw) in zip(_windows(xp, kh, kw, sh, sw, dh, dw, oh, ow),
                                       _windows(src, kh, kw, sh, sw, dh, dw, oh, ow)):
        acc += win
        cnt += cw
    mult = avgpool_multipliers(x_scale, ys, kh * kw)[np.broadcast_to(cnt, acc.shape)]
    return requantize_ref(acc.astype(np.int32), mult, yz, lo, hi).astype(np.uint8)


def add_multipliers(a_scale, b_scale, y_scale):
    """(M_a, M_b) = float32(s_a / s_y), float32(s_b / s_y), float64 divisions."""
    sy = np.float64(np.float32(y_scale))
    return (np.float32(np.float64(np.float32(a_scale)) / sy),
            np.float32(np.float64(np.float32(b_scale)) / sy))


def qadd_ref(a_u8, a_scale, a_zero_point, b_u8, b_scale, b_zero_point, y_scale, y_zero_point,
             lo=0, hi=255):
    """v = float32(a − z_a)·M_a + float32(b − z_b)·M_b, clamp to [lo − z_y, hi − z_y], rhe, + z_y
    (NumPy broadcasting of a and b)."""
    ma, mb = add_multipliers(a_scale, b_scale, y_scale)
    z = int(y_zero_point)
    va = (np.asarray(a_u8, np.int32) - np.int32(a_zero_point)).astype(np.float32) * ma
    vb = (np.asarray(b_u8, np.int32) - np.int32(b_zero_point)).astype(np.float32) * mb
    v = (va + vb).astype(np.float32)
    v = np.minimum(np.maximum(v, np.float32(lo - z)), np.float32(hi - z))
    return (np.rint(v).astype(np.int32) + z).astype(np.uint8)


def mul_multiplier(a_scale, b_scale, y_scale):
    """float32(s_a·s_b / s_y) in float64."""
    return np.float32(np.float64(np.float32(a_scale)) * np.float64(np.float32(b_scale))
                      / np.float64(np.float32(y_scale)))


def qmul_ref(a_u8, a_scale, a_zero_point, b_u8, b_scale, b_zero_point, y_scale, y_zero_point,
             lo=0, hi=255):
    """acc = (a − z_a)(b − z_b) exact, y = qe_requantize(acc, float32(s_a s_b / s_y), z_y, lo, hi)."""
    acc = ((np.asarray(a_u8, np.int32) - np.int32(a_zero_point))
           * (np.asarray(b_u8, np.int32) - np.int32(b_zero_point)))
    m = mul_multiplier(a_scale, b_scale, y_scale)
    return requantize_ref(acc, m, y_zero_point, lo, hi).astype(np.uint8)


def requant_table_ref(x_scale, x_zero_point, y_scale, y_zero_point, lo=0, hi=255):
    """uint8 [256]: q ↦ qe_requantize(q − z_x, float32(s_x / s_y), z_y, lo, hi) (QConcat inputs)."""
    m = np.float32(np.float64(np.float32(x_scale)) / np.float64(np.float32(y_scale)))
    q = np.arange(256, dtype=np.int32) - np.int32(x_zero_point)
    return requantize_ref(q, m, y_zero_point, lo, hi).astype(np.uint8)


def quantize_u8_ref(r, y_scale, y_zero_point, lo=0, hi=255):
    """numerics.md "Quantize" for float32 r (v = r / s in float32, clamp, rhe, + z); NaN -> z."""
    z = int(y_zero_point)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        v = (np.asarray(r, np.float32) / np.float32(y_scale)).astype(np.float32)
    v = np.where(np.isnan(v), np.float32(0), v)
    v = np.minimum(np.maximum(v, np.float32(lo - z)), np.float32(hi - z))
    return (np.rint(v).astype(np.int32) + z).astype(np.uint8)


def _hardswish(r):
    return r * np.clip(r + 3.0, 0.0, 6.0) / 6.0


ACTIVATIONS = {
    "sigmoid": lambda r, **k: 1.0 / (1.0 + np.exp(-r)),
    "tanh": lambda r, **k: np.tanh(r),
    "hardsigmoid": lambda r, alpha=0.2, beta=0.5: np.clip(alpha * r + beta, 0.0, 1.0),
    "hardswish": lambda r, **k: _hardswish(r),
    "leakyrelu": lambda r, alpha=0.01: np.where(r >= 0, r, alpha * r),
    "relu": lambda r, **k: np.maximum(r, 0.0),
    "elu": lambda r, alpha=1.0: np.where(r > 0, r, alpha * np.expm1(np.minimum(r, 0.0))),
    "gelu": lambda r, **k: 0.5 * r * (1.0 + np.vectorize(math.erf)(r / math.sqrt(2.0))),
    "silu": lambda r, **k: r / (1.0 + np.exp(-r)),
}


def activation_table_ref(fn, x_scale, x_zero_point, y_scale, y_zero_point, lo=0, hi=255,
                         **kwargs):
    """uint8 [256]: q ↦ quantize(f(dequantize(q))). Dequantize is float32 (numerics.md), f is
    evaluated in float64 on that value and rounded once to float32, then the normative quantize.
    fn: a name from ACTIVATIONS or a callable on float64 arrays."""
    f = ACTIVATIONS[fn] if isinstance(fn, str) else fn
    r = (np.arange(256, dtype=np.int32) - np.int32(x_zero_point)).astype(np.float32) \
        * np.float32(x_scale)
    with np.errstate(over="ignore"):
        fr = np.asarray(f(r.astype(np.float64), **kwargs), np.float64).astype(np.float32)
    return quantize_u8_ref(fr, y_scale, y_zero_point, lo, hi)


def lut_ref(x_u8, table):
    """y = table[x]."""
    return np.asarray(table, np.uint8)[np.asarray(x_u8, np.uint8)]


def qconcat_ref(inputs, qparams, y_scale, y_zero_point, axis=-1):
    """Each input through its requant table to the shared output qparams, then concatenated
    (an input whose qparams equal the output's is copied unchanged: its table is the identity)."""
    parts = [lut_ref(x, requant_table_ref(s, z, y_scale, y_zero_point))
             for x, (s, z) in zip(inputs, qparams)]
    return np.concatenate(parts, axis=axis)
