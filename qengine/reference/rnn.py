"""Float64 NumPy reference LSTM and GRU with ONNX semantics, plus PyTorch weight converters.

This is the living definition the FP32 and int8 recurrent ops are tested against; it follows
the ONNX operator text literally (one time step at a time, gates split by name) rather than
being fast. ONNX stores per direction d:

* LSTM: W[d] (4H, I), R[d] (4H, H) in gate order i, o, f, c; B[d] (8H) = [Wb(iofc), Rb(iofc)];
  P[d] (3H) peepholes i, o, f.
      i = σ(x·Wiᵀ + h·Riᵀ + Pi⊙c + Wbi + Rbi)     f = σ(x·Wfᵀ + h·Rfᵀ + Pf⊙c + Wbf + Rbf)
      g = tanh(x·Wcᵀ + h·Rcᵀ + Wbc + Rbc)         c' = f⊙c + i⊙g
      o = σ(x·Woᵀ + h·Roᵀ + Po⊙c' + Wbo + Rbo)    h' = o⊙tanh(c')
* GRU: W[d] (3H, I), R[d] (3H, H) in gate order z, r, h; B[d] (6H) = [Wb(zrh), Rb(zrh)].
      z = σ(x·Wzᵀ + h·Rzᵀ + Wbz + Rbz)            r = σ(x·Wrᵀ + h·Rrᵀ + Wbr + Rbr)
      n = tanh(x·Whᵀ + (r⊙h)·Rhᵀ + Rbh + Wbh)       linear_before_reset = 0
      n = tanh(x·Whᵀ + r⊙(h·Rhᵀ + Rbh) + Wbh)       linear_before_reset = 1 (PyTorch's GRU)
      h' = (1 − z)⊙n + z⊙h

`clip` bounds every gate pre-activation to [-clip, clip]. With `sequence_lens`, batch entry b
only runs steps t < len[b]: its Y is 0 beyond, its state stops there; the reverse direction
starts at t = len[b] − 1. Layout 0: X (T, B, I), Y (T, D, B, H), Y_h/Y_c (D, B, H); layout 1:
X (B, T, I), Y (B, T, D, H), Y_h/Y_c (B, D, H).

PyTorch stores LSTM gates as i, f, g, o and GRU gates as r, z, n with separate b_ih/b_hh; the
converters below reorder them to ONNX order (PyTorch's GRU is linear_before_reset = 1).
"""
from __future__ import annotations

import numpy as np

_DIRECTIONS = {"forward": ("forward",), "reverse": ("reverse",),
               "bidirectional": ("forward", "reverse")}


def sigmoid_ref(x):
    return 1.0 / (1.0 + np.exp(-x))


def _clip(x, clip):
    return x if clip is None else np.clip(x, -clip, clip)


def _to_layout0(X, initial, layout):
    if layout == 1:
        X = np.swapaxes(X, 0, 1)
        initial = [None if s is None else np.swapaxes(s, 0, 1) for s in initial]
    return X, initial


def _from_layout0(Y, states, layout):
    if layout == 1:  # Y (T, D, B, H) → (B, T, D, H); states (D, B, H) → (B, D, H)
        return np.transpose(Y, (2, 0, 1, 3)), [np.swapaxes(s, 0, 1) for s in states]
    return Y, states


def _run_directions(cell, X, W, R, B, sequence_lens, initial, direction, layout, n_state, H,
                    trace=None):
    X, initial = _to_layout0(np.asarray(X, np.float64), initial, layout)
    T, batch, _ = X.shape
    lens = np.full(batch, T) if sequence_lens is None else np.asarray(sequence_lens)
    dirs = _DIRECTIONS[direction]
    Y = np.zeros((T, len(dirs), batch, H))
    finals = [np.zeros((len(dirs), batch, H)) for _ in range(n_state)]
    for d, name in enumerate(dirs):
        state = [np.zeros((batch, H)) if s is None else np.asarray(s[d], np.float64)
                 for s in initial]
        steps = range(T) if name == "forward" else range(T - 1, -1, -1)
        for t in steps:
            new = cell(X[t], state, d)
            active = (t < lens)[:, None]
            if trace is not None:                 # the new states of the rows that step
                trace.append([n[active[:, 0]] for n in new])
            state = [np.where(active, n, s) for n, s in zip(new, state)]
            Y[t, d] = np.where(active, state[0], 0.0)
        for k in range(n_state):
            finals[k][d] = state[k]
    return _from_layout0(Y, finals, layout)


