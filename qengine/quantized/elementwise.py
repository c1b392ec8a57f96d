"""Static-int8 elementwise ops on uint8 tensors (any layout; NumPy broadcasting):
QAdd, QMul (the formulas of include/qengine/eltwise/qe_eltwise_params.h), QConcat (inputs
requantized to the shared output qparams through a 256-entry table, or copied when equal) and
QLookupTable (any u8 → u8 function of one input — Sigmoid, HardSigmoid, HardSwish, LeakyRelu,
Tanh, … — as a table built once from the input/output qparams). NumPy definitions:
qengine.reference.conv.qadd_ref / qmul_ref / qconcat_ref / activation_table_ref / lut_ref."""
import math

import numpy as np

from .. import _runtime
from .._ext import _conv
from ..errors import ConfigError, ShapeError
from . import params as S


def _u8(x, name):
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
        raise ShapeError(f"{name} must be a uint8 array, got {getattr(x, 'dtype', type(x).__name__)}")
    return x


class _Binary:
    _op = None

    def __init__(self, a_scale, a_zero_point, b_scale, b_zero_point, output_scale,
                 output_zero_point, activation=None, isa=None):
        self.a_scale, self.b_scale = S.scale(a_scale, "a_scale"), S.scale(b_scale, "b_scale")
        self.a_zero_point = S.zero_point(a_zero_point, "a_zero_point")
        self.b_zero_point = S.zero_point(b_zero_point, "b_zero_point")
        self.output_scale = S.scale(output_scale, "output_scale")
        self.output_zero_point = S.zero_point(output_zero_point, "output_zero_point")
        self.lo, self.hi = S.clamp_range(activation, self.output_scale, self.output_zero_point)
        self._isa = S.isa_index(isa)
        self.isa = _runtime.ISA_NAMES[self._isa]

    def __call__(self, a, b, *, nthreads=0, out=None):
        a, b = _u8(a, "a"), _u8(b, "b")
        shape = a.shape
        # the usual case (a residual add) goes straight to the kernel: NumPy's broadcasting
        # helpers cost ~7 µs a call, fourteen times the kernel on a transformer's 32×64
        if shape != b.shape or not (a.flags.c_contiguous and b.flags.c_contiguous):
            shape = np.broadcast_shapes(a.shape, b.shape)
            # broadcasting is materialized (a copy of the smaller operand); the kernel is flat
            a = np.ascontiguousarray(np.broadcast_to(a, shape))
            b = np.ascontiguousarray(np.broadcast_to(b, shape))
        y = S.output(out, shape)
        _conv.binary(self._op, self._isa, a, b, y, self.a_zero_point, self.b_zero_point,
                     self.output_zero_point, self.lo, self.hi, self._ma, self._mb, nthreads)
        return y


class QAdd(_Binary):
    """QAdd(a_scale, a_zero_point, b_scale, b_zero_point, output_scale, output_zero_point,
    activation=None, isa=None). Call: (a uint8, b uint8, broadcastable) -> uint8.
    y = rhe(clamp(float32(a − z_a)·M_a + float32(b − z_b)·M_b)) + z_y."""
    _op = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ma = float(S.rescale_multiplier(self.a_scale, self.output_scale))
        self._mb = float(S.rescale_multiplier(self.b_scale, self.output_scale))


class QMul(_Binary):
    """QMul(a_scale, a_zero_point, b_scale, b_zero_point, output_scale, output_zero_point,
    activation=None, isa=None). Call: (a uint8, b uint8, broadcastable) -> uint8.
    y = qe_requantize((a − z_a)(b − z_b), float32(s_a·s_b / s_y), z_y, lo, hi)."""
    _op = 1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ma = float(S.mul_multiplier(self.a_scale, self.b_scale, self.output_scale))
        self._mb = 0.0


# The functions a QLookupTable can name, on float64 arrays. Each is evaluated once per table
# (256 values), so they are written for agreement with qengine/reference/conv.py ACTIVATIONS —
# the same float64 expression in the same order, checked by tests/test_architecture.py — not
# for speed. The parameterless ones ignore alpha/beta (a QLut node may carry them), as the
# reference does.
def _sigmoid(r, **_):
    return 1.0 / (1.0 + np.exp(-r))


def _tanh(r, **_):
    return np.tanh(r)


def _hardsigmoid(r, alpha=0.2, beta=0.5):
    return np.clip(alpha * r + beta, 0.0, 1.0)


def _hardswish(r, **_):
    return r * np.clip(r + 3.0, 0.0, 6.0) / 6.0


def _leakyrelu(r, alpha=0.01):
    return np.where(r >= 0, r, alpha * r)


def _relu(r, **_):
    return np.maximum(r, 0.0)


def _elu(r, alpha=1.0):
    return np.where(r > 0, r, alpha * np.expm1(np.minimum(r, 0.0)))


_erf = np.frompyfunc(math.erf, 1, 1)   # NumPy has no erf, and SciPy is not a dependency


