"""What exporters write that the ONNX spec frowns on or leaves open, imported as onnxruntime
imports it (ORT is the oracle for every output here)."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qengine import ModelError, Session, ShapeError  # noqa: E402
from qengine.frontends.onnx import from_onnx  # noqa: E402

F = TensorProto.FLOAT
rng = np.random.default_rng(7)


def _model(nodes, inputs, outputs, inits=(), opsets=(("", 17),), ir_version=8):
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, F, s) for n, s in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    m.ir_version = ir_version
    return m


def _ort(m, feeds):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the initializer-as-input warning is the point of a test
    return ort.InferenceSession(m.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"]).run(None, feeds)


def _same_as_ort(m, feeds):
    want = _ort(m, feeds)
    got = Session(from_onnx(m)).run(feeds)
    for w, g in zip(want, got.values()):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_dim_minus_one_is_a_dynamic_dim():
    """paddle2onnx writes dim_value -1 for a dynamic batch; ORT reads it as unknown."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    m = _model(nodes, [("x", [-1, 3])], [("y", [-1, 4])],
               [("w", rng.standard_normal((3, 4)).astype(np.float32))], opsets=(("", 11),))
    g = from_onnx(m)
    assert g.inputs[0].shape == (None, 3) and g.outputs[0].shape == (None, 4)
    for batch in (1, 5):
        _same_as_ort(m, {"x": rng.standard_normal((batch, 3)).astype(np.float32)})
    with pytest.raises(ShapeError, match="dim 1 must be 3"):
        Session(g).run({"x": np.zeros((2, 2), np.float32)})


def test_other_negative_dims_are_refused():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", [-2, 3])], [("y", None)])
    with pytest.raises(ModelError, match=r"graph input 'x': dim -2 must be >= 0 \(or -1"):
        from_onnx(m)


def test_unused_domain_imports_are_fine():
    """ORT's pre-processing and skl2onnx leave ai.onnx.ml / com.microsoft opset imports behind."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["y"])]
    m = _model(nodes, [("x", [2, 3])], [("y", [2, 3])],
               opsets=(("", 17), ("ai.onnx.ml", 3), ("com.microsoft", 1)))
    _same_as_ort(m, {"x": rng.standard_normal((2, 3)).astype(np.float32)})


def test_a_node_of_another_domain_is_named():
    nodes = [helper.make_node("Gelu", ["x"], ["y"], name="g", domain="com.microsoft")]
    m = _model(nodes, [("x", [2])], [("y", None)], opsets=(("", 17), ("com.microsoft", 1)))
    with pytest.raises(ModelError, match=r"Gelu \[com.microsoft\] x1 \('g'\)"):
        from_onnx(m)


def test_unnamed_nodes_get_stable_unique_names():
    """Names are <op_type>_<index>, never a name another node has, the same on every import."""
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Relu", ["a"], ["b"], name="Relu_2"),  # index 2's default name
             helper.make_node("Relu", ["b"], ["c"]),
             helper.make_node("Add", ["c", "a"], ["y"], name="add")]
    m = _model(nodes, [("x", [2, 3])], [("y", [2, 3])])
    names = [n.name for n in from_onnx(m, optimize=False).nodes]
    assert names == ["Relu_0", "Relu_2", "Relu_2_1", "add"]
    assert [n.name for n in from_onnx(m, optimize=False).nodes] == names
    _same_as_ort(m, {"x": rng.standard_normal((2, 3)).astype(np.float32)})


def test_duplicate_node_names_are_refused_like_ort():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="dup"),
             helper.make_node("Neg", ["a"], ["y"], name="dup")]
    m = _model(nodes, [("x", [2])], [("y", [2])])
    with pytest.raises(Exception, match="two nodes with same node name"):
        _ort(m, {"x": np.zeros(2, np.float32)})
    with pytest.raises(ModelError, match=r"nodes 0 and 1 are both named 'dup'"):
        from_onnx(m)


def test_unnamed_node_errors_use_the_generated_name():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("NoSuchOp", ["a"], ["y"])]
    m = _model(nodes, [("x", [2])], [("y", None)])
    with pytest.raises(ModelError, match=r"NoSuchOp \[ai.onnx\] x1 \('NoSuchOp_1'\)"):
        from_onnx(m)


@pytest.mark.parametrize("ir_version", [3, 8])
def test_initializer_listed_as_input_is_a_constant(ir_version):
    """IR < 4 had to list every initializer as a graph input; later exporters still do.
    qengine treats such an input as the constant it names (it packs and folds constants at
    load), so it is not an input of the Session and a run cannot override it. ORT: constant
    for IR < 4 (feeding it is an error), an overridable default for IR >= 4."""
    b = rng.standard_normal(3).astype(np.float32)
    nodes = [helper.make_node("Add", ["x", "b"], ["y"])]
    m = _model(nodes, [("x", [2, 3]), ("b", [3])], [("y", [2, 3])], [("b", b)],
               opsets=(("", 8),), ir_version=ir_version)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    _same_as_ort(m, {"x": x})
    sess = Session(from_onnx(m))
    assert sess.input_names == ["x"]
    with pytest.raises(ShapeError, match=r"unexpected \['b'\]"):
        sess.run({"x": x, "b": np.zeros(3, np.float32)})
    # what ORT does with an override, for the record
    override = {"x": x, "b": np.zeros(3, np.float32)}
    if ir_version < 4:
        with pytest.raises(Exception, match="Invalid input name: b"):
            _ort(m, override)
    else:
        np.testing.assert_allclose(_ort(m, override)[0], x)
