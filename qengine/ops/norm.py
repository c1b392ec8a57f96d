"""FP32 normalization: BatchNormalization (inference form) and LRN.

BatchNormalization is y = (x − mean) / sqrt(var + ε) · scale + B per channel (axis 1). With
constant statistics the op precomputes y = x · a + c once at load; the `fold_batch_norm` pass
usually removes it altogether by folding a, c into the preceding Conv/Gemm. Training mode and
the running-statistics outputs are not supported (an inference engine never updates them).
The opset-7/8 `spatial=0` form (statistics of shape (C, D1, ...)) is accepted: the parameters
then simply broadcast over the batch axis.
"""
from __future__ import annotations

import numpy as np

from .. import _runtime
from .._ext import _f32
from ..errors import ModelError, ShapeError
from .base import Op, register_op


def batch_norm_affine(scale, bias, mean, var, eps, dtype=np.float32):
    """(a, c) with BN(x) = a·x + c, computed in float64 and rounded once to `dtype`."""
    a = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    c = np.asarray(bias, np.float64) - np.asarray(mean, np.float64) * a
    return a.astype(dtype), c.astype(dtype)


@register_op
class BatchNormalization(Op):
    op_type = "BatchNormalization"
    INPUTS = (5, 5)
    OUTPUTS = (1, 1)
    ATTRS = {"epsilon": ("float", 1e-5), "momentum": ("float", 0.9),
             "training_mode": ("int", 0)}

    @classmethod
    def check_attrs(cls, attrs, node):
        if attrs["training_mode"] != 0:
            raise ModelError(f"node {node.name!r} (BatchNormalization): training_mode=1 is not "
                             f"supported (inference only)")

    @classmethod
    def infer_shapes(cls, attrs, in_shapes, consts):
        return None if in_shapes[0] is None else [in_shapes[0]]

    def prepare(self, initializers):
        params = [self.const_input(initializers, i) for i in range(1, 5)]
        self.affine = None
        if all(p is not None for p in params):
            self.affine = self._affine(*params, cls=ModelError)

    def _affine(self, scale, bias, mean, var, cls):
        shapes = {p.shape for p in (scale, bias, mean, var)}
        if len(shapes) != 1 or scale.ndim < 1:
            self.fail(f"scale, B, mean and var must share one shape (C,) (or (C, D1, ...) for "
                      f"spatial=0), got {[p.shape for p in (scale, bias, mean, var)]}", cls)
        return batch_norm_affine(scale, bias, mean, var, self.attrs["epsilon"], self.float_dtype)

    def run(self, x, scale, bias, mean, var):
        a, c = self.affine if self.affine is not None else \
            self._affine(scale, bias, mean, var, ShapeError)
        if x.ndim < 2 or x.shape[1] != a.shape[0] or x.ndim < a.ndim + 1:
            self.fail(f"input of shape {x.shape} does not match {a.shape[0]} channels",
                      ShapeError)
        shape = a.shape + (1,) * (x.ndim - 1 - a.ndim)
        y = x * a.reshape(shape).astype(x.dtype, copy=False)
        y += c.reshape(shape).astype(x.dtype, copy=False)
        return (y,)


