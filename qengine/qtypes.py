"""Integer ranges, storage types and validation of (scale, zero_point, axis) -- shared by
QTensor, QParams and quantize() so that all three reject the same things with the same words.
The arithmetic these describe is docs/numerics.md."""
import numpy as np

from .errors import ConfigError, ShapeError

FLT_MIN = float(np.finfo(np.float32).tiny)   # smallest normal float32

# storage dtype -> (kernel type code in include/qengine/quant/qe_quant.h, max bits, signed)
STORAGE = {
    np.dtype(np.uint8): (0, 8, False),
    np.dtype(np.int8): (1, 8, True),
    np.dtype(np.int16): (2, 16, True),
    np.dtype(np.int32): (3, 32, True),
}


def qrange(bits, signed, narrow_range=False):
    """(qmin, qmax) of a b-bit type; the narrow signed range drops -2^(b-1)."""
    if signed:
        return -(1 << (bits - 1)) + int(bool(narrow_range)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def storage_dtype(bits, signed):
    """The smallest storage dtype quantize() writes for `bits` bits."""
    if not signed and bits > 8:
        raise ConfigError(f"unsigned {bits}-bit quantization is not supported: qengine stores "
                          f"more than 8 bits as signed int16; use signed=True")
    return np.dtype(np.int8 if bits <= 8 else np.int16) if signed else np.dtype(np.uint8)


def check_bits(bits, dtype, what="bits"):
    """Validate `bits` against a storage dtype (a key of STORAGE)."""
    max_bits = STORAGE[dtype][1]
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ConfigError(f"{what} must be an int, got {bits!r}")
    if not 2 <= bits <= max_bits:
        raise ConfigError(f"{what}={bits} does not fit {dtype.name} storage: expected 2..{max_bits}")
    return int(bits)


def check_narrow(narrow_range, signed):
    if not isinstance(narrow_range, (bool, np.bool_)):
        raise ConfigError(f"narrow_range must be a bool, got {narrow_range!r}")
    if narrow_range and not signed:
        raise ConfigError("narrow_range applies to signed types only (it drops -2^(b-1))")
    return bool(narrow_range)


def _first_bad(mask):
    idx = np.argwhere(mask)
    return f"{int(mask.sum())} value(s), first at index {tuple(int(i) for i in idx[0])}"


def check_scale_zp(scale, zero_point, axis, shape, qmin, qmax):
    """Normalize and validate quantization parameters for data of `shape` (None: unknown).

    Returns (scale float32, zero_point int32, axis) with axis non-negative when `shape` is known.
    Per tensor (axis None) scale and zero point are scalars (size-1 arrays are accepted); per
    channel they have shape (C,) with C = shape[axis] (a scalar zero point is broadcast).
    """
    s = np.asarray(scale)
    z = np.asarray(zero_point)
    if s.dtype.kind not in "fiu":
        raise ConfigError(f"scale must be real numbers, got dtype {s.dtype}")
    if z.dtype.kind not in "fiu":
        raise ConfigError(f"zero_point must be integers, got dtype {z.dtype}")
    s = s.astype(np.float32)
    if z.dtype.kind == "f":
        if not np.all(np.isfinite(z)) or np.any(z != np.round(z)):
            raise ConfigError(f"zero_point must hold integers, got {z!r}")
    z = z.astype(np.int64)

    if axis is None:
        if s.size != 1 or z.size != 1:
            raise ShapeError(f"per-tensor quantization (axis=None) needs a scalar scale and zero "
                             f"point, got shapes {s.shape} and {z.shape}; pass axis= for per-channel")
        s, z = s.reshape(()), z.reshape(())
    else:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ConfigError(f"axis must be an int or None, got {axis!r}")
        axis = int(axis)
        if shape is not None:
            if not -len(shape) <= axis < len(shape):
                raise ConfigError(f"axis={axis} is out of range for a {len(shape)}-D array "
                                  f"(expected {-len(shape)}..{len(shape) - 1})")
            axis %= len(shape)
            channels = shape[axis]
        else:
            channels = s.shape[0] if s.ndim == 1 else None
        if s.ndim != 1 or s.shape[0] != channels:
            raise ShapeError(f"per-channel scale must have shape ({channels},) (the size of axis "
                             f"{axis}), got {s.shape}")
        if z.ndim == 0:
            z = np.full(channels, z, dtype=np.int64)
        if z.shape != s.shape:
            raise ShapeError(f"per-channel zero_point must have shape {s.shape} like the scale, "
                             f"got {z.shape}")

    bad = ~(np.isfinite(s) & (s >= FLT_MIN))
    if np.any(bad):
        raise ConfigError(f"scale must be a finite float32 >= {FLT_MIN:.6g} (normal): "
                          f"{_first_bad(bad)} ({s[bad].ravel()[0]!r}) is not")
    bad = (z < qmin) | (z > qmax)
    if np.any(bad):
        raise ConfigError(f"zero_point must lie in [{qmin}, {qmax}]: {_first_bad(bad)} "
                          f"({int(z[bad].ravel()[0])}) does not")
    return s, z.astype(np.int32), axis
