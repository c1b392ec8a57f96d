"""FP32 LSTM and GRU ops (ONNX semantics; the equations are in qengine/reference/rnn.py).

Weights must be initializers. float32 layers without peepholes run compiled
(include/qengine/f32/qe_f32_rnn.h): at load each direction's W, R and biases are permuted into
blocks of 32 hidden units (all gates of a block side by side, the hidden size padded with
zeros) and packed for the kernels; a call does one GEMM for the input projection of every time
step and then the whole time loop in C — per step one GEMV/small GEMM against R and the
vectorized gate math (rnn/qe_gates.h), OpenMP over blocks of units with one barrier per step,
the same bits for any thread count. float64 reference sessions and peephole LSTMs run the NumPy
loop below, with each direction's W and R transposed into contiguous (K, gates·H) matrices.
"""
from __future__ import annotations

import numpy as np

from .. import _runtime
from .._ext import _f32
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
        self.compiled = None

    def prepare_bias(self, B):
        raise NotImplementedError

    def pack_compiled(self, W, R, bias_x, rbh=None, isa=None):
        """Pack the per-direction weights for the compiled time loop (qe_f32_rnn.h): rows of
        W and R, bias_x (added to the projection) and rbh (GRU, inside r ⊙ (·)) permuted into
        blocks of NB units × G gates, H padded to Hp with zeros, R's columns too. `isa`
        (default: the active one) is for tests comparing kernels."""
        G, H, NB = self.N_GATES, self.H, _f32.RNN_BLOCK
        Hp = -(-H // NB) * NB
        # new column j·G·NB + g·NB + v  ←  old row g·H + j·NB + v (zero where that unit ≥ H)
        u = np.arange(Hp).reshape(-1, 1, NB)               # [block, 1, v]
        old = (np.arange(G).reshape(1, G, 1) * H + u).reshape(-1)
        valid = np.broadcast_to(u < H, (Hp // NB, G, NB)).reshape(-1)
        isa = _runtime.isa_index(isa)

        def rows(a, width=None):
            out = np.zeros((G * Hp,) + a.shape[1:], np.float32)
            out[valid] = a[old[valid]]
            if width is not None and out.shape[1] != width:
                out = np.pad(out, ((0, 0), (0, width - out.shape[1])))
            return np.ascontiguousarray(out)
        packs = []
        for d in range(self.D):
            wp, wt = _f32.conv_pack(rows(W[d]), 1, isa, _f32.CONV_PC)
            rp, rt = _f32.conv_pack(rows(R[d], Hp), 1, isa, _f32.CONV_PC)
            bx = rows(bias_x[d])
            rb = None
            if rbh is not None and rbh[d] is not None:
                rb = np.zeros(Hp, np.float32)
                rb[:H] = rbh[d]
            packs.append((wp, wt, rp, rt, bx, rb))
        self.compiled = (isa, Hp, packs)
        self.Wt = self.Rt = None         # the NumPy loop's copies are not needed any more

    def run_compiled(self, kind, X0, lens, states, lbr=0):
        """The compiled path: X0 (T, B, I) float32; states [(D, B, H)] h (and c)."""
        isa, Hp, packs = self.compiled
        T, batch = X0.shape[:2]
        H, G = self.H, self.N_GATES
        Y = np.zeros((T, self.D, batch, H), np.float32)
        finals = [np.empty((self.D, batch, H), np.float32) for _ in states]
        x2 = np.ascontiguousarray(X0, np.float32).reshape(T * batch, self.I)
        lens32 = None if lens is None else np.ascontiguousarray(lens, np.int32)
        clip = float(self.clip) if self.clip is not None else 0.0
        for d, (wp, wt, rp, rt, bx, rb) in enumerate(packs):
            gx = np.empty((T * batch, G * Hp), np.float32)
            _f32.gemm(x2, wp, wt, G * Hp, bx, -np.inf, np.inf, gx, isa)
            st = []
            for s in states:
                p = np.zeros((batch, Hp), np.float32)
                p[:, :H] = s[d]
                st.append(p)
            Yd = Y[:, d]
            reverse = self.attrs["direction"] == "reverse" or d == 1
            _f32.rnn(kind, gx.reshape(T, batch, G * Hp), rp, rt, H, st[0],
                     st[1] if len(st) > 1 else None, lens32, Yd, bool(lbr), reverse, rb, clip,
                     isa)
            for f, p in zip(finals, st):
                f[d] = p[:, :H]
        return self.finish(Y, finals)

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
        if self.float_dtype == np.float32 and self.P is None:
            W = self.const_input(initializers, 1)
            R = self.const_input(initializers, 2)
            self.pack_compiled(W, R, self.bias)

    def run(self, X, W=None, R=None, B=None, lens=None, h0=None, c0=None, P=None):
        X0, lens, (h_all, c_all) = self.check_inputs(X, lens, (("initial_h", h0),
                                                              ("initial_c", c0)))
        if self.compiled is not None:
            return self.run_compiled(_f32.RNN_LSTM, X0, lens, (h_all, c_all))
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

    def prepare(self, initializers):
        super().prepare(initializers)
        if self.float_dtype == np.float32:
            self.pack_compiled(self.const_input(initializers, 1), self.const_input(initializers, 2),
                               self.bias_x, self.bias_rh)

    def run(self, X, W=None, R=None, B=None, lens=None, h0=None):
        X0, lens, (h_all,) = self.check_inputs(X, lens, (("initial_h", h0),))
        if self.compiled is not None:
            return self.run_compiled(_f32.RNN_GRU, X0, lens, (h_all,),
                                     self.attrs["linear_before_reset"])
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
