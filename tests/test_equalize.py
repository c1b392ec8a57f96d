"""Cross-layer equalization (issue 14, item 3): function preservation, the equalized ranges
against NumPy float64, convergence on a chain, honest skips, and what it does for per-tensor
int8 on a model whose channels have very unequal ranges."""
import numpy as np
import pytest

import qengine
from qengine.graph import Graph, Node, ValueInfo


def _chain(act="Relu", scales=True, seed=0):
    """x -> Conv(3->8) -> act -> MaxPool -> Conv(8->8) -> Relu -> Conv dw(8) -> Relu ->
    Conv(8->4): channel c of the first conv multiplied by 2^(±6) and the second conv's input c
    divided by it (function-preserving), so the first activation's channels span 4096x."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    b1 = rng.standard_normal(8).astype(np.float32) * 0.1
    w2 = rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.3
    b2 = rng.standard_normal(8).astype(np.float32) * 0.1
    w3 = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    w4 = rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    if scales:
        f = np.exp2(np.linspace(-6, 6, 8)).astype(np.float32)[rng.permutation(8)]
        w1, b1, w2 = w1 * f[:, None, None, None], b1 * f, w2 / f[None, :, None, None]
    pad = {"pads": [1, 1, 1, 1]}
    acts = [Node(act, "a1", ("y1",), ("r1",))] if act != "Clip" else \
        [Node("Clip", "a1", ("y1", "lo", "hi"), ("r1",))]
    nodes = [Node("Conv", "c1", ("x", "w1", "b1"), ("y1",), pad), *acts,
             Node("MaxPool", "p1", ("r1",), ("m1",), {"kernel_shape": [2, 2], "strides": [2, 2]}),
             Node("Conv", "c2", ("m1", "w2", "b2"), ("y2",), pad),
             Node("Relu", "a2", ("y2",), ("r2",)),
             Node("Conv", "c3", ("r2", "w3"), ("y3",), {**pad, "group": 8}),
             Node("Relu", "a3", ("y3",), ("r3",)),
             Node("Conv", "c4", ("r3", "w4"), ("y",))]
    inits = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": w3, "w4": w4,
             "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}
    if act != "Clip":
        del inits["lo"], inits["hi"]
    g = Graph([ValueInfo("x", "float32", ("N", 3, 8, 8))],
              [ValueInfo("y", "float32", ("N", 4, 4, 4))], nodes, inits)
    x = rng.standard_normal((64, 3, 8, 8)).astype(np.float32)
    return g, x


def _chmax(w, axis):
    return np.abs(np.moveaxis(w.astype(np.float64), axis, 0)).reshape(w.shape[axis], -1).max(1)


def test_equalization_preserves_the_function_and_balances_every_pair():
    g, x = _chain()
    before = {k: v.copy() for k, v in g.initializers.items()}
    ge, rep = qengine.equalize(g)
    assert rep.pairs == [("c1", "c2"), ("c2", "c3"), ("c3", "c4")] and not rep.skipped
    assert all(np.array_equal(g.initializers[k], v) for k, v in before.items())  # untouched
    y0 = qengine.Session(g).run({"x": x})["y"].astype(np.float64)
    y1 = qengine.Session(ge).run({"x": x})["y"].astype(np.float64)
    assert np.max(np.abs(y1 - y0)) <= 1e-5 * np.max(np.abs(y0))
    w = ge.initializers
    # converged: each channel's range is the same on both sides of every pair
    for a, ao, b, bi in (("w1", 0, "w2", 1), ("w2", 0, "w3", 0), ("w3", 0, "w4", 1)):
        np.testing.assert_allclose(_chmax(w[a], ao), _chmax(w[b], bi), rtol=1e-4)
    # and the first activation's channels no longer span 4096x
    r1 = _chmax(before["w1"], 0)
    assert r1.max() / r1.min() > 1000 and _chmax(w["w1"], 0).max() / _chmax(w["w1"], 0).min() < 50


def _sqnr(y, ref):
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((np.asarray(y, np.float64) - ref) ** 2))


@pytest.mark.parametrize("per_channel", [True, False])
def test_equalization_recovers_int8_on_unequal_channels(per_channel):
    g, x = _chain()
    ref = qengine.Session(g).run({"x": x})["y"]
    sq = {}
    for eq in (False, True):
        cfg = qengine.StaticQuantConfig(per_channel=per_channel, equalize=eq)
        q = qengine.quantize_static(g, {"x": x}, cfg)
        sq[eq] = _sqnr(qengine.Session(q).run({"x": x})["y"], ref)
    assert sq[False] < 20 and sq[True] > sq[False] + 10, sq
    # on the same model without the rescaled channels, equalization does not hurt much
    g2, x2 = _chain(scales=False)
    ref2 = qengine.Session(g2).run({"x": x2})["y"]
    plain = [_sqnr(qengine.Session(qengine.quantize_static(g2, {"x": x2}, qengine.
             StaticQuantConfig(per_channel=per_channel, equalize=eq))).run({"x": x2})["y"],
             ref2) for eq in (False, True)]
    assert plain[1] > plain[0] - 1.5, plain


def test_relu6_pairs_are_skipped_and_said():
    g, x = _chain(act="Clip")
    ge, rep = qengine.equalize(g)
    assert ("c1", "c2") not in rep.pairs
    assert any(a == "c1" and "Clip" in why for a, _, why in rep.skipped)
    np.testing.assert_array_equal(ge.initializers["w1"], g.initializers["w1"])
    y0 = qengine.Session(g).run({"x": x})["y"]
    np.testing.assert_allclose(qengine.Session(ge).run({"x": x})["y"], y0,
                               rtol=1e-5, atol=1e-5 * np.abs(y0).max())


def test_gemm_pairs_either_layout():
    rng = np.random.default_rng(1)
    w1 = (rng.standard_normal((6, 16)) * np.exp2(np.linspace(-5, 5, 16))).astype(np.float32)
    w2 = rng.standard_normal((16, 5)).astype(np.float32) / np.exp2(np.linspace(-5, 5, 16))[:, None]
    b1 = rng.standard_normal(16).astype(np.float32)
    nodes = [Node("Gemm", "g1", ("x", "w1", "b1"), ("h",)), Node("Relu", "r", ("h",), ("a",)),
             Node("Gemm", "g2", ("a", "w2t"), ("y",), {"transB": 1})]
    g = Graph([ValueInfo("x", "float32", ("N", 6))], [ValueInfo("y", "float32", ("N", 5))],
              nodes, {"w1": w1, "b1": b1, "w2t": np.ascontiguousarray(w2.T.astype(np.float32))})
    ge, rep = qengine.equalize(g)
    assert rep.pairs == [("g1", "g2")]
    x = rng.standard_normal((32, 6)).astype(np.float32)
    y0 = qengine.Session(g).run({"x": x})["y"]
    np.testing.assert_allclose(qengine.Session(ge).run({"x": x})["y"], y0, rtol=1e-5,
                               atol=1e-5 * np.abs(y0).max())
    np.testing.assert_allclose(_chmax(ge.initializers["w1"], 1), _chmax(ge.initializers["w2t"], 1),
                               rtol=1e-5)


def test_shared_weights_are_left_alone():
    g, _ = _chain()
    nodes = list(g.nodes)
    nodes[-1] = Node("Conv", "c4", ("r3", "w1"), ("y",), {"pads": [1, 1, 1, 1]})  # reuses w1
    g2 = Graph(g.inputs, [ValueInfo("y", "float32", None)], nodes, dict(g.initializers))
    ge, rep = qengine.equalize(g2)
    assert ("c1", "c2") not in rep.pairs
    assert any(a == "c1" and "shared" in why for a, _, why in rep.skipped)
    np.testing.assert_array_equal(ge.initializers["w1"], g.initializers["w1"])


# ---- high-bias absorption (DFQ 4.2) ------------------------------------------------------------

def _high_bias_chain(seed=0):
    """x -> Conv(3->8, padded) -> Relu -> MaxPool -> Conv 1x1(8->6) -> Relu -> Conv dw 3x3
    (6, unpadded) -> y, with biases of 2..5 on half the channels: their activations never
    come near zero, the case absorption is for."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.1).astype(np.float32)
    b1 = np.where(np.arange(8) % 2, rng.uniform(2, 5, 8), 0.1 * rng.standard_normal(8))
    w2 = (rng.standard_normal((6, 8, 1, 1)) * 0.2).astype(np.float32)
    b2 = np.where(np.arange(6) < 3, rng.uniform(2, 5, 6), 0.1 * rng.standard_normal(6))
    w3 = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    b3 = (0.1 * rng.standard_normal(6)).astype(np.float32)
    nodes = [Node("Conv", "c1", ("x", "w1", "b1"), ("y1",), {"pads": [1, 1, 1, 1]}),
             Node("Relu", "a1", ("y1",), ("r1",)),
             Node("MaxPool", "p1", ("r1",), ("m1",), {"kernel_shape": [2, 2], "strides": [2, 2]}),
             Node("Conv", "c2", ("m1", "w2", "b2"), ("y2",)),
             Node("Relu", "a2", ("y2",), ("r2",)),
             Node("Conv", "c3", ("r2", "w3", "b3"), ("y",), {"group": 6})]
    inits = {"w1": w1, "b1": b1.astype(np.float32), "w2": w2, "b2": b2.astype(np.float32),
             "w3": w3, "b3": b3}
    g = Graph([ValueInfo("x", "float32", ("N", 3, 8, 8))],
              [ValueInfo("y", "float32", ("N", 6, 2, 2))], nodes, inits)
    return g, rng.standard_normal((64, 3, 8, 8)).astype(np.float32)


def _conv64(x, w, b, pad=0, group=1):
    """Direct float64 convolution, stride 1: the slow reference."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    o, ig, kh, kw = w.shape
    n, _, h, wd = x.shape
    oh, ow = h - kh + 1, wd - kw + 1
    out = np.zeros((n, o, oh, ow))
    per = o // group
    for oc in range(o):
        g0 = (oc // per) * ig
        for i in range(ig):
            for dy in range(kh):
                for dx in range(kw):
                    out[:, oc] += w[oc, i, dy, dx] * x[:, g0 + i, dy:dy + oh, dx:dx + ow]
    return out + np.asarray(b, np.float64)[None, :, None, None]


def test_high_bias_absorption_matches_a_float64_reference_and_preserves_the_function():
    from qengine.workflows.ptq import absorb_biases
    g, x = _high_bias_chain()
    ga, done = absorb_biases(g, {"x": x})
    assert [d[:2] for d in done] == [("c1", "c2"), ("c2", "c3")]
    w, b = {k: g.initializers[k].astype(np.float64) for k in g.initializers}, {}
    z1 = _conv64(x, w["w1"], w["b1"], pad=1)
    c1 = np.maximum(z1.min((0, 2, 3)), 0)
    m1 = np.maximum(z1, 0).reshape(64, 8, 4, 2, 4, 2).max((3, 5))
    z2 = _conv64(m1, w["w2"], w["b2"])
    c2 = np.maximum(z2.min((0, 2, 3)), 0)
    assert np.count_nonzero(c1) >= 4 and np.count_nonzero(c2) >= 3    # something to absorb
    b["b1"] = w["b1"] - c1
    b["b2"] = w["b2"] + w["w2"][:, :, 0, 0] @ c1 - c2
    b["b3"] = w["b3"] + w["w3"].sum((1, 2, 3)) * c2
    for k in ("b1", "b2", "b3"):
        np.testing.assert_allclose(ga.initializers[k], b[k], rtol=1e-5, atol=1e-5)
    for k in ("w1", "w2", "w3"):
        assert np.array_equal(ga.initializers[k], g.initializers[k])
    y0 = qengine.Session(g).run({"x": x})["y"].astype(np.float64)
    y1 = qengine.Session(ga).run({"x": x})["y"].astype(np.float64)
    assert np.max(np.abs(y1 - y0)) <= 1e-5 * np.max(np.abs(y0))
    # the activations int8 must cover shrink by what was absorbed
    from qengine.calibration.tap import TapSession
    seen = {}
    for graph, key in ((g, 0), (ga, 1)):
        TapSession(graph, ["r1"]).run_tapped({"x": x}, lambda v, a: seen.__setitem__(key, a))
    np.testing.assert_allclose(seen[0].max((0, 2, 3)) - seen[1].max((0, 2, 3)), c1, atol=1e-4)


def test_high_bias_absorption_skips_padded_convs_clip_and_other_readers():
    from qengine.graph.equalize import absorbable_pairs
    g, _ = _chain()                   # every second conv is padded or has no bias
    assert absorbable_pairs(g) == []
    g, x = _high_bias_chain()
    clip = Graph(g.inputs, g.outputs, [
        Node("Clip", "a1", ("y1", "lo", "hi"), ("r1",)) if n.name == "a1" else n
        for n in g.nodes], {**g.initializers, "lo": np.array(0.0, np.float32),
                            "hi": np.array(6.0, np.float32)})
    assert [p[0].name for p in absorbable_pairs(clip)] == ["c2"]
    padded = Graph(g.inputs, [ValueInfo("y", "float32", ("N", 6, 4, 4))], [
        Node("Conv", "c3", n.inputs, n.outputs, {"group": 6, "pads": [1, 1, 1, 1]})
        if n.name == "c3" else n for n in g.nodes], g.initializers)
    assert [p[0].name for p in absorbable_pairs(padded)] == ["c1"]


def test_high_bias_absorption_helps_per_tensor_int8():
    """Per-tensor activations: the high-bias channels set the range of r1 and r2; absorbed,
    the grid is spent on what varies."""
    from qengine.workflows.ptq import absorb_biases
    g, x = _high_bias_chain(1)
    ga, _ = absorb_biases(g, {"x": x})
    cfg = qengine.StaticQuantConfig(per_channel=False)
    ref = qengine.Session(g).run({"x": x})["y"].astype(np.float64)
    db = []
    for graph in (g, ga):
        y = qengine.Session(qengine.quantize_static(graph, {"x": x}, cfg)).run({"x": x})["y"]
        db.append(10 * np.log10(np.sum(ref ** 2) / np.sum((y - ref) ** 2)))
    assert db[1] > db[0] + 1.0, db