def lstm_ref(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *,
             direction="forward", layout=0, clip=None, trace=None):
    """ONNX LSTM in float64. Returns (Y, Y_h, Y_c). trace: a list that gets [h, c] of the rows
    that step, per step and direction (calibration of the integer LSTM)."""
    W, R = np.asarray(W, np.float64), np.asarray(R, np.float64)
    D, H = W.shape[0], R.shape[-1]
    B = np.zeros((D, 8 * H)) if B is None else np.asarray(B, np.float64)
    P = np.zeros((D, 3 * H)) if P is None else np.asarray(P, np.float64)

    def cell(x, state, d):
        h, c = state
        Wi, Wo, Wf, Wc = np.split(W[d], 4)
        Ri, Ro, Rf, Rc = np.split(R[d], 4)
        bi, bo, bf, bc = np.split(B[d, :4 * H] + B[d, 4 * H:], 4)
        Pi, Po, Pf = np.split(P[d], 3)
        i = sigmoid_ref(_clip(x @ Wi.T + h @ Ri.T + Pi * c + bi, clip))
        f = sigmoid_ref(_clip(x @ Wf.T + h @ Rf.T + Pf * c + bf, clip))
        g = np.tanh(_clip(x @ Wc.T + h @ Rc.T + bc, clip))
        c_new = f * c + i * g
        o = sigmoid_ref(_clip(x @ Wo.T + h @ Ro.T + Po * c_new + bo, clip))
        return o * np.tanh(c_new), c_new

    Y, (Yh, Yc) = _run_directions(cell, X, W, R, B, sequence_lens, [initial_h, initial_c],
                                  direction, layout, 2, H, trace)
    return Y, Yh, Yc


def gru_ref(X, W, R, B=None, sequence_lens=None, initial_h=None, *, direction="forward",
            layout=0, clip=None, linear_before_reset=0, trace=None):
    """ONNX GRU in float64. Returns (Y, Y_h). trace: as lstm_ref's, [h] per step."""
    W, R = np.asarray(W, np.float64), np.asarray(R, np.float64)
    D, H = W.shape[0], R.shape[-1]
    B = np.zeros((D, 6 * H)) if B is None else np.asarray(B, np.float64)

    def cell(x, state, d):
        (h,) = state
        Wz, Wr, Wh = np.split(W[d], 3)
        Rz, Rr, Rh = np.split(R[d], 3)
        Wbz, Wbr, Wbh = np.split(B[d, :3 * H], 3)
        Rbz, Rbr, Rbh = np.split(B[d, 3 * H:], 3)
        z = sigmoid_ref(_clip(x @ Wz.T + h @ Rz.T + Wbz + Rbz, clip))
        r = sigmoid_ref(_clip(x @ Wr.T + h @ Rr.T + Wbr + Rbr, clip))
        if linear_before_reset:
            n = np.tanh(_clip(x @ Wh.T + r * (h @ Rh.T + Rbh) + Wbh, clip))
        else:
            n = np.tanh(_clip(x @ Wh.T + (r * h) @ Rh.T + Rbh + Wbh, clip))
        return ((1.0 - z) * n + z * h,)

    Y, (Yh,) = _run_directions(cell, X, W, R, B, sequence_lens, [initial_h], direction, layout,
                               1, H, trace)
    return Y, Yh


# ---- PyTorch → ONNX weight layout ------------------------------------------------------------
def _reorder(w, order, n_gates):
    parts = np.split(np.asarray(w), n_gates, axis=0)
    return np.concatenate([parts[i] for i in order], axis=0)


def lstm_weights_from_torch(w_ih, w_hh, b_ih=None, b_hh=None):
    """One direction of nn.LSTM (gates i, f, g, o) → ONNX (W, R, B) without the direction axis
    (gates i, o, f, c). Missing biases (bias=False) become zeros."""
    order = (0, 3, 1, 2)  # ONNX i, o, f, c taken from torch i, f, g, o
    W, R = _reorder(w_ih, order, 4), _reorder(w_hh, order, 4)
    rows = W.shape[0]
    b_ih = np.zeros(rows, W.dtype) if b_ih is None else _reorder(b_ih, order, 4)
    b_hh = np.zeros(rows, W.dtype) if b_hh is None else _reorder(b_hh, order, 4)
    return W, R, np.concatenate([b_ih, b_hh])


def gru_weights_from_torch(w_ih, w_hh, b_ih=None, b_hh=None):
    """One direction of nn.GRU (gates r, z, n) → ONNX (W, R, B) (gates z, r, h); use with
    linear_before_reset=1, which is what PyTorch computes."""
    order = (1, 0, 2)
    W, R = _reorder(w_ih, order, 3), _reorder(w_hh, order, 3)
    rows = W.shape[0]
    b_ih = np.zeros(rows, W.dtype) if b_ih is None else _reorder(b_ih, order, 3)
    b_hh = np.zeros(rows, W.dtype) if b_hh is None else _reorder(b_hh, order, 3)
    return W, R, np.concatenate([b_ih, b_hh])
