"""NumPy definition of docs/numerics.md "Quantize", "Dequantize" and "Choosing scale and zero
point". The scalar C kernels must equal these bit for bit; they are written independently of
qengine/quant.py (plain NumPy, no kernels, no shared validation) so that each checks the other.
"""

import numpy as np

_FLT_MIN = np.float32(np.finfo(np.float32).tiny)


def _bcast(p, shape, axis):
    """Per-channel parameter reshaped to broadcast along `axis` of an array of `shape`."""
    p = np.asarray(p)
    if axis is None:
        return p.reshape(())
    view = [1] * len(shape)
    view[axis] = -1
    return p.reshape(view)


def quantize_ref(x, scale, zero_point, qmin, qmax, axis=None):
    """int64 q: v = f32(x)/s in float32; NaN -> 0; clamp to [qmin-z, qmax-z]; rint; + z."""
    x = np.asarray(x, dtype=np.float32)
    s = _bcast(np.asarray(scale, dtype=np.float32), x.shape, axis)
    z = _bcast(np.asarray(zero_point, dtype=np.int64), x.shape, axis)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        v = (x / s).astype(np.float32)
    v = np.where(np.isnan(v), np.float32(0), v)
    v = np.clip(v, (qmin - z).astype(np.float32), (qmax - z).astype(np.float32))
    return np.rint(v).astype(np.int64) + z


def dequantize_ref(q, scale, zero_point, axis=None):
    """float32(q - z) * s, the difference exact in int64, one float32 multiply."""
    q = np.asarray(q)
    s = _bcast(np.asarray(scale, dtype=np.float32), q.shape, axis)
    z = _bcast(np.asarray(zero_point, dtype=np.int64), q.shape, axis)
    return ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


def choose_qparams_ref(rmin, rmax, qmin, qmax, symmetric=False, signed=True):
    """(scale float32, zero_point int) for one channel, in Python float64 arithmetic."""
    rmin, rmax = float(rmin), float(rmax)
    if symmetric:
        a = max(abs(rmin), abs(rmax))
        half = (qmax - qmin) // 2                     # 2^(b-1) - 1, narrow or full range
        s = np.float32(1.0) if a == 0 else max(np.float32(a / half), _FLT_MIN)
        z = 0 if signed else (qmax + 1) // 2
        return _finite(s, max(qmax - z, z - qmin)), z
    rmin, rmax = min(rmin, 0.0), max(rmax, 0.0)
    width = rmax - rmin
    s = np.float32(1.0) if width == 0 else max(np.float32(width / (qmax - qmin)), _FLT_MIN)
    z = qmin - round(rmin / float(s))                 # Python round() is half to even
    z = int(min(max(z, qmin), qmax))
    return _finite(s, max(qmax - z, z - qmin)), z


def _finite(s, steps):
    """Largest float32 <= FLT_MAX / steps when s * steps would overflow, else s."""
    fmax = float(np.finfo(np.float32).max)
    if float(s) * steps <= fmax:
        return s
    t = np.float32(fmax / steps)
    while float(t) * steps > fmax:
        t = np.nextafter(t, np.float32(0))
    return t


def qrange_ref(bits, signed, narrow=False):
    if signed:
        return -(2 ** (bits - 1)) + (1 if narrow else 0), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


__all__ = ["quantize_ref", "dequantize_ref", "choose_qparams_ref", "qrange_ref"]
