"""FP32 LSTM and GRU ops (ONNX semantics; the equations are in qengine/reference/rnn.py).

Weights must be initializers: at load, each direction's W and R are transposed into contiguous
(K, gates·H) matrices and the biases that can be pre-summed are, so a call does one GEMM for
the input projection of all time steps and one small GEMM per step for the recurrence — the
same structure the int8 ops use with packed weights.
"""
from __future__ import annotations

import numpy as np

from ..errors import ModelError, ShapeError
from .base import Op, register_op
from .elementwise import sigmoid

_NUM_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


class _RNNBase(Op):
    N_GATES = 0
    DEFAULT_ACTIVATIONS: tuple[str, ...] = ()
    ATTRS = {"activation_alpha": ("floats", None), "activation_beta": ("floats", None),
             "activations": ("strings", None), "clip": ("float", None),
             "direction": ("string", "forward"), "hidden_size": ("int", None),
             "layout": ("int", 0)}

    @classmethod
    def check_attrs(cls, attrs, node):
        where = f"node {node.name!r} ({node.op_type})"
        if attrs["direction"] not in _NUM_DIRECTIONS:
            raise ModelError(f"{where}: direction must be one of {list(_NUM_DIRECTIONS)}, got "
                             f"{attrs['direction']!r}")
        if attrs["layout"] not in (0, 1):
            raise ModelError(f"{where}: layout must be 0 or 1, got {attrs['layout']}")
        if attrs["hidden_size"] is not None and attrs["hidden_size"] <= 0:
            raise ModelError(f"{where}: hidden_size must be positive, got {attrs['hidden_size']}")
        if attrs["clip"] is not None and not attrs["clip"] > 0:
            raise ModelError(f"{where}: clip must be > 0, got {attrs['clip']}")
        acts = attrs["activations"]
        if acts is not None:
            want = list(cls.DEFAULT_ACTIVATIONS) * _NUM_DIRECTIONS[attrs["direction"]]
            if [a.lower() for a in acts] != [a.lower() for a in want]:
                raise ModelError(f"{where}: only the default activations {want} are supported, "
                                 f"got {acts}")
        if attrs["activation_alpha"] or attrs["activation_beta"]:
            raise ModelError(f"{where}: activation_alpha/activation_beta are not supported "
                             f"(only default activations)")

    def prepare(self, initializers):
        G = self.N_GATES
        W = self.const_input(initializers, 1, True, "W")
        R = self.const_input(initializers, 2, True, "R")
        D = _NUM_DIRECTIONS[self.attrs["direction"]]
        if W.ndim != 3 or R.ndim != 3:
            self.fail(f"W and R must be 3-D, got {W.shape} and {R.shape}")
        H = R.shape[2]
        if self.attrs["hidden_size"] not in (None, H):
            self.fail(f"hidden_size={self.attrs['hidden_size']} but R has shape {R.shape}")
        if W.shape[:2] != (D, G * H) or R.shape != (D, G * H, H) or H == 0:
            self.fail(f"with {D} direction(s) and hidden size {H}, W must be ({D}, {G * H}, I) and "
                      f"R ({D}, {G * H}, {H}); got {W.shape} and {R.shape}")
        B = self.const_input(initializers, 3)
        if self.input_name(3) and B is None:
            self.fail("input 3 (B) must be an initializer")
        if B is None:
            B = np.zeros((D, 2 * G * H), W.dtype)
        if B.shape != (D, 2 * G * H):
            self.fail(f"B must have shape ({D}, {2 * G * H}), got {B.shape}")
        self.D, self.H, self.I = D, H, W.shape[2]
        self.clip = self.attrs["clip"]
        # (K, G·H) contiguous per direction: x @ Wt is the projection of every gate at once
        self.Wt = [np.ascontiguousarray(W[d].T) for d in range(D)]
        self.Rt = [np.ascontiguousarray(R[d].T) for d in range(D)]
        self.prepare_bias(B)

    def prepare_bias(self, B):
        raise NotImplementedError

    # ---- shared run-time plumbing -----------------------------------------------------------
    def check_inputs(self, X, lens, states):
        if X is None or X.ndim != 3 or X.shape[2] != self.I:
            self.fail(f"X must be 3-D with last dim {self.I}, got "
                      f"{None if X is None else X.shape}", ShapeError)
        X0 = X if self.attrs["layout"] == 0 else np.swapaxes(X, 0, 1)
        T, batch = X0.shape[:2]
        if lens is not None:
            if lens.shape != (batch,) or lens.dtype.kind not in "iu":
                self.fail(f"sequence_lens must be an integer vector of length {batch}, got "
                          f"{lens.dtype} {lens.shape}", ShapeError)
            if batch and (lens.min() < 0 or lens.max() > T):
                self.fail(f"sequence_lens must lie in [0, {T}]", ShapeError)
            if np.all(lens == T):
                lens = None  # the fast path computes exactly the same thing
        out = []
        for what, s in states:
            if s is None:
                out.append(np.zeros((self.D, batch, self.H), X.dtype))
                continue
            if self.attrs["layout"] == 1:
                s = np.swapaxes(s, 0, 1)
            if s.shape != (self.D, batch, self.H):
                self.fail(f"{what} must have shape {(self.D, batch, self.H)} (layout 0; swap the "
                          f"first two for layout 1), got {s.shape}", ShapeError)
            out.append(s.astype(X.dtype, copy=False))
        return X0, lens, out

    def pre(self, x):
        return x if self.clip is None else np.clip(x, -self.clip, self.clip)

    def finish(self, Y, finals):
        if self.attrs["layout"] == 1:
            Y = np.transpose(Y, (2, 0, 1, 3))
            finals = [np.swapaxes(f, 0, 1) for f in finals]
        return (Y, *finals)[:len(self.node.outputs)]

    def steps(self, d, T):
        reverse = self.attrs["direction"] == "reverse" or d == 1
        return range(T - 1, -1, -1) if reverse else range(T)


