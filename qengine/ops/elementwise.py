"""Elementwise FP32 ops: arithmetic with NumPy broadcasting (= ONNX multidirectional
broadcasting), activations, comparisons, Cast, Softmax/LogSoftmax (opset-13 semantics: one
axis, default -1; the ONNX frontend rewrites older opsets' flatten-to-2D form)."""
from __future__ import annotations

import numpy as np

from .. import _runtime
from .._ext import _f32
from ..errors import ModelError, ShapeError
from .base import Op, check_dtype_name, register_op
from .chain import ChainRunner, chain_ref


class _Binary(Op):
    INPUTS = (2, 2)
    fn = None

    def run(self, a, b):
        return (type(self).fn(a, b),)


def _binary(name, fn):
    cls = type(name, (_Binary,), {"op_type": name, "fn": staticmethod(fn)})
    return register_op(cls)


def _div(a, b):
    if a.dtype.kind in "iu":  # ONNX integer Div truncates toward zero (C semantics)
        if np.any(b == 0):
            raise ZeroDivisionError("integer division by zero")
        q = np.abs(a) // np.abs(b)
        return (np.sign(a) * np.sign(b) * q).astype(np.result_type(a, b))
    return np.divide(a, b)


Add = _binary("Add", np.add)
Sub = _binary("Sub", np.subtract)
Mul = _binary("Mul", np.multiply)
Div = _binary("Div", _div)
Equal = _binary("Equal", np.equal)
Less = _binary("Less", np.less)
Greater = _binary("Greater", np.greater)
Pow = _binary("Pow", lambda a, b: np.power(a, b).astype(a.dtype, copy=False))


class _Unary(Op):
    fn = None
    STEPS = None          # the op as a chain program (qengine/ops/chain.py): float32 runs compiled

    def prepare(self, initializers):
        steps = type(self).STEPS
        self.chain = None if steps is None else ChainRunner(steps, f"node {self.name!r}")

    def run(self, x):
        if self.chain is not None and x.dtype == np.float32:
            return (self.chain(x),)
        return (type(self).fn(x),)


def _unary(name, fn, steps=None):
    return register_op(type(name, (_Unary,), {"op_type": name, "fn": staticmethod(fn),
                                             "STEPS": steps}))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Overflow-free logistic: exp only ever sees -|x| (also used by the RNN ops)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


# float32 runs through the compiled chain kernel (bit-identical to a fused chain holding the
# same step); other dtypes (float64 references, integers) through NumPy
Relu = _unary("Relu", lambda x: np.maximum(x, np.zeros((), x.dtype)), [("max", -1, 0.0)])
Tanh = _unary("Tanh", np.tanh, [("tanh", -1, 0.0)])
Sigmoid = _unary("Sigmoid", sigmoid, [("sigmoid", -1, 0.0)])
Neg = _unary("Neg", np.negative, [("neg", -1, 0.0)])
Exp = _unary("Exp", np.exp, [("exp", -1, 0.0)])
Erf = _unary("Erf", lambda x: chain_ref(x, [("erf", -1, 0.0)]), [("erf", -1, 0.0)])
Sqrt = _unary("Sqrt", np.sqrt, [("sqrt", -1, 0.0)])
Abs = _unary("Abs", np.abs, [("abs", -1, 0.0)])
Not = _unary("Not", np.logical_not)
Identity = _unary("Identity", lambda x: x)


