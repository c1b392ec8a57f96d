"""Dynamic-int8 linear layer: y = x·Wᵀ + bias with int8 W (per output row) and x quantized per
call (u8, per tensor or per row) inside one compiled, GIL-free call."""
import numpy as np

from .. import functional
from .._ext import _rnn
from ..errors import ConfigError, ShapeError


class DynamicLinear:
    def __init__(self, Wq, Ws, bias=None, *, per_row=False, isa=None):
        Wq = np.asarray(Wq)
        if Wq.dtype != np.int8 or Wq.ndim != 2 or 0 in Wq.shape:
            raise ConfigError(f"DynamicLinear: weights must be a non-empty int8 [N, K] matrix, "
                              f"got {Wq.dtype} {Wq.shape}")
        N, K = Wq.shape
        Ws = np.ascontiguousarray(Ws, np.float32).reshape(-1)
        if Ws.shape != (N,) or not (np.all(np.isfinite(Ws)) and np.all(Ws > 0)):
            raise ConfigError(f"DynamicLinear: expected {N} finite positive weight scales")
        b = np.zeros(N, np.float32) if bias is None else np.asarray(bias, np.float32)
        if b.shape != (N,):
            raise ShapeError(f"DynamicLinear: bias must have shape ({N},), got {b.shape}")
        self.n, self.k, self.per_row = N, K, bool(per_row)
        self._w = functional.pack_weights(Wq, isa=isa)
        self._scale, self._bias = Ws, np.ascontiguousarray(b)
        self.nbytes = self._w.nbytes

    def __call__(self, x, *, nthreads=0):
        if type(x) is np.ndarray and x.ndim == 2 and x.dtype == np.float32 and \
                x.shape[1] == self.k and x.flags.c_contiguous:
            # the serving fast path: nothing to convert (a batch-1 call is ~20 µs in all)
            m = x.shape[0]
            return _rnn.project(x, 1 if self.per_row or m == 0 else m, self._w, self._scale,
                                self._bias, nthreads)
        x = np.asarray(x, np.float32)
        if x.ndim < 1 or x.shape[-1] != self.k:
            raise ShapeError(f"DynamicLinear: input's last dim must be {self.k}, got shape "
                             f"{x.shape}")
        lead = x.shape[:-1]
        x2 = np.ascontiguousarray(x.reshape(-1, self.k))
        m = x2.shape[0]
        # _rnn.project is functional.linear_dynamic without the per-call argument checks this
        # layer already did at construction (they cost as much as a batch-1 GEMV here)
        y = _rnn.project(x2, 1 if self.per_row or m == 0 else m, self._w, self._scale,
                         self._bias, nthreads)
        return y.reshape(*lead, self.n)
