"""Dynamic-int8 LSTM and GRU (one ONNX LSTM/GRU node: one layer, 1 or 2 directions).

Weights are quantized once, per output row (gate unit), symmetric int8 narrow range; their rows
are permuted into blocks of BLOCK hidden units (include/qengine/rnn/qe_rnn_dynamic.h explains
why) and packed for the active ISA. Per call, activations are quantized dynamically (u8, per
tensor or per row): the input projection of all time steps is one GEMM (shared by both
directions), and each step runs a GEMV against the packed recurrent weights, all in C.
"""
import numpy as np

from .. import _runtime, functional
from .._ext import _rnn
from ..errors import ConfigError, ShapeError
from .weights import int4_groups, quantize_int4, quantize_per_channel_symmetric

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


def _pad_scales(scales, src):
    """Padding units' rows (all-zero weights) get scale 1.0: any valid scale gives them 0."""
    return np.ascontiguousarray(np.where((src >= 0)[:, None], scales, np.float32(1)), np.float32)


class DynamicRNN:
    """A dynamic-int8 LSTM/GRU layer with ONNX semantics.

    Weights come quantized (see `from_float`): Wq int8 [D, G·H, I] with per-row scales
    Ws [D, G·H], Rq int8 [D, G·H, H] with Rs [D, G·H], and the float bias B [D, 2·G·H], in ONNX
    gate order (LSTM i,o,f,c; GRU z,r,h). Call with X [T, B, I] (time-major; the graph op
    handles layout=1) and optional sequence_lens [B], initial_h / initial_c [D, B, H]; returns
    (Y [T, D, B, H], Y_h [D, B, H], Y_c [D, B, H] or None).

    weight_bits=4: Wq and Rq hold int4 values in [−7, 7] (still int8 arrays) and the scales have
    a last axis of groups, Ws [D, G·H, ceil(I / group_size)] and Rs [D, G·H, ceil(H /
    group_size)] (one group with group_size None); both are packed two per byte (qe_gemm_w4.h)
    and every product uses epilogue (c) of docs/numerics.md.

    Activations: each time step's input (and each step's h) is quantized as a tensor of its own
    (u8, asymmetric), or each batch row separately with per_row=True. Either way no quantization
    parameter spans time steps, so feeding a sequence in chunks (state carried between calls)
    gives bit-identical results to one call on the whole sequence.
    """

    def __init__(self, kind, Wq, Ws, Rq, Rs, B=None, *, direction="forward",
                 linear_before_reset=0, per_row=False, isa=None, weight_bits=8,
                 group_size=None):
        if kind not in GATES:
            raise ConfigError(f"recurrent kind must be 'lstm' or 'gru', got {kind!r}")
        if direction not in _DIRECTIONS:
            raise ConfigError(f"direction must be one of {sorted(_DIRECTIONS)}, got {direction!r}")
        G, D = GATES[kind], _DIRECTIONS[direction]
        Wq, Rq = np.asarray(Wq), np.asarray(Rq)
        if Wq.dtype != np.int8 or Rq.dtype != np.int8:
            raise ConfigError(f"{kind.upper()}: quantized weights must be int8, got {Wq.dtype} "
                              f"and {Rq.dtype}")
        if Wq.ndim != 3 or Rq.ndim != 3 or Wq.shape[0] != D or Rq.shape[0] != D:
            raise ShapeError(f"{kind.upper()} weights: expected W [{D}, {G}·H, I] and R [{D}, "
                             f"{G}·H, H], got W {Wq.shape} and R {Rq.shape}")
        H = Rq.shape[2]
        if Wq.shape[1] != G * H or Rq.shape[1] != G * H or H < 1 or Wq.shape[2] < 1:
            raise ShapeError(f"{kind.upper()} weights: W {Wq.shape} / R {Rq.shape} do not match "
                             f"{G} gates of hidden size {H}")
        if weight_bits not in (4, 8):
            raise ConfigError(f"weight_bits must be 4 or 8, got {weight_bits!r}")
        functional.check_group_size(group_size)
        if weight_bits == 8 and group_size is not None:
            raise ConfigError("group_size applies to weight_bits=4 only")
        Ws = np.asarray(Ws, np.float32)
        Rs = np.asarray(Rs, np.float32)
        if weight_bits == 8:
            ws_shape, rs_shape = (D, G * H), (D, G * H)
        else:
            ws_shape = (D, G * H, int4_groups(Wq.shape[2], group_size))
            rs_shape = (D, G * H, int4_groups(H, group_size))
        if Ws.shape != ws_shape or Rs.shape != rs_shape:
            raise ShapeError(f"{kind.upper()} weight scales: expected {list(ws_shape)} and "
                             f"{list(rs_shape)}, got {list(Ws.shape)} and {list(Rs.shape)}")
        if not (np.all(np.isfinite(Ws)) and np.all(Ws > 0) and np.all(np.isfinite(Rs))
                and np.all(Rs > 0)):
            raise ConfigError(f"{kind.upper()}: weight scales must be finite and positive")
        if B is None:
            B = np.zeros((D, 2 * G * H), np.float32)
        B = np.asarray(B, np.float32)
        if B.shape != (D, 2 * G * H):
            raise ShapeError(f"{kind.upper()} bias: expected [{D}, {2 * G * H}], got {B.shape}")
        self.kind, self.G, self.D, self.H, self.I = kind, G, D, H, Wq.shape[2]
        self.direction = direction
        self.linear_before_reset = int(bool(linear_before_reset))
        self.per_row = bool(per_row)
        self.weight_bits, self.group_size = weight_bits, group_size
        self.isa_name = _runtime.active_isa() if isa is None else isa
        self.isa = _runtime.isa_index(self.isa_name)
        nb = _rnn.BLOCK
        self.Hp = Hp = -(-H // nb) * nb
        src = _block_rows(G, H, Hp)
        gx_bias = []
        self._r = []
        for d in range(D):
            wb, rb = B[d, :G * H], B[d, G * H:]
            rq = np.pad(_permute(Rq[d], src), ((0, 0), (0, Hp - H)))
            r_scale = np.ascontiguousarray(_permute(Rs[d], src))
            if kind == "lstm":
                gx_bias.append(_permute(wb + rb, src))      # both biases enter once, up front
                r_bias = None
            else:
                gx_bias.append(_permute(wb, src))
                r_bias = np.ascontiguousarray(_permute(rb, src))
            if weight_bits == 4:   # R's scales travel inside its packing
                r4 = functional.pack_weights_int4(rq, _pad_scales(r_scale, src), group_size)
                self._r.append(((r4, self.isa), None, r_bias))
            else:
                self._r.append((functional.pack_weights(rq, isa=self.isa_name), r_scale, r_bias))
        w_all = np.concatenate([_permute(Wq[d], src) for d in range(D)])
        self._w_scale = np.ascontiguousarray(
            np.concatenate([_permute(Ws[d], src) for d in range(D)]), np.float32)
        if weight_bits == 4:
            self._w = functional.pack_weights_int4(
                w_all, np.concatenate([_pad_scales(_permute(Ws[d], src), src) for d in range(D)]),
                group_size)
        else:
            self._w = functional.pack_weights(w_all, isa=self.isa_name)
        self._gx_bias = np.ascontiguousarray(np.concatenate(gx_bias), np.float32)
        self.nbytes = self._w.nbytes + sum(
            (r[0][0] if weight_bits == 4 else r[0]).nbytes for r in self._r)

    # From this batch on an LSTM projects each step's x inside the time loop (fused; the same
    # bits as the up-front projection, qe_rnn_dynamic.h says why it is faster); tests lower it.
    _fuse_min_b = _rnn.FUSE_MIN_B

    @classmethod
    def from_float(cls, kind, W, R, B=None, **kw):
        """Quantize float W [D, G·H, I] and R [D, G·H, H] per output row (weight_bits=4: per
        row or per group of group_size) and build the layer."""
        W, R = np.asarray(W, np.float32), np.asarray(R, np.float32)
        if W.ndim != 3 or R.ndim != 3:
            raise ShapeError(f"{kind.upper()} weights must be 3-D, got {W.shape} and {R.shape}")
        if kw.get("weight_bits", 8) == 4:
            functional.check_group_size(kw.get("group_size"))
            quant = lambda m: quantize_int4(m, kw.get("group_size"))  # noqa: E731
        else:
            quant = quantize_per_channel_symmetric
        wq, ws = zip(*(quant(w) for w in W)) if len(W) else ((), ())
        rq, rs = zip(*(quant(r) for r in R)) if len(R) else ((), ())
        return cls(kind, np.stack(wq), np.stack(ws), np.stack(rq), np.stack(rs), B, **kw)

    def __call__(self, X, sequence_lens=None, initial_h=None, initial_c=None, *, nthreads=0):
        X = np.ascontiguousarray(X, np.float32)
        if X.ndim != 3 or X.shape[2] != self.I:
            raise ShapeError(f"{self.kind.upper()} input: expected [seq, batch, {self.I}], "
                             f"got {X.shape}")
        T, Bt, _ = X.shape
        D, G, H, Hp = self.D, self.G, self.H, self.Hp
        lens = None
        if sequence_lens is not None:
            lens = np.asarray(sequence_lens)
            if lens.dtype.kind not in "iu" or lens.shape != (Bt,) or (lens < 0).any() \
                    or (lens > T).any():
                raise ShapeError(f"sequence_lens: expected {Bt} integers in [0, {T}], got "
                                 f"{lens.dtype} {lens.shape}")
            lens = None if (lens == T).all() else np.ascontiguousarray(lens, np.int32)
        state = []
        for name, v in (("initial_h", initial_h), ("initial_c", initial_c)):
            if v is not None:
                v = np.asarray(v)
                if v.shape != (D, Bt, H):
                    raise ShapeError(f"{name}: expected {(D, Bt, H)}, got {v.shape}")
                if Hp == H:       # one copy (the kernels update the state in place)
                    state.append(np.array(v, np.float32, order="C"))
                    continue
            s = np.zeros((D, Bt, Hp), np.float32)
            if v is not None:
                s[:, :, :H] = v
            state.append(s)
        h, c = state
        kind = _rnn.LSTM if self.kind == "lstm" else _rnn.GRU
        # the time loop writes all of Y (0 past a row's length), except where a ragged reverse
        # direction scatters its steps (below); np.zeros cost a 3 MB memset per batch-16 layer
        ragged_reverse = lens is not None and (self.direction == "reverse" or D == 2)
        Y = (np.zeros if ragged_reverse or T == 0 or Bt == 0 else np.empty)((T, D, Bt, H),
                                                                             np.float32)
        if T == 0 or Bt == 0:
            return self._finish(Y, h, c)
        # ragged reverse directions gather gx (below): they keep the up-front projection
        fused = self.kind == "lstm" and Bt >= self._fuse_min_b and not ragged_reverse and \
            self.weight_bits == 8
        if not fused:
            if self.weight_bits == 4:
                gx = _rnn.project4(X.reshape(T * Bt, self.I), 1 if self.per_row else Bt, self._w,
                                   self._gx_bias, self.isa, nthreads)
            else:
                gx = _rnn.project(X.reshape(T * Bt, self.I), 1 if self.per_row else Bt,
                                  self._w, self._w_scale, self._gx_bias, nthreads)
            gx = gx.reshape(T, Bt, D * G * Hp)
        for d in range(D):
            reverse = self.direction == "reverse" or d == 1
            rpw, r_scale, r_bias = self._r[d]
            cd = c[d] if self.kind == "lstm" else None
            args = (rpw, r_scale, r_bias, h[d], cd, lens)
            if fused:
                _rnn.recur(_rnn.LSTM, None, *args, Y[:, d], H, self.per_row, 0, reverse, nthreads,
                           X, self._w, self._w_scale, self._gx_bias, d * G * Hp)
                continue
            g = gx[:, :, d * G * Hp:(d + 1) * G * Hp]
            if reverse and lens is not None:
                # ragged reverse: row b starts from its own last step; gather processing order
                idx = np.clip(lens[None, :] - 1 - np.arange(T)[:, None], 0, None)
                g = np.ascontiguousarray(g[idx, np.arange(Bt)[None, :]])
                y_proc = np.zeros((T, Bt, H), np.float32)
                _rnn.recur(kind, g, *args, y_proc, H, self.per_row, self.linear_before_reset,
                           False, nthreads)
                tt, bb = np.nonzero(np.arange(T)[:, None] < lens[None, :])
                Y[idx[tt, bb], d, bb] = y_proc[tt, bb]
            else:
                _rnn.recur(kind, g, *args, Y[:, d], H, self.per_row, self.linear_before_reset,
                           reverse, nthreads)
        return self._finish(Y, h, c)

    def _finish(self, Y, h, c):
        if self.Hp == self.H:       # the state arrays are this call's own: no copy
            return Y, h, c if self.kind == "lstm" else None
        H = self.H
        Yh = np.ascontiguousarray(h[:, :, :H])
        Yc = np.ascontiguousarray(c[:, :, :H]) if self.kind == "lstm" else None
        return Y, Yh, Yc
