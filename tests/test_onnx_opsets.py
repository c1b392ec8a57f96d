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
    nodes = [helper.make_node("Det", ["x", "w"], ["y"], name="my_conv")]
    m = _model(nodes, [("x", F, [1, 1, 3, 3])], ["y"], 13,
               [("w", np.ones((1, 1, 1, 1), np.float32))])
    with pytest.raises(ModelError, match=r"Det.*my_conv"):
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


# ---- the opset table (qengine/frontends/onnx_opsets.py) against the installed onnx ---------
from qengine.frontends import onnx_opsets  # noqa: E402
from qengine.frontends.onnx_opsets import (  # noqa: E402
    MAX_OPSET, MIN_OPSET, OP_VERSIONS, REFUSED, SAME)
from qengine.ops import is_registered  # noqa: E402


def _schemas():
    out = {}
    for s in onnx.defs.get_all_schemas_with_history():
        if s.domain in ("", "ai.onnx") and s.name in OP_VERSIONS:
            out.setdefault(s.name, {})[s.since_version] = s
    return out


SCHEMAS = _schemas()


def test_installed_onnx_is_reviewed():
    """A newer onnx may bring new op versions: MAX_OPSET only moves after a review."""
    assert onnx.defs.onnx_opset_version() <= MAX_OPSET, (
        f"onnx {onnx.__version__} knows opset {onnx.defs.onnx_opset_version()}, qengine's table "
        f"stops at {MAX_OPSET}: review the changelog of every op in OP_VERSIONS, then raise "
        f"MAX_OPSET")


@pytest.mark.parametrize("op", sorted(OP_VERSIONS))
def test_table_lists_every_version_onnx_knows(op):
    """Every since_version reachable from MIN_OPSET..MAX_OPSET is in the table — implemented,
    same-semantics or refused — so a new operator version cannot be accepted unread."""
    known = sorted(SCHEMAS[op])
    first = max([v for v in known if v <= MIN_OPSET] or [known[0]])
    want = [v for v in known if first <= v <= MAX_OPSET]
    have = [v.since for v in OP_VERSIONS[op]]
    newer_than_onnx = [v for v in have if v > known[-1]]  # an older onnx is installed
    assert have[:len(have) - len(newer_than_onnx)] == want, (
        f"{op}: onnx {onnx.__version__} has versions {want} from opset {MIN_OPSET} on, the table "
        f"{have}; read the changelog of the missing ones and add them")
    assert OP_VERSIONS[op][0].kind == onnx_opsets.BASE


@pytest.mark.parametrize("op", sorted(OP_VERSIONS))
def test_same_semantics_versions_keep_the_interface(op):
    """A version marked SAME keeps its predecessor's attributes (names, kinds, defaults) and
    inputs/outputs (names, optionality): only types and wording may differ."""
    def interface(s):
        attrs = {a.name: (a.type, a.required, a.default_value.SerializeToString())
                 for a in s.attributes.values()}
        return (attrs, [(i.name, i.option) for i in s.inputs],
                [(o.name, o.option) for o in s.outputs])
    versions = sorted(SCHEMAS[op])
    for v in OP_VERSIONS[op]:
        if v.kind == SAME and v.since in SCHEMAS[op]:
            prev = max(x for x in versions if x < v.since)
            assert interface(SCHEMAS[op][v.since]) == interface(SCHEMAS[op][prev]), \
                f"{op}-{v.since} changes the interface of {op}-{prev}; it is not SAME"


def test_table_ops_are_qengine_ops():
    assert [op for op in OP_VERSIONS if not (is_registered(op) or op == "Dropout")] == []


@pytest.mark.parametrize("opset", range(MIN_OPSET, MAX_OPSET + 1))
def test_every_opset_imports(opset):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Sigmoid", ["r"], ["y"])]
    inits = [("w", rng.standard_normal((3, 4)).astype(np.float32)),
             ("b", rng.standard_normal(4).astype(np.float32))]
    m = _model(nodes, [("x", F, [2, 3])], ["y"], opset, inits)
    m.ir_version = onnx.helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    _check(m, {"x": x})


def test_opset_beyond_the_table_is_refused():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    with pytest.raises(ModelError, match=f"opset {MAX_OPSET + 1} is not supported.*–{MAX_OPSET}"):
        from_onnx(_model(nodes, [("x", F, [2])], ["y"], MAX_OPSET + 1))


def test_op_before_it_exists_is_refused():
    nodes = [helper.make_node("Expand", ["x", "s"], ["y"], name="ex")]
    m = _model(nodes, [("x", F, [1])], ["y"], 7, [("s", np.array([3], np.int64))])
    with pytest.raises(ModelError, match=r"node 'ex'.*Expand does not exist at opset 7 .*opset 8"):
        from_onnx(m)


def test_internal_ops_are_not_onnx_ops():
    """qengine's own ops (QLut, DynamicQuantLinear...) are not importable from ONNX files."""
    nodes = [helper.make_node("QLut", ["x"], ["y"], name="q")]
    with pytest.raises(ModelError, match=r"QLut \[ai.onnx\] x1 \('q'\)"):
        from_onnx(_model(nodes, [("x", F, [2])], ["y"], 17))


def test_refused_version_names_op_and_change(monkeypatch):
    """A version marked REFUSED stops the import with the op, the version and the change."""
    refused = OP_VERSIONS["Relu"] + (onnx_opsets.OpVersion(MAX_OPSET, REFUSED,
                                                           "relu of the future"),)
    monkeypatch.setitem(OP_VERSIONS, "Relu", refused)
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    with pytest.raises(ModelError, match=rf"node 'r': Relu-{MAX_OPSET} .* relu of the future"):
        from_onnx(_model(nodes, [("x", F, [2])], ["y"], MAX_OPSET))
    from_onnx(_model(nodes, [("x", F, [2])], ["y"], MAX_OPSET - 1))  # the older version: fine


@pytest.mark.parametrize("opset", [13, 17])
def test_flatten_and_softmax_negative_axis(opset):
    """Flatten's axis lies in [-r, r]: -1 keeps the last dim apart (was wrapped modulo r + 1).
    Pre-13 Softmax with a negative axis goes through the same Flatten."""
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    nodes = [helper.make_node("Flatten", ["x"], [f"f{a}"], axis=a) for a in (-4, -3, -1)]
    nodes += [helper.make_node("Softmax", ["x"], ["s"], axis=-2)]
    m = _model(nodes, [("x", F, [2, 3, 4, 5])], ["f-4", "f-3", "f-1", "s"], opset)
    _check(m, {"x": x})
    m11 = _model(nodes[-1:], [("x", F, [2, 3, 4, 5])], ["s"], 11)
    _check(m11, {"x": x})


def test_empty_reductions_follow_onnx():
    """ReduceMax/Min over an empty axis give -inf/+inf (was a ShapeError)."""
    x = np.zeros((2, 0, 3), np.float32)
    axes = ("axes", np.array([1], np.int64))
    nodes = [helper.make_node("ReduceMax", ["x", "axes"], ["mx"], keepdims=0),
             helper.make_node("ReduceMin", ["x", "axes"], ["mn"], keepdims=1)]
    m = _model(nodes, [("x", F, [2, 0, 3])], ["mx", "mn"], 18, [axes])
    _check(m, {"x": x})


def test_dropout_mask_and_training_mode():
    x = rng.standard_normal((2, 3)).astype(np.float32)
    nodes = [helper.make_node("Dropout", ["x", "r", "t"], ["y", "mask"])]
    inits = [("r", np.array(0.3, np.float32)), ("t", np.array(False))]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, [2, 3])],
                          [helper.make_tensor_value_info("y", F, None),
                           helper.make_tensor_value_info("mask", TensorProto.BOOL, None)],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    _check(m, {"x": x})
    m.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array(True), "t"))
    with pytest.raises(ModelError, match="training_mode must be omitted or a constant false"):
        from_onnx(m)
