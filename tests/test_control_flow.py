"""ONNX If, Loop and Scan (qengine/ops/control.py, the frontend's _convert_if / _loop / _scan,
passes.inline_constant_ifs): branches run at run time or are folded away when the condition is a
constant; what a subgraph reads from outside (activations, weights) reaches it; nesting; engine
files; bad models and inputs.
Oracles: onnx.reference and ONNX Runtime; a real exporter's If (Silero VAD: the whole model is an
If on the sample rate, with nested Ifs inside) against ONNX Runtime."""
import sys
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine import ModelError, ShapeError
from qengine.errors import UnsupportedOpsError
from qengine.engine_file import dumps, loads

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402


def _f(name, shape=None):
    return helper.make_tensor_value_info(name, TP.FLOAT, shape)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _branch(name, nodes, out, inits=()):
    return helper.make_graph(nodes, name, [], [_f(out)], list(inits))


def _conv_if_model(nested=False):
    """y = If(sum(x) > t): Conv(x, W) + b   else: Relu(x) · k — W, b and k are initializers of
    the enclosing graph read inside the branches; nested=True puts another If (on the same
    condition's negation) inside the else branch."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("W", TP.FLOAT, [2, 2, 3, 3], rng.standard_normal(36).tolist())
    b = helper.make_tensor("b", TP.FLOAT, [1, 2, 1, 1], [0.5, -0.5])
    k = helper.make_tensor("k", TP.FLOAT, [], [3.0])
    then_b = _branch("then", [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
                              helper.make_node("Add", ["c", "b"], ["t"])], "t")
    else_nodes = [helper.make_node("Relu", ["x"], ["r"]),
                  helper.make_node("Mul", ["r", "k"], ["e"])]
    if nested:
        inner_then = _branch("it", [helper.make_node("Neg", ["e"], ["n1"])], "n1")
        inner_else = _branch("ie", [helper.make_node("Sigmoid", ["e"], ["n2"])], "n2")
        else_nodes += [helper.make_node("Not", ["cond"], ["ncond"]),
                       helper.make_node("If", ["ncond"], ["e2"], then_branch=inner_then,
                                        else_branch=inner_else)]
    else_b = _branch("else", else_nodes, "e2" if nested else "e")
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "t"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=then_b, else_branch=else_b)]
    return _model(nodes, [_f("x", [1, 2, 5, 5]), _f("t", [])], [_f("y")], [w, b, k])


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("saved", [False, True])
def test_if_on_an_input_runs_the_branch_it_selects(nested, saved):
    m = _conv_if_model(nested)
    g = qengine.from_onnx(m)
    assert [n.op_type for n in g.nodes].count("If") == 1
    s = loads(dumps(g)) if saved else qengine.Session(g)
    ref = ReferenceEvaluator(m)
    x = np.random.default_rng(1).standard_normal((1, 2, 5, 5)).astype(np.float32)
    for t in (-100.0, 100.0):            # both branches, with the same session
        feeds = {"x": x, "t": np.float32(t)}
        np.testing.assert_allclose(s.run(feeds)["y"], ref.run(None, feeds)[0], rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("t", [-100.0, 100.0])
def test_an_if_on_a_constant_is_folded_into_the_graph(t):
    """The condition Greater(t, 0) on a constant t folds, the If is inlined, and the inner If's
    condition Not(cond) folds in the next round."""
    m = _conv_if_model(nested=True)
    m.graph.node[1].CopyFrom(helper.make_node("Greater", ["t", "zero"], ["cond"]))
    m.graph.initializer.extend([helper.make_tensor("t", TP.FLOAT, [], [t]),
                                helper.make_tensor("zero", TP.FLOAT, [], [0.0])])
    del m.graph.input[1]
    g = qengine.from_onnx(m)
    assert "If" not in [n.op_type for n in g.nodes]       # both levels inlined
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(qengine.Session(g).run({"x": x})["y"],
                               ReferenceEvaluator(m).run(None, {"x": x})[0], rtol=1e-5,
                               atol=1e-5)


def test_constant_condition_inlines_the_taken_branch_only():
    then_b = _branch("then", [helper.make_node("Add", ["x", "one"], ["a"])], "a",
                     [helper.make_tensor("one", TP.FLOAT, [], [1.0])])
    else_b = _branch("else", [helper.make_node("Sub", ["x", "one"], ["a"])], "a",
                     [helper.make_tensor("one", TP.FLOAT, [], [-7.0])])     # same names inside
    for cond, want in ((True, 1.0), (False, 7.0)):
        c = helper.make_tensor("c", TP.BOOL, [1], [cond])
        m = _model([helper.make_node("If", ["c"], ["y"], then_branch=then_b, else_branch=else_b)],
                   [_f("x", [3])], [_f("y")], [c])
        g = qengine.from_onnx(m)
        assert [n.op_type for n in g.nodes] == ["Add" if cond else "Sub"]
        x = np.arange(3, dtype=np.float32)
        np.testing.assert_array_equal(qengine.Session(g).run({"x": x})["y"], x + want)
        np.testing.assert_array_equal(qengine.Session(g).run({"x": x})["y"],
                                      ReferenceEvaluator(m).run(None, {"x": x})[0])


def test_if_branch_may_output_an_outer_value_and_multiple_outputs():
    then_b = helper.make_graph([helper.make_node("Neg", ["x"], ["n"])], "then", [],
                               [_f("x"), _f("n")])            # passes x itself through
    else_b = helper.make_graph([helper.make_node("Abs", ["x"], ["a"]),
                                helper.make_node("Exp", ["x"], ["e"])], "else", [],
                               [_f("a"), _f("e")])
    m = _model([helper.make_node("If", ["c"], ["y1", "y2"], then_branch=then_b,
                                 else_branch=else_b)],
               [helper.make_tensor_value_info("c", TP.BOOL, []), _f("x", [4])],
               [_f("y1"), _f("y2")])
    s = qengine.Session(qengine.from_onnx(m))
    ref = ReferenceEvaluator(m)
    x = np.array([-1, 2, -3, 4], np.float32)
    for c in (True, False):
        feeds = {"c": np.array(c), "x": x}
        got = s.run(feeds)
        for k, w in zip(("y1", "y2"), ref.run(None, feeds)):
            np.testing.assert_allclose(got[k], w, rtol=1e-6)


def test_if_refuses_bad_conditions_and_branches():
    m = _conv_if_model()
    s = qengine.Session(qengine.from_onnx(m))
    g = qengine.from_onnx(m)
    node = next(n for n in g.nodes if n.op_type == "If")
    # a condition of two elements (made by feeding the If directly)
    sub = qengine.Graph([qengine.ValueInfo("c", "bool", (2,)), qengine.ValueInfo("x"),
                         qengine.ValueInfo("W"), qengine.ValueInfo("b"),
                         qengine.ValueInfo("k")], [qengine.ValueInfo("y")],
                        [node.replace(inputs=("c", *node.inputs[1:]))])
    x = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(ShapeError, match="exactly one element"):
        qengine.Session(sub).run({"c": np.array([True, False]), "x": x,
                                  "W": np.zeros((2, 2, 3, 3), np.float32),
                                  "b": np.zeros((1, 2, 1, 1), np.float32),
                                  "k": np.float32(1)})
    assert s.run({"x": x, "t": np.float32(0)})["y"].shape == (1, 2, 5, 5)
    # a branch with the wrong number of outputs
    two = helper.make_graph([helper.make_node("Neg", ["x"], ["n"])], "b", [], [_f("n"), _f("x")])
    one = _branch("o", [helper.make_node("Neg", ["x"], ["n"])], "n")
    bad = _model([helper.make_node("If", ["c"], ["y"], then_branch=two, else_branch=one)],
                 [helper.make_tensor_value_info("c", TP.BOOL, []), _f("x", [2])], [_f("y")])
    with pytest.raises(ModelError):
        qengine.from_onnx(bad)
    # an op qengine lacks inside a branch is named, with its scope
    odd = _branch("o", [helper.make_node("Hardmax", ["x"], ["n"])], "n")
    unsup = _model([helper.make_node("If", ["c"], ["y"], then_branch=odd, else_branch=one)],
                   [helper.make_tensor_value_info("c", TP.BOOL, []), _f("x", [2])], [_f("y")])
    with pytest.raises(UnsupportedOpsError, match="Hardmax.*then_branch"):
        qengine.from_onnx(unsup)


def test_onnx_export_refuses_control_flow_clearly(tmp_path):
    g = qengine.from_onnx(_conv_if_model())
    with pytest.raises(ModelError, match="control flow is not implemented.*If_"):
        qengine.export_onnx(g, tmp_path / "x.onnx")


def test_engine_file_refuses_subgraphs_nested_too_deep():
    import json
    from qengine.engine_file import graph_from_json
    g = qengine.from_onnx(_conv_if_model(nested=True))
    doc = g.to_json()
    inner = doc
    for _ in range(10):                  # wrap the graph's If branch in itself, deeper and deeper
        node = next(n for n in inner["nodes"] if n["op_type"] == "If")
        inner = node["attrs"]["then_branch"]["graph"]
        inner["nodes"].append(json.loads(json.dumps(node)))
    tensors = {**g.initializers, **g.subgraph_tensors()}
    with pytest.raises(ModelError):
        graph_from_json(doc, tensors)


def test_silero_vad_real_model_if_on_the_sample_rate_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from real_models import find, fetch
    path = find("silero_vad")
    if path is None:
        try:
            path = fetch("silero_vad")
        except Exception as e:                          # offline: skip cleanly
            pytest.skip(f"silero_vad.onnx not available: {e}")
    g = qengine.from_onnx(path)
    assert "If" in [n.op_type for n in g.nodes]
    s, o = loads(dumps(g)), ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for sr, n in ((16000, 512), (8000, 256)):
        state = np.zeros((2, 1, 128), np.float32)
        for _ in range(4):                               # a stream: the state carries over
            feeds = {"input": rng.standard_normal((1, n)).astype(np.float32) * 0.1,
                     "state": state, "sr": np.array(sr, np.int64)}
            want, got = o.run(None, feeds), s.run(feeds)
            # the speech probability to 1e-5; the LSTM state to float rounding of the gates
            np.testing.assert_allclose(got["output"], want[0], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(got["stateN"], want[1], rtol=1e-3, atol=1e-4)
            state = want[1]
    # a user who knows the sample rate and chunk size: every If folds away, and the dynamic
    # int8 model follows ONNX Runtime's FP32 probabilities closely
    sp = qengine.specialize(g, {"input": (1, 512), "state": (2, 1, 128)}, {"sr": 16000})
    assert not any(n.op_type == "If" for n in sp.nodes)
    q = qengine.quantize_dynamic(sp)
    fp, i8 = qengine.Session(sp), loads(dumps(q))
    state, worst = np.zeros((2, 1, 128), np.float32), 0.0
    for _ in range(10):
        x = rng.standard_normal((1, 512)).astype(np.float32) * 0.1
        want = o.run(None, {"input": x, "state": state, "sr": np.array(16000, np.int64)})
        np.testing.assert_allclose(fp.run({"input": x, "state": state})["output"], want[0],
                                   rtol=1e-4, atol=1e-5)
        worst = max(worst, float(np.abs(i8.run({"input": x, "state": state})["output"] -
                                        want[0]).max()))
        state = want[1]
    assert worst < 0.01, worst


def test_specialize_folds_an_input_driven_if_and_checks_its_arguments():
    m = _conv_if_model(nested=True)          # the condition on the input t alone
    m.graph.node[1].CopyFrom(helper.make_node("Greater", ["t", "zero"], ["cond"]))
    m.graph.initializer.append(helper.make_tensor("zero", TP.FLOAT, [], [0.0]))
    g = qengine.from_onnx(m)
    assert "If" in [n.op_type for n in g.nodes]
    x = np.random.default_rng(3).standard_normal((1, 2, 5, 5)).astype(np.float32)
    for t in (-100.0, 100.0):
        sp = qengine.specialize(g, {"x": (1, 2, 5, 5)}, {"t": t})
        assert "If" not in [n.op_type for n in sp.nodes] and sp.input_names == ["x"]
        np.testing.assert_allclose(qengine.Session(sp).run({"x": x})["y"],
                                   ReferenceEvaluator(m).run(None, {"x": x,
                                                                    "t": np.float32(t)})[0],
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ShapeError, match="not inputs"):
        qengine.specialize(g, {"nope": (1,)})
    with pytest.raises(ShapeError, match="does not fit"):
        qengine.specialize(g, {"x": (1, 3, 5, 5)})
    with pytest.raises(ShapeError, match="non-negative ints"):
        qengine.specialize(g, {"x": (1, 2, -5, 5)})


def test_dynamic_quantization_goes_inside_if_branches():
    m = _conv_if_model()
    g = qengine.from_onnx(m)
    q = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(cost_model=False))
    node = next(n for n in q.nodes if n.op_type == "If")
    assert [n.op_type for n in node.attrs["then_branch"].nodes][0].startswith("DynamicQuant")
    x = np.random.default_rng(4).standard_normal((1, 2, 5, 5)).astype(np.float32)
    feeds = {"x": x, "t": np.float32(-100)}
    want = ReferenceEvaluator(m).run(None, feeds)[0]
    got = loads(dumps(q)).run(feeds)["y"]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
    with pytest.warns(qengine.QuantizationWarning, match="subgraphs of 1 If / Loop / Scan"):
        qengine.quantize_static(g, [{"x": x, "t": np.float32(-100)}])


def _loop_model(m=None, with_cond=False):
    """acc_{i+1} = tanh(acc_i · W + x) + i, scan output acc_{i+1}·2: W is an initializer of the
    enclosing graph, x an input read inside the body; with_cond stops once sum(acc) > 3."""
    rng = np.random.default_rng(5)
    w = helper.make_tensor("W", TP.FLOAT, [3, 3], (rng.standard_normal(9) * 0.5).tolist())
    body_nodes = [helper.make_node("MatMul", ["acc", "W"], ["mm"]),
                  helper.make_node("Add", ["mm", "x"], ["pre"]),
                  helper.make_node("Tanh", ["pre"], ["th"]),
                  helper.make_node("Cast", ["i"], ["fi"], to=TP.FLOAT),
                  helper.make_node("Add", ["th", "fi"], ["acc_out"]),
                  helper.make_node("Mul", ["acc_out", "two"], ["scan"])]
    if with_cond:
        body_nodes += [helper.make_node("ReduceSum", ["acc_out"], ["s"], keepdims=0),
                       helper.make_node("Less", ["s", "three"], ["c_out"])]
    else:
        body_nodes += [helper.make_node("Identity", ["c_in"], ["c_out"])]
    body = helper.make_graph(
        body_nodes, "body",
        [helper.make_tensor_value_info("i", TP.INT64, []),
         helper.make_tensor_value_info("c_in", TP.BOOL, []), _f("acc", [1, 3])],
        [helper.make_tensor_value_info("c_out", TP.BOOL, []), _f("acc_out", [1, 3]),
         _f("scan", [1, 3])],
        [helper.make_tensor("two", TP.FLOAT, [], [2.0]),
         helper.make_tensor("three", TP.FLOAT, [], [3.0])])
    inits = [w]
    ins = ["", "", "acc0"]
    if m is not None:
        inits.append(helper.make_tensor("M", TP.INT64, [], [m]))
        ins[0] = "M"
    if with_cond:
        inits.append(helper.make_tensor("c0", TP.BOOL, [], [True]))
        ins[1] = "c0"
    node = helper.make_node("Loop", ins, ["acc_final", "scans"], body=body)
    return _model([node], [_f("x", [1, 3]), _f("acc0", [1, 3])],
                  [_f("acc_final"), _f("scans")], inits, opset=13)


@pytest.mark.parametrize("m, with_cond", [(5, False), (0, False), (50, True), (None, True)])
@pytest.mark.parametrize("saved", [False, True])
def test_loop_trip_count_condition_carried_and_scan_values(m, with_cond, saved):
    model = _loop_model(m, with_cond)
    g = qengine.from_onnx(model)
    s = loads(dumps(g)) if saved else qengine.Session(g)
    x = np.array([[0.1, -0.2, 0.3]], np.float32)
    acc0 = np.array([[0.5, 0.0, -0.5]], np.float32)
    got = s.run({"x": x, "acc0": acc0})
    # onnxruntime is the oracle here: onnx.reference concatenates scan values instead of
    # stacking them (and fails on zero iterations)
    ort = pytest.importorskip("onnxruntime")
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]
                                ).run(None, {"x": x, "acc0": acc0})
    np.testing.assert_allclose(got["acc_final"], want[0], rtol=1e-5, atol=1e-6)
    assert got["scans"].shape == want[1].shape
    np.testing.assert_allclose(got["scans"], want[1], rtol=1e-5, atol=1e-6)
    if m == 0:                      # no iteration: the initial value, and no scan rows
        np.testing.assert_array_equal(got["acc_final"], acc0)


def test_loop_refuses_a_bad_trip_count_and_quantizes_its_body():
    model = _loop_model(4)
    g = qengine.from_onnx(model)
    node = next(n for n in g.nodes if n.op_type == "Loop")
    bad = qengine.Graph([qengine.ValueInfo("M", "int64", (2,)), qengine.ValueInfo("x"),
                         qengine.ValueInfo("acc0")],
                        [qengine.ValueInfo(o) for o in node.outputs],
                        [node.replace(inputs=("M", *node.inputs[1:]))],
                        {k: v for k, v in g.initializers.items() if k in node.inputs[1:]})
    with pytest.raises(ShapeError, match="M must be one integer"):
        qengine.Session(bad).run({"M": np.array([1, 2]), "x": np.zeros((1, 3), np.float32),
                                  "acc0": np.zeros((1, 3), np.float32)})
    q = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(cost_model=False))
    body = next(n for n in q.nodes if n.op_type == "Loop").attrs["body"]
    assert any(n.op_type.startswith("DynamicQuant") for n in body.nodes)
    feeds = {"x": np.array([[0.1, -0.2, 0.3]], np.float32),
             "acc0": np.array([[0.5, 0.0, -0.5]], np.float32)}
    want = qengine.Session(g).run(feeds)["acc_final"]
    np.testing.assert_allclose(loads(dumps(q)).run(feeds)["acc_final"], want, atol=0.05)


def test_cli_quantize_specializes_shapes_and_constants(tmp_path, capsys):
    """`qengine quantize --shape --const`: the If on an input folds before quantizing; bad
    arguments are one-line errors."""
    from qengine.cli import main
    m = _conv_if_model(nested=True)
    m.graph.node[1].CopyFrom(helper.make_node("Greater", ["t", "zero"], ["cond"]))
    m.graph.initializer.append(helper.make_tensor("zero", TP.FLOAT, [], [0.0]))
    src = tmp_path / "m.onnx"
    onnx.save(m, str(src))
    out = tmp_path / "m.qe"
    rc = main(["quantize", str(src), "-o", str(out), "--shape", "x=1,2,5,5", "--const", "t=-1"])
    assert rc == 0
    g = qengine.load_graph(out)
    assert "If" not in [n.op_type for n in g.nodes] and g.input_names == ["x"]
    x = np.random.default_rng(6).standard_normal((1, 2, 5, 5)).astype(np.float32)
    want = ReferenceEvaluator(m).run(None, {"x": x, "t": np.float32(-1)})[0]
    np.testing.assert_allclose(qengine.load(out).run({"x": x})["y"], want, atol=0.05)
    capsys.readouterr()
    for bad, msg in ((["--shape", "x=1,a"], "non-negative integers"),
                     (["--const", "t"], "NAME=VALUE"), (["--const", "nope=1"], "not inputs")):
        try:
            rc = main(["quantize", str(src), "-o", str(tmp_path / "b.qe"), *bad])
        except SystemExit as e:
            rc = e.code
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and "Traceback" not in err, err


@pytest.mark.parametrize("in_axis, in_dir, out_axis, out_dir", [
    (0, 0, 0, 0), (1, 1, 0, 0), (0, 1, 1, 1), (-1, 0, -1, 1)])
@pytest.mark.parametrize("saved", [False, True])
def test_scan_axes_directions_state_and_a_captured_weight(in_axis, in_dir, out_axis, out_dir,
                                                          saved):
    """s_{t+1} = tanh(s_t · W + x_t), scan output s_{t+1} − x_t: W an initializer of the
    enclosing graph, the scan input sliced along in_axis (reversed with in_dir), the output
    stacked along out_axis (reversed with out_dir); against onnxruntime (onnx.reference has
    no scan axes or directions: it checks the default case)."""
    rng = np.random.default_rng(7)
    w = helper.make_tensor("W", TP.FLOAT, [4, 4], (rng.standard_normal(16) * 0.5).tolist())
    body = helper.make_graph(
        [helper.make_node("MatMul", ["s", "W"], ["sw"]),
         helper.make_node("Add", ["sw", "xt"], ["pre"]),
         helper.make_node("Tanh", ["pre"], ["s_out"]),
         helper.make_node("Sub", ["s_out", "xt"], ["y_t"])],
        "body", [_f("s", [4]), _f("xt", [4])], [_f("s_out", [4]), _f("y_t", [4])])
    x_shape = [6, 4] if in_axis in (0, -2) else [4, 6]
    node = helper.make_node("Scan", ["s0", "x"], ["s_final", "ys"], body=body, num_scan_inputs=1,
                            scan_input_axes=[in_axis], scan_input_directions=[in_dir],
                            scan_output_axes=[out_axis], scan_output_directions=[out_dir])
    m = _model([node], [_f("s0", [4]), _f("x", x_shape)], [_f("s_final"), _f("ys")], [w],
               opset=16)
    g = qengine.from_onnx(m)
    s = loads(dumps(g)) if saved else qengine.Session(g)
    feeds = {"s0": rng.standard_normal(4).astype(np.float32),
             "x": rng.standard_normal(x_shape).astype(np.float32)}
    got = s.run(feeds)
    ort = pytest.importorskip("onnxruntime")
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]
                                ).run(None, feeds)
    if (in_axis, in_dir, out_axis, out_dir) == (0, 0, 0, 0):   # what onnx.reference implements
        want_ref = ReferenceEvaluator(m).run(None, feeds)
        for w_ort, w_ref in zip(want, want_ref):
            np.testing.assert_allclose(w_ort, w_ref, rtol=1e-5, atol=1e-6)
    for k, w in zip(("s_final", "ys"), want):
        assert got[k].shape == w.shape
        np.testing.assert_allclose(got[k], w, rtol=1e-5, atol=1e-6)


def test_scan_refuses_mismatched_lengths_and_opset8_sequence_lens():
    body = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"]),
                              helper.make_node("Identity", ["c"], ["o"])], "body",
                             [_f("a", []), _f("b", [])], [_f("c", []), _f("o", [])])
    body2 = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"]),
                               helper.make_node("Add", ["c", "d"], ["o"])], "body",
                              [_f("a", []), _f("b", []), _f("d", [])], [_f("c", []), _f("o", [])])
    node = helper.make_node("Scan", ["a0", "x", "z"], ["a_fin", "os"], body=body2,
                            num_scan_inputs=2)
    m = _model([node], [_f("a0", []), _f("x", ["T"]), _f("z", ["U"])], [_f("a_fin"), _f("os")],
               opset=16)
    s = qengine.Session(qengine.from_onnx(m))
    with pytest.raises(ShapeError, match="different lengths"):
        s.run({"a0": np.float32(0), "x": np.ones(3, np.float32), "z": np.ones(4, np.float32)})
    lens8 = helper.make_node("Scan", ["lens", "a0", "x"], ["a_fin", "os"], body=body,
                             num_scan_inputs=1)
    m8 = _model([lens8], [helper.make_tensor_value_info("lens", TP.INT64, [1]),
                          _f("a0", [1]), _f("x", [1, 3])], [_f("a_fin"), _f("os")], opset=8)
    with pytest.raises(ModelError, match="sequence_lens is not supported"):
        qengine.from_onnx(m8)
