"""QLinear: static-int8 Gemm / MatMul (u8 activations × s8 per-channel weights → u8), the GEMM
driver's requant epilogue with bias_q − z_x·colsum folded at construction
(functional.matmul_requant's arithmetic; reference: reference.gemm.matmul_requant_ref).
Weights in [−7, 7] are held two per byte and run the 4-bit kernels (qe_conv_w4.h, as a 1×1
convolution over M pixels): the same sums and requantize, the same bytes."""
import numpy as np

from .. import _runtime, functional
from .._ext import _conv, _gemm, _quant
from ..errors import ConfigError, ShapeError
from . import params as S


class QLinear:
    """QLinear(weight, bias=None, *, input_scale, input_zero_point, output_scale,
    output_zero_point, weight_scale=None, activation=None, isa=None, weight_bits=None)

    weight: float [N, K] (quantized symmetric per output row, narrow range) or int8 [N, K] with
    weight_scale; bias: None, float [N] or int32 [N] (bias_q); weight_bits: as QConv2d's.
    Call: uint8 [..., K] -> uint8 [..., N]."""

    def __init__(self, weight, bias=None, *, input_scale, input_zero_point, output_scale,
                 output_zero_point, weight_scale=None, activation=None, isa=None,
                 weight_bits=None):
        w = np.asarray(weight)
        if w.ndim != 2:
            raise ShapeError(f"QLinear weight must be [N, K], got {w.shape}")
        self.out_features, self.in_features = w.shape
        self.input_scale = S.scale(input_scale, "input_scale")
        self.input_zero_point = S.zero_point(input_zero_point, "input_zero_point")
        self.output_scale = S.scale(output_scale, "output_scale")
        self.output_zero_point = S.zero_point(output_zero_point, "output_zero_point")
        self.lo, self.hi = S.clamp_range(activation, self.output_scale, self.output_zero_point)
        self.weight_int8, self.weight_scale = S.weights_s8(w, weight_scale, w.shape[0])
        self.bias_int32 = S.bias_q(bias, self.input_scale, self.weight_scale)
        self.multiplier = S.multipliers(self.input_scale, self.weight_scale, self.output_scale)
        self._isa = S.isa_index(isa)
        self.isa = _runtime.ISA_NAMES[self._isa]
        self.weight_bits = S.static_weight_bits(self.weight_int8, weight_bits)
        if self.weight_bits == 4:
            self._packs, self.kernel = S.pack_w4(self.weight_int8[None], self._isa)
            colsum = self.weight_int8.sum(axis=1, dtype=np.int64)
            self._col = ((self.bias_int32.astype(np.int64) - self.input_zero_point * colsum
                          + 2**31) % 2**32 - 2**31).astype(np.int32)
            self._mult = np.ascontiguousarray(self.multiplier, np.float32)
        else:
            self._w = functional.pack_weights(self.weight_int8, isa=self.isa)
            self._col = functional.fold_bias(self.bias_int32, self.input_zero_point, self._w)
            self.kernel = self._w.kernel

    def _w4_call(self, m):
        """fn(a [m, K], y [m, N]) on the 4-bit kernels: a 1×1 convolution over 1 × m pixels."""
        k, n = self.in_features, self.out_features
        shape = (1, 1, m, k, 1, m, n, 1, 1, 1, 1, 1, 1, 0, 0, 1, k, n)
        isa, packs, col, mult = self._isa, self._packs, self._col, self._mult
        zx, zy, lo, hi = self.input_zero_point, self.output_zero_point, self.lo, self.hi
        return lambda a, y, nthreads=0: _conv.conv2d_w4(isa, a, shape, zx, packs, col, mult, zy,
                                                        lo, hi, y, nthreads)

    def __call__(self, x, *, nthreads=0, out=None):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim < 1 \
                or x.shape[-1] != self.in_features:
            raise ShapeError(f"QLinear expects uint8 [..., {self.in_features}], got "
                             f"{getattr(x, 'dtype', '?')} {getattr(x, 'shape', '')}")
        lead = x.shape[:-1]
        a = np.ascontiguousarray(x.reshape(-1, self.in_features))
        y = S.output(None if out is None else out.reshape(-1, out.shape[-1]),
                     (a.shape[0], self.out_features))
        if a.shape[0] and self.weight_bits == 4:
            self._w4_call(a.shape[0])(a, y, nthreads)
        elif a.shape[0]:
            # a_zp is already folded into _col: the epilogue adds it as the column bias
            _gemm.gemm(self._isa, a, self._w._c(), _gemm.EPI_U8, y, col_bias=self._col,
                       multiplier=self.multiplier, out_zp=self.output_zero_point, lo=self.lo,
                       hi=self.hi, nthreads=nthreads)
        return y.reshape(*lead, self.out_features)

    def prepare_call(self, input_shape):
        """(output shape, fn(x, y)) for uint8 C-contiguous inputs of exactly `input_shape`
        (see QConv2d.prepare_call)."""
        lead, k = tuple(input_shape[:-1]), self.in_features
        if input_shape[-1] != k:
            raise ShapeError(f"QLinear expects [..., {k}], got {tuple(input_shape)}")
        out_shape = lead + (self.out_features,)
        m = 1
        for d in lead:
            m *= d
        if m == 0:
            return out_shape, lambda x, y: None
        rows, n = (m, k), (m, self.out_features)
        if self.weight_bits == 4:
            fn = self._w4_call(m)
            return out_shape, lambda x, y: fn(x.reshape(rows), y.reshape(n))
        gemm, isa, wp, epi = _gemm.gemm, self._isa, self._w._c(), _gemm.EPI_U8
        kw = dict(col_bias=self._col, multiplier=self.multiplier, out_zp=self.output_zero_point,
                  lo=self.lo, hi=self.hi, nthreads=0)
        return out_shape, lambda x, y: gemm(isa, x.reshape(rows), wp, epi, y.reshape(n), **kw)


