"""QTensor: integer data plus the (scale, zero_point[, axis]) that give it a real value.

Interface fixed here so the kernels and workflows can code against it; the quantization math
lives in qengine/quant.py.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True, eq=False)
class QTensor:
    data: np.ndarray          # uint8 / int8 / int16 / int32
    scale: np.ndarray         # float32, shape () per-tensor or (C,) per-channel along `axis`
    zero_point: np.ndarray    # int32, same shape as scale
    axis: Optional[int] = None
    bits: int = 8

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype
