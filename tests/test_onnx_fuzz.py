"""Malformed ONNX models end in a QEngineError — never another exception, a hang, a dead
process or a CLI traceback. The generator and the checks are scripts/fuzz_onnx.py (which runs
thousands); here a fixed seed's few hundred, a CLI subprocess sample, and one regression test
per bug the fuzzer found."""
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import fuzz_onnx  # noqa: E402

from qengine import ModelError, Session, ShapeError  # noqa: E402
from qengine.frontends.onnx import from_onnx  # noqa: E402

F = TensorProto.FLOAT
CASES = list(fuzz_onnx.generate(seed=0, n=300))


def test_fuzz_cases_end_in_qengine_errors():
    runner = fuzz_onnx.Runner(timeout=20.0)
    bad, outcomes = [], {}
    try:
        for case in CASES:
            outcome, detail = runner.check(case.data)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome not in ("accepted", "refused"):
                bad.append(f"{outcome}: {case.name}: {detail[:300]}")
    finally:
        runner.close()
    assert bad == [], "\n".join(bad)
    assert outcomes["refused"] > 0.7 * len(CASES)  # the generator does break models


@pytest.mark.parametrize("index", [0, 1, 2])
def test_cli_subprocess_sample(index, tmp_path):
    """The real entry point (python -m qengine inspect / run): exit 0, or 2 with one line."""
    garbage = [c for c in CASES if "bytes" in c.name or "empty file" in c.name]
    broken = [c for c in CASES if c not in garbage]
    case = (garbage[0], broken[0], broken[len(broken) // 2])[index]
    assert fuzz_onnx.check_cli(case, tmp_path) == ""


# ---- regressions: one per bug the fuzzer found ------------------------------------------------
def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                          [helper.make_tensor_value_info(n, F, None) for n in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def test_old_form_attribute_of_the_wrong_kind():
    """Squeeze-11's axes of strings reached int(); Slice-9's axes as a tensor reached int()."""
    m = _model([helper.make_node("Squeeze", ["x"], ["y"], name="sq", axes=["a"])],
               [("x", F, [1, 2])], ["y"], opset=11)
    with pytest.raises(ModelError, match=r"node 'sq' \(Squeeze\): attribute 'axes' must be"):
        from_onnx(m)
    t = numpy_helper.from_array(np.array([1], np.int64))
    m = _model([helper.make_node("Slice", ["x"], ["y"], name="sl", starts=[0], ends=[1], axes=t)],
               [("x", F, [1, 2])], ["y"], opset=9)
    with pytest.raises(ModelError, match=r"node 'sl' \(Slice\): attribute 'axes' must be"):
        from_onnx(m)


def test_required_input_given_as_empty_name():
    """"" marks an omitted optional input; for a required one ops got None (AttributeError)."""
    m = _model([helper.make_node("Relu", ["x"], ["r"]),
                helper.make_node("MaxPool", [""], ["y"], name="p", kernel_shape=[2])],
               [("x", F, [1, 1, 4])], ["y"])
    with pytest.raises(ModelError, match=r"node 'p' \(MaxPool\): input 0 is required"):
        from_onnx(m)
    m = _model([helper.make_node("Gemm", ["x", ""], ["y"], name="g")], [("x", F, [2, 2])], ["y"])
    with pytest.raises(ModelError, match=r"node 'g' \(Gemm\): input 1 is required"):
        from_onnx(m)


def test_initializer_dims_must_match_its_data():
    """Dims of 2**40 over 3 floats reached numpy's reshape; a float64 tag on float32 bytes
    reached numpy's frombuffer. Checked before anything is allocated."""
    t = numpy_helper.from_array(np.ones(3, np.float32), "w")
    t.dims[:] = [2 ** 40]
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [("x", F, [3])], ["y"])
    m.graph.initializer.append(t)
    with pytest.raises(ModelError, match=r"tensor 'w': dims \[1099511627776\] need "
                                         r"1099511627776 elements, the tensor holds 3"):
        from_onnx(m)
    t = numpy_helper.from_array(np.ones(3, np.float32), "w")
    t.data_type = TensorProto.DOUBLE
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [("x", TensorProto.DOUBLE, [3])],
               ["y"])
    m.graph.initializer.append(t)
    with pytest.raises(ModelError, match=r"tensor 'w': dims \[3\] need 3 elements, the tensor "
                                         r"holds 1 and a partial one"):
        from_onnx(m)


def test_huge_declared_dims_are_not_allocated():
    """A Shape of an input declared [2**40, 2**40] was folded through a zero-stride stand-in
    NumPy cannot describe (ValueError); it is now left to run time."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Relu", ["x"], ["r"])]
    m = _model(nodes, [("x", F, [2 ** 40, 2 ** 40])], ["s", "r"])
    g = from_onnx(m)
    assert g.inputs[0].shape == (2 ** 40, 2 ** 40)
    with pytest.raises(ShapeError, match="dim 0 must be 1099511627776"):
        Session(g).run({"x": np.zeros((2, 2), np.float32)})


@pytest.mark.parametrize("op", ["Softmax", "Dropout", "Relu"])
def test_nodes_without_input_or_output(op):
    """Old-opset Softmax read ins[0]/outs[0] of a node that had none (IndexError). onnx's
    type inference now reports it first; the frontend's own check stays behind it."""
    m = _model([helper.make_node(op, [], ["y"], name="n")], [("x", F, [2])], ["y"], opset=9)
    with pytest.raises(ModelError, match=r"node (name: )?'?n'?\)?: [Ii]nput 0 is"):
        from_onnx(m)
    m = _model([helper.make_node(op, ["x"], [], name="n")], [("x", F, [2])], ["x"], opset=9)
    with pytest.raises(ModelError, match=r"node (name: )?'?n'?\)?: [Oo]utput 0 (is|must)"):
        from_onnx(m)


def test_ambiguous_models_are_refused():
    """Accepted before, each silently picking one reading: two default-domain opsets, two
    initializers of one name (onnx's checker refuses it; ORT takes the last), no outputs."""
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2])], ["y"])
    m.opset_import.add(domain="ai.onnx", version=13)
    with pytest.raises(ModelError, match=r"default domain at several opsets \[13, 17\]"):
        from_onnx(m)
    w = np.ones(2, np.float32)
    m = _model([helper.make_node("Add", ["x", "w"], ["y"])], [("x", F, [2])], ["y"],
               [("w", w), ("w", 2 * w)])
    with pytest.raises(ModelError, match="initializer 'w' is defined twice"):
        from_onnx(m)
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2])], [])
    with pytest.raises(ModelError, match="the graph has no outputs"):
        from_onnx(m)