@register_op
class LRN(Op):
    """Across-channel local response normalization:
    y = x / (bias + alpha/size · Σ x²)^beta over channels [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉].
    """
    op_type = "LRN"
    ATTRS = {"alpha": ("float", 1e-4), "beta": ("float", 0.75), "bias": ("float", 1.0),
             "size": ("int", None)}

    @classmethod
    def check_attrs(cls, attrs, node):
        if attrs["size"] is None or attrs["size"] < 1:
            raise ModelError(f"node {node.name!r} (LRN): size must be given and >= 1, got "
                             f"{attrs['size']}")

    @classmethod
    def infer_shapes(cls, attrs, in_shapes, consts):
        return None if in_shapes[0] is None else [in_shapes[0]]

    def run(self, x):
        if x.ndim < 3:
            self.fail(f"input must have rank >= 3, got shape {x.shape}", ShapeError)
        size = self.attrs["size"]
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
        sq = np.square(x, dtype=np.float64)  # a windowed sum via cumsum: keep it exact-ish
        c = x.shape[1]
        cum = np.zeros((x.shape[0], c + 1) + x.shape[2:], np.float64)
        np.cumsum(sq, axis=1, out=cum[:, 1:])
        idx = np.arange(c)
        start, stop = np.clip(idx - lo, 0, c), np.clip(idx + hi + 1, 0, c)
        window = cum[:, stop] - cum[:, start]
        dt = x.dtype.type
        denom = np.power(dt(self.attrs["bias"]) + dt(self.attrs["alpha"] / size) *
                         window.astype(x.dtype), dt(self.attrs["beta"]))
        return (x / denom,)


@register_op
class LayerNormalization(Op):
    """ONNX LayerNormalization (opset 17): normalize over axes [axis, rank), then ·Scale + B.

        Mean = ReduceMean(X), D = X − Mean, Var = ReduceMean(D·D), StdDev = Sqrt(Var + ε)
        Y = D · (1 / StdDev) · Scale + B          (the ONNX function body)

    `divide` (qengine's attribute, default 0) makes it Y = D / StdDev · Scale + B, what the
    exporters' decompositions (ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add) compute: the
    fusion pass (qengine/graph/decomposed.py) sets it, and the op then performs exactly the
    NumPy operations those nodes perform, so the fused graph equals the unfused one bit for bit.
    Outputs Mean and InvStdDev (optional) have the normalized axes kept as size 1.
    """
    op_type = "LayerNormalization"
    INPUTS = (2, 3)
    OUTPUTS = (1, 3)
    ATTRS = {"axis": ("int", -1), "epsilon": ("float", 1e-5), "stash_type": ("int", 1),
             "divide": ("int", 0)}

    @classmethod
    def check_attrs(cls, attrs, node):
        if attrs["divide"] not in (0, 1):
            raise ModelError(f"node {node.name!r} (LayerNormalization): divide must be 0 or 1")

    @classmethod
    def infer_shapes(cls, attrs, in_shapes, consts):
        s = in_shapes[0]
        if s is None:
            return None
        axis = attrs["axis"] % len(s) if s else 0
        red = tuple(d if i < axis else 1 for i, d in enumerate(s))
        return [s, red, red]

    def prepare(self, initializers):
        # the ONNX form over the last axis with constant float32 Scale and B: the compiled
        # kernel called with nothing checked per run but the input (what _compiled checks)
        scale, bias = self.const_input(initializers, 1), self.const_input(initializers, 2)
        has_b = len(self.node.inputs) > 2 and bool(self.node.inputs[2])
        self._fast = None
        if not self.attrs["divide"] and self.attrs["axis"] == -1 and len(self.node.outputs) == 1 \
                and scale is not None and scale.dtype == np.float32 and scale.ndim == 1 and \
                (not has_b or (bias is not None and bias.dtype == np.float32 and
                               bias.shape == scale.shape)):
            self._fast = (scale.shape[0], np.ascontiguousarray(scale),
                          np.ascontiguousarray(bias) if has_b else None, self.attrs["epsilon"])

    def run(self, x, scale, bias=None):
        fast = self._fast
        if fast is not None and x.dtype == np.float32 and x.ndim and x.shape[-1] == fast[0] \
                and x.flags.c_contiguous and x.size:
            y = np.empty_like(x)
            _f32.layer_norm_rows(x, fast[1], fast[2], fast[3], y, None, None,
                                 _runtime.isa_index())
            return (y,)
        if x.dtype.kind != "f" or x.ndim == 0:
            self.fail(f"expects a float tensor of rank >= 1, got {x.dtype} {x.shape}", ShapeError)
        axis = self.attrs["axis"]
        if not -x.ndim <= axis < x.ndim:
            self.fail(f"axis {axis} is out of range for rank {x.ndim}", ShapeError)
        axes = tuple(range(axis % x.ndim, x.ndim))
        fast = self._compiled(x, axes[0], scale, bias)
        if fast is not None:
            return fast
        dt = x.dtype.type
        # the same ufuncs, in the same order, as ReduceMean / Sub / Pow / Add / Sqrt / Div
        mean = np.asarray(np.mean(x, axis=axes, keepdims=True), dtype=x.dtype)
        d = x - mean
        var = np.asarray(np.mean(np.multiply(d, d), axis=axes, keepdims=True), dtype=x.dtype)
        std = np.sqrt(var + dt(self.attrs["epsilon"]))
        if self.attrs["divide"]:
            y = d / std
            inv = None
        else:
            inv = dt(1) / std
            y = d * inv
        y = y * scale.astype(x.dtype, copy=False)
        if bias is not None:
            y = y + bias.astype(x.dtype, copy=False)
        outs = [y]
        if len(self.node.outputs) > 1:
            outs.append(mean)
        if len(self.node.outputs) > 2:
            outs.append(dt(1) / std if inv is None else inv)
        return tuple(outs)

    def _compiled(self, x, axis, scale, bias):
        """The ONNX op's form (divide=0) on float32 through the compiled row kernel, when scale
        and B have exactly the normalized dims (the fused decomposition keeps its NumPy ufuncs:
        it must equal the unfused nodes bit for bit)."""
        norm, f32 = x.shape[axis:], np.float32
        if self.attrs["divide"] or x.dtype != f32 or not x.flags.c_contiguous or not x.size \
                or scale.dtype != f32 or scale.shape != norm or \
                (bias is not None and (bias.dtype != f32 or bias.shape != norm)):
            return None
        y = np.empty_like(x)
        k = len(self.node.outputs)
        red = x.shape[:axis] + (1,) * len(norm)
        mean = np.empty(red, f32) if k > 1 else None
        inv = np.empty(red, f32) if k > 2 else None
        _f32.layer_norm_rows(x, scale.ravel(), None if bias is None else bias.ravel(),
                             self.attrs["epsilon"], y, mean, inv, _runtime.isa_index())
        return (y, mean, inv)[:k]


