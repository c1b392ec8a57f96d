"""Dynamic-int8 linear layer: y = x·Wᵀ + bias with int8 W (per output row) and x quantized per
call (u8, per tensor or per row) inside one compiled, GIL-free call.

weight_bits=4: W holds int4 values in [−7, 7] (an int8 array) with scales Ws [N, G], one per
row (group_size None, G = 1) or per group of group_size K values; packed two per byte and run
by the 4-bit kernels (qe_gemm_w4.h, numerics.md epilogue (c))."""
import numpy as np

from .. import _runtime, functional
from .._ext import _rnn
from ..errors import ConfigError, ShapeError
from .weights import int4_groups


class DynamicLinear:
    def __init__(self, Wq, Ws, bias=None, *, per_row=False, isa=None, weight_bits=8,
                 group_size=None):
        Wq = np.asarray(Wq)
        if Wq.dtype != np.int8 or Wq.ndim != 2 or 0 in Wq.shape:
            raise ConfigError(f"DynamicLinear: weights must be a non-empty int8 [N, K] matrix, "
                              f"got {Wq.dtype} {Wq.shape}")
        if weight_bits not in (4, 8):
            raise ConfigError(f"DynamicLinear: weight_bits must be 4 or 8, got {weight_bits!r}")
        functional.check_group_size(group_size)
        if weight_bits == 8 and group_size is not None:
            raise ConfigError("DynamicLinear: group_size applies to weight_bits=4 only")
        N, K = Wq.shape
        shape = (N,) if weight_bits == 8 else (N, int4_groups(K, group_size))
        Ws = np.ascontiguousarray(Ws, np.float32)
        Ws = Ws.reshape(-1) if weight_bits == 8 else Ws
        if Ws.shape != shape or not (np.all(np.isfinite(Ws)) and np.all(Ws > 0)):
            raise ConfigError(f"DynamicLinear: expected finite positive weight scales of shape "
                              f"{shape}, got {Ws.shape}")
        b = np.zeros(N, np.float32) if bias is None else np.asarray(bias, np.float32)
        if b.shape != (N,):
            raise ShapeError(f"DynamicLinear: bias must have shape ({N},), got {b.shape}")
        self.n, self.k, self.per_row = N, K, bool(per_row)
        self.weight_bits, self.group_size = weight_bits, group_size
        if weight_bits == 4:
            self._w = functional.pack_weights_int4(Wq, Ws, group_size)
            self._isa = _runtime.isa_index(isa)
        else:
            self._w = functional.pack_weights(Wq, isa=isa)
        self._scale, self._bias = Ws, np.ascontiguousarray(b)
        self.nbytes = self._w.nbytes

    def _project(self, x2, group, nthreads):
        if self.weight_bits == 4:
            return _rnn.project4(x2, group, self._w, self._bias, self._isa, nthreads)
        return _rnn.project(x2, group, self._w, self._scale, self._bias, nthreads)

    def __call__(self, x, *, nthreads=0):
        if type(x) is np.ndarray and x.ndim == 2 and x.dtype == np.float32 and \
                x.shape[1] == self.k and x.flags.c_contiguous:
            # the serving fast path: nothing to convert (a batch-1 call is ~20 µs in all)
            m = x.shape[0]
            return self._project(x, 1 if self.per_row or m == 0 else m, nthreads)
        x = np.asarray(x, np.float32)
        if x.ndim < 1 or x.shape[-1] != self.k:
            raise ShapeError(f"DynamicLinear: input's last dim must be {self.k}, got shape "
                             f"{x.shape}")
        lead = x.shape[:-1]
        x2 = np.ascontiguousarray(x.reshape(-1, self.k))
        m = x2.shape[0]
        # _rnn.project is functional.linear_dynamic without the per-call argument checks this
        # layer already did at construction (they cost as much as a batch-1 GEMV here)
        y = self._project(x2, 1 if self.per_row or m == 0 else m, nthreads)
        return y.reshape(*lead, self.n)
