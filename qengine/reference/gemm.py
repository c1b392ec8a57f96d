"""NumPy references for the integer GEMM and its epilogues (docs/numerics.md, "Integer GEMM").

The living definition: int64 accumulation (exact), float32 epilogues written with the same
float32 operations in the same order as include/qengine/qe_requant.h and the C epilogues, so the
compiled paths must equal these bit for bit.
"""
import numpy as np

FLT_MIN = np.float32(np.finfo(np.float32).tiny)


def _rows(v, m, dtype):
    """A per-tensor scalar or per-row [M] parameter as a column [M, 1] of dtype."""
    v = np.asarray(v, dtype=dtype)
    return np.broadcast_to(v.reshape(-1, 1) if v.ndim else v, (m, 1))


def matmul_int32_ref(a_u8, a_zero_point, w_s8, w_zero_point=None):
    """Σ_k (a[m,k] − z_a[m])·(w[n,k] − z_w[n]) in int64, returned as int32 (exact within the K bound)."""
    a = a_u8.astype(np.int64) - _rows(a_zero_point, a_u8.shape[0], np.int64)
    w = w_s8.astype(np.int64)
    if w_zero_point is not None:
        w = w - np.asarray(w_zero_point, dtype=np.int64).reshape(-1, 1)
    acc = a @ w.T
    assert np.all(np.abs(acc) < 2**31), "reference accumulator outside int32: K too large"
    return acc.astype(np.int32)


def dequant_epilogue_ref(acc_i32, a_scale, w_scale, bias=None, out=None):
    """float32(acc)·float32(s_a[m]·s_w[n]) + bias[n]  (then out + y when accumulating into out)."""
    m = acc_i32.shape[0]
    c = _rows(a_scale, m, np.float32) * np.asarray(w_scale, dtype=np.float32)[None, :]
    y = acc_i32.astype(np.float32) * c
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float32)[None, :]
    if out is not None:
        y = out.astype(np.float32) + y
    return y.astype(np.float32)


def requantize_ref(acc_i32, multiplier, out_zero_point, lo, hi):
    """The NumPy mirror of qe_requantize: float32(acc)·M, clamp to [lo−z, hi−z], rhe, +z."""
    z = int(out_zero_point)
    v = acc_i32.astype(np.float32) * np.asarray(multiplier, dtype=np.float32)
    v = np.minimum(np.maximum(v, np.float32(lo - z)), np.float32(hi - z))
    return np.rint(v).astype(np.int32) + np.int32(z)


def matmul_dequant_ref(a_u8, a_scale, a_zero_point, w_s8, w_scale, bias=None, out=None,
                       w_zero_point=None):
    acc = matmul_int32_ref(a_u8, a_zero_point, w_s8, w_zero_point)
    return dequant_epilogue_ref(acc, a_scale, w_scale, bias, out)


def matmul_requant_ref(a_u8, a_zero_point, w_s8, bias_i32, multiplier, out_zero_point,
                       out_dtype=np.uint8, clamp=None, w_zero_point=None):
    info = np.iinfo(out_dtype)
    lo, hi = info.min, info.max
    if clamp is not None:
        lo, hi = max(lo, int(clamp[0])), min(hi, int(clamp[1]))
    acc = matmul_int32_ref(a_u8, a_zero_point, w_s8, w_zero_point).astype(np.int64)
    if bias_i32 is not None:
        acc = acc + np.asarray(bias_i32, dtype=np.int64)[None, :]
    acc = ((acc + 2**31) % 2**32 - 2**31).astype(np.int32)
    return requantize_ref(acc, multiplier, out_zero_point, lo, hi).astype(out_dtype)


def choose_qparams_u8_ref(rmin, rmax):
    """Asymmetric uint8 (scale, zero_point) for a range already widened to include 0."""
    d = np.float64(rmax) - np.float64(rmin)
    s = np.float32(1.0) if d == 0 else np.float32(d / 255.0)
    s = max(s, FLT_MIN)
    z = np.clip(-np.rint(np.float64(rmin) / np.float64(s)), 0, 255)
    return np.float32(s), np.int32(z)


