"""Gemm and MatMul in float (the quantized Linear ops replace these nodes later).

With a constant float32 B (a weight matrix) and a float32 A, the product runs on qengine's
compiled FP32 GEMM (include/qengine/f32/qe_f32_gemm.h, B packed once at load; a vector C and a
Relu/Clip activation fused into it): one thread pool for the whole float graph, the same bits
for every thread count and ISA. NumPy's BLAS would otherwise leave its own worker threads
spinning after each call, taking cores from the next compiled op. Everything else (float64
sessions, activation × activation products, batched B) stays on NumPy.
"""
from __future__ import annotations

import numpy as np

from .. import _runtime
from .._ext import _f32
from ..errors import ShapeError
from .activation import ACTIVATION_ATTRS, activation_bounds, apply_activation, check_activation
from ..graph.ir import Node
from .base import Op, register_op


class _PackedB:
    """A constant B (K, N) packed for the compiled GEMM of the active ISA."""

    def __init__(self, b_kn: np.ndarray):
        self.k, self.n = b_kn.shape
        self.isa = _runtime.isa_index()
        self.w, self.tile = _f32.conv_pack(np.ascontiguousarray(b_kn.T, np.float32), 1, self.isa,
                                           _f32.CONV_PC)

    def matmul(self, a2: np.ndarray, bias=None, lo=-np.inf, hi=np.inf) -> np.ndarray:
        """a2 (M, K) float32 → (M, N) float32 = clamp(a2·B + bias)."""
        out = np.empty((a2.shape[0], self.n), np.float32)
        _f32.gemm(np.ascontiguousarray(a2), self.w, self.tile, self.n, bias, lo, hi, out,
                  self.isa)
        return out


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
        # compiled path: B packed; a C of N values becomes the kernel's bias, a clamp-type
        # activation its output clamp (then nothing is left for NumPy when alpha is 1)
        self.packed = None
        if self.b_kn is not None and self.float_dtype == np.float32:
            self.packed = _PackedB(self.b_kn)
        n = None if self.b_kn is None else self.b_kn.shape[1]
        self.bias32 = None
        if self.c is not None and n is not None and self.c.size == n and \
                self.c.shape in ((n,), (1, n)):
            self.bias32 = np.ascontiguousarray(self.c.reshape(n), np.float32)
        bounds = activation_bounds(self.attrs["fused_activation"],
                                   self.attrs["fused_activation_params"])
        self.clamp = (-np.inf, np.inf) if bounds is None else bounds
        # the common case (nn.Linear: A·B + a constant vector, maybe a Relu/Clip) as one
        # kernel call with nothing looked up per run: a 32-row GEMM takes ~7 µs, the checks
        # and lookups of the general path ~2 more
        has_c = len(self.node.inputs) > 2 and bool(self.node.inputs[2])
        self._fast = None
        if self.packed is not None and self.attrs["alpha"] == 1.0 and \
                not self.attrs["transA"] and (not has_c or self.bias32 is not None) and \
                (bounds is not None or not self.attrs["fused_activation"]):
            p, bias, (lo, hi) = self.packed, self.bias32 if has_c else None, self.clamp
            gemm, w, tile, n, isa = _f32.gemm, p.w, p.tile, p.n, p.isa
            self._fast = (p.k, n, lambda a, out: gemm(a, w, tile, n, bias, lo, hi, out, isa))

    def run(self, a, b, c=None):
        fast = self._fast
        if fast is not None and a.dtype == np.float32 and a.ndim == 2 and \
                a.shape[1] == fast[0] and a.flags.c_contiguous:
            out = np.empty((a.shape[0], fast[1]), np.float32)
            fast[2](a, out)
            return (out,)
        if a.ndim != 2:
            self.fail(f"A must be 2-D, got shape {a.shape}", ShapeError)
        a = a.T if self.attrs["transA"] else a
        if self.packed is not None and a.dtype == np.float32 and \
                a.shape[1] == self.packed.k:
            return (self._run_compiled(a, c),)
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

    def _run_compiled(self, a, c):
        act, params = self.attrs["fused_activation"], self.attrs["fused_activation_params"]
        fused = self.attrs["alpha"] == 1.0 and (c is None or self.bias32 is not None)
        if fused and activation_bounds(act, params) is not None:
            return self.packed.matmul(a, self.bias32 if c is not None else None, *self.clamp)
        y = self.packed.matmul(a, self.bias32 if fused and c is not None else None)
        if not fused:
            if self.attrs["alpha"] != 1.0:
                y *= np.float32(self.attrs["alpha"])
            if c is not None:
                y += self.c if self.c is not None else c * c.dtype.type(self.attrs["beta"])
        return apply_activation(y, act, params)


