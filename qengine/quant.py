"""Quantization math: quantize, dequantize and choosing (scale, zero point).

Everything here implements docs/numerics.md; the element-wise work runs in the compiled kernels
of include/qengine/quant/ (GIL released, OpenMP for large arrays), chosen by ISA at import.
qengine/reference/quant.py is the NumPy definition the kernels are tested against.
"""
import numpy as np

from . import _runtime
from ._ext import _quant
from .errors import ConfigError, ShapeError
from .qparams import QParams
from .qtensor import QTensor
from .qtypes import (FLT_MIN, STORAGE, check_bits, check_narrow, check_scale_zp, qrange,
                     storage_dtype)

_QUANT_OUT = ("uint8", "int8", "int16")

_runtime.register_kernels("quantize", {
    isa: _quant.kernel_name("quantize", i, 0) for i, isa in enumerate(_runtime.ISA_NAMES)})
_runtime.register_kernels("dequantize", {
    isa: _quant.kernel_name("dequantize", i, 0) for i, isa in enumerate(_runtime.ISA_NAMES)})


def _float_input(x, what="x"):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise ShapeError(f"{what} must be a floating-point array (float16/32/64), got {x.dtype}")
    return x


def _layout(shape, axis):
    """(C, inner) of the [outer, C, inner] view the kernels take."""
    if axis is None:
        return 1, int(np.prod(shape, dtype=np.int64))
    return shape[axis], int(np.prod(shape[axis + 1:], dtype=np.int64))


def find_nan(x: np.ndarray):
    """None when the float array x holds no NaN, else (count, index of the first NaN).

    The test is one NaN-propagating min reduction (vectorized, no temporary array, ±Inf do not
    trigger it); only an array that holds NaN pays for counting and locating them."""
    if x.size == 0 or not np.isnan(x.min()):
        return None
    nan = np.isnan(x)
    return int(nan.sum()), tuple(int(i) for i in np.argwhere(nan)[0])


def _nan_report(x):
    found = find_nan(x)
    if found:
        raise ConfigError(f"quantize(check=True): input holds {found[0]} NaN value(s) "
                          f"(first at index {found[1]}); NaN would otherwise map to the zero "
                          f"point")


def quantize(x, scale, zero_point, dtype=np.uint8, axis=None, bits=None, check=False, *,
             narrow_range=False, isa=None):
    """Quantize a float array: ``q = clamp(rhe(x / scale) + zero_point, qmin, qmax)``.

    x            floating-point array (float64/float16 are first rounded to float32)
    scale        float32 scalar, or shape (C,) with axis= for per-channel (C = x.shape[axis])
    zero_point   integer scalar or shape (C,), inside [qmin, qmax]
    dtype        uint8 (unsigned), int8 or int16 (signed) -- the storage type
    axis         None per tensor, else the channel axis (negative counts from the end)
    bits         2..8 (2..16 for int16); default the full storage width
    check        raise ConfigError naming the count and first index of NaNs instead of mapping
                 NaN to the zero point
    narrow_range signed only: clamp to [-(2^(b-1)-1), 2^(b-1)-1]
    isa          kernel ISA name (default: the active one), for tests and benchmarks

    Rounding is half to even; out-of-range values and +-Inf saturate; NaN becomes zero_point.
    Returns a QTensor whose data is a new C-contiguous array of x's shape.
    """
    dt = np.dtype(dtype)
    if dt.name not in _QUANT_OUT:
        raise ConfigError(f"quantize writes uint8, int8 or int16, got dtype={dt}")
    bits = check_bits(STORAGE[dt][1] if bits is None else bits, dt)
    signed = STORAGE[dt][2]
    narrow = check_narrow(narrow_range, signed)
    qmin, qmax = qrange(bits, signed, narrow)
    x = _float_input(x)
    if axis is not None and x.ndim == 0:
        raise ShapeError("per-channel quantization needs an array with at least one dimension")
    scale, zp, axis = check_scale_zp(scale, zero_point, axis, x.shape, qmin, qmax)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    if check:
        _nan_report(x32)
    out = np.empty(x32.shape, dtype=dt)
    C, inner = _layout(x32.shape, axis)
    _quant.quantize(x32.reshape(-1), out.reshape(-1).view(np.uint8), scale.reshape(-1),
                    zp.reshape(-1), C, inner, qmin, qmax, STORAGE[dt][0], dt.itemsize,
                    _runtime.isa_index(isa))
    return QTensor._unchecked(out, scale, zp, axis, bits, narrow)


