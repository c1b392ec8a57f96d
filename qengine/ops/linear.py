"""Gemm and MatMul in float (the quantized Linear ops replace these nodes later)."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .activation import ACTIVATION_ATTRS, apply_activation, check_activation
from .base import Op, register_op


@register_op
class Gemm(Op):
    """Y = alpha·A'·B' + beta·C with A' = A or Aᵀ, B' = B or Bᵀ; C broadcasts to Y.

    The optional fused activation (`qengine.ops.activation`) is applied to Y.
    A constant B is transposed (if transB) into a contiguous (K, N) array once at load.
    """
    op_type = "Gemm"
    INPUTS = (2, 3)
    ATTRS = {"alpha": ("float", 1.0), "beta": ("float", 1.0), "transA": ("int", 0),
             "transB": ("int", 0), **ACTIVATION_ATTRS}

    @classmethod
    def check_attrs(cls, attrs, node):
        check_activation(attrs, f"node {node.name!r} (Gemm)")

    def prepare(self, initializers):
        b = self.const_input(initializers, 1)
        self.b_kn = None
        if b is not None:
            if b.ndim != 2:
                self.fail(f"B must be 2-D, got shape {b.shape}")
            self.b_kn = np.ascontiguousarray(b.T if self.attrs["transB"] else b)
            self.b_kn.setflags(write=False)
        c = self.const_input(initializers, 2)
        self.c = None if c is None else (c * c.dtype.type(self.attrs["beta"])
                                         if self.attrs["beta"] != 1.0 else c)

    def run(self, a, b, c=None):
        if a.ndim != 2:
            self.fail(f"A must be 2-D, got shape {a.shape}", ShapeError)
        a = a.T if self.attrs["transA"] else a
        b = self.b_kn if self.b_kn is not None else (b.T if self.attrs["transB"] else b)
        if a.shape[1] != b.shape[0]:
            self.fail(f"inner dims differ: A' is {a.shape}, B' is {b.shape}", ShapeError)
        y = a @ b
        if self.attrs["alpha"] != 1.0:
            y *= y.dtype.type(self.attrs["alpha"])
        if c is not None:
            y += self.c if self.c is not None else c * c.dtype.type(self.attrs["beta"])
        return (apply_activation(y, self.attrs["fused_activation"],
                                 self.attrs["fused_activation_params"]),)


@register_op
class MatMul(Op):
    op_type = "MatMul"
    INPUTS = (2, 2)

    def run(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            self.fail("MatMul inputs must have rank >= 1", ShapeError)
        return (np.matmul(a, b),)
