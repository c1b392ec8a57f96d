"""QTensor: integer data plus the (scale, zero_point[, axis]) that give it a real value,
``r = scale * (q - zero_point)`` (docs/numerics.md). The math lives in qengine/quant.py."""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import ConfigError, ShapeError
from .qtypes import STORAGE, _first_bad, check_bits, check_narrow, check_scale_zp, qrange


@dataclass(frozen=True, eq=False)
class QTensor:
    """Quantized tensor. Validated on construction; fields are normalized in place:

    data         uint8 (unsigned), int8 / int16 / int32 (signed) ndarray
    scale        float32 ndarray, shape () per tensor or (C,) per channel along `axis`; each a
                 normal float32 (>= 1.18e-38), which keeps results independent of DAZ/FTZ modes
    zero_point   int32 ndarray of the scale's shape (a scalar is broadcast per channel), inside
                 [qmin, qmax]; 0 when bits == 32 so that q - zero_point cannot overflow
    axis         None (per tensor) or the channel axis, stored non-negative
    bits         2..8 for 8-bit storage, 2..16 for int16, 2..32 for int32; when the data type is
                 wider than `bits` (or narrow_range is set) every value must lie in [qmin, qmax]
    narrow_range signed only: the range is [-(2^(b-1)-1), 2^(b-1)-1] (symmetric weights)
    """
    data: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: Optional[int] = None
    bits: int = 8
    narrow_range: bool = False

    def __post_init__(self):
        data = self.data
        if not isinstance(data, np.ndarray):
            raise ShapeError(f"QTensor.data must be a numpy array, got {type(data).__name__}")
        if data.dtype not in STORAGE:
            raise ShapeError(f"QTensor.data must be uint8, int8, int16 or int32, got {data.dtype}")
        bits = check_bits(self.bits, data.dtype)
        signed = STORAGE[data.dtype][2]
        narrow = check_narrow(self.narrow_range, signed)
        qmin, qmax = qrange(bits, signed, narrow)
        if self.axis is not None and data.ndim == 0:
            raise ShapeError("per-channel QTensor needs data with at least one dimension")
        scale, zp, axis = check_scale_zp(self.scale, self.zero_point, self.axis, data.shape,
                                         qmin, qmax)
        if bits == 32 and np.any(zp != 0):
            raise ConfigError("32-bit QTensor needs zero_point 0 (q - zero_point must fit int32)")
        if (bits < STORAGE[data.dtype][1] or narrow) and data.size:
            bad = (data < qmin) | (data > qmax)
            if np.any(bad):
                raise ConfigError(f"QTensor.data must lie in [{qmin}, {qmax}] for bits={bits}"
                                  f"{' (narrow range)' if narrow else ''}: {_first_bad(bad)} "
                                  f"({int(data[bad].ravel()[0])}) does not")
        for name, value in (("scale", scale), ("zero_point", zp), ("axis", axis),
                            ("bits", bits), ("narrow_range", narrow)):
            object.__setattr__(self, name, value)

    @classmethod
    def _unchecked(cls, data, scale, zero_point, axis, bits, narrow_range):
        """For quantize(): its output is in range by construction, its parameters already
        validated; skip the O(n) range scan."""
        q = object.__new__(cls)
        for name, value in (("data", data), ("scale", scale), ("zero_point", zero_point),
                            ("axis", axis), ("bits", bits), ("narrow_range", narrow_range)):
            object.__setattr__(q, name, value)
        return q

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def signed(self):
        return STORAGE[self.data.dtype][2]

    @property
    def qmin(self):
        return qrange(self.bits, self.signed, self.narrow_range)[0]

    @property
    def qmax(self):
        return qrange(self.bits, self.signed, self.narrow_range)[1]

    @property
    def per_channel(self):
        return self.axis is not None

    def dequantize(self, *, isa=None):
        """float32 array ``scale * (data - zero_point)`` (docs/numerics.md, "Dequantize")."""
        from .quant import dequantize
        return dequantize(self, isa=isa)

    def __repr__(self):
        rng = f"[{self.qmin}, {self.qmax}]"
        if self.axis is None:
            params = f"scale={float(self.scale):.6g}, zero_point={int(self.zero_point)}"
        else:
            s, z = self.scale, self.zero_point
            more = ", ..." if s.size > 4 else ""
            params = (f"axis={self.axis}, scale=[{', '.join(f'{v:.6g}' for v in s[:4])}{more}], "
                      f"zero_point=[{', '.join(str(v) for v in z[:4])}{more}]")
        return (f"QTensor(shape={self.shape}, dtype={self.dtype.name}, bits={self.bits}, "
                f"range={rng}, {params})")
