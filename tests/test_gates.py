"""Vectorized gate math (sigmoid/tanh/LSTM cell): every ISA bit-identical to the scalar C twin,
and the scalar twin within stated tolerance of float64 NumPy."""
import numpy as np
import pytest

from qengine import _runtime
from qengine._ext import _rnn

ISAS = list(_runtime.ISA_NAMES[:3])


def _isa_or_skip(name):
    if name not in _runtime.available_isas():
        pytest.skip(f"{name} not available on this CPU/build")
    return _runtime.isa_index(name)


def _inputs():
    rng = np.random.default_rng(0)
    specials = np.array([0.0, -0.0, 1e-8, -1e-8, 0.5, -0.5, 87.0, -87.0, 88.5, -88.5, 1e30, -1e30,
                         np.inf, -np.inf], np.float32)
    return np.concatenate([np.linspace(-60, 60, 100_003, dtype=np.float32),
                           rng.standard_normal(10_007).astype(np.float32) * 4, specials])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fn", ["sigmoid", "tanh"])
def test_simd_bit_exact_with_scalar(isa, fn):
    i = _isa_or_skip(isa)
    x = _inputs()
    for n in (1, 7, 8, 15, 16, 17, 33, len(x)):      # tails of every width
        ref = getattr(_rnn, fn)(x[:n], 0)
        got = getattr(_rnn, fn)(x[:n], i)
        np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_scalar_close_to_float64():
    x = _inputs()
    xd = x.astype(np.float64)
    sig = 1.0 / (1.0 + np.exp(-np.clip(xd, -700, 700)))
    np.testing.assert_allclose(_rnn.sigmoid(x, 0), sig, rtol=3e-7, atol=1e-37)
    np.testing.assert_allclose(_rnn.tanh(x, 0), np.tanh(xd), rtol=0, atol=3e-7)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [1, 5, 16, 37, 128])
def test_lstm_cell(isa, n):
    i = _isa_or_skip(isa)
    rng = np.random.default_rng(n)
    g = (rng.standard_normal((4, n)) * 3).astype(np.float32)
    c = rng.standard_normal(n).astype(np.float32)
    h, c1 = _rnn.lstm_cell(g, c, i)
    gd, cd = g.astype(np.float64), c.astype(np.float64)
    sg = 1 / (1 + np.exp(-gd))
    c_ref = sg[2] * cd + sg[0] * np.tanh(gd[3])          # ONNX order i, o, f, c
    h_ref = sg[1] * np.tanh(c_ref)
    np.testing.assert_allclose(c1, c_ref, atol=1e-6)
    np.testing.assert_allclose(h, h_ref, atol=1e-6)
    h0, c0 = _rnn.lstm_cell(g, c, 0)
    np.testing.assert_array_equal(h.view(np.uint32), h0.view(np.uint32))
    np.testing.assert_array_equal(c1.view(np.uint32), c0.view(np.uint32))


def test_numpy_mirror_bit_exact_with_scalar_c():
    from qengine.reference.gates import sigmoid_ref, tanh_ref
    x = _inputs()
    np.testing.assert_array_equal(sigmoid_ref(x).view(np.uint32), _rnn.sigmoid(x, 0).view(np.uint32))
    np.testing.assert_array_equal(tanh_ref(x).view(np.uint32), _rnn.tanh(x, 0).view(np.uint32))
