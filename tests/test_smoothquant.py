"""SmoothQuant (issue 14, item 6): function preservation, the scales against the formula in
NumPy float64, shared readers, honest skips, and per-tensor int8 on activation outliers."""
import numpy as np
import pytest

import qengine
from qengine.graph import Graph, Node, ValueInfo
from qengine.workflows.smoothquant import smooth


def _ln_model(readers=1, seed=0):
    """x [N, 6, 16] -> LayerNormalization (3 channels' scale x40: activation outliers) ->
    `readers` MatMuls [16, 8] -> their sum. The outlier channels' weight rows are 40x smaller,
    so every channel matters to the output and a per-tensor grid fit to the outliers leaves
    the others a few levels."""
    rng = np.random.default_rng(seed)
    gamma = np.ones(16, np.float32)
    gamma[[2, 7, 11]] = 40.0
    inits = {"gamma": gamma, "beta": (rng.standard_normal(16) * 0.1).astype(np.float32)}
    nodes = [Node("LayerNormalization", "ln", ("x", "gamma", "beta"), ("h",), {"axis": -1})]
    outs = []
    for i in range(readers):
        w = rng.standard_normal((16, 8)) * 0.3
        w[[2, 7, 11]] /= 40.0
        inits[f"w{i}"] = w.astype(np.float32)
        nodes.append(Node("MatMul", f"mm{i}", ("h", f"w{i}"), (f"y{i}",)))
        outs.append(f"y{i}")
    if readers > 1:
        nodes.append(Node("Add", "sum", (outs[0], outs[1]), ("y",)))
    else:
        nodes[-1] = nodes[-1].replace(outputs=("y",))
    g = Graph([ValueInfo("x", "float32", ("N", 6, 16))], [ValueInfo("y", "float32", None)],
              nodes, inits)
    x = rng.standard_normal((64, 6, 16)).astype(np.float32)
    return g, x


def _sqnr(y, ref):
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((np.asarray(y, np.float64) - ref) ** 2))


@pytest.mark.parametrize("readers", [1, 2])
def test_smoothing_preserves_the_function_with_the_paper_scales(readers):
    g, x = _ln_model(readers)
    gs, rep = smooth(g, {"x": x}, alpha=0.5)
    assert [v for v, *_ in rep.smoothed] == ["h"] and not rep.skipped
    y0 = qengine.Session(g).run({"x": x})["y"]
    np.testing.assert_allclose(qengine.Session(gs).run({"x": x})["y"], y0, rtol=1e-5,
                               atol=1e-5 * np.abs(y0).max())
    h = qengine.Session(Graph(g.inputs, [ValueInfo("h", "float32", None)], g.nodes[:1],
                              g.initializers)).run({"x": x})["h"].astype(np.float64)
    xmax = np.abs(h).reshape(-1, 16).max(0)
    wmax = np.max([np.abs(g.initializers[f"w{i}"].astype(np.float64)).max(1)
                   for i in range(readers)], axis=0)
    s = np.sqrt(xmax) / np.sqrt(wmax)
    np.testing.assert_allclose(gs.initializers["gamma"], g.initializers["gamma"] / s, rtol=1e-5)
    for i in range(readers):
        np.testing.assert_allclose(gs.initializers[f"w{i}"],
                                   g.initializers[f"w{i}"] * s[:, None], rtol=1e-5)


def test_smoothing_rescues_per_tensor_activations():
    g, x = _ln_model(2)
    ref = qengine.Session(g).run({"x": x})["y"]
    sq = {}
    for a in (None, 0.5):
        q = qengine.quantize_static(g, {"x": x}, qengine.StaticQuantConfig(smooth_quant=a))
        sq[a] = _sqnr(qengine.Session(q).run({"x": x})["y"], ref)
    assert sq[0.5] > sq[None] + 6, sq


def test_unfoldable_values_are_skipped_and_said():
    g, x = _ln_model(1)
    nodes = [Node("Relu", "r", ("x",), ("h",)), g.nodes[1]]    # Relu: nothing to fold into
    g2 = Graph(g.inputs, g.outputs, nodes, {"w0": g.initializers["w0"]})
    g3, rep = smooth(g2, {"x": x})
    assert not rep.smoothed and rep.skipped and "Relu" in rep.skipped[0][1]
    assert g3 is g2
    with pytest.raises(qengine.ConfigError, match="alpha"):
        smooth(g2, {"x": x}, alpha=1.5)
    with pytest.raises(qengine.ConfigError, match="smooth_quant"):
        qengine.StaticQuantConfig(smooth_quant=2.0)
