"""Min/max observers: the running range, its exponential moving average, and per channel."""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, ShapeError
from ..quant import data_range
from .base import Observer, as_float32, check_count, finite_minmax


def _finite_float(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{name} must be a finite number, got {v!r}")
    return float(v)


def _no_data(obs):
    return ConfigError(f"{type(obs).__name__} has seen no finite values yet (observed "
                       f"{obs.nan} NaN, {obs.inf} Inf); cannot choose a range")


class MinMaxObserver(Observer):
    """The exact range of every finite value seen. merge() is exact (min of mins, max of maxes)."""
    method = "minmax"

    def __init__(self):
        self.min = math.inf
        self.max = -math.inf
        self.count = 0      # finite values seen
        self.nan = 0
        self.inf = 0

    def observe(self, x, *, isa=None) -> None:
        st = finite_minmax(as_float32(x), isa)
        self._add(st["min"], st["max"], st["outside"], st["nan"], st["pinf"] + st["ninf"])

    def _add(self, lo, hi, count, nan, inf):
        if count:
            self.min = min(self.min, lo) + 0.0     # + 0.0: -0.0 and 0.0 serialize alike
            self.max = max(self.max, hi) + 0.0
        self.count += count
        self.nan += nan
        self.inf += inf

    def merge(self, other):
        self._check_merge(other)
        self._add(other.min, other.max, other.count, other.nan, other.inf)
        return self

    def range(self, *, bits=8, symmetric=False):
        if not self.count:
            raise _no_data(self)
        return self.min, self.max

    def _state(self):
        return {"min": self.min if self.count else None, "max": self.max if self.count else None,
                "count": self.count, "nan": self.nan, "inf": self.inf}

    def _load(self, s):
        self.count = check_count("count", s["count"])
        self.nan = check_count("nan", s["nan"])
        self.inf = check_count("inf", s["inf"])
        if self.count:
            self.min = _finite_float("min", s["min"])
            self.max = _finite_float("max", s["max"])
            if self.min > self.max:
                raise ConfigError(f"min {self.min} > max {self.max}")


class MovingAverageMinMaxObserver(MinMaxObserver):
    """min/max smoothed over batches: r <- r + c * (batch_r - r), the first batch taken as is
    (PyTorch's MovingAverageMinMaxObserver). Batches without finite values are skipped.

    The average depends on the order of the batches, so merge() cannot equal a single pass; it
    combines the two averages weighted by their batch counts (documented approximation)."""
    method = "moving_average"

    def __init__(self, averaging_constant: float = 0.01):
        super().__init__()
        c = _finite_float("averaging_constant", averaging_constant)
        if not 0.0 < c <= 1.0:
            raise ConfigError(f"averaging_constant must be in (0, 1], got {averaging_constant!r}")
        self.averaging_constant = c
        self.batches = 0

    def _add(self, lo, hi, count, nan, inf):
        if count:
            if self.batches == 0:
                self.min, self.max = lo, hi
            else:
                c = self.averaging_constant
                self.min = self.min + c * (lo - self.min)
                self.max = self.max + c * (hi - self.max)
            self.min += 0.0
            self.max += 0.0
            self.batches += 1
        self.count += count
        self.nan += nan
        self.inf += inf

    def merge(self, other):
        self._check_merge(other)
        if other.batches:
            if self.batches:
                a, b = self.batches, other.batches
                self.min = (a * self.min + b * other.min) / (a + b)
                self.max = (a * self.max + b * other.max) / (a + b)
            else:
                self.min, self.max = other.min, other.max
        self.batches += other.batches
        self.count += other.count
        self.nan += other.nan
        self.inf += other.inf
        return self

    def _config(self):
        return {"averaging_constant": self.averaging_constant}

    def _state(self):
        return {**super()._state(), "batches": self.batches}

    def _load(self, s):
        super()._load(s)
        self.batches = check_count("batches", s["batches"])
        if (self.batches == 0) != (self.count == 0):
            raise ConfigError("batches and count must both be zero or both positive")


class PerChannelMinMaxObserver(Observer):
    """Exact range per channel along `axis` (for weights): every observed array must have the
    same number of channels. range() returns two float64 arrays of shape (C,)."""
    method = "minmax_per_channel"

    def __init__(self, axis: int = 0):
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ConfigError(f"axis must be an int, got {axis!r}")
        self.axis = axis
        self.min = None     # float64 (C,) once something was observed
        self.max = None
        self.count = None   # finite values per channel
        self.nan = 0
        self.inf = 0
        self.ndim = None    # rank of the observed arrays, to normalize a negative axis

    def observe(self, x) -> None:
        arr = np.asarray(x)
        if arr.dtype.kind != "f":
            raise ShapeError(f"observe expects a floating-point array, got {arr.dtype}")
        if not -arr.ndim <= self.axis < arr.ndim:
            raise ShapeError(f"axis={self.axis} is out of range for an array of shape "
                             f"{arr.shape}")
        arr = arr.astype(np.float32, copy=False)
        axis = self.axis % arr.ndim
        C = arr.shape[axis]
        if self.min is not None and C != self.min.shape[0]:
            raise ShapeError(f"observed {C} channels along axis {self.axis}, earlier arrays "
                             f"had {self.min.shape[0]}")
        self.ndim = arr.ndim
        lo, hi = data_range(arr, axis)
        finite = np.isfinite(arr)
        rest = tuple(i for i in range(arr.ndim) if i != axis)
        count = finite.sum(axis=rest).astype(np.int64)
        self.nan += int(np.isnan(arr).sum())
        self.inf += int(np.isinf(arr).sum())
        lo = np.where(count > 0, lo, np.inf)
        hi = np.where(count > 0, hi, -np.inf)
        if self.min is None:
            self.min, self.max, self.count = lo, hi, count
        else:
            self.min = np.minimum(self.min, lo)
            self.max = np.maximum(self.max, hi)
            self.count = self.count + count

    def merge(self, other):
        self._check_merge(other)
        if other.min is not None:
            self.ndim = self.ndim or other.ndim
            if self.min is None:
                self.min, self.max, self.count = other.min.copy(), other.max.copy(), \
                    other.count.copy()
            elif other.min.shape != self.min.shape:
                raise ShapeError(f"cannot merge {other.min.shape[0]} channels into "
                                 f"{self.min.shape[0]}")
            else:
                self.min = np.minimum(self.min, other.min)
                self.max = np.maximum(self.max, other.max)
                self.count = self.count + other.count
        self.nan += other.nan
        self.inf += other.inf
        return self

    def qparams(self, *, bits=8, symmetric=False, signed=None, narrow_range=None):
        """Per-channel QParams; the recorded axis is normalized (non-negative) when the
        observed rank is known."""
        from ..quant import choose_qparams
        lo, hi = self.range()
        axis = self.axis % self.ndim if self.ndim else self.axis
        return choose_qparams(lo, hi, bits=bits, symmetric=symmetric, signed=signed,
                              narrow_range=narrow_range, axis=axis)

    def range(self, *, bits=8, symmetric=False):
        """Per-channel (rmin, rmax); a channel without finite values gets (0, 0)."""
        if self.min is None:
            raise ConfigError("PerChannelMinMaxObserver has observed nothing yet")
        empty = self.count == 0
        return (np.where(empty, 0.0, self.min) + 0.0, np.where(empty, 0.0, self.max) + 0.0)

    def _config(self):
        return {"axis": self.axis}

    def _state(self):
        if self.min is None:
            return {"min": None, "max": None, "count": None, "nan": self.nan, "inf": self.inf,
                    "ndim": None}
        lo, hi = self.range()
        return {"min": lo.tolist(), "max": hi.tolist(), "count": self.count.tolist(),
                "nan": self.nan, "inf": self.inf, "ndim": self.ndim}

    def _load(self, s):
        self.nan = check_count("nan", s["nan"])
        self.inf = check_count("inf", s["inf"])
        if s["min"] is None:
            return
        ndim = s["ndim"]
        if isinstance(ndim, bool) or not isinstance(ndim, int) or not \
                -ndim <= self.axis < ndim:
            raise ConfigError(f"per-channel state: ndim {ndim!r} does not fit axis {self.axis}")
        self.ndim = ndim
        lo = np.asarray(s["min"], dtype=np.float64)
        hi = np.asarray(s["max"], dtype=np.float64)
        cnt = np.asarray(s["count"], dtype=np.int64)
        if lo.ndim != 1 or lo.shape != hi.shape or lo.shape != cnt.shape:
            raise ConfigError("per-channel min, max and count must be 1-D lists of one length")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) or np.any(lo > hi) \
                or np.any(cnt < 0):
            raise ConfigError("per-channel state must hold finite min <= max and counts >= 0")
        empty = cnt == 0
        self.min = np.where(empty, np.inf, lo)
        self.max = np.where(empty, -np.inf, hi)
        self.count = cnt