def _finite_range(x):
    f = x[np.isfinite(x)]
    lo = min(np.float32(0), f.min()) if f.size else np.float32(0)
    hi = max(np.float32(0), f.max()) if f.size else np.float32(0)
    return lo, hi


def quantize_activations_ref(x_f32, per_row=False):
    """f32 [M, K] -> (uint8 [M, K], scale, zero_point): numerics.md "Quantize", NaN -> z."""
    x = np.asarray(x_f32, dtype=np.float32)
    if per_row:
        qp = [choose_qparams_u8_ref(*_finite_range(r)) for r in x]
        s = np.array([p[0] for p in qp], dtype=np.float32)
        z = np.array([p[1] for p in qp], dtype=np.int32)
        sc, zc = s[:, None], z[:, None]
    else:
        s, z = choose_qparams_u8_ref(*_finite_range(x))
        s, z = np.array(s, dtype=np.float32), np.array(z, dtype=np.int32)
        sc, zc = s, z
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        v = (x / sc).astype(np.float32)
    v = np.where(np.isnan(v), np.float32(0), v)
    v = np.minimum(np.maximum(v, (-zc).astype(np.float32)), (255 - zc).astype(np.float32))
    q = (np.rint(v).astype(np.int32) + zc).astype(np.uint8)
    return q, s, z


def linear_dynamic_ref(x_f32, w_s8, w_scale, bias=None, per_row=False):
    q, s, z = quantize_activations_ref(x_f32, per_row)
    return matmul_dequant_ref(q, s, z, w_s8, w_scale, bias)


def int4_group_sums_ref(a_u8, a_zero_point, w_s8, group_size=None):
    """acc_g[m, n, g] = Σ_{k∈g} (a[m,k] − z_a[m])·w[n,k] in int64 (exact), G groups of
    group_size consecutive K values (None: one group)."""
    m, k = a_u8.shape
    gs = k if group_size is None else group_size
    a = a_u8.astype(np.int64) - _rows(a_zero_point, m, np.int64)
    w = w_s8.astype(np.int64)
    return np.stack([a[:, j:j + gs] @ w[:, j:j + gs].T for j in range(0, k, gs)], axis=-1)


def dequant_groups_epilogue_ref(acc_g, a_scale, w_scale, bias=None, out=None):
    """Epilogue (c), numerics.md "4-bit weights": p_g = float32(acc_g)·float32(s_a[m]·s_w[n, g]);
    y = p_0, then y = y + p_g for g = 1.. in order; y = y + bias[n]; out + y when accumulating.
    One group is epilogue (a)."""
    m = acc_g.shape[0]
    sa = _rows(a_scale, m, np.float32)                       # [M, 1]
    ws = np.asarray(w_scale, np.float32)                     # [N, G]
    y = None
    for g in range(acc_g.shape[2]):
        p = acc_g[:, :, g].astype(np.float32) * (sa * ws[None, :, g])
        y = p if y is None else (y + p).astype(np.float32)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float32)[None, :]
    if out is not None:
        y = out.astype(np.float32) + y
    return y.astype(np.float32)


def matmul_dequant_int4_ref(a_u8, a_scale, a_zero_point, w_s8, w_scale, group_size=None,
                            bias=None, out=None):
    acc = int4_group_sums_ref(a_u8, a_zero_point, w_s8, group_size)
    assert np.all(np.abs(acc) < 2**31)
    return dequant_groups_epilogue_ref(acc, a_scale, w_scale, bias, out)


def linear_dynamic_int4_ref(x_f32, w_s8, w_scale, group_size=None, bias=None, per_row=False):
    q, s, z = quantize_activations_ref(x_f32, per_row)
    return matmul_dequant_int4_ref(q, s, z, w_s8, w_scale, group_size, bias)
