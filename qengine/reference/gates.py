"""NumPy mirror of the compiled gate math (include/qengine/rnn/qe_f32_gates__scalar.h).

Same float32 operations in the same order, so it equals the C kernels bit for bit; it is the
living definition the dynamic-int8 recurrent reference builds on. (The float64 LSTM/GRU in
reference/rnn.py is the mathematical oracle; this is the numerics definition.)
"""
import numpy as np

_F = np.float32
EXP_LO, EXP_HI = _F(-87.0), _F(88.0)
LOG2E, LN2_HI, LN2_LO = _F(1.44269504088896341), _F(0.693359375), _F(-2.12194440e-4)
P = [_F(v) for v in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                     1.6666665459e-1, 5.0000001201e-1)]
TANH_CLAMP = _F(9.0)


def _max(a, b):
    return np.where(a > b, a, b)      # maxps semantics: NaN -> second operand


def _min(a, b):
    return np.where(a < b, a, b)


def exp_ref(x):
    x = _min(_max(np.asarray(x, _F), EXP_LO), EXP_HI)
    n = np.rint(x * LOG2E)
    r = x - n * LN2_HI
    r = r - n * LN2_LO
    r2 = r * r
    p = np.full_like(r, P[0])
    for c in P[1:]:
        p = p * r + c
    p = p * r2 + r
    p = p + _F(1.0)
    scale = ((n.astype(np.int32) + 127) << 23).view(_F)
    return p * scale


def sigmoid_ref(x):
    x = np.asarray(x, _F)
    return _F(1.0) / (_F(1.0) + exp_ref(_F(0.0) - x))


def tanh_ref(x):
    x = _min(_max(np.asarray(x, _F), -TANH_CLAMP), TANH_CLAMP)
    return _F(1.0) - _F(2.0) / (exp_ref(x + x) + _F(1.0))


def lstm_cell_ref(gi, go, gf, gc, c_prev):
    """ONNX gate order i, o, f, c (pre-activations with bias). Returns (h, c)."""
    i, o, f = sigmoid_ref(gi), sigmoid_ref(go), sigmoid_ref(gf)
    c = f * c_prev + i * tanh_ref(gc)
    return o * tanh_ref(c), c


def gru_h_ref(z, r, xh, rh, h_prev):
    """h = (1 − z)·tanh(xh + r·rh) + z·h_prev; r None means xh already holds the whole input."""
    a = xh if r is None else xh + r * rh
    return (_F(1.0) - z) * tanh_ref(a) + z * h_prev
