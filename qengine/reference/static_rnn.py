"""NumPy definition of the integer (static) LSTM / GRU (docs/numerics.md "Integer LSTM and GRU";
include/qengine/rnn/qe_rnn_static.h runs it in C and must equal it bit for bit).

Two activation schemes, int8 weights (symmetric per gate row) in both:
  "int16"  x int16 symmetric (s_x), h int16 at 2^-15 (z_h = 0);
  "int8"   x uint8 (s_x, z_x), h uint8 (s_h, z_h);
and in both an int16 cell state at a power-of-two scale 2^(e_c − 15), gate pre-activations in
Q3.12 (int16, 2^-12), sigmoid / tanh outputs in Q0.15 from 1025-entry tables with integer linear
interpolation. Integer sums are exact (int64 here); the few float32 operations (the per-row
multipliers of the two products, the biases, the uint8 h grid) are single IEEE operations in a
fixed order, as everywhere in docs/numerics.md.
"""
import numpy as np

_F = np.float32
LUT_SHIFT = 6                       # 64 input codes per table segment
LUT_SIZE = (65536 >> LUT_SHIFT) + 1


def lut_tables():
    """(sigmoid, tanh) as int32 [1025]: entry i is f(x_i) in Q0.15, x_i = (64·i − 32768)/4096,
    rounded half to even from float64 and clipped to [0, 32767] / [−32767, 32767]."""
    x = (np.arange(LUT_SIZE, dtype=np.float64) * (1 << LUT_SHIFT) - 32768) / 4096
    sig = np.clip(np.rint(32768 / (1 + np.exp(-x))), 0, 32767).astype(np.int32)
    tanh = np.clip(np.rint(np.tanh(x) * 32768), -32767, 32767).astype(np.int32)
    return sig, tanh


_SIG, _TANH = lut_tables()


def rsr(x, s):
    """Rounding right shift: floor((x + 2^(s−1)) / 2^s) for s ≥ 1, x for s = 0 (int64)."""
    x = np.asarray(x, np.int64)
    return x if s == 0 else (x + (np.int64(1) << (s - 1))) >> s


def sat16(x):
    return np.clip(np.asarray(x, np.int64), -32768, 32767)


def q12(p):
    """float32 pre-activation in Q3.12 units → int16 code: clamp in float, round half to even."""
    p = np.minimum(np.maximum(np.asarray(p, _F), _F(-32768)), _F(32767))
    return np.rint(p).astype(np.int64)


def lut(table, q):
    """Q3.12 int16 codes → Q0.15 through `table` (integer linear interpolation)."""
    u = np.asarray(q, np.int64) + 32768
    i, f = u >> LUT_SHIFT, u & ((1 << LUT_SHIFT) - 1)
    t0, t1 = table[i].astype(np.int64), table[np.minimum(i + 1, LUT_SIZE - 1)].astype(np.int64)
    return t0 + (((t1 - t0) * f + (1 << (LUT_SHIFT - 1))) >> LUT_SHIFT)


def sigmoid_q(q):
    return lut(_SIG, q)


def tanh_q(q):
    return lut(_TANH, q)


