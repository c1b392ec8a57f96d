"""FP32 LSTM/GRU ops vs the float64 reference (itself checked against onnx.reference and torch)
and vs onnxruntime for the attribute combinations exporters emit (sequence_lens, layout, clip,
peepholes, reverse)."""
import numpy as np
import pytest

from qengine import ModelError, Session, ShapeError
from qengine.graph import Graph, Node, ValueInfo
from qengine.reference.rnn import gru_ref, lstm_ref

rng = np.random.default_rng(1)


def _single(op, weights, n_out, runtime, **attrs):
    """Graph with one RNN node: weights are initializers, `runtime` {index: (name, array)}."""
    names, inits = [], {}
    for i in range(max(list(weights) + list(runtime)) + 1):
        if i in weights and weights[i] is not None:
            names.append(f"w{i}")
            inits[f"w{i}"] = weights[i]
        elif i in runtime:
            names.append(runtime[i][0])
        else:
            names.append("")
    outs = [f"y{i}" for i in range(n_out)]
    g = Graph([ValueInfo(n, a.dtype.name, a.shape) for n, a in runtime.values()],
              [ValueInfo(o) for o in outs], [Node(op, "rnn", names, outs, attrs)], inits)
    return g, {n: a for n, a in runtime.values()}


CASES = [dict(direction="forward"), dict(direction="reverse"), dict(direction="bidirectional"),
         dict(direction="bidirectional", layout=1), dict(direction="forward", clip=0.7),
         dict(direction="bidirectional", lens=True), dict(direction="reverse", lens=True,
                                                          layout=1)]


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("peephole", [False, True])
def test_lstm_op_vs_reference(case, peephole):
    case = dict(case)
    lens_on = case.pop("lens", False)
    D = 2 if case["direction"] == "bidirectional" else 1
    T, Bt, I, H = 5, 3, 4, 6
    layout = case.get("layout", 0)
    X = rng.standard_normal((T, Bt, I) if layout == 0 else (Bt, T, I)).astype(np.float32)
    W = (rng.standard_normal((D, 4 * H, I)) * 0.5).astype(np.float32)
    R = (rng.standard_normal((D, 4 * H, H)) * 0.5).astype(np.float32)
    B = (rng.standard_normal((D, 8 * H)) * 0.5).astype(np.float32)
    P = (rng.standard_normal((D, 3 * H)) * 0.5).astype(np.float32) if peephole else None
    sshape = (D, Bt, H) if layout == 0 else (Bt, D, H)
    h0, c0 = (rng.standard_normal(sshape).astype(np.float32) for _ in range(2))
    lens = np.array([5, 2, 4], np.int32) if lens_on else None
    runtime = {0: ("X", X), 5: ("h0", h0), 6: ("c0", c0)}
    if lens is not None:
        runtime[4] = ("lens", lens)
    g, feeds = _single("LSTM", {1: W, 2: R, 3: B, 7: P}, 3, runtime, hidden_size=H, **case)
    got = Session(g).run(feeds)
    want = lstm_ref(X, W, R, B, lens, h0, c0, P, **case)
    for k, w in zip(("y0", "y1", "y2"), want):
        np.testing.assert_allclose(got[k], w, rtol=1e-5, atol=1e-5)
    # and the float64 execution of the same graph is much closer
    got64 = Session(g, float_dtype=np.float64).run(feeds)
    assert got64["y0"].dtype == np.float64
    np.testing.assert_allclose(got64["y0"], want[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_gru_op_vs_reference(case, lbr):
    case = dict(case)
    lens_on = case.pop("lens", False)
    D = 2 if case["direction"] == "bidirectional" else 1
    T, Bt, I, H = 5, 3, 4, 6
    layout = case.get("layout", 0)
    X = rng.standard_normal((T, Bt, I) if layout == 0 else (Bt, T, I)).astype(np.float32)
    W = (rng.standard_normal((D, 3 * H, I)) * 0.5).astype(np.float32)
    R = (rng.standard_normal((D, 3 * H, H)) * 0.5).astype(np.float32)
    B = (rng.standard_normal((D, 6 * H)) * 0.5).astype(np.float32)
    h0 = rng.standard_normal((D, Bt, H) if layout == 0 else (Bt, D, H)).astype(np.float32)
    lens = np.array([5, 2, 4], np.int32) if lens_on else None
    runtime = {0: ("X", X), 5: ("h0", h0)}
    if lens is not None:
        runtime[4] = ("lens", lens)
    g, feeds = _single("GRU", {1: W, 2: R, 3: B}, 2, runtime, hidden_size=H,
                       linear_before_reset=lbr, **case)
    got = Session(g).run(feeds)
    want = gru_ref(X, W, R, B, lens, h0, linear_before_reset=lbr, **case)
    for k, w in zip(("y0", "y1"), want):
        np.testing.assert_allclose(got[k], w, rtol=1e-5, atol=1e-5)


def test_lstm_sequence_lens_vs_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    T, Bt, I, H = 6, 3, 4, 5
    W = (rng.standard_normal((2, 4 * H, I)) * 0.5).astype(np.float32)
    R = (rng.standard_normal((2, 4 * H, H)) * 0.5).astype(np.float32)
    B = (rng.standard_normal((2, 8 * H)) * 0.5).astype(np.float32)
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "lens"], ["Y", "Yh", "Yc"],
                            hidden_size=H, direction="bidirectional", name="lstm")
    g = helper.make_graph([node], "g", [
        helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, Bt, I]),
        helper.make_tensor_value_info("lens", TensorProto.INT32, [Bt])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Yh", "Yc")],
        [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    X = rng.standard_normal((T, Bt, I)).astype(np.float32)
    lens = np.array([6, 1, 4], np.int32)
    want = ort.InferenceSession(m.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"X": X, "lens": lens})
    from qengine.frontends.onnx import from_onnx
    got = Session(from_onnx(m)).run({"X": X, "lens": lens})
    for k, w in zip(("Y", "Yh", "Yc"), want):
        np.testing.assert_allclose(got[k], w, rtol=1e-5, atol=1e-5)


def test_rnn_attribute_and_weight_errors():
    W = np.zeros((1, 8, 3), np.float32)
    R = np.zeros((1, 8, 2), np.float32)
    for attrs, msg in (({"activations": ["Relu", "Tanh", "Tanh"]}, "default activations"),
                       ({"direction": "sideways"}, "direction"),
                       ({"input_forget": 1}, "input_forget"),
                       ({"hidden_size": 3}, "hidden_size")):
        g, _ = _single("LSTM", {1: W, 2: R}, 1, {0: ("X", np.zeros((2, 1, 3), np.float32))},
                       **attrs)
        with pytest.raises(ModelError, match=msg):
            Session(g)
    g, feeds = _single("LSTM", {1: W, 2: R}, 1, {0: ("X", np.zeros((2, 1, 3), np.float32))})
    s = Session(g)
    with pytest.raises(ShapeError, match="X"):
        s._executor.run({"X": np.zeros((2, 1, 4), np.float32)})