@register_op
class LSTM(_RNNBase):
    op_type = "LSTM"
    N_GATES = 4
    DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")
    INPUTS = (3, 8)
    OUTPUTS = (0, 3)
    ATTRS = {**_RNNBase.ATTRS, "input_forget": ("int", 0)}

    @classmethod
    def check_attrs(cls, attrs, node):
        super().check_attrs(attrs, node)
        if attrs["input_forget"] not in (0,):
            raise ModelError(f"node {node.name!r} (LSTM): input_forget=1 (coupled input/forget "
                             f"gates) is not supported")

    def prepare_bias(self, B):
        H = self.H
        self.bias = [B[d, :4 * H] + B[d, 4 * H:] for d in range(self.D)]

    def prepare(self, initializers):
        super().prepare(initializers)
        P = self.const_input(initializers, 7)
        if self.input_name(7) and P is None:
            self.fail("input 7 (P) must be an initializer")
        if P is not None and P.shape != (self.D, 3 * self.H):
            self.fail(f"P must have shape ({self.D}, {3 * self.H}), got {P.shape}")
        self.P = None if P is None or not np.any(P) else np.split(P, 3, axis=1)

    def run(self, X, W=None, R=None, B=None, lens=None, h0=None, c0=None, P=None):
        X0, lens, (h_all, c_all) = self.check_inputs(X, lens, (("initial_h", h0),
                                                              ("initial_c", c0)))
        T, batch, _ = X0.shape
        H, dt = self.H, X.dtype
        Y = np.zeros((T, self.D, batch, H), dt)
        Yh, Yc = np.empty((self.D, batch, H), dt), np.empty((self.D, batch, H), dt)
        for d in range(self.D):
            xp = (X0.reshape(T * batch, self.I) @ self.Wt[d] + self.bias[d]).reshape(T, batch,
                                                                                     4 * H)
            h, c = h_all[d], c_all[d]
            for t in self.steps(d, T):
                g = xp[t] + h @ self.Rt[d]
                gi, go, gf, gc = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
                if self.P is not None:
                    pi, po, pf = (p[d] for p in self.P)
                    gi, gf = gi + pi * c, gf + pf * c
                c_new = sigmoid(self.pre(gf)) * c + sigmoid(self.pre(gi)) * np.tanh(self.pre(gc))
                if self.P is not None:
                    go = go + po * c_new
                h_new = sigmoid(self.pre(go)) * np.tanh(c_new)
                if lens is not None:
                    active = (t < lens)[:, None]
                    h_new, c_new = np.where(active, h_new, h), np.where(active, c_new, c)
                    Y[t, d] = np.where(active, h_new, 0)
                else:
                    Y[t, d] = h_new
                h, c = h_new, c_new
            Yh[d], Yc[d] = h, c
        return self.finish(Y, [Yh, Yc])