def quantize(r, scale, zero_point, qmin, qmax):
    """numerics.md "Quantize" (float32 r / s, clamp in float, rhe, + z) into int64; NaN → z."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        v = (np.asarray(r, _F) / _F(scale)).astype(_F)
    v = np.where(np.isnan(v), _F(0), v)
    v = np.minimum(np.maximum(v, _F(qmin - zero_point)), _F(qmax - zero_point))
    return np.rint(v).astype(np.int64) + zero_point


def act_range(scheme):
    return (-32767, 32767) if scheme == "int16" else (0, 255)


def s_c(p):
    return _F(2.0 ** (p.e_c - 15))


def multipliers(p, Ws, Rs):
    """Mx = float32(s_x·s_w·4096), Mh = float32(s_h·s_r·4096) (float64 products, one rounding)."""
    mx = (np.float64(p.s_x) * np.asarray(Ws, np.float64) * 4096).astype(_F)
    mh = (np.float64(p.s_h) * np.asarray(Rs, np.float64) * 4096).astype(_F)
    return mx, mh


def biases(kind, B, GH, linear_before_reset):
    """(Bx, Bh) float32 in Q3.12 units: Bx added to the x part of every gate row; Bh (GRU with
    linear_before_reset only, candidate rows) added to the h part before the reset gate."""
    B = np.zeros(2 * GH, np.float64) if B is None else np.asarray(B, np.float64)
    wb, rb = B[:GH], B[GH:]
    H = GH // (4 if kind == "lstm" else 3)
    bx = wb + rb
    bh = np.zeros(GH)
    if kind == "gru" and linear_before_reset:
        bx[2 * H:] = wb[2 * H:]
        bh[2 * H:] = rb[2 * H:]
    return (bx * 4096).astype(_F), (bh * 4096).astype(_F)


def h_out(p, h30):
    """h in Q0.30 (int64) → the h grid: int16 sat16(rsr(h30, 15)); int8 numerics.md Quantize of
    float32(h30)·float32(2^-30 / s_h)."""
    if p.scheme == "int16":
        return sat16(rsr(h30, 15))
    mo = _F(2.0 ** -30 / np.float64(p.s_h))
    v = (np.asarray(h30, np.int64).astype(_F) * mo).astype(_F)
    v = np.minimum(np.maximum(v, _F(0 - p.z_h)), _F(255 - p.z_h))
    return np.rint(v).astype(np.int64) + p.z_h


def direction_ref(kind, p, xq, Wq, Ws, Rq, Rs, B, lens, h0, c0, *, reverse=False,
                  linear_before_reset=0):
    """One direction on quantized data. xq int [T, batch, I] (codes), h0 int [batch, H] (codes),
    c0 int [batch, H] (cell codes; LSTM). Returns (y codes [T, batch, H] with inactive steps at
    z_h, h codes, c codes)."""
    G = 4 if kind == "lstm" else 3
    T, nb, _ = xq.shape
    GH = Wq.shape[0]
    H = GH // G
    mx, mh = multipliers(p, Ws, Rs)
    bx, bh = biases(kind, B, GH, linear_before_reset)
    W = np.asarray(Wq, np.int64)
    R = np.asarray(Rq, np.int64)
    acc_x = (np.asarray(xq, np.int64) - p.z_x) @ W.T                    # [T, batch, GH] exact
    gx = (acc_x.astype(_F) * mx + bx).astype(_F)
    h = np.asarray(h0, np.int64).copy()
    c = np.asarray(c0, np.int64).copy()
    y = np.full((T, nb, H), p.z_h, np.int64)
    e = p.e_c
    for s in range(T):
        for b in range(nb):
            if s >= lens[b]:
                continue
            t = lens[b] - 1 - s if reverse else s
            hc = h[b] - p.z_h
            if kind == "lstm":
                acc_h = R @ hc
                q = q12((gx[t, b] + (acc_h.astype(_F) * mh).astype(_F)).astype(_F))
                i, o = sigmoid_q(q[:H]), sigmoid_q(q[H:2 * H])
                f, g = sigmoid_q(q[2 * H:3 * H]), tanh_q(q[3 * H:])
                c[b] = sat16(rsr(f * c[b], 15) + rsr(i * g, 15 + e))
                tin = rsr(c[b], 3 - e) if e <= 3 else sat16(c[b] << (e - 3))
                h[b] = h_out(p, o * tanh_q(tin))
            else:
                acc_h = R[:2 * H] @ hc
                q = q12((gx[t, b, :2 * H] + (acc_h.astype(_F) * mh[:2 * H]).astype(_F))
                        .astype(_F))
                z, r = sigmoid_q(q[:H]), sigmoid_q(q[H:])
                if linear_before_reset:
                    ph = ((R[2 * H:] @ hc).astype(_F) * mh[2 * H:] + bh[2 * H:]).astype(_F)
                    rh = rsr(r * q12(ph), 15)
                    pn = (gx[t, b, 2 * H:] + rh.astype(_F)).astype(_F)
                else:
                    acc_rh = R[2 * H:] @ rsr(r * hc, 15)
                    pn = (gx[t, b, 2 * H:] + (acc_rh.astype(_F) * mh[2 * H:]).astype(_F))
                n = tanh_q(q12(pn))
                if p.scheme == "int16":
                    h15 = hc
                else:
                    h15 = np.rint((hc.astype(_F) * _F(np.float64(p.s_h) * 32768)).astype(_F))
                    h15 = h15.astype(np.int64)
                h[b] = h_out(p, (32768 - z) * n + z * h15)
            y[t, b] = h[b]
    return y, h, c


def static_rnn_ref(kind, scheme_params, X, Wq, Ws, Rq, Rs, B=None, sequence_lens=None,
                   initial_h=None, initial_c=None, *, direction="forward",
                   linear_before_reset=0):
    """Float in, float out, integer inside. scheme_params: any object with the attributes
    scheme, s_x, z_x, s_h, z_h, e_c (qengine.quantized.static_rnn.Params). X float32 [T, batch,
    I] is quantized with the layer's input qparams, initial states with the h / cell grids;
    returns float32 (Y [T, D, batch, H], Y_h [D, batch, H], Y_c [D, batch, H] or None), the
    dequantized codes (inactive steps of Y are 0)."""
    p = scheme_params
    T, nb, _ = X.shape
    D, GH, _ = Wq.shape
    G = 4 if kind == "lstm" else 3
    H = GH // G
    lo, hi = act_range(p.scheme)
    xq = quantize(X, p.s_x, p.z_x, lo, hi)
    lens = np.full(nb, T) if sequence_lens is None else np.asarray(sequence_lens)
    B = np.zeros((D, 2 * GH), _F) if B is None else np.asarray(B, _F)
    Y = np.zeros((T, D, nb, H), _F)
    Yh = np.zeros((D, nb, H), _F)
    Yc = np.zeros((D, nb, H), _F)
    for d in range(D):
        h0 = (np.full((nb, H), p.z_h, np.int64) if initial_h is None else
              quantize(initial_h[d], p.s_h, p.z_h, lo, hi))
        c0 = (np.zeros((nb, H), np.int64) if initial_c is None else
              quantize(initial_c[d], s_c(p), 0, -32768, 32767))
        y, h, c = direction_ref(kind, p, xq, Wq[d], Ws[d], Rq[d], Rs[d], B[d], lens, h0, c0,
                                reverse=direction == "reverse" or d == 1,
                                linear_before_reset=linear_before_reset)
        Y[:, d] = (p.s_h * (y - p.z_h).astype(_F)).astype(_F)
        Yh[d] = (p.s_h * (h - p.z_h).astype(_F)).astype(_F)
        Yc[d] = (s_c(p) * c.astype(_F)).astype(_F)
    return Y, Yh, (Yc if kind == "lstm" else None)