def dequantize(q, *, isa=None):
    """float32 ``scale * (q.data - zero_point)`` of a QTensor (one float32 multiply each)."""
    if not isinstance(q, QTensor):
        raise ShapeError(f"dequantize expects a QTensor, got {type(q).__name__}")
    data = np.ascontiguousarray(q.data)
    out = np.empty(data.shape, dtype=np.float32)
    C, inner = _layout(data.shape, q.axis)
    _quant.dequantize(data.reshape(-1).view(np.uint8), out.reshape(-1), q.scale.reshape(-1),
                      q.zero_point.reshape(-1), C, inner, STORAGE[data.dtype][0],
                      data.dtype.itemsize, _runtime.isa_index(isa))
    return out


def _resolve_type(bits, symmetric, signed, narrow_range, dtype):
    """(bits, signed, narrow_range) from the choose_qparams options."""
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt.name not in _QUANT_OUT:
            raise ConfigError(f"dtype must be uint8, int8 or int16, got {dt}")
        if signed is not None and bool(signed) != STORAGE[dt][2]:
            raise ConfigError(f"signed={signed} contradicts dtype={dt}")
        signed = STORAGE[dt][2]
        bits = check_bits(bits, dt)
    else:
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 16:
            raise ConfigError(f"bits must be an int in 2..16, got {bits!r}")
        bits = int(bits)
        if signed is None:
            signed = bool(symmetric) or bits > 8
        storage_dtype(bits, bool(signed))
    signed = bool(signed)
    if narrow_range is None:
        narrow_range = bool(symmetric) and signed
    return bits, signed, check_narrow(narrow_range, signed)


def choose_qparams(rmin, rmax, *, bits=8, symmetric=False, signed=None, narrow_range=None,
                   dtype=None, axis=None):
    """Scale and zero point covering the real range [rmin, rmax] (docs/numerics.md).

    rmin, rmax   finite scalars (per tensor) or equal-shape 1-D arrays (per channel)
    bits         2..8, or up to 16 for signed (int16 storage)
    symmetric    False: asymmetric, the range widened to include 0 so that 0.0 is exact;
                 True: scale = max(|rmin|, |rmax|) / (2^(b-1) - 1), zero point 0 (signed) or
                 2^(b-1) (unsigned)
    signed       default: symmetric or bits > 8 (so u8 activations, s8 weights)
    narrow_range default: symmetric and signed ([-127, 127] for 8 bits)
    dtype        storage type instead of signed (uint8/int8/int16); must agree with signed
    axis         per channel only: the channel axis recorded in the result (default 0)

    Degenerate ranges give a valid scale: all zeros -> 1.0, tiny -> at least FLT_MIN.
    Non-finite bounds or rmin > rmax raise ConfigError. Returns a QParams.
    """
    bits, signed, narrow = _resolve_type(bits, symmetric, signed, narrow_range, dtype)
    qmin, qmax = qrange(bits, signed, narrow)
    lo = np.asarray(rmin, dtype=np.float64)
    hi = np.asarray(rmax, dtype=np.float64)
    if lo.shape != hi.shape or lo.ndim > 1:
        raise ShapeError(f"rmin and rmax must be scalars or 1-D arrays of one shape, got "
                         f"{lo.shape} and {hi.shape}")
    for name, v in (("rmin", lo), ("rmax", hi)):
        if not np.all(np.isfinite(v)):
            raise ConfigError(f"{name} must be finite, got {v.ravel()[~np.isfinite(v.ravel())][0]}")
    if np.any(lo > hi):
        i = int(np.argmax((lo > hi).ravel()))
        raise ConfigError(f"rmin > rmax at channel {i}: {lo.ravel()[i]} > {hi.ravel()[i]}")
    if lo.ndim == 0 and axis is not None:
        raise ConfigError("axis is only meaningful with per-channel (1-D) ranges")
    if lo.ndim == 1 and axis is None:
        axis = 0

    if symmetric:
        a = np.maximum(np.abs(lo), np.abs(hi))
        scale = _safe_scale(a, a / ((1 << (bits - 1)) - 1))
        zp = np.full(lo.shape, 0 if signed else 1 << (bits - 1), dtype=np.int64)
    else:
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        scale = _safe_scale(hi - lo, (hi - lo) / (qmax - qmin))
        zp = np.clip(qmin - np.rint(lo / scale.astype(np.float64)), qmin, qmax).astype(np.int64)
    scale = _finite_grid(scale, np.maximum(qmax - zp, zp - qmin))
    return QParams(scale, zp.astype(np.int32), bits=bits, signed=signed, narrow_range=narrow,
                   axis=axis)


