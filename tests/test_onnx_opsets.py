"""Hand-built ONNX graphs exercising opset-dependent forms (attributes that later became
inputs, pre-13 Softmax semantics, opset-18 Split) against onnxruntime, plus import errors."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qengine import ModelError, Session  # noqa: E402
from qengine.frontends.onnx import from_onnx  # noqa: E402

F = TensorProto.FLOAT
rng = np.random.default_rng(3)


def _model(nodes, inputs, outputs, opset, inits=()):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, F, None) for n in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    return m


def _check(m, feeds):
    want = ort.InferenceSession(m.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)
    for optimize in (True, False):
        got = Session(from_onnx(m, optimize=optimize)).run(feeds)
        for w, g in zip(want, got.values()):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_opset9_attribute_forms():
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Slice", ["x"], ["s"], starts=[0, 1], ends=[100, -1], axes=[0, 2]),
        helper.make_node("Unsqueeze", ["s"], ["u"], axes=[0]),
        helper.make_node("Squeeze", ["u"], ["q"], axes=[0]),
        helper.make_node("Softmax", ["q"], ["sm"], axis=1),          # flatten-to-2-D semantics
        helper.make_node("LogSoftmax", ["q"], ["lsm"]),               # default axis 1
        helper.make_node("Clip", ["x"], ["c"], min=-0.5, max=0.25),
        helper.make_node("Flatten", ["x"], ["f"], axis=2),
        helper.make_node("Gemm", ["f", "w", "b"], ["gm"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Dropout", ["gm"], ["d"]),
        helper.make_node("Cast", ["d"], ["ci"], to=TensorProto.INT32),
        helper.make_node("Cast", ["ci"], ["cf"], to=TensorProto.FLOAT),
    ]
    inits = [("w", rng.standard_normal((5, 4)).astype(np.float32)),
             ("b", rng.standard_normal(5).astype(np.float32))]
    m = _model(nodes, [("x", F, [2, 3, 4])], ["sm", "lsm", "c", "cf"], 9, inits)
    _check(m, {"x": x})


def test_opset18_inputs_forms():
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    nodes = [
        helper.make_node("Split", ["x", "sp"], ["a", "b"], axis=1),
        helper.make_node("Split", ["x"], ["c", "d", "e"], axis=1, num_outputs=3),
        helper.make_node("Unsqueeze", ["a", "ax"], ["ua"]),
        helper.make_node("Shape", ["x"], ["shp"], start=1, end=-1),
        helper.make_node("ConstantOfShape", ["shp"], ["z"],
                         value=numpy_helper.from_array(np.array([1.5], np.float32))),
        helper.make_node("Expand", ["z", "ex"], ["zz"]),
        helper.make_node("Reshape", ["b", "rs"], ["rb"], allowzero=0),
        helper.make_node("Equal", ["c", "d"], ["eq"]),
        helper.make_node("Where", ["eq", "c", "e"], ["wh"]),
        helper.make_node("Transpose", ["wh"], ["t"], perm=[2, 0, 1]),
        helper.make_node("Concat", ["c", "d", "e"], ["cat"], axis=-1),
        helper.make_node("Slice", ["cat", "st", "en", "axs", "stp"], ["sl"]),
        helper.make_node("Gather", ["x", "idx"], ["ga"], axis=1),
        helper.make_node("MatMul", ["x", "mw"], ["mm"]),
        helper.make_node("Div", ["mm", "two"], ["dv"]),
        helper.make_node("Sub", ["dv", "two"], ["sb"]),
        helper.make_node("Sigmoid", ["sb"], ["sg"]),
    ]
    inits = [("sp", i64(2, 4)), ("ax", i64(-1)), ("ex", i64(3, 1, 1)), ("rs", i64(0, -1)),
             ("st", i64(-1, 0)), ("en", i64(-100, 2)), ("axs", i64(2, 0)), ("stp", i64(-2, 1)),
             ("idx", np.array([[0, 5], [-1, 2]], np.int64)),
             ("mw", rng.standard_normal((3, 4)).astype(np.float32)),
             ("two", np.array(2.0, np.float32))]
    m = _model(nodes, [("x", F, [2, 6, 3])], ["ua", "zz", "rb", "t", "sl", "ga", "sg"], 18,
               inits)
    _check(m, {"x": x})


def test_constant_nodes_and_graph_input_initializers():
    w = rng.standard_normal((3, 3)).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(w)),
             helper.make_node("Constant", [], ["one"], value_float=1.0),
             helper.make_node("MatMul", ["x", "k"], ["m"]),
             helper.make_node("Add", ["m", "bias"], ["a"]),
             helper.make_node("Add", ["a", "one"], ["y"])]
    # 'bias' is listed as a graph input AND an initializer (old IR style): it is a constant
    m = _model(nodes, [("x", F, ["n", 3]), ("bias", F, [3])], ["y"], 11,
               [("bias", np.ones(3, np.float32))])
    g = from_onnx(m)
    assert g.input_names == ["x"]
    x = rng.standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(Session(g).run({"x": x})["y"], x @ w + 2.0, rtol=1e-6)


def test_unsupported_op_names_op_and_node():
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="my_conv")]
    m = _model(nodes, [("x", F, [1, 1, 3, 3])], ["y"], 13,
               [("w", np.ones((1, 1, 1, 1), np.float32))])
    with pytest.raises(ModelError, match=r"ConvTranspose.*my_conv"):
        from_onnx(m)


def test_bad_opset_and_bad_attrs():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    with pytest.raises(ModelError, match="opset 6"):
        from_onnx(_model(nodes, [("x", F, [2])], ["y"], 6))
    nodes = [helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=2,
                              activations=["Relu", "Tanh", "Tanh"], name="l")]
    m = _model(nodes, [("x", F, [1, 1, 2])], ["y"], 14,
               [("w", np.ones((1, 8, 2), np.float32)), ("r", np.ones((1, 8, 2), np.float32))])
    with pytest.raises(ModelError, match="default activations"):
        from_onnx(m)


def test_external_data_is_read_from_a_path(tmp_path):
    w = rng.standard_normal((64, 64)).astype(np.float32)
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", F, [1, 64])], ["y"], 13,
               [("w", w)])
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path), save_as_external_data=True, size_threshold=0, location="m.data")
    x = rng.standard_normal((1, 64)).astype(np.float32)
    np.testing.assert_allclose(Session(from_onnx(path)).run([x])["y"], x @ w, rtol=1e-5)
    stripped = onnx.load(str(path), load_external_data=False)
    with pytest.raises(ModelError, match="external data"):
        from_onnx(stripped)
