"""Reductions (ReduceMean/Sum/Max/Min/L1/L2/SumSquare/Prod/LogSumExp) in the opset-18 form:
axes as optional input 1, `keepdims`, `noop_with_empty_axes`. The frontend turns the older
`axes` attribute into the input (exporters write ReduceMean over H, W for global average
pooling). ArgMax / ArgMin: one axis, int64 indices, ties to the first index unless
select_last_index."""
from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from .base import Op, register_op
from .tensor import _ConstInputs, _norm_axis


class _Reduce(_ConstInputs):
    INPUTS = (1, 2)
    ATTRS = {"keepdims": ("int", 1), "noop_with_empty_axes": ("int", 0)}
    CONST_INPUTS = (1,)
    fn = None

    @classmethod
    def infer_shapes(cls, attrs, in_shapes, consts):
        s = in_shapes[0]
        if s is None or (len(consts) > 1 and consts[1] is None and in_shapes[1] is not None):
            return None
        axes = None if len(consts) < 2 or consts[1] is None else \
            [int(a) % len(s) for a in consts[1].reshape(-1)]
        if not axes:
            if attrs["noop_with_empty_axes"]:
                return [s]
            axes = list(range(len(s)))
        keep = attrs["keepdims"]
        return [tuple(1 if i in axes else d for i, d in enumerate(s) if keep or i not in axes)]

    def run(self, x, *rest):
        axes = self.ints((x, *rest), 1, "axes")
        if not axes:
            if self.attrs["noop_with_empty_axes"]:
                return (x,)
            axes = list(range(x.ndim))
        axes = tuple(sorted({_norm_axis(self, a, x.ndim, "axes") for a in axes}))
        kw = {}
        if type(self).fn in (np.max, np.min) and any(x.shape[a] == 0 for a in axes):
            # ONNX: an empty max is -inf (or the type's minimum), an empty min +inf (maximum)
            kw["initial"] = _extreme(x.dtype, lowest=type(self).fn is np.max)
        keep = bool(self.attrs["keepdims"])
        if type(self).fn is np.mean and x.dtype.kind == "f" and x.dtype.itemsize >= 4:
            # np.mean's own arithmetic (a sum in the input's float type, then one division by
            # the count) without its ~8 µs of Python wrapping: same bits, and a streaming
            # model calls this on tiny tensors every chunk
            y = np.add.reduce(x, axis=axes, keepdims=keep)
            count = math.prod(x.shape[a] for a in axes)
            return (np.asarray(np.true_divide(y, count), dtype=x.dtype),)
        y = type(self).fn(x, axis=axes, keepdims=keep, **kw)
        return (np.asarray(y, dtype=x.dtype),)


def _extreme(dtype: np.dtype, lowest: bool):
    if dtype.kind == "f":
        return -np.inf if lowest else np.inf
    if dtype.kind == "b":
        return not lowest
    info = np.iinfo(dtype)
    return info.min if lowest else info.max


def _reduce(name, fn):
    return register_op(type(name, (_Reduce,), {"op_type": name, "fn": staticmethod(fn)}))


ReduceMean = _reduce("ReduceMean", np.mean)
ReduceSum = _reduce("ReduceSum", np.sum)
ReduceMax = _reduce("ReduceMax", np.max)
ReduceMin = _reduce("ReduceMin", np.min)


def _l2(x, axis, keepdims):
    return np.sqrt(np.sum(np.multiply(x, x), axis=axis, keepdims=keepdims))


def _sum_square(x, axis, keepdims):
    return np.sum(np.multiply(x, x), axis=axis, keepdims=keepdims)


def _l1(x, axis, keepdims):
    return np.sum(np.abs(x), axis=axis, keepdims=keepdims)


def _log_sum_exp(x, axis, keepdims):
    """log Σ exp(x), shifted by the maximum so large inputs do not overflow; an empty or
    all −inf reduction is −inf."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        shift = np.where(np.isfinite(m), m, 0).astype(x.dtype)
        y = np.log(np.sum(np.exp(x - shift), axis=axis, keepdims=True)) + shift
    return y if keepdims else np.squeeze(y, axis=axis)


ReduceL1 = _reduce("ReduceL1", _l1)
ReduceL2 = _reduce("ReduceL2", _l2)
ReduceSumSquare = _reduce("ReduceSumSquare", _sum_square)
ReduceProd = _reduce("ReduceProd", np.prod)
ReduceLogSumExp = _reduce("ReduceLogSumExp", _log_sum_exp)


class _ArgReduce(Op):
    INPUTS = (1, 1)
    ATTRS = {"axis": ("int", 0), "keepdims": ("int", 1), "select_last_index": ("int", 0)}
    fn = None

    def run(self, x):
        axis = _norm_axis(self, self.attrs["axis"], x.ndim)
        if x.shape[axis] == 0:
            self.fail(f"{self.op_type} over an empty axis {axis} (shape {x.shape}) has no "
                      f"index to return", ShapeError)
        if self.attrs["select_last_index"]:
            flipped = np.flip(x, axis)
            idx = x.shape[axis] - 1 - type(self).fn(flipped, axis=axis)
        else:
            idx = type(self).fn(x, axis=axis)
        idx = idx.astype(np.int64)
        return (np.expand_dims(idx, axis) if self.attrs["keepdims"] else idx,)


ArgMax = register_op(type("ArgMax", (_ArgReduce,), {"op_type": "ArgMax",
                                                     "fn": staticmethod(np.argmax)}))
ArgMin = register_op(type("ArgMin", (_ArgReduce,), {"op_type": "ArgMin",
                                                     "fn": staticmethod(np.argmin)}))
