"""AdaRound (issue 14, item 4): the analytic gradient against finite differences, the im2col
Gram matrix against the float conv, reconstruction never worse than nearest rounding, and
W8/W4 static quantization of the digits CNN with and without it."""
import numpy as np
import pytest

import qengine
from qengine.graph import Graph, Node, ValueInfo
from qengine.workflows import adaround as ar

# `digits` (the demo CNN and its data) is tests/conftest.py's fixture


def _case(cout=5, k=12, p=300, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((cout, k))
    s = np.abs(w).max(1, keepdims=True) / 7
    x = rng.standard_normal((k, p)) + 0.5
    return w, s, x @ x.T, p


@pytest.mark.parametrize("beta", [None, 3.0])
def test_gradient_matches_finite_differences(beta):
    w, s, H, P = _case()
    base = np.floor(w / s)
    v = np.random.default_rng(1).standard_normal(w.shape) * 0.7
    _, g = ar.loss_and_grad(v, w, s, base, H, P, -7, 7, beta)
    eps = 1e-6
    num = np.zeros_like(v)
    for idx in np.ndindex(v.shape):
        vp, vm = v.copy(), v.copy()
        vp[idx] += eps
        vm[idx] -= eps
        num[idx] = (ar.loss_and_grad(vp, w, s, base, H, P, -7, 7, beta)[0] -
                    ar.loss_and_grad(vm, w, s, base, H, P, -7, 7, beta)[0]) / (2 * eps)
    live = (ar.h_of(v) > 0.01) & (ar.h_of(v) < 0.99)     # away from the clip kinks
    np.testing.assert_allclose(g[live], num[live], rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("bits", [8, 4])
def test_reconstruction_is_no_worse_than_nearest(bits):
    w, s, H, P = _case(cout=6, k=20)
    qmax = 2 ** (bits - 1) - 1
    s = np.abs(w).max(1, keepdims=True) / qmax
    q = ar.adaround_layer(w, s, H, P, bits=bits, iters=1000)
    near = np.clip(np.rint(w / s), -qmax, qmax)
    assert np.all(np.abs(q) <= qmax)
    assert np.all((q == np.floor(w / s)) | (q == np.floor(w / s) + 1) | (np.abs(q) == qmax))

    def err(c):
        d = s * c - w
        return float(np.sum((d @ H) * d))
    assert err(q) <= err(near) * (1 + 1e-9)       # by construction: nearest is the fallback
    if bits == 8:                                 # and clearly better on this correlated input
        assert err(q) < 0.95 * err(near)


@pytest.mark.parametrize("attrs", [{"pads": [1, 1, 1, 1]},
                                   {"strides": [2, 1], "dilations": [1, 2], "pads": [0, 2, 1, 0]},
                                   {"auto_pad": "SAME_UPPER", "strides": [2, 2]}])
def test_patches_reproduce_the_float_conv(attrs):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    n = Node("Conv", "c", ("x", "w"), ("y",), attrs)
    g = Graph([ValueInfo("x", "float32", (2, 3, 9, 8))], [ValueInfo("y", "float32", None)],
              [n], {"w": w})
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    y = qengine.Session(g).run({"x": x})["y"]
    cols = ar._patches(n, x.astype(np.float64), (3, 3))
    got = (w.reshape(4, -1).astype(np.float64) @ cols).reshape(4, 2, *y.shape[2:])
    np.testing.assert_allclose(got.transpose(1, 0, 2, 3), y, rtol=1e-4, atol=1e-4)


def _sqnr(y, ref):
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((np.asarray(y, np.float64) - ref) ** 2))


def test_adaround_improves_w4_static_on_the_digits_cnn(digits):
    g, xc, x, _ = digits
    ref = qengine.Session(g).run({"image": x})["logits"]
    sq = {}
    for r in ("nearest", "adaround"):
        cfg = qengine.StaticQuantConfig(weight_bits=4, rounding=r)
        sq[r] = _sqnr(qengine.Session(qengine.quantize_static(g, {"image": xc}, cfg))
                      .run({"image": x})["logits"], ref)
    assert sq["adaround"] > sq["nearest"] + 1.0, sq


def test_rounding_option_is_checked():
    with pytest.raises(qengine.ConfigError, match="rounding"):
        qengine.StaticQuantConfig(rounding="up")
