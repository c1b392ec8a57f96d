"""NumPy definition of the dynamic-int8 LSTM/GRU (qengine/quantized/rnn.py, qe_rnn_dynamic.h).

Same integer sums, the same float32 operations in the same order, so the compiled layer equals
it bit for bit on every ISA and thread count. Weights come quantized (int8 per row + scales);
ONNX gate order and semantics (reference/rnn.py is the float64 oracle of the same equations).
Each time step's input, and each step's h, is quantized on its own (per tensor over the batch,
or per row).
4-bit weights (weight_bits=4): int4 values in int8 arrays, scales [.., G·H, groups], every
product by epilogue (c) (numerics.md "4-bit weights").
"""
import numpy as np

from .gates import gru_h_ref, lstm_cell_ref, sigmoid_ref
from .gemm import matmul_dequant_int4_ref, matmul_dequant_ref, quantize_activations_ref

_F = np.float32


def _qdq_matmul(x, wq, ws, bias, per_row, out=None, group_size=None):
    q, s, z = quantize_activations_ref(x, per_row)
    if np.ndim(ws) == 2:                   # [rows, groups]: 4-bit weights
        return matmul_dequant_int4_ref(q, s, z, wq, ws, group_size, bias, out)
    return matmul_dequant_ref(q, s, z, wq, ws, bias, out)


def dynamic_rnn_ref(kind, X, Wq, Ws, Rq, Rs, B=None, sequence_lens=None, initial_h=None,
                    initial_c=None, *, direction="forward", linear_before_reset=0,
                    per_row=False, group_size=None):
    """X [T, batch, I] → (Y [T, D, batch, H], Y_h [D, batch, H], Y_c or None). Scales Ws, Rs
    with a trailing groups axis mean 4-bit weights in groups of group_size."""
    def mm(x, wq, ws, bias, per_row, out=None):
        return _qdq_matmul(x, wq, ws, bias, per_row, out, group_size)

    G = 4 if kind == "lstm" else 3
    T, nb, _ = X.shape
    D, GH, _ = Wq.shape
    H = GH // G
    B = np.zeros((D, 2 * GH), _F) if B is None else np.asarray(B, _F)
    lens = np.full(nb, T) if sequence_lens is None else np.asarray(sequence_lens)
    Y = np.zeros((T, D, nb, H), _F)
    Yh = np.zeros((D, nb, H), _F)
    Yc = np.zeros((D, nb, H), _F)
    for d in range(D):
        reverse = direction == "reverse" or d == 1
        wb, rb = B[d, :GH], B[d, GH:]
        gx_bias = (wb + rb) if kind == "lstm" else wb
        h = np.zeros((nb, H), _F) if initial_h is None else np.asarray(initial_h[d], _F).copy()
        c = np.zeros((nb, H), _F) if initial_c is None else np.asarray(initial_c[d], _F).copy()
        # the input projection of every step, as the layer computes it (one row group per step)
        gx = np.stack([mm(X[t], Wq[d], Ws[d], gx_bias, per_row) for t in range(T)])
        for s in range(T):
            # row b handles time t_b at processing step s (reverse runs from its own last step)
            t_b = np.array([(lens[b] - 1 - s if reverse else s) for b in range(nb)])
            active = s < lens
            g = np.stack([gx[max(t_b[b], 0), b] for b in range(nb)])
            if kind == "lstm":
                g = mm(h, Rq[d], Rs[d], None, per_row, out=g)
                h_new, c_new = lstm_cell_ref(g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H],
                                             g[:, 3 * H:], c)
            else:
                if linear_before_reset:
                    S = mm(h, Rq[d], Rs[d], rb, per_row)
                    z = sigmoid_ref(g[:, :H] + S[:, :H])
                    r = sigmoid_ref(g[:, H:2 * H] + S[:, H:2 * H])
                    h_new = gru_h_ref(z, r, g[:, 2 * H:], S[:, 2 * H:], h)
                else:
                    S = mm(h, Rq[d, :2 * H], Rs[d, :2 * H], rb[:2 * H], per_row)
                    z = sigmoid_ref(g[:, :H] + S[:, :H])
                    r = sigmoid_ref(g[:, H:2 * H] + S[:, H:])
                    Sh = mm(r * h, Rq[d, 2 * H:], Rs[d, 2 * H:], rb[2 * H:], per_row)
                    h_new = gru_h_ref(z, None, g[:, 2 * H:] + Sh, None, h)
                c_new = c
            h = np.where(active[:, None], h_new, h)
            c = np.where(active[:, None], c_new, c)
            for b in range(nb):
                if active[b]:
                    Y[t_b[b], d, b] = h[b]
        Yh[d], Yc[d] = h, c
    return Y, Yh, (Yc if kind == "lstm" else None)
