"""Dynamic-int8 LSTM and GRU (one ONNX LSTM/GRU node: one layer, 1 or 2 directions).

Weights are quantized once, per output row (gate unit), symmetric int8 narrow range; their rows
are permuted into blocks of BLOCK hidden units (include/qengine/rnn/qe_rnn_dynamic.h explains
why) and packed for the active ISA. Per call, activations are quantized dynamically (u8, per
tensor or per row): the input projection of all time steps is one GEMM (shared by both
directions), and each step runs a GEMV against the packed recurrent weights, all in C.
"""
import numpy as np

from .. import _runtime
from .._ext import _rnn
from ..errors import ConfigError, ShapeError
from .weights import quantize_per_channel_symmetric

GATES = {"lstm": 4, "gru": 3}
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def _block_rows(G, H, Hp):
    """Source row (gate q, unit u) → q·H + u for each row of the block layout; −1 for padding."""
    nb = _rnn.BLOCK
    src = np.full(G * Hp, -1, np.int64)
    for blk in range(Hp // nb):
        for q in range(G):
            u = np.arange(blk * nb, (blk + 1) * nb)
            dst = blk * G * nb + q * nb + np.arange(nb)
            ok = u < H
            src[dst[ok]] = q * H + u[ok]
    return src


def _permute(a, src, axis=0):
    """Rows of `a` in block order; padding rows are zero."""
    shape = list(a.shape)
    shape[axis] = len(src)
    out = np.zeros(shape, a.dtype)
    ok = src >= 0
    idx = [slice(None)] * a.ndim
    idx[axis] = np.nonzero(ok)[0]
    out[tuple(idx)] = np.take(a, src[ok], axis=axis)
    return out


class DynamicRNN:
    """A dynamic-int8 LSTM/GRU layer with ONNX semantics.

    W [D, G·H, I], R [D, G·H, H], B [D, 2·G·H] (or None) in ONNX gate order (LSTM i,o,f,c;
    GRU z,r,h). Call with X [T, B, I] (time-major; the graph op handles layout=1) and optional
    sequence_lens [B], initial_h [D, B, H], initial_c [D, B, H]; returns (Y [T, D, B, H],
    Y_h [D, B, H], Y_c [D, B, H] or None).
    """

    def __init__(self, kind, W, R, B=None, *, direction="forward", linear_before_reset=0,
                 per_row=False, isa=None):
        if kind not in GATES:
            raise ConfigError(f"recurrent kind must be 'lstm' or 'gru', got {kind!r}")
        if direction not in _DIRECTIONS:
            raise ConfigError(f"direction must be one of {sorted(_DIRECTIONS)}, got {direction!r}")
        W = np.asarray(W, np.float32)
        R = np.asarray(R, np.float32)
        G, D = GATES[kind], _DIRECTIONS[direction]
        if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or R.shape[0] != D:
            raise ShapeError(f"{kind.upper()} weights: expected W [{D}, {G}·H, I] and R [{D}, "
                             f"{G}·H, H], got W {W.shape} and R {R.shape}")
        H = R.shape[2]
        if W.shape[1] != G * H or R.shape[1] != G * H or H < 1 or W.shape[2] < 1:
            raise ShapeError(f"{kind.upper()} weights: W {W.shape} / R {R.shape} do not match "
                             f"{G} gates of hidden size {H}")
        if B is None:
            B = np.zeros((D, 2 * G * H), np.float32)
        B = np.asarray(B, np.float32)
        if B.shape != (D, 2 * G * H):
            raise ShapeError(f"{kind.upper()} bias: expected [{D}, {2 * G * H}], got {B.shape}")
        self.kind, self.G, self.D, self.H, self.I = kind, G, D, H, W.shape[2]
        self.direction = direction
        self.linear_before_reset = int(bool(linear_before_reset))
        self.per_row = bool(per_row)
        self.isa_name = _runtime.active_isa() if isa is None else isa
        self.isa = _runtime.isa_index(self.isa_name)
        nb = _rnn.BLOCK
        self.Hp = Hp = -(-H // nb) * nb
        src = _block_rows(G, H, Hp)
        w_rows, w_scales, gx_bias = [], [], []
        self._r = []
        for d in range(D):
            wq, ws = quantize_per_channel_symmetric(W[d])
            rq, rs = quantize_per_channel_symmetric(R[d])
            w_rows.append(_permute(wq, src))
            w_scales.append(_permute(ws, src))
            wb, rb = B[d, :G * H], B[d, G * H:]
            rq = np.pad(_permute(rq, src), ((0, 0), (0, Hp - H)))
            r_scale = np.ascontiguousarray(_permute(rs, src))
            if kind == "lstm":
                gx_bias.append(_permute(wb + rb, src))      # both biases enter once, up front
                r_bias = None
            else:
                gx_bias.append(_permute(wb, src))
                r_bias = np.ascontiguousarray(_permute(rb, src))
            r_data, r_colsum = _rnn.pack(rq, self.isa)
            self._r.append((r_data, r_colsum, r_scale, r_bias))
        w_all = np.concatenate(w_rows)
        self._w_data, self._w_colsum = _rnn.pack(w_all, self.isa)
        self._w_scale = np.ascontiguousarray(np.concatenate(w_scales), np.float32)
        self._gx_bias = np.ascontiguousarray(np.concatenate(gx_bias), np.float32)
        self.nbytes = (self._w_data.nbytes + sum(r[0].nbytes for r in self._r))

    def __call__(self, X, sequence_lens=None, initial_h=None, initial_c=None, *, nthreads=0):
        X = np.ascontiguousarray(X, np.float32)
        if X.ndim != 3 or X.shape[2] != self.I:
            raise ShapeError(f"{self.kind.upper()} input: expected [seq, batch, {self.I}], "
                             f"got {X.shape}")
        T, Bt, _ = X.shape
        D, G, H, Hp = self.D, self.G, self.H, self.Hp
        lens = None
        if sequence_lens is not None:
            lens = np.ascontiguousarray(sequence_lens, np.int32).reshape(-1)
            if lens.shape != (Bt,) or (lens < 0).any() or (lens > T).any():
                raise ShapeError(f"sequence_lens: expected {Bt} values in [0, {T}], got {lens}")
            if (lens == T).all():
                lens = None
        state = []
        for name, v in (("initial_h", initial_h), ("initial_c", initial_c)):
            s = np.zeros((D, Bt, Hp), np.float32)
            if v is not None:
                v = np.asarray(v, np.float32)
                if v.shape != (D, Bt, H):
                    raise ShapeError(f"{name}: expected {(D, Bt, H)}, got {v.shape}")
                s[:, :, :H] = v
            state.append(s)
        h, c = state
        gx = _rnn.project(X.reshape(T * Bt, self.I), self._w_data, self._w_colsum, D * G * Hp,
                          self._w_scale, self._gx_bias, self.per_row, self.isa, nthreads)
        gx = gx.reshape(T, Bt, D * G * Hp)
        Y = np.zeros((T, D, Bt, H), np.float32)
        for d in range(D):
            reverse = self.direction == "reverse" or d == 1
            r_data, r_colsum, r_scale, r_bias = self._r[d]
            g = gx[:, :, d * G * Hp:(d + 1) * G * Hp]
            y = Y[:, d]
            if reverse and lens is not None:
                # ragged reverse: row b runs from its own last step; gather into processing order
                idx = np.clip(lens[None, :] - 1 - np.arange(T)[:, None], 0, None)
                g = np.ascontiguousarray(g[idx, np.arange(Bt)[None, :]])
                y_proc = np.zeros((T, Bt, H), np.float32)
                _rnn.recur(_rnn.LSTM if self.kind == "lstm" else _rnn.GRU, g, r_data, r_colsum,
                           r_scale, r_bias, h[d], c[d] if self.kind == "lstm" else None, lens,
                           y_proc, H, self.per_row, self.linear_before_reset, False, self.isa,
                           nthreads)
                valid = np.arange(T)[:, None] < lens[None, :]
                tt, bb = np.nonzero(valid)
                y[idx[tt, bb], bb] = y_proc[tt, bb]
            else:
                _rnn.recur(_rnn.LSTM if self.kind == "lstm" else _rnn.GRU, g, r_data, r_colsum,
                           r_scale, r_bias, h[d], c[d] if self.kind == "lstm" else None, lens, y,
                           H, self.per_row, self.linear_before_reset, reverse, self.isa, nthreads)
        Yh = np.ascontiguousarray(h[:, :, :H])
        Yc = np.ascontiguousarray(c[:, :, :H]) if self.kind == "lstm" else None
        return Y, Yh, Yc