#: the longest K whose sums of (q_a − z_a)(q_b − z_b) (each |·| ≤ 255·255) stay below 2**24,
#: so that float32 holds every partial sum exactly; beyond it float64 (exact to 2**53)
F32_EXACT_K = (2 ** 24) // (255 * 255)
#: the longest K whose sums fit int32, the accumulator the requantize reads
MAX_K = (2 ** 31 - 1) // (255 * 255)


def _check_operands(who, a, b, dtype) -> int:
    """K of a [..., M, K] × b [..., K, N], both `dtype` of rank >= 2, K within the int32
    accumulator's bound; else a ShapeError saying what was wrong."""
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray) or x.dtype != dtype or x.ndim < 2:
            raise ShapeError(f"{who} {name} must be a {np.dtype(dtype).name} array of rank >= 2, "
                             f"got {getattr(x, 'dtype', type(x).__name__)} "
                             f"{getattr(x, 'shape', '')}")
    k = a.shape[-1]
    if b.shape[-2] != k:
        raise ShapeError(f"{who}: a is {a.shape} and b is {b.shape}; a's last dim must equal "
                         f"b's second to last")
    if k > MAX_K:
        raise ShapeError(f"{who}: K = {k} could overflow the int32 accumulator (at most "
                         f"{MAX_K})")
    return k