def test_element_types_are_checked_by_onnx_inference():
    """A Conv on int32 data or a float64 Gemm weight ran through NumPy's type promotion."""
    w = np.ones((1, 1, 1, 1), np.float32)
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="c")],
               [("x", TensorProto.INT32, [1, 1, 2, 2])], ["y"], [("w", w)])
    with pytest.raises(ModelError, match=r"type inference.*Conv.*'?c'?.*int32"):
        from_onnx(m)
    m = _model([helper.make_node("Gemm", ["x", "w"], ["y"], name="g")],
               [("x", F, [2, 2])], ["y"], [("w", np.ones((2, 2)))])
    with pytest.raises(ModelError, match=r"type inference.*Gemm.*double"):
        from_onnx(m)


def test_broadcast_outputs_are_real_arrays():
    """Expand's output was a zero-stride view: a graph output of 2**40 elements cost nothing
    until the caller saved it (`qengine run` wrote terabytes). Outputs are real arrays now:
    writable, and a model whose output cannot fit fails with a ShapeError."""
    nodes = [helper.make_node("Expand", ["x", "s"], ["y"])]
    small = _model(nodes, [("x", F, [1, 1])], ["y"], [("s", np.array([3, 2], np.int64))])
    y = Session(from_onnx(small)).run({"x": np.ones((1, 1), np.float32)})["y"]
    y[0, 0] = 5.0  # writable, and its own memory
    assert y.sum() == 10.0
    huge = _model(nodes, [("x", F, [1, 1])], ["y"], [("s", np.array([2 ** 40, 2 ** 20], np.int64))])
    with pytest.raises(ShapeError, match="does not fit in memory"):
        Session(from_onnx(huge)).run({"x": np.ones((1, 1), np.float32)})


def test_names_that_are_not_utf8():
    """protobuf parses invalid UTF-8 in string fields; reading one in Python then raises
    UnicodeDecodeError (an initializer's name) or gives bytes (a node's name)."""
    m = _model([helper.make_node("Add", ["x", "QQQQ"], ["y"], name="RRRR")], [("x", F, [2])],
               ["y"], [("QQQQ", np.ones(2, np.float32))])
    data = m.SerializeToString()
    for name, error in ((b"QQQQ", "not UTF-8"), (b"RRRR", "node name must be a string")):
        with pytest.raises(ModelError, match=error):
            from_onnx(onnx.ModelProto.FromString(data.replace(name, b"\xff\xfe" + name[2:])))


def test_conv_bias_of_the_wrong_length_before_batch_norm():
    """Folding BatchNormalization into a Conv broadcast a 5-element bias against 4 channels
    (ValueError in the pass); the Conv now reports its bias itself."""
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"])]
    inits = [("w", f32(4, 1, 1, 1)), ("b", f32(5)), ("s", f32(4)), ("bb", f32(4)),
             ("m", f32(4)), ("v", np.ones(4, np.float32))]
    m = _model(nodes, [("x", F, [1, 1, 2, 2])], ["y"], inits)
    with pytest.raises(ModelError, match=r"node 'conv' \(Conv\): B must have shape \(4,\)"):
        Session(from_onnx(m))


def test_split_num_outputs_must_match_the_outputs():
    """num_outputs was ignored (the node's output count decided); a mismatch is malformed."""
    m = _model([helper.make_node("Split", ["x"], ["a", "b"], name="s", axis=0, num_outputs=3)],
               [("x", F, [4])], ["a", "b"], opset=18)
    with pytest.raises(ModelError, match=r"node 's' \(Split\): num_outputs is 3 but the node "
                                         r"has 2 outputs"):
        from_onnx(m)
