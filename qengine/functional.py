"""Functional API over the compiled integer GEMM (include/qengine/gemm/qe_gemm.h).

Conventions (docs/numerics.md "Integer GEMM"): activations uint8 [M, K] with zero point z_a
(per tensor or per row), weights int8 [N, K] (output-channel major, like nn.Linear), symmetric
by default (optional per-channel z_w). int8 activations are accepted and shifted to uint8
(a + 128, z_a + 128). Every call takes ``isa=None`` (the active ISA) or an ISA name to force a
path; every path gives the same bits. The GIL is released inside every kernel.
"""
import numpy as np

from . import _runtime
from ._ext import _gemm
from .errors import ConfigError, ShapeError
from .qtensor import QTensor

MAX_K = _gemm.MAX_K
MAX_K_WZP = _gemm.MAX_K_WZP
_KERNELS = {_runtime.ISA_NAMES[r["isa"]]: r for r in _gemm.kernel_table()}
_runtime.register_kernels("gemm_u8s8", {isa: r["name"] for isa, r in _KERNELS.items()})
# Availability does not change while the process runs, and asking means CPUID (a VM exit under
# a hypervisor: microseconds), so it is read once here instead of on every call.
_AVAILABLE = tuple(_runtime.available_isas())
_ACTIVE_INDEX = _runtime._ACTIVE_INDEX     # None when QENGINE_ISA is bad: isa_index raises


def _isa_index(isa):
    if isa is None:
        return _ACTIVE_INDEX if _ACTIVE_INDEX is not None else _runtime.isa_index(None)
    name = str(isa).lower()
    if name in _AVAILABLE:
        return _runtime.ISA_NAMES.index(name)
    return _runtime.isa_index(isa)          # raises the ConfigError that says why


class PackedWeights:
    """int8 weights [N, K] packed once for one ISA's microkernel (see qe_gemm_pack.h).

    Attributes: n, k, isa (name), kernel (name), colsum (int32 [N], Σ_k w[n,k]),
    w_zero_point (int32 [N] or None), nbytes (bytes held).
    """
    __slots__ = ("n", "k", "kp", "isa", "kernel", "data", "colsum", "w_zero_point")

    def __init__(self, n, k, kp, isa, kernel, data, colsum, w_zero_point):
        self.n, self.k, self.kp, self.isa, self.kernel = n, k, kp, isa, kernel
        self.data, self.colsum, self.w_zero_point = data, colsum, w_zero_point

    @property
    def nbytes(self):
        z = 0 if self.w_zero_point is None else self.w_zero_point.nbytes
        return self.data.nbytes + self.colsum.nbytes + z

    def _c(self):
        return (self.data, self.colsum, self.w_zero_point, self.n, self.k, self.kp)

    def __repr__(self):
        return f"PackedWeights(n={self.n}, k={self.k}, isa={self.isa!r}, kernel={self.kernel!r})"