def _gelu(r, **_):
    return 0.5 * r * (1.0 + _erf(r / math.sqrt(2.0)).astype(np.float64))


def _silu(r, **_):
    return r / (1.0 + np.exp(-r))


ACTIVATIONS = {"sigmoid": _sigmoid, "tanh": _tanh, "hardsigmoid": _hardsigmoid,
               "hardswish": _hardswish, "leakyrelu": _leakyrelu, "relu": _relu, "elu": _elu,
               "gelu": _gelu, "silu": _silu}


def activation_table(fn, x_scale, x_zero_point, y_scale, y_zero_point, **fn_kwargs):
    """uint8 [256]: code q ↦ quantize(f(dequantize(q))). The float32 dequantized value is
    widened to float64, f evaluated there and rounded once to float32, then the normative
    quantize. fn: a name from ACTIVATIONS or a callable on float64 arrays."""
    f = ACTIVATIONS[fn] if isinstance(fn, str) else fn
    r = (np.arange(256, dtype=np.float32) - np.float32(x_zero_point)) * np.float32(x_scale)
    with np.errstate(over="ignore"):   # exp(−r) overflows to inf for very negative r: σ → 0
        fr = np.asarray(f(r.astype(np.float64), **fn_kwargs), np.float64).astype(np.float32)
    return S.quantize_u8(fr, y_scale, y_zero_point)


def apply_table(x, table, nthreads=0, out=None):
    """y = table[x] through the compiled gather (uint8 x of any shape)."""
    x = np.ascontiguousarray(_u8(x, "x"))
    y = S.output(out, x.shape)
    if x.size:
        _conv.lut(x, table, y, nthreads)
    return y


class QLookupTable:
    """QLookupTable(fn, *, input_scale, input_zero_point, output_scale, output_zero_point,
    **fn_kwargs): fn a name ('sigmoid', 'tanh', 'hardsigmoid' (alpha, beta), 'hardswish',
    'leakyrelu' (alpha), 'relu', 'elu' (alpha), 'gelu', 'silu') or a callable on float64 arrays.
    Call: uint8 (any shape) -> uint8. `table` is the uint8 [256] map."""

    def __init__(self, fn, *, input_scale, input_zero_point, output_scale, output_zero_point,
                 **fn_kwargs):
        if isinstance(fn, str) and fn.lower() not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {fn!r}; known: {', '.join(ACTIVATIONS)}")
        self.fn = fn.lower() if isinstance(fn, str) else fn
        self.input_scale = S.scale(input_scale, "input_scale")
        self.input_zero_point = S.zero_point(input_zero_point, "input_zero_point")
        self.output_scale = S.scale(output_scale, "output_scale")
        self.output_zero_point = S.zero_point(output_zero_point, "output_zero_point")
        self.table = activation_table(self.fn, self.input_scale, self.input_zero_point,
                                      self.output_scale, self.output_zero_point, **fn_kwargs)

    def __call__(self, x, *, nthreads=0, out=None):
        return apply_table(x, self.table, nthreads, out)

    def prepare_call(self, input_shape):
        """(output shape, fn(x, y)) for uint8 C-contiguous inputs of `input_shape`."""
        lut, table = _conv.lut, self.table
        return tuple(input_shape), lambda x, y: lut(x, table, y, 0)


class QConcat:
    """QConcat(input_qparams [(scale, zero_point), ...], output_scale, output_zero_point,
    axis=-1). Call: (list of uint8 arrays) -> uint8; an input whose qparams differ from the
    output's goes through its requant table (qe_requantize of q − z_x by float32(s_x / s_y))."""

    def __init__(self, input_qparams, output_scale, output_zero_point, axis=-1):
        self.output_scale = S.scale(output_scale, "output_scale")
        self.output_zero_point = S.zero_point(output_zero_point, "output_zero_point")
        self.axis = int(axis)
        self.input_qparams = [(S.scale(s, "input scale"), S.zero_point(z, "input zero point"))
                              for s, z in input_qparams]
        self._tables = [None if (s, z) == (self.output_scale, self.output_zero_point)
                        else S.requant_table(s, z, self.output_scale, self.output_zero_point)
                        for s, z in self.input_qparams]

    def __call__(self, inputs, *, nthreads=0, out=None):
        if len(inputs) != len(self._tables):
            raise ShapeError(f"QConcat expects {len(self._tables)} inputs, got {len(inputs)}")
        parts = [_u8(x, f"inputs[{i}]") if t is None else apply_table(x, t, nthreads)
                 for i, (x, t) in enumerate(zip(inputs, self._tables))]
        shape = list(parts[0].shape)
        try:
            shape[self.axis] = sum(p.shape[self.axis] for p in parts)
        except IndexError:
            raise ShapeError(f"QConcat axis {self.axis} is out of range for shape "
                             f"{parts[0].shape}") from None
        y = S.output(out, shape)
        try:
            return np.concatenate(parts, axis=self.axis, out=y)
        except ValueError as e:
            raise ShapeError(f"QConcat inputs do not fit together: {e}") from None