class QMatMul:
    """QMatMul(a_scale, a_zero_point, b_scale, b_zero_point, output_scale, output_zero_point,
    activation=None): uint8 [..., M, K] × uint8 [..., K, N] → uint8 [..., M, N] (NumPy matmul
    broadcasting), both per tensor — a MatMul between two activations (attention).

    acc = Σ_k (a − z_a)(b − z_b) exactly (the integer reference's sum), then
    y = Quantize(float32(acc), float32(s_y / (s_a·s_b)), z_y) (numerics.md "Quantize": the
    division in float32, rhe), then the fused clamp: ONNX QLinearMatMul's arithmetic with the
    three scales combined once. The sums run through BLAS on integer-valued floats: every
    partial sum is an integer below 2**24 for K ≤ F32_EXACT_K (float32) or below 2**53 beyond
    (float64), so whatever order or FMA the BLAS uses the result is exact and the same on
    every machine. (No int8 kernel: the right-hand side changes every call, and at
    attention's sizes — K is a head's 16–64 dims or the sequence length — packing it would
    cost more than the products.)"""

    def __init__(self, a_scale, a_zero_point, b_scale, b_zero_point, output_scale,
                 output_zero_point, activation=None, isa=None):
        self.a_zero_point = S.zero_point(a_zero_point, "a_zero_point")
        self.b_zero_point = S.zero_point(b_zero_point, "b_zero_point")
        self.output_scale = S.scale(output_scale, "output_scale")
        self.output_zero_point = S.zero_point(output_zero_point, "output_zero_point")
        ab = np.float64(S.scale(a_scale, "a_scale")) * np.float64(S.scale(b_scale, "b_scale"))
        self.acc_scale = float(np.float32(np.float64(self.output_scale) / ab))
        if not np.isfinite(self.acc_scale) or self.acc_scale <= 0:
            raise ConfigError(f"QMatMul: s_y / (s_a·s_b) = {self.acc_scale} is not a positive "
                              f"float32")
        self.lo, self.hi = S.clamp_range(activation, self.output_scale, self.output_zero_point)
        self._isa = S.isa_index(isa)

    def _centered(self, x, z, dt):
        """x − z as exact floats of dtype dt (the compiled dequantize at scale 1)."""
        x = np.ascontiguousarray(x)
        f = np.empty(x.shape, np.float32)
        _quant.dequantize_u8(x, f, 1.0, z, self._isa)
        return f if dt is np.float32 else f.astype(dt)

    def __call__(self, a, b, *, nthreads=0, out=None):
        k = _check_operands("QMatMul", a, b, np.uint8)
        dt = np.float32 if k <= F32_EXACT_K else np.float64
        v = np.matmul(self._centered(a, self.a_zero_point, dt),
                      self._centered(b, self.b_zero_point, dt))
        if dt is np.float64:
            v = v.astype(np.float32)      # float32(acc): an int32 converted, rounded to nearest
        y = S.output(out, v.shape)
        if y.size:
            _quant.quantize_u8(np.ascontiguousarray(v), y, self.acc_scale,
                               self.output_zero_point, self._isa)
        if (self.lo, self.hi) != (0, 255):
            np.clip(y, self.lo, self.hi, out=y)
        return y


def _exact_sums(fa, fb, k):
    """matmul of integer-valued float32 arrays whose products are at most 255² in size:
    exact (module constants), returned as float32 — float32(acc), an int32 rounded once."""
    if k <= F32_EXACT_K:
        return np.matmul(fa, fb)
    return np.matmul(fa.astype(np.float64), fb.astype(np.float64)).astype(np.float32)


class DynamicMatMul:
    """DynamicMatMul(): float32 [..., M, K] × float32 [..., K, N] → float32, both sides
    quantized at each call — A per row, B per column (uint8, the range widened to 0, the same
    rule as the dynamic Linear's activations; numerics.md) — for attention's MatMuls between
    two activations in a dynamically quantized model.

    y = float32(acc) · float32(s_a[m]·s_b[n]) with acc = Σ_k (a − z_a[m])(b − z_b[n]) exact
    (QMatMul's integer-valued BLAS sums): reference.gemm's dequant epilogue on
    matmul_int32_ref's sums, per (batch, head) matrix. NaN in an input is quantized as the
    dynamic Linear does (to the zero point); the output is finite."""

    def __init__(self, isa=None):
        self._isa = S.isa_index(isa)

    def _quantize_rows(self, x):
        """x [R, K] float32 → (codes − zero points as float32 [R, K], scales float32 [R])."""
        r, k = x.shape
        q = np.empty((r, k), np.uint8)
        s = np.empty(r, np.float32)
        z = np.empty(r, np.int32)
        if r and k:
            _gemm.dynq(self._isa, x, True, q, s, z)
        else:
            s[:], z[:] = 1.0, 0
        f = q.astype(np.float32)
        f -= z[:, None].astype(np.float32)
        return f, s

    def __call__(self, a, b, *, out=None):
        k = _check_operands("DynamicMatMul", a, b, np.float32)
        fa, sa = self._quantize_rows(np.ascontiguousarray(a).reshape(-1, k))
        bt = np.ascontiguousarray(np.swapaxes(b, -1, -2))              # [..., N, K]: rows
        fb, sb = self._quantize_rows(bt.reshape(-1, k))
        fa, sa = fa.reshape(a.shape), sa.reshape(a.shape[:-1] + (1,))
        fb = np.swapaxes(fb.reshape(bt.shape), -1, -2)
        sb = sb.reshape(bt.shape[:-2] + (1, bt.shape[-2]))
        y = _exact_sums(fa, fb, k)
        y *= sa * sb
        return y