@register_op
class InstanceNormalization(Op):
    """y = scale · (x − mean) / sqrt(var + ε) + B with mean and (biased) variance per sample
    and channel over the spatial axes (ONNX InstanceNormalization)."""
    op_type = "InstanceNormalization"
    INPUTS = (3, 3)
    ATTRS = {"epsilon": ("float", 1e-5)}

    @classmethod
    def infer_shapes(cls, attrs, in_shapes, consts):
        return None if in_shapes[0] is None else [in_shapes[0]]

    def run(self, x, scale, bias):
        if x.dtype.kind != "f" or x.ndim < 3:
            self.fail(f"expects a float tensor (N, C, D1, ...), got {x.dtype} {x.shape}",
                      ShapeError)
        c = x.shape[1]
        if scale.shape != (c,) or bias.shape != (c,):
            self.fail(f"scale {scale.shape} and B {bias.shape} must be ({c},) for input "
                      f"{x.shape}", ShapeError)
        axes = tuple(range(2, x.ndim))
        dt = x.dtype.type
        mean = np.mean(x, axis=axes, keepdims=True)
        d = x - mean
        var = np.mean(d * d, axis=axes, keepdims=True)
        shape = (1, c) + (1,) * (x.ndim - 2)
        y = d / np.sqrt(var + dt(self.attrs["epsilon"])) * scale.astype(x.dtype).reshape(shape)
        return ((y + bias.astype(x.dtype).reshape(shape)).astype(x.dtype, copy=False),)