@register_op
class MatMul(Op):
    """np.matmul semantics; a constant 2-D B runs on the compiled GEMM (module docstring)."""
    op_type = "MatMul"
    INPUTS = (2, 2)

    def prepare(self, initializers):
        b = self.const_input(initializers, 1)
        self.packed = None
        if b is not None and b.ndim == 2 and b.dtype == np.float32 and \
                self.float_dtype == np.float32:
            self.packed = _PackedB(b)

    def run(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            self.fail("MatMul inputs must have rank >= 1", ShapeError)
        p = self.packed
        if p is not None and a.dtype == np.float32 and a.shape[-1] == p.k:
            return (p.matmul(a.reshape(-1, p.k)).reshape(a.shape[:-1] + (p.n,)),)
        return (np.matmul(a, b),)


@register_op
class AttentionCore(Op):
    """softmax((Q·q_scale)(Kᵀ·k_scale)) · V over the last axis (qengine/graph/attention.py,
    made by a Session for its own executor, never saved): inputs Q, Kᵀ, V; q_scale / k_scale
    (one float each, optional) the scalar Muls it absorbed. In float32 with Q, Kᵀ and V of the
    same leading dims and at least COMPILED_MIN_QUERIES query rows, one compiled call
    (include/qengine/f32/qe_f32_attention.h: the same bits on every ISA, NumPy's to float
    rounding); otherwise the NumPy calls of the nodes it replaces, in their order (np.multiply,
    np.matmul, the Softmax op's own path): their bits. A decoder's one query row does not repay
    the kernel's packing of K and V (2.9 µs in NumPy vs 5.6 compiled for a 20-key step)."""
    COMPILED_MIN_QUERIES = 8
    op_type = "AttentionCore"
    INPUTS = (3, 3)
    ATTRS = {"q_scale": ("floats", None), "k_scale": ("floats", None),
             "fused_nodes": ("strings", None)}

    def prepare(self, initializers):
        from .elementwise import Softmax
        self._cq, self._ck = (None if not self.attrs[k] else
                              np.float32(self.attrs[k][0]) for k in ("q_scale", "k_scale"))
        self._softmax = Softmax(Node("Softmax", self.name, ("s",), ("p",), {"axis": -1}), {},
                                float_dtype=self.float_dtype)

    def run(self, q, k, v):
        if q.dtype == k.dtype == v.dtype == np.float32 and q.ndim == k.ndim == v.ndim >= 2 and \
                q.shape[-2] >= self.COMPILED_MIN_QUERIES and q.size and k.size and v.size and \
                q.shape[:-2] == k.shape[:-2] == v.shape[:-2]:
            # reshape keeps the views the layout chains leave (no copy) wherever NumPy can
            lead = q.shape[:-2]
            y = _f32.attention(*(a.reshape((-1,) + a.shape[-2:]) for a in (q, k, v)),
                               1.0 if self._cq is None else self._cq,
                               1.0 if self._ck is None else self._ck, _runtime.isa_index())
            return (y.reshape(lead + y.shape[-2:]),)
        if self._cq is not None:
            q = np.multiply(q, self._cq)
        if self._ck is not None:
            k = np.multiply(k, self._ck)
        p = self._softmax.run(np.matmul(q, k))[0]
        return (np.matmul(p, v),)