# ---------------------------------------------------------------------------- validation
def _array2d(x, name, dtypes):
    if not isinstance(x, np.ndarray):
        raise ShapeError(f"{name} must be a NumPy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ShapeError(f"{name} must be 2-D, got shape {x.shape}")
    if x.dtype not in dtypes:
        raise ShapeError(f"{name} must have dtype {' or '.join(str(np.dtype(d)) for d in dtypes)},"
                         f" got {x.dtype}")
    return np.ascontiguousarray(x)


def _isa_name(isa):
    return _runtime.ISA_NAMES[_isa_index(isa)]


def _check_k(k, w_zp=False):
    bound = MAX_K_WZP if w_zp else MAX_K
    if not 1 <= k <= bound:
        raise ShapeError(f"K={k} is outside 1..{bound}: int32 accumulation would not be exact"
                         f" (numerics.md K bound{' with weight zero points' if w_zp else ''})")


def _ints(v, name, n, lo, hi, what):
    """A scalar or length-n integer parameter -> (int32 array (1,) or (n,), per_item)."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):   # the common, fast case
        if not lo <= v <= hi:
            raise ConfigError(f"{name} must lie in [{lo}, {hi}], got {v}")
        return np.full(1, v, np.int32), False
    arr = np.asarray(v)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise ConfigError(f"{name} must be integer, got dtype {arr.dtype}")
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise ShapeError(f"{name} must be a scalar or have shape ({n},) ({what}), got {arr.shape}")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ConfigError(f"{name} must lie in [{lo}, {hi}], got range [{arr.min()}, {arr.max()}]")
    return np.ascontiguousarray(arr.reshape(-1), dtype=np.int32), arr.ndim == 1


def _floats(v, name, n, what, positive=True):
    arr = np.asarray(v, dtype=np.float32)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise ShapeError(f"{name} must be a scalar or have shape ({n},) ({what}), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or (positive and not np.all(arr > 0)):
        raise ConfigError(f"{name} must be finite{' and > 0' if positive else ''}")
    return np.ascontiguousarray(arr.reshape(-1)), arr.ndim == 1


def _activations(a, a_zero_point):
    """uint8 or int8 [M, K] activations -> (uint8 array, int32 zero points, per_row)."""
    a = _array2d(a, "a", (np.uint8, np.int8))
    m = a.shape[0]
    if a.dtype == np.int8:
        za, per_row = _ints(a_zero_point, "a_zero_point", m, -128, 127, "one per row")
        return (a.view(np.uint8) ^ np.uint8(0x80)), za + 128, per_row
    za, per_row = _ints(a_zero_point, "a_zero_point", m, 0, 255, "one per row")
    return a, za, per_row


def _packed_for(w, isa):
    if isinstance(w, PackedWeights):
        if isa is not None and _isa_name(isa) != w.isa:
            raise ConfigError(f"weights were packed for {w.isa!r} but isa={isa!r} was requested;"
                              f" pack them again with pack_weights(..., isa={isa!r})")
        return w
    if isinstance(w, np.ndarray):
        return pack_weights(w, isa=isa)
    raise ShapeError(f"w must be an int8 [N, K] array or PackedWeights, got {type(w).__name__}")


def _check_inner(a, w):
    if a.shape[1] != w.k:
        raise ShapeError(f"K mismatch: activations have K={a.shape[1]} columns but the weights "
                         f"expect K={w.k} (w is [N={w.n}, K={w.k}])")


def _out(out, shape, dtype):
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype:
        raise ShapeError(f"out must be a {np.dtype(dtype)} array of shape {shape}, got "
                         f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ShapeError("out must be C-contiguous and writeable")
    return out


# ---------------------------------------------------------------------------- public API
def pack_weights(w_s8, w_zero_point=None, isa=None):
    """pack_weights(w_s8 int8 [N, K], w_zero_point=None (scalar or [N]), isa=None) -> PackedWeights

    Packs once into the layout of the ISA's microkernel (K padded to the kernel's K-group with
    zeros, N in panels) and precomputes colsum[n] = Σ_k w[n, k]. A nonzero w_zero_point makes
    the GEMM subtract z_w[n]·(rowsum_a[m] − K·z_a[m]); then K ≤ MAX_K_WZP.
    """
    w = _array2d(w_s8, "w", (np.int8,))
    n, k = w.shape
    if n < 1:
        raise ShapeError(f"w must have at least one output channel, got shape {w.shape}")
    zw = None
    if w_zero_point is not None:
        zw, _ = _ints(w_zero_point, "w_zero_point", n, -128, 127, "one per output channel")
        zw = np.ascontiguousarray(np.broadcast_to(zw, (n,)), dtype=np.int32)
        if not zw.any():
            zw = None
    _check_k(k, zw is not None)
    name = _isa_name(isa)
    idx = _runtime.ISA_NAMES.index(name)
    data = np.empty(_gemm.packed_bytes(idx, n, k), dtype=np.uint8)
    colsum = np.empty(n, dtype=np.int32)
    _gemm.pack(idx, w, data, colsum)
    kpad = _KERNELS[name]["kpad"]
    return PackedWeights(n, k, -(-k // kpad) * kpad, name, _KERNELS[name]["name"], data, colsum, zw)


def matmul_int32(a_u8, a_zero_point, w, *, isa=None):
    """matmul_int32(a_u8 [M, K] uint8 (or int8), a_zero_point scalar or [M], w int8 [N, K] or
    PackedWeights, *, isa=None) -> int32 [M, N] = Σ_k (a − z_a)(w − z_w)."""
    w = _packed_for(w, isa)
    a, za, per_row = _activations(a_u8, a_zero_point)
    _check_inner(a, w)
    out = np.empty((a.shape[0], w.n), dtype=np.int32)
    return _gemm.gemm(_isa_index(w.isa), a, w._c(), _gemm.EPI_INT32, out, a_zp=za,
                      row_step=int(per_row))


def matmul_dequant(a_u8, a_scale, a_zero_point, w_packed, w_scale, bias=None, out=None,
                   isa=None, accumulate=False):
    """matmul_dequant(a_u8 [M, K], a_scale scalar or [M], a_zero_point scalar or [M],
    w_packed, w_scale [N] (or scalar), bias=None f32 [N], out=None, isa=None,
    accumulate=False) -> float32 [M, N]

    y = float32(acc)·float32(a_scale[m]·w_scale[n]) + bias[n]; with accumulate=True,
    out (required) becomes out + y.
    """
    w = _packed_for(w_packed, isa)
    a, za, zrow = _activations(a_u8, a_zero_point)
    _check_inner(a, w)
    m = a.shape[0]
    sa, srow = _floats(a_scale, "a_scale", m, "one per row")
    sw, _ = _floats(w_scale, "w_scale", w.n, "one per output channel")
    sw = np.ascontiguousarray(np.broadcast_to(sw, (w.n,)))
    b = None if bias is None else _floats(bias, "bias", w.n, "one per output channel", False)[0]
    if b is not None and b.shape[0] != w.n:
        raise ShapeError(f"bias must have shape ({w.n},), got {np.shape(bias)}")
    if accumulate and out is None:
        raise ConfigError("accumulate=True needs out= (the float32 array to add into)")
    out = _out(out, (m, w.n), np.float32)
    row = zrow or srow
    if row:
        za = np.ascontiguousarray(np.broadcast_to(za, (m,)))
        sa = np.ascontiguousarray(np.broadcast_to(sa, (m,)))
    return _gemm.gemm(_isa_index(w.isa), a, w._c(), _gemm.EPI_F32, out, a_zp=za,
                      a_scale=sa, row_step=int(row), w_scale=sw, bias=b,
                      accumulate=bool(accumulate))


def _out_range(out_dtype, clamp):
    dt = np.dtype(out_dtype)
    if dt not in (np.dtype(np.uint8), np.dtype(np.int8)):
        raise ConfigError(f"out_dtype must be uint8 or int8, got {dt}")
    lo, hi = int(np.iinfo(dt).min), int(np.iinfo(dt).max)
    if clamp is not None:
        if len(clamp) != 2:
            raise ConfigError(f"clamp must be (lo, hi), got {clamp!r}")
        lo, hi = max(lo, int(clamp[0])), min(hi, int(clamp[1]))
        if lo > hi:
            raise ConfigError(f"clamp {tuple(clamp)} leaves an empty range for {dt}")
    return dt, lo, hi


def fold_bias(bias_i32, a_zero_point, w_packed):
    """int32 [N]: bias_q[n] − z_a·colsum[n] in wrapping int32 (done once for a static layer)."""
    za = int(a_zero_point)
    b = np.zeros(w_packed.n, np.int64) if bias_i32 is None else np.asarray(bias_i32, np.int64)
    f = b - za * w_packed.colsum.astype(np.int64)
    return ((f + 2**31) % 2**32 - 2**31).astype(np.int32)


def matmul_requant(a_u8, a_zero_point, w_packed, bias_i32, multiplier, out_zero_point,
                   out_dtype=np.uint8, clamp=None, isa=None):
    """matmul_requant(a_u8 [M, K], a_zero_point scalar, w_packed, bias_i32 int32 [N] or None,
    multiplier f32 [N] (or scalar), out_zero_point, out_dtype=np.uint8, clamp=(lo, hi) or None,
    isa=None) -> uint8/int8 [M, N]

    y = qe_requantize(acc + bias_i32[n], multiplier[n], out_zero_point, lo, hi) with [lo, hi]
    the output type's range ∩ clamp (ReLU: clamp=(out_zero_point, None-equivalent 255/127)).
    """
    w = _packed_for(w_packed, isa)
    a, za, zrow = _activations(a_u8, a_zero_point)
    if zrow:
        raise ShapeError("matmul_requant takes a per-tensor a_zero_point (static quantization)")
    _check_inner(a, w)
    dt, lo, hi = _out_range(out_dtype, clamp)
    zy, _ = _ints(out_zero_point, "out_zero_point", 1, lo if False else np.iinfo(dt).min,
                  np.iinfo(dt).max, "per tensor")
    mult, _ = _floats(multiplier, "multiplier", w.n, "one per output channel")
    mult = np.ascontiguousarray(np.broadcast_to(mult, (w.n,)))
    if bias_i32 is not None:
        bias_i32 = np.asarray(bias_i32)
        if bias_i32.shape != (w.n,) or bias_i32.dtype.kind not in "iu":
            raise ShapeError(f"bias_i32 must be an integer array of shape ({w.n},), got "
                             f"{bias_i32.dtype} {bias_i32.shape}")
    col = fold_bias(bias_i32, za[0], w)
    out = np.empty((a.shape[0], w.n), dtype=dt)
    kind = _gemm.EPI_U8 if dt == np.uint8 else _gemm.EPI_S8
    return _gemm.gemm(_isa_index(w.isa), a, w._c(), kind, out, col_bias=col,
                      multiplier=mult, out_zp=int(zy[0]), lo=lo, hi=hi)


def quantize_activations(x_f32, per_row=False, isa=None):
    """quantize_activations(x_f32 [M, K], per_row=False, isa=None) -> (uint8 [M, K], scale, zp)

    Asymmetric uint8, range widened to include 0, NaN -> z, ±Inf saturate (numerics.md).
    scale float32 and zero_point int32 have shape () per tensor or (M,) per row.
    """
    x = _array2d(x_f32, "x", (np.float32,))
    m, k = x.shape
    q = np.empty((m, k), dtype=np.uint8)
    n = m if per_row else 1
    s, z = np.empty(n, np.float32), np.empty(n, np.int32)
    _gemm.dynq(_isa_index(isa), x, bool(per_row), q, s, z)
    return (q, s, z) if per_row else (q, s.reshape(()), z.reshape(()))


def linear_dynamic(x_f32, w_packed, w_scale, bias=None, per_row=False, isa=None, out=None,
                   accumulate=False):
    """linear_dynamic(x_f32 [M, K], w_packed, w_scale [N], bias=None, per_row=False, isa=None,
    out=None, accumulate=False) -> float32 [M, N]

    quantize_activations + GEMM + dequant epilogue in one compiled call with the GIL released.
    """
    w = _packed_for(w_packed, isa)
    x = _array2d(x_f32, "x", (np.float32,))
    _check_inner(x, w)
    sw, _ = _floats(w_scale, "w_scale", w.n, "one per output channel")
    sw = np.ascontiguousarray(np.broadcast_to(sw, (w.n,)))
    b = None if bias is None else _floats(bias, "bias", w.n, "one per output channel", False)[0]
    if b is not None and b.shape[0] != w.n:
        raise ShapeError(f"bias must have shape ({w.n},), got {np.shape(bias)}")
    if accumulate and out is None:
        raise ConfigError("accumulate=True needs out= (the float32 array to add into)")
    out = _out(out, (x.shape[0], w.n), np.float32)
    return _gemm.linear_dynamic(_isa_index(w.isa), x, bool(per_row), w._c(), sw, b, out,
                                bool(accumulate))


def quantized_linear(x, w, bias, out_scale, out_zero_point, out_dtype=np.uint8, relu=False,
                     isa=None):
    """quantized_linear(x QTensor u8/s8 [M, K] per tensor, w QTensor int8 [N, K] (per channel
    axis=0 or per tensor, zero point 0), bias f32 [N] or None, out_scale, out_zero_point,
    out_dtype=np.uint8, relu=False, isa=None) -> QTensor [M, N]

    bias_q = rhe(bias / float32(s_x·s_w[n])) as int32, M[n] = float32(s_x·s_w[n] / s_y) (float64
    then one rounding), y = qe_requantize(acc, M[n], z_y, lo, hi) with ReLU lo = z_y.
    """
    if not isinstance(x, QTensor) or not isinstance(w, QTensor):
        raise ConfigError("quantized_linear takes QTensor x and w")
    if np.asarray(x.scale).ndim != 0:
        raise ConfigError("x must be quantized per tensor (scale shape ())")
    if w.data.dtype != np.int8:
        raise ConfigError(f"w must hold int8 data, got {w.data.dtype}")
    if np.any(np.asarray(w.zero_point) != 0):
        raise ConfigError("w must be symmetric (zero_point 0)")
    n = w.data.shape[0] if w.data.ndim == 2 else -1
    sw = np.asarray(w.scale, dtype=np.float32)
    if sw.ndim == 1 and (w.axis != 0 or sw.shape[0] != n):
        raise ConfigError(f"per-channel w needs axis=0 and scale shape ({n},), got axis={w.axis}"
                          f" and {sw.shape}")
    sx = np.float32(x.scale)
    sy = np.float32(out_scale)
    if not (np.isfinite(sy) and sy > 0):
        raise ConfigError(f"out_scale must be finite and > 0, got {out_scale!r}")
    wp = pack_weights(w.data, isa=isa)
    sw = np.ascontiguousarray(np.broadcast_to(sw, (wp.n,)), dtype=np.float32)
    bias_q = None
    if bias is not None:
        bscale = (sx * sw).astype(np.float32)
        bq = np.rint(np.asarray(bias, np.float64) / bscale.astype(np.float64))
        bias_q = np.clip(bq, -2**31, 2**31 - 1).astype(np.int32)
    mult = (np.float64(sx) * sw.astype(np.float64) / np.float64(sy)).astype(np.float32)
    dt = np.dtype(out_dtype)
    zy = int(out_zero_point)
    clamp = (zy, int(np.iinfo(dt).max)) if relu else None
    y = matmul_requant(x.data, np.asarray(x.zero_point).reshape(()), wp, bias_q, mult, zy, dt,
                       clamp, isa=isa)
    return QTensor(y, np.array(sy, np.float32), np.array(zy, np.int32), None, 8)


# ---------------------------------------------------------------------------- 4-bit weights
INT4_GROUP_SIZES = (32, 64, 128)
_W4_KERNELS = {_runtime.ISA_NAMES[r["isa"]]: r["name"] for r in _gemm.w4_kernel_table()}
_runtime.register_kernels("gemm_u8s4", _W4_KERNELS)


class PackedWeights4:
    """int4 weights [N, K] with group scales, packed two per byte (qe_gemm_w4_params.h).

    The packed layout is the same for every ISA (the kernels unpack nibbles in registers), so
    one PackedWeights4 runs on any of them. Attributes: n, k, group_size (None: one scale per
    row), gs / ng (the kernels' group size and count), data, colsum, scale, nbytes.
    """
    __slots__ = ("n", "k", "group_size", "gs", "ng", "data", "colsum", "scale")

    def __init__(self, n, k, group_size, gs, ng, data, colsum, scale):
        self.n, self.k, self.group_size, self.gs, self.ng = n, k, group_size, gs, ng
        self.data, self.colsum, self.scale = data, colsum, scale

    @property
    def nbytes(self):
        return self.data.nbytes + self.colsum.nbytes + self.scale.nbytes

    def _c(self):
        return (self.data, self.colsum, self.scale, self.n, self.k, self.gs, self.ng)

    def __repr__(self):
        return (f"PackedWeights4(n={self.n}, k={self.k}, group_size={self.group_size}, "
                f"nbytes={self.nbytes})")


def check_group_size(group_size):
    """None or one of INT4_GROUP_SIZES, else ConfigError."""
    if group_size is not None and (type(group_size) is not int or
                                   group_size not in INT4_GROUP_SIZES):
        raise ConfigError(f"group_size must be None (one scale per output row) or one of "
                          f"{INT4_GROUP_SIZES}, got {group_size!r}")


def pack_weights_int4(w_s4, w_scale, group_size=None):
    """pack_weights_int4(w_s4 int8 [N, K] in [-7, 7], w_scale float32 [N, G], group_size=None)
    -> PackedWeights4

    G = 1 (group_size None) or ceil(K / group_size) with group_size in 32, 64, 128; a group_size
    that does not divide K zero-pads the last group. -8 is refused: int4 weights are symmetric
    narrow range (numerics.md "4-bit weights").
    """
    check_group_size(group_size)
    w = _array2d(w_s4, "w", (np.int8,))
    n, k = w.shape
    if n < 1 or k < 1 or k > _gemm.W4_MAX_K:
        raise ShapeError(f"int4 weights must be [N >= 1, 1 <= K <= {_gemm.W4_MAX_K}], got "
                         f"{w.shape}")
    if w.min() < -7 or w.max() > 7:
        raise ConfigError(f"int4 weights must lie in [-7, 7], got values in [{w.min()}, "
                          f"{w.max()}]")
    gs, ng = _gemm.w4_layout(k, 0 if group_size is None else group_size)
    s = np.ascontiguousarray(w_scale, np.float32)
    if s.shape != (n, ng):
        raise ShapeError(f"int4 weight scales must have shape ({n}, {ng}) for K = {k} and "
                         f"group_size {group_size}, got {np.shape(w_scale)}")
    if not (np.all(np.isfinite(s)) and np.all(s >= np.finfo(np.float32).tiny)):
        raise ConfigError("int4 weight scales must be finite normal positive float32")
    data, colsum, pscale = _gemm.w4_pack(w, s, gs)
    return PackedWeights4(n, k, group_size, gs, ng, data, colsum, pscale)


def linear_dynamic_int4(x_f32, w_packed, bias=None, per_row=False, isa=None, out=None,
                        accumulate=False):
    """linear_dynamic_int4(x_f32 [M, K], w_packed PackedWeights4, bias=None, per_row=False,
    isa=None, out=None, accumulate=False) -> float32 [M, N]

    x quantized per call (u8, per tensor or per row) against 4-bit weights, epilogue (c) of
    numerics.md, on the ISA's kernel (every ISA gives the same bits).
    """
    if not isinstance(w_packed, PackedWeights4):
        raise ConfigError(f"w_packed must be a PackedWeights4 (pack_weights_int4), got "
                          f"{type(w_packed).__name__}")
    w = w_packed
    x = _array2d(x_f32, "x", (np.float32,))
    if x.shape[1] != w.k:
        raise ShapeError(f"x has {x.shape[1]} columns but the weights have K = {w.k}")
    b = None if bias is None else _floats(bias, "bias", w.n, "one per output channel", False)[0]
    if b is not None and b.shape[0] != w.n:
        raise ShapeError(f"bias must have shape ({w.n},), got {np.shape(bias)}")
    if accumulate and out is None:
        raise ConfigError("accumulate=True needs out= (the float32 array to add into)")
    out = _out(out, (x.shape[0], w.n), np.float32)
    idx = _isa_index(isa)
    m, kp = x.shape[0], w.gs * w.ng
    q = np.zeros((m, kp), np.uint8)
    rows = m if per_row else 1
    s, z = np.empty(max(rows, 1), np.float32), np.empty(max(rows, 1), np.int32)
    if m:
        _gemm.dynq(idx, np.ascontiguousarray(x), bool(per_row), q, s, z)
    return _gemm.w4_dequant(idx, q, s, z, 1 if per_row else 0, w._c(), b, out,
                            bool(accumulate))


def matmul_dequant_int4(a_u8, a_scale, a_zero_point, w_packed, bias=None, per_row=False,
                        isa=None):
    """The kernel alone on given u8 activations [M, K] and their qparams (scalar, or [M] with
    per_row): float32 [M, N] by epilogue (c). For tests and the reference chain."""
    w = w_packed
    a = _array2d(a_u8, "a", (np.uint8,))
    if a.shape[1] != w.k:
        raise ShapeError(f"a has {a.shape[1]} columns but the weights have K = {w.k}")
    m, kp = a.shape[0], w.gs * w.ng
    q = np.zeros((m, kp), np.uint8)
    q[:, :w.k] = a
    n = m if per_row else 1
    s = np.ascontiguousarray(np.broadcast_to(np.asarray(a_scale, np.float32).reshape(-1), (n,)))
    z = np.ascontiguousarray(np.broadcast_to(np.asarray(a_zero_point, np.int32).reshape(-1), (n,)))
    b = None if bias is None else np.ascontiguousarray(bias, np.float32)
    out = np.empty((m, w.n), np.float32)
    return _gemm.w4_dequant(_isa_index(isa), q, s, z, 1 if per_row else 0, w._c(), b, out)