@register_op
class GRU(_RNNBase):
    op_type = "GRU"
    N_GATES = 3
    DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh")
    INPUTS = (3, 6)
    OUTPUTS = (0, 2)
    ATTRS = {**_RNNBase.ATTRS, "linear_before_reset": ("int", 0)}

    @classmethod
    def check_attrs(cls, attrs, node):
        super().check_attrs(attrs, node)
        if attrs["linear_before_reset"] not in (0, 1):
            raise ModelError(f"node {node.name!r} (GRU): linear_before_reset must be 0 or 1")

    def prepare_bias(self, B):
        H, lbr = self.H, self.attrs["linear_before_reset"]
        self.bias_x, self.bias_rh = [], []
        for d in range(self.D):
            wb, rb = B[d, :3 * H], B[d, 3 * H:].copy()
            # z and r biases always add; Rbh sits inside r⊙(·) when linear_before_reset=1
            self.bias_rh.append(rb[2 * H:].copy() if lbr else None)
            if lbr:
                rb[2 * H:] = 0
            self.bias_x.append(wb + rb)

    def run(self, X, W=None, R=None, B=None, lens=None, h0=None):
        X0, lens, (h_all,) = self.check_inputs(X, lens, (("initial_h", h0),))
        T, batch, _ = X0.shape
        H, dt = self.H, X.dtype
        lbr = self.attrs["linear_before_reset"]
        Y = np.zeros((T, self.D, batch, H), dt)
        Yh = np.empty((self.D, batch, H), dt)
        for d in range(self.D):
            xp = (X0.reshape(T * batch, self.I) @ self.Wt[d] + self.bias_x[d]).reshape(
                T, batch, 3 * H)
            Rt = self.Rt[d]
            h = h_all[d]
            for t in self.steps(d, T):
                if lbr:
                    hr = h @ Rt
                    zr = sigmoid(self.pre(xp[t, :, :2 * H] + hr[:, :2 * H]))
                    z, r = zr[:, :H], zr[:, H:]
                    n = np.tanh(self.pre(xp[t, :, 2 * H:] + r * (hr[:, 2 * H:] + self.bias_rh[d])))
                else:
                    zr = sigmoid(self.pre(xp[t, :, :2 * H] + h @ Rt[:, :2 * H]))
                    z, r = zr[:, :H], zr[:, H:]
                    n = np.tanh(self.pre(xp[t, :, 2 * H:] + (r * h) @ Rt[:, 2 * H:]))
                h_new = (1 - z) * n + z * h
                if lens is not None:
                    active = (t < lens)[:, None]
                    h_new = np.where(active, h_new, h)
                    Y[t, d] = np.where(active, h_new, 0)
                else:
                    Y[t, d] = h_new
                h = h_new
            Yh[d] = h
        return self.finish(Y, [Yh])
