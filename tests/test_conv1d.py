"""1-D convolutions and pools through the 2-D int8 kernels (issue 15, item 2): the rewrite
(qengine/graph/conv1d.py) against onnx.reference in float, its Squeeze/Unsqueeze round trips
removed along a chain, and static int8 of a keyword-spotting-style front end against
onnx.reference's float output (and its ONNX export run by ONNX Runtime)."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import qengine  # noqa: E402
from qengine.graph.conv1d import as_2d  # noqa: E402

rng = np.random.default_rng(1)


def _front_end(c_in=10, pads=(2, 2), auto_pad=None, group=1):
    """Conv1d(k5) -> BN -> Relu -> MaxPool1d(2) -> Conv1d(k3, dilated, strided) -> Clip(0, 6)
    -> AveragePool1d(3) -> Conv1d(1x1)."""
    w1 = (rng.standard_normal((16, c_in // group, 5)) * 0.3).astype(np.float32)
    bn = [rng.uniform(0.5, 1.5, 16), rng.standard_normal(16) * 0.1,
          rng.standard_normal(16) * 0.1, rng.uniform(0.5, 1.5, 16)]
    w2 = (rng.standard_normal((16, 16, 3)) * 0.2).astype(np.float32)
    w3 = (rng.standard_normal((12, 16, 1)) * 0.3).astype(np.float32)
    conv1 = {"group": group, **({"auto_pad": auto_pad} if auto_pad else {"pads": list(pads)})}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], **conv1),
             helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2], strides=[2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[2, 2], dilations=[2],
                              strides=[2]),
             helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"]),
             helper.make_node("AveragePool", ["r2"], ["p2"], kernel_shape=[3], pads=[1, 1],
                              strides=[1]),
             helper.make_node("Conv", ["p2", "w3"], ["y"])]
    inits = {"w1": w1, "s": bn[0], "b": bn[1], "m": bn[2], "v": bn[3], "w2": w2,
             "b2": rng.standard_normal(16) * 0.1, "w3": w3, "lo": np.float32(0),
             "hi": np.float32(6)}
    g = helper.make_graph(
        nodes, "kws", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c_in, 49])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("kw", [{}, {"auto_pad": "SAME_UPPER"}, {"group": 2}])
def test_rewrite_keeps_the_float_function_and_one_4d_chain(kw):
    m = _front_end(**kw)
    x = rng.standard_normal((4, 10, 49)).astype(np.float32)
    want = ReferenceEvaluator(m).run(None, {"x": x})[0]
    g = qengine.from_onnx(m)
    g2 = as_2d(g)
    ops = [n.op_type for n in g2.nodes]
    # one Unsqueeze at the entrance, one Squeeze at the exit: the Relu and Clip between the
    # layers run on the 4-D values
    assert ops.count("Unsqueeze") == 1 and ops.count("Squeeze") == 1, ops
    assert ops[0] == "Unsqueeze" and ops[-1] == "Squeeze"
    for graph in (g, g2):
        np.testing.assert_allclose(qengine.Session(graph).run({"x": x})["y"], want,
                                   rtol=1e-4, atol=1e-5)
    assert as_2d(g2) is g2                                      # nothing 1-D left


def test_static_int8_runs_the_front_end_in_2d_kernels(tmp_path):
    m = _front_end()
    x = rng.standard_normal((96, 10, 49)).astype(np.float32)
    ref = ReferenceEvaluator(m).run(None, {"x": x[64:]})[0].astype(np.float64)
    q = qengine.quantize_static(qengine.from_onnx(m), {"x": x[:64]})
    ops = [n.op_type for n in q.nodes]
    assert ops.count("QConv") == 3 and "Conv" not in ops, ops
    y = qengine.Session(q).run({"x": x[64:]})["y"]
    sqnr = 10 * np.log10(np.sum(ref ** 2) / np.sum((y - ref) ** 2))
    assert sqnr > 30, sqnr
    # the graph it exports runs in ONNX Runtime to the same values (within its int8 kernels'
    # accuracy on AVX2: its own QDQ model, compared in float)
    ort = pytest.importorskip("onnxruntime")
    qengine.export_onnx(q, tmp_path / "q.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(tmp_path / "q.onnx"), so, providers=["CPUExecutionProvider"])
    got = s.run(None, {"x": x[64:]})[0]
    assert 10 * np.log10(np.sum(ref ** 2) / np.sum((got - ref) ** 2)) > 30


def test_nearest_resize_moves_uint8_codes_between_int8_convs(tmp_path):
    """Nearest Resize in static int8 picks codes: bit-identical to running it in float between
    a dequantize and a quantize with the same qparams; linear runs on the codes too
    (tests/test_int8_reach.py), cubic stays float."""
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((4, 8, 3, 3)) * 0.3).astype(np.float32)

    def model(mode):
        nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
                 helper.make_node("Relu", ["c1"], ["r1"]),
                 helper.make_node("Resize", ["r1", "", "s"], ["u"], mode=mode, name="up"),
                 helper.make_node("Conv", ["u", "w2"], ["y"], pads=[1, 1, 1, 1])]
        g = helper.make_graph(
            nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(v, k) for k, v in
             (("w1", w1), ("w2", w2), ("s", np.array([1, 1, 2, 2], np.float32)))])
        return qengine.from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)]))
    x = rng.standard_normal((32, 3, 16, 16)).astype(np.float32)
    q = qengine.quantize_static(model("nearest"), {"x": x})
    up = next(n for n in q.nodes if n.name == "up")
    made_by = {o: n for n in q.nodes for o in n.outputs}
    t = made_by[up.inputs[0]]           # QConv's NHWC codes, transposed to the op's NCHW
    assert t.op_type == "Transpose" and made_by[t.inputs[0]].op_type == "QConv"
    qf = qengine.quantize_static(model("nearest"), {"x": x},
                                 qengine.StaticQuantConfig(keep_float={"up"}))
    assert "Resize" in [n.op_type for n in qf.nodes]
    got = qengine.Session(q).run({"x": x})["y"]
    np.testing.assert_array_equal(got, qengine.Session(qf).run({"x": x})["y"])
    assert len([n for n in q.nodes if n.op_type == "DequantizeU8"]) == 1   # only at the end
    ql = qengine.quantize_static(model("linear"), {"x": x})
    assert len([n for n in ql.nodes if n.op_type == "DequantizeU8"]) == 1  # on the codes
    qc = qengine.quantize_static(model("cubic"), {"x": x})
    assert len([n for n in qc.nodes if n.op_type == "DequantizeU8"]) == 2  # float island
    _exports_run_in_ort(q, x, got, tmp_path)


def _exports_run_in_ort(q, x, got, tmp_path):
    """QDQ run as written (dequantize -> float op -> quantize): the same integers as qengine;
    QOperator runs ORT's own int8 kernels (which saturate on AVX2, docs/accuracy.md): it loads
    and runs."""
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for fmt in ("qdq", "qoperator"):
        qengine.export_onnx(q, tmp_path / f"{fmt}.onnx", format=fmt)
        s = ort.InferenceSession(str(tmp_path / f"{fmt}.onnx"), so,
                                 providers=["CPUExecutionProvider"])
        y = s.run(None, {"x": x})[0]
        assert y.shape == got.shape
        if fmt == "qdq":
            np.testing.assert_allclose(y, got, rtol=1e-5, atol=1e-5)


def test_global_max_pool_reduces_uint8_codes_between_int8_ops(tmp_path):
    """GlobalMaxPool in static int8 takes the max of the codes at the input's qparams:
    bit-identical to the float island, and the exported QDQ / QOperator models run in ORT."""
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((5, 8)) * 0.3).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("GlobalMaxPool", ["r1"], ["p"], name="gmp"),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w2"], ["y"], transB=1)]
    g = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = qengine.from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    x = rng.standard_normal((32, 3, 12, 12)).astype(np.float32)
    q = qengine.quantize_static(model, {"x": x})
    gmp = next(n for n in q.nodes if n.name == "gmp")
    made_by = {o: n for n in q.nodes for o in n.outputs}
    assert made_by[gmp.inputs[0]].op_type == "Transpose"        # the QConv's NHWC codes
    assert len([n for n in q.nodes if n.op_type == "DequantizeU8"]) <= 1
    qf = qengine.quantize_static(model, {"x": x}, qengine.StaticQuantConfig(keep_float={"gmp"}))
    got = qengine.Session(q).run({"x": x})["y"]
    np.testing.assert_array_equal(got, qengine.Session(qf).run({"x": x})["y"])
    ref = qengine.Session(model).run({"x": x})["y"]
    assert 10 * np.log10(np.sum(ref ** 2) / np.sum((got - ref) ** 2)) > 25
    _exports_run_in_ort(q, x, got, tmp_path)