def _quiet(fn):
    """fn without NumPy's warnings: log(-1) is NaN and 1/0 is inf, as in onnxruntime."""
    def run(x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return fn(x)
    return run


Log = _unary("Log", _quiet(np.log))
Reciprocal = _unary("Reciprocal", _quiet(lambda x: np.reciprocal(x)))
Ceil = _unary("Ceil", np.ceil)
# Floor is in onnx_integer.py (older ORT IntegerOps files use it)
Round = _unary("Round", np.rint)          # halves to even, as ONNX's Round
Sign = _unary("Sign", np.sign)


@register_op
class CastLike(Op):
    """x cast to the element type of the second input (whose values are not read)."""
    op_type = "CastLike"
    INPUTS = (2, 2)
    ATTRS = {"saturate": ("int", 1), "round_mode": ("string", "up")}   # float8 targets only

    def run(self, x, like):
        return (x.astype(like.dtype),)


@register_op
class LeakyRelu(Op):
    op_type = "LeakyRelu"
    ATTRS = {"alpha": ("float", 0.01)}

    def prepare(self, initializers):
        self.chain = ChainRunner([("leaky", -1, float(np.float32(self.attrs["alpha"])))],
                                 f"node {self.name!r}")

    def run(self, x):
        if x.dtype == np.float32:
            return (self.chain(x),)
        return (np.where(x >= 0, x, x * x.dtype.type(self.attrs["alpha"])),)


@register_op
class Clip(Op):
    """Clip with min/max as optional inputs (opset >= 11; older attr forms are converted)."""
    op_type = "Clip"
    INPUTS = (1, 3)

    def prepare(self, initializers):
        # constant scalar bounds: one compiled pass (np.maximum then np.minimum semantics)
        steps = []
        for idx, step in ((1, "max"), (2, "min")):
            name = self.input_name(idx)
            b = initializers.get(name) if name else None
            if name and (b is None or b.size != 1 or b.dtype.kind != "f" or b.ndim > 1 or
                         not np.isfinite(b).all()):
                self.chain = None
                return
            if b is not None:
                steps.append((step, -1, float(np.float32(b.reshape(-1)[0]))))
        self.chain = ChainRunner(steps, f"node {self.name!r}") if steps else None

    def run(self, x, lo=None, hi=None):
        if self.chain is not None and x.dtype == np.float32 and x.ndim >= 1:
            return (self.chain(x),)
        if lo is not None:
            x = np.maximum(x, lo.astype(x.dtype))
        if hi is not None:
            x = np.minimum(x, hi.astype(x.dtype))
        return (x,)


@register_op
class Where(Op):
    op_type = "Where"
    INPUTS = (3, 3)

    def run(self, cond, a, b):
        return (np.where(cond.astype(bool, copy=False), a, b),)


@register_op
class Cast(Op):
    """`to` is a dtype name from qengine.graph.ir.DTYPES (the frontend maps ONNX enums)."""
    op_type = "Cast"
    ATTRS = {"to": ("string", None), "saturate": ("int", 1)}

    @classmethod
    def check_attrs(cls, attrs, node):
        if attrs["to"] is None:
            raise ModelError(f"node {node.name!r} (Cast): required attribute 'to' is missing")
        check_dtype_name(attrs["to"], f"node {node.name!r} (Cast)")

    def prepare(self, initializers):
        self.to = self.map_dtype(self.attrs["to"])

    def run(self, x):
        return (x.astype(self.to),)


class _SoftmaxBase(Op):
    ATTRS = {"axis": ("int", -1)}

    def run(self, x):
        axis = self.attrs["axis"]
        if not -x.ndim <= axis < x.ndim:
            self.fail(f"axis {axis} is out of range for rank {x.ndim}", ShapeError)
        shifted = x - np.max(x, axis=axis, keepdims=True)
        return (self.finish(shifted, axis),)


@register_op
class Softmax(_SoftmaxBase):
    op_type = "Softmax"

    def run(self, x):
        # float32 over a contiguous last axis: one compiled pass (include/qengine/f32/
        # qe_f32_rows.h); NumPy's reductions along a short last axis cost more than the math
        if x.dtype == np.float32 and x.ndim and self.attrs["axis"] in (-1, x.ndim - 1) and \
                x.shape[-1] and x.flags.c_contiguous:
            y = np.empty_like(x)
            _f32.softmax_rows(x, y, _runtime.isa_index())
            return (y,)
        return super().run(x)

    @staticmethod
    def finish(shifted, axis):
        e = np.exp(shifted)
        return e / np.sum(e, axis=axis, keepdims=True)


@register_op
class LogSoftmax(_SoftmaxBase):
    op_type = "LogSoftmax"

    @staticmethod
    def finish(shifted, axis):
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


class _Variadic(Op):
    """Sum/Mean/Max/Min over one or more inputs with multidirectional broadcasting."""
    INPUTS = (1, None)
    fn = None

    def run(self, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = type(self).fn(y, x)
        if len(xs) == 1:
            y = y.copy()
        return (self.finish(y, len(xs)),)

    @staticmethod
    def finish(y, n):
        return y


def _variadic(name, fn, finish=None):
    body = {"op_type": name, "fn": staticmethod(fn)}
    if finish is not None:
        body["finish"] = staticmethod(finish)
    return register_op(type(name, (_Variadic,), body))


Sum = _variadic("Sum", np.add)
Max = _variadic("Max", np.maximum)
Min = _variadic("Min", np.minimum)
Mean = _variadic("Mean", np.add, lambda y, n: y / y.dtype.type(n))


@register_op
class HardSigmoid(Op):
    op_type = "HardSigmoid"
    ATTRS = {"alpha": ("float", 0.2), "beta": ("float", 0.5)}

    def prepare(self, initializers):
        a, b = (float(np.float32(self.attrs[k])) for k in ("alpha", "beta"))
        self.chain = ChainRunner(hard_sigmoid_steps(a, b), f"node {self.name!r}")

    def run(self, x):
        if x.dtype == np.float32:
            return (self.chain(x),)
        dt = x.dtype.type
        y = x * dt(self.attrs["alpha"]) + dt(self.attrs["beta"])
        return (np.clip(y, dt(0), dt(1), out=y),)


def hard_sigmoid_steps(alpha: float, beta: float):
    """HardSigmoid as chain steps: x·alpha + beta, then np.clip to [0, 1]."""
    return [("mul", -1, alpha), ("add", -1, beta), ("cliplo", -1, 0.0), ("cliphi", -1, 1.0)]


@register_op
class HardSwish(Op):
    """x · HardSigmoid(x) with alpha = 1/6, beta = 0.5 (opset 14)."""
    op_type = "HardSwish"
    STEPS = hard_sigmoid_steps(float(np.float32(1 / 6)), 0.5) + [("mul", 0, 0.0)]

    def prepare(self, initializers):
        self.chain = ChainRunner(self.STEPS, f"node {self.name!r}")

    def run(self, x):
        if x.dtype == np.float32:
            return (self.chain(x),)
        dt = x.dtype.type
        y = x * dt(1 / 6) + dt(0.5)
        np.clip(y, dt(0), dt(1), out=y)
        return (np.multiply(y, x, out=y),)


@register_op
class Gelu(Op):
    """ONNX Gelu (opset 20), approximate="none": its function body 0.5·X · (1 + Erf(X / √2))
    as one chain (X / √2 in float32, Erf, + 1, times 0.5·X). approximate="tanh" computes
    X³ with Pow, whose float32 rounding qengine does not reproduce: refused."""
    op_type = "Gelu"
    ATTRS = {"approximate": ("string", "none")}
    STEPS = [("div", -1, float(np.sqrt(np.float32(2)))), ("erf", -1, 0.0), ("add", -1, 1.0),
             ("store", 1, 0.0), ("load", 0, 0.0), ("mul", -1, 0.5), ("mul", 1, 0.0)]

    @classmethod
    def check_attrs(cls, attrs, node):
        if attrs["approximate"] != "none":
            raise ModelError(f"node {node.name!r} (Gelu): approximate={attrs['approximate']!r} "
                             f"is not supported (only 'none', the erf form)")

    def prepare(self, initializers):
        self.chain = ChainRunner(self.STEPS, f"node {self.name!r}")

    def run(self, x):
        if x.dtype.kind != "f":
            self.fail(f"expects a float tensor, got {x.dtype}", ShapeError)
        return (self.chain(x),)


@register_op
class Mod(Op):
    """Remainder with broadcasting: fmod=0 takes the divisor's sign, as Python's % (NumPy's
    mod, floats too); fmod=1 the dividend's, as C fmod."""
    op_type = "Mod"
    INPUTS = (2, 2)
    ATTRS = {"fmod": ("int", 0)}

    @classmethod
    def check_attrs(cls, attrs, node):
        if attrs["fmod"] not in (0, 1):
            raise ModelError(f"node {node.name!r} (Mod): fmod must be 0 or 1, got "
                             f"{attrs['fmod']}")

    def run(self, a, b):
        if a.dtype.kind in "iu" and np.any(b == 0):
            self.fail("integer Mod by zero", ShapeError)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.fmod(a, b) if self.attrs["fmod"] else np.mod(a, b)
        return (y.astype(a.dtype, copy=False),)
