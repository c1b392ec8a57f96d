"""QParams: the result of choosing a scale and zero point, before any data is quantized."""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import ConfigError
from .qtypes import check_narrow, check_scale_zp, qrange, storage_dtype


@dataclass(frozen=True, eq=False)
class QParams:
    """scale (float32, () or (C,)), zero_point (int32, same shape), the integer type they target
    (bits, signed, narrow_range) and, per channel, the channel axis. Validated on construction
    with the same rules as QTensor."""
    scale: np.ndarray
    zero_point: np.ndarray
    bits: int = 8
    signed: bool = False
    narrow_range: bool = False
    axis: Optional[int] = None

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)) \
                or not 2 <= self.bits <= 16:
            raise ConfigError(f"bits must be an int in 2..16, got {self.bits!r}")
        storage_dtype(int(self.bits), bool(self.signed))       # rejects unsigned > 8 bits
        narrow = check_narrow(self.narrow_range, bool(self.signed))
        qmin, qmax = qrange(int(self.bits), bool(self.signed), narrow)
        scale, zp, axis = check_scale_zp(self.scale, self.zero_point, self.axis, None, qmin, qmax)
        for name, value in (("scale", scale), ("zero_point", zp), ("axis", axis),
                            ("bits", int(self.bits)), ("signed", bool(self.signed)),
                            ("narrow_range", narrow)):
            object.__setattr__(self, name, value)

    @property
    def dtype(self):
        """Storage dtype quantize() writes: uint8, int8 or int16."""
        return storage_dtype(self.bits, self.signed)

    @property
    def qmin(self):
        return qrange(self.bits, self.signed, self.narrow_range)[0]

    @property
    def qmax(self):
        return qrange(self.bits, self.signed, self.narrow_range)[1]

    def quantize(self, x, *, check=False, isa=None):
        """quantize(x) with these parameters (see qengine.quantize)."""
        from .quant import quantize
        return quantize(x, self.scale, self.zero_point, dtype=self.dtype, axis=self.axis,
                        bits=self.bits, check=check, narrow_range=self.narrow_range, isa=isa)

    def __repr__(self):
        kind = "per-tensor" if self.axis is None else f"per-channel axis={self.axis}"
        return (f"QParams({kind}, {self.dtype.name} bits={self.bits} range=[{self.qmin}, "
                f"{self.qmax}], scale={np.array2string(self.scale, threshold=6)}, "
                f"zero_point={np.array2string(self.zero_point, threshold=6)})")
