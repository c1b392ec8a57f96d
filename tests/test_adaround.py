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


# ---- dynamic quantization: LSTM / GRU gates and Linear layers --------------------------------

def _sig(x):
    return 1 / (1 + np.exp(-x))


def _rnn64(kind, x, W, R, B, lbr, direction):
    """Float64 ONNX LSTM / GRU (zero initial state): per direction the h_(t-1) each step read."""
    D, H = W.shape[0], R.shape[-1]
    prev = []
    for d in range(D):
        h, c, seen = np.zeros((x.shape[1], H)), np.zeros((x.shape[1], H)), []
        back = d == 1 or direction == "reverse"
        for t in (range(len(x) - 1, -1, -1) if back else range(len(x))):
            seen.append(h)
            gx, gh = x[t] @ W[d].T + B[d, :len(W[d])], h @ R[d].T + B[d, len(W[d]):]
            if kind == "lstm":
                p = gx + gh
                i, o, f, g = (_sig(p[:, :H]), _sig(p[:, H:2 * H]), _sig(p[:, 2 * H:3 * H]),
                              np.tanh(p[:, 3 * H:]))
                c = f * c + i * g
                h = o * np.tanh(c)
            else:
                z, r = _sig(gx[:, :H] + gh[:, :H]), _sig(gx[:, H:2 * H] + gh[:, H:2 * H])
                n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:]) if lbr else np.tanh(
                    gx[:, 2 * H:] + (r * h) @ R[d, 2 * H:].T + B[d, len(W[d]) + 2 * H:])
                h = (1 - z) * n + z * h
        prev.append(np.concatenate(seen))
    return prev


def _rnn_graph(kind, direction="forward", lbr=1, i=6, hid=16, seed=0):
    rng = np.random.default_rng(seed)
    G, D = (4 if kind == "lstm" else 3), (2 if direction == "bidirectional" else 1)
    W = (rng.standard_normal((D, G * hid, i)) * 0.5).astype(np.float32)
    R = (rng.standard_normal((D, G * hid, hid)) * 0.4).astype(np.float32)
    B = (rng.standard_normal((D, 2 * G * hid)) * 0.1).astype(np.float32)
    attrs = {"hidden_size": hid, "direction": direction}
    if kind == "gru":
        attrs["linear_before_reset"] = lbr
    g = Graph([ValueInfo("x", "float32", ("T", "N", i))],
              [ValueInfo("y", "float32", ("T", D, "N", hid))],
              [Node(kind.upper(), "rnn", ("x", "W", "R", "B"), ("y",), attrs)],
              {"W": W, "R": R, "B": B})
    return g, rng


def _codes(q, name, k):
    from qengine.quantized.weights import unpack_int4
    return unpack_int4(q.initializers[name], k)


@pytest.mark.parametrize("kind,direction,lbr", [("lstm", "forward", 1),
                                                 ("lstm", "bidirectional", 1),
                                                 ("gru", "reverse", 1), ("gru", "forward", 0)])
def test_rnn_grams_match_a_float64_replay_and_adaround_beats_nearest(kind, direction, lbr):
    g, rng = _rnn_graph(kind, direction, lbr)
    x = rng.standard_normal((12, 40, 6)).astype(np.float32)
    grams = ar.dynamic_grams(g, [{"x": x}], {"rnn": (kind, g.nodes[0].attrs)}, {})
    W, R, B = (g.initializers[k].astype(np.float64) for k in "WRB")
    prev = _rnn64(kind, x.astype(np.float64), W, R, B, lbr, direction)
    for d in range(W.shape[0]):
        xs = x.reshape(-1, 6).astype(np.float64)
        np.testing.assert_allclose(grams.get(("rnn", "W", d))[0], xs.T @ xs, rtol=1e-9)
        np.testing.assert_allclose(grams.get(("rnn", "R", d))[0], prev[d].T @ prev[d],
                                   rtol=1e-6, atol=1e-9)
    base = qengine.DynamicQuantConfig(weight_bits=4, cost_model=False)
    near = qengine.quantize_dynamic(g, base)
    ada = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(
        weight_bits=4, cost_model=False, rounding="adaround"), [{"x": x}])
    for w_name, key, k, mats in (("rnn.Wq", "W", 6, W), ("rnn.Rq", "R", 16, R)):
        cn, ca = _codes(near, w_name, k), _codes(ada, w_name, k)
        if kind == "gru" and not lbr and key == "R":
            np.testing.assert_array_equal(ca, cn)      # r * h feeds its candidate rows
            continue
        assert not np.array_equal(ca, cn)
        for d in range(W.shape[0]):
            gram = grams.get(("rnn", key, d))[0]
            s = np.abs(mats[d]).max(1, keepdims=True) / 7
            err = [float(np.sum(((s * c[d] - mats[d]) @ gram) * (s * c[d] - mats[d])))
                   for c in (ca, cn)]
            assert err[0] < err[1], err
    # and the layer's outputs on held-out sequences
    xt = rng.standard_normal((12, 40, 6)).astype(np.float32)
    ref = qengine.Session(g).run({"x": xt})["y"]
    sq = [_sqnr(qengine.Session(q).run({"x": xt})["y"], ref) for q in (ada, near)]
    assert sq[0] > sq[1], sq


def test_dynamic_rounding_needs_its_data():
    g, _ = _rnn_graph("lstm")
    with pytest.raises(qengine.ConfigError, match="pass calibration_data"):
        qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(rounding="adaround"))
    with pytest.raises(qengine.ConfigError, match="only by rounding='adaround'"):
        qengine.quantize_dynamic(g, None, [{"x": np.zeros((2, 1, 6), np.float32)}])
    with pytest.raises(qengine.ConfigError, match="rounding"):
        qengine.DynamicQuantConfig(rounding="up")


def test_dynamic_adaround_from_the_command_line(capsys, tmp_path):
    from test_cli import cli
    g, rng = _rnn_graph("lstm")
    x = rng.standard_normal((12, 40, 6)).astype(np.float32)
    qengine.save(g, tmp_path / "f.qe")
    np.savez(tmp_path / "c.npz", x=x)
    args = ["quantize", tmp_path / "f.qe", "-o", tmp_path / "q.qe", "--weight-bits", "4",
            "--rounding", "adaround"]
    rc, _, err = cli(capsys, *args)
    assert rc == 2 and "give --calib" in err
    rc, _, err = cli(capsys, *args, "--calib", tmp_path / "c.npz")
    assert rc == 0, err
    want = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(
        weight_bits=4, rounding="adaround"), {"x": x})
    got = qengine.engine_file.load_graph(tmp_path / "q.qe")
    np.testing.assert_array_equal(got.initializers["rnn.Wq"], want.initializers["rnn.Wq"])
    np.testing.assert_array_equal(got.initializers["rnn.Rq"], want.initializers["rnn.Rq"])