def _safe_scale(width, scale64):
    """float32 scale; 1.0 for a zero-width range, at least FLT_MIN otherwise."""
    s = scale64.astype(np.float32)
    s = np.where(width == 0, np.float32(1.0), s)
    return np.maximum(s, np.float32(FLT_MIN)).astype(np.float32)


def _finite_grid(scale, steps):
    """Lower the scale where scale * steps would pass FLT_MAX (ranges within a step of FLT_MAX),
    so every code dequantizes to a finite float32 (docs/numerics.md)."""
    fmax = float(np.finfo(np.float32).max)
    limit = fmax / np.maximum(steps, 1).astype(np.float64)
    over = scale.astype(np.float64) * steps > fmax
    if not np.any(over):
        return scale
    down = limit.astype(np.float32)
    down = np.where(down.astype(np.float64) > limit, np.nextafter(down, np.float32(0)), down)
    return np.where(over, down, scale).astype(np.float32)


def data_range(x, axis=None):
    """(min, max) over the finite values of x, per tensor or per channel along `axis`.

    NaN and +-Inf are skipped (the infinities then saturate when quantized); a tensor or
    channel without finite values has range (0, 0).
    """
    x = _float_input(x)
    finite = np.isfinite(x)
    if axis is None:
        if not finite.any():
            return 0.0, 0.0
        v = x[finite]
        return float(v.min()), float(v.max())
    if x.ndim == 0 or not -x.ndim <= axis < x.ndim:
        raise ConfigError(f"axis={axis} is out of range for a {x.ndim}-D array")
    axis %= x.ndim
    rest = tuple(i for i in range(x.ndim) if i != axis)
    lo = np.where(finite, x, np.inf).min(axis=rest, initial=np.inf).astype(np.float64)
    hi = np.where(finite, x, -np.inf).max(axis=rest, initial=-np.inf).astype(np.float64)
    empty = ~np.isfinite(lo)
    lo[empty] = 0.0
    hi[empty] = 0.0
    return lo, hi


def choose_qparams_from_data(x, *, axis=None, bits=8, symmetric=False, signed=None,
                             narrow_range=None, dtype=None):
    """choose_qparams over the finite range of x (see data_range), per tensor or per channel
    along `axis` (the result records the normalized axis)."""
    lo, hi = data_range(x, axis)
    if axis is not None:
        axis %= np.ndim(x)
    return choose_qparams(lo, hi, bits=bits, symmetric=symmetric, signed=signed,
                          narrow_range=narrow_range, dtype=dtype, axis=axis)
