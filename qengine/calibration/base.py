"""The observer interface every calibration method implements.

An observer watches the float values one tensor takes over the calibration data and proposes a
real range [rmin, rmax] for it; `qparams` turns that range into a scale and zero point with
`qengine.choose_qparams` (docs/numerics.md). Observers are streaming (their state has a fixed
size, however many samples they see), mergeable (statistics from several runs or processes
combine exactly: observe(a); observe(b) == observe(a) merged with observe(b), except for the
order-dependent moving average) and serializable to JSON-able dicts (no pickle), so statistics
can be saved and merged later.

Data is observed as float32, the engine's activation type: float64/float16 input is rounded to
float32 first. NaN and +-Inf are ignored (and counted): ranges are over the finite values, as
`qengine.data_range` does; the infinities then saturate when quantized. Every observer has a
`nan` attribute, the number of NaN values it dropped; `collect_stats` warns (NaNWarning) naming
each tensor that had some.
"""
from __future__ import annotations

import numpy as np

from .._runtime import isa_index
from .._ext import _calib
from ..errors import ConfigError, ShapeError
from ..quant import choose_qparams

#: Version of the to_dict() layout; from_dict rejects any other.
STATE_VERSION = 1


def as_float32(x, what="observe") -> np.ndarray:
    """x as a flat C-contiguous float32 array (a view when it already is one)."""
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise ShapeError(f"{what} expects a floating-point array (float16/32/64), got "
                         f"{arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32).reshape(-1)


def finite_minmax(x32: np.ndarray, isa=None) -> dict:
    """One compiled pass: min/max over the finite values and the NaN/Inf counts."""
    empty = np.zeros(0, dtype=np.int64)
    return _calib.histogram(x32, 1.0, 0, empty, 0.0, 0.0, isa_index(isa), 0, 0)


def check_options(bits, symmetric):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 16:
        raise ConfigError(f"bits must be an int in 2..16, got {bits!r}")
    if not isinstance(symmetric, (bool, np.bool_)):
        raise ConfigError(f"symmetric must be a bool, got {symmetric!r}")
    return int(bits), bool(symmetric)


def check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a non-negative int, got {value!r}")
    return value


class Observer:
    """Base class. Subclasses implement `observe`, `merge`, `range`, `_state`, `_load`."""

    #: name in qengine.calibration.OBSERVERS (and in serialized state)
    method: str = ""
    # Subclasses also keep `nan`: how many NaN values observe() has dropped (an attribute or a
    # property; it is not declared here so that subclasses can choose either).

    def observe(self, x) -> None:
        raise NotImplementedError

    def merge(self, other: "Observer") -> "Observer":
        """Add another observer's statistics to this one (in place); returns self."""
        raise NotImplementedError

    def range(self, *, bits: int = 8, symmetric: bool = False):
        """(rmin, rmax) to quantize with. Threshold-searching observers (entropy, MSE) depend on
        the target grid, so they take the same `bits`/`symmetric` as `qparams`; the min/max
        observers ignore them."""
        raise NotImplementedError

    def qparams(self, *, bits: int = 8, symmetric: bool = False, signed=None,
                narrow_range=None):
        """QParams for `range(bits=, symmetric=)` via qengine.choose_qparams."""
        bits, symmetric = check_options(bits, symmetric)
        rmin, rmax = self.range(bits=bits, symmetric=symmetric)
        axis = getattr(self, "axis", None) if np.ndim(rmin) else None
        return choose_qparams(rmin, rmax, bits=bits, symmetric=symmetric, signed=signed,
                              narrow_range=narrow_range, axis=axis)

    # ---- serialization ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able state: {"method", "version", "config", "state"}."""
        return {"method": self.method, "version": STATE_VERSION, "config": self._config(),
                "state": self._state()}

    @classmethod
    def from_dict(cls, d: dict) -> "Observer":
        """Rebuild an observer from to_dict() output (validated; ConfigError when malformed)."""
        if not isinstance(d, dict) or not {"method", "version", "config", "state"} <= set(d):
            raise ConfigError("observer state must be a dict with method, version, config and "
                              "state (as written by Observer.to_dict)")
        if d["version"] != STATE_VERSION:
            raise ConfigError(f"observer state version {d['version']!r} is not supported "
                              f"(expected {STATE_VERSION})")
        if cls.method and d["method"] != cls.method:
            raise ConfigError(f"{cls.__name__}.from_dict got state of method {d['method']!r}")
        if not isinstance(d["config"], dict) or not isinstance(d["state"], dict):
            raise ConfigError("observer config and state must be dicts")
        try:
            obs = cls(**d["config"])
        except TypeError as e:
            raise ConfigError(f"bad observer config {d['config']!r}: {e}") from None
        try:
            obs._load(d["state"])
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"malformed {cls.__name__} state: {type(e).__name__}: {e}") from None
        return obs

    def _config(self) -> dict:
        return {}

    def _state(self) -> dict:
        raise NotImplementedError

    def _load(self, state: dict) -> None:
        raise NotImplementedError

    def _check_merge(self, other):
        if type(other) is not type(self):
            raise ConfigError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        if other._config() != self._config():
            raise ConfigError(f"cannot merge observers with different settings: "
                              f"{self._config()} vs {other._config()}")

    def __repr__(self):
        cfg = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({cfg})"
