"""The QDQ IR: lowering QDQ graphs made by ONNX Runtime (and by hand) to qengine's integer ops.

Oracles: onnx.reference evaluating the same QDQ file (ONNX's semantics: integer accumulation
is exact in qengine, the reference rounds float sums, so outputs agree within one step of the
output quantization) and ONNX Runtime running it (accuracy vs FP32 compared, not bits: ORT's
AVX2 kernels saturate u8×s8 pairs and round differently)."""
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import qengine as qe  # noqa: E402
from qengine.qdq import lower  # noqa: E402

RNG = np.random.default_rng(7)


class _Net(torch.nn.Module):
    """Conv+BN+ReLU, a residual add, depthwise conv, max/avg pooling, concat, sigmoid, a
    Hardswish, global pooling and a Linear: one of each node unit the lowering has."""

    def __init__(self):
        super().__init__()
        c = torch.nn.Conv2d
        self.stem = torch.nn.Sequential(c(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16),
                                        torch.nn.ReLU())
        self.a = c(16, 16, 3, padding=1)
        self.dw = c(16, 16, 3, padding=1, groups=16)
        self.b = c(16, 8, 1)
        self.fc = torch.nn.Linear(24, 5)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.a(x) + x)
        x = torch.nn.functional.max_pool2d(x, 2)
        y = torch.nn.functional.hardswish(self.dw(x))
        z = torch.sigmoid(self.b(x))
        x = torch.cat([y, torch.nn.functional.avg_pool2d(z, 1)], 1)
        x = torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    torch.manual_seed(0)
    m = _Net().eval()
    with torch.no_grad():                       # non-trivial BN statistics
        m.stem[1].running_mean.uniform_(-0.5, 0.5)
        m.stem[1].running_var.uniform_(0.5, 2.0)
    path = str(tmp_path_factory.mktemp("qdq") / "net.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, torch.randn(1, 3, 16, 16), path, dynamo=False, input_names=["x"],
                          output_names=["y"], opset_version=13,
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    return path


def _ort_qdq(src, out, activation, per_channel, **extra):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    xs = [RNG.standard_normal((1, 3, 16, 16)).astype(np.float32) for _ in range(8)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": x} for x in xs])

        def get_next(self):
            return next(self.it, None)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(src, out, Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=getattr(QuantType, activation),
                        weight_type=QuantType.QInt8, per_channel=per_channel,
                        extra_options=extra or None)
    return out


def _reference(path, feeds):
    """onnx.reference on the file; it implements Q/DQ from opset 19, whose integer semantics
    are opset 13's (19 only adds float8 types)."""
    m = onnx.load(path)
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = max(o.version, 19)
    return ReferenceEvaluator(m).run(None, feeds)[0]


def _output_step(path):
    """The scale of the last DequantizeLinear before the graph output (one output LSB)."""
    m = onnx.load(path)
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    return float(np.max(inits[dq[-1].input[1]]))


def _sqnr(y, ref):
    return 10 * np.log10((ref ** 2).sum() / max(((y - ref) ** 2).sum(), 1e-30))


@pytest.mark.parametrize("activation,per_channel,symmetric", [
    ("QUInt8", True, False), ("QInt8", True, False), ("QUInt8", False, False),
    ("QInt8", True, True)])           # the last: TensorRT-style, int8 activations with z = 0
def test_ort_qdq_lowers_fully_and_matches_the_reference(float_model, tmp_path, activation,
                                                       per_channel, symmetric):
    extra = {"ActivationSymmetric": True} if symmetric else {}
    path = _ort_qdq(float_model, str(tmp_path / "q.onnx"), activation, per_channel, **extra)
    g, report = lower(qe.from_onnx(path, lower=False), report=True)
    ops = {n.op_type for n in g.nodes}
    assert not report, report
    assert {"QConv", "QGemm", "QLut", "QMaxPool", "QConcat"} <= ops
    assert not ops & {"Conv", "Gemm", "MatMul", "QuantizeLinear", "DequantizeLinear"}
    x = RNG.standard_normal((3, 3, 16, 16)).astype(np.float32)
    y = qe.Session(g).run({"x": x})["y"]
    ref = _reference(path, {"x": x})
    step = _output_step(path)
    assert np.abs(y - ref).max() <= step * 1.001
    # from_onnx lowers by itself, to the same graph
    y2 = qe.Session(qe.from_onnx(path)).run({"x": x})["y"]
    np.testing.assert_array_equal(y, y2)
    # accuracy next to ONNX Runtime running the same file
    yf = ort.InferenceSession(float_model, providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    yo = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert _sqnr(y, yf) >= _sqnr(yo, yf) - 0.5


def test_unlowered_qdq_graph_runs_with_onnx_semantics(float_model, tmp_path):
    path = _ort_qdq(float_model, str(tmp_path / "q.onnx"), "QInt8", True)
    g = qe.from_onnx(path, lower=False)
    assert any(n.op_type == "DequantizeLinear" for n in g.nodes)
    x = RNG.standard_normal((2, 3, 16, 16)).astype(np.float32)
    y = qe.Session(g).run({"x": x})["y"]
    np.testing.assert_allclose(y, _reference(path, {"x": x}), atol=_output_step(path) * 1.001)


def _qdq_graph(nodes, inits, x_shape=("n", 4), opset=21, out_type=TensorProto.FLOAT):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     list(x_shape))],
                          [helper.make_tensor_value_info("y", out_type, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _qdq_linear(act_dtype, w=None):
    """y = DQ(Q(x)) · DQ(W) → Q → DQ: one MatMul unit at activation type act_dtype."""
    w = RNG.integers(-127, 128, (4, 3)).astype(np.int8) if w is None else w
    zp = np.asarray(0, act_dtype)
    inits = {"s": np.float32(0.05), "z": zp, "w": w, "ws": np.float32(0.01),
             "wz": np.zeros((), w.dtype), "so": np.float32(0.02), "zo": zp}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
             helper.make_node("MatMul", ["xd", "wd"], ["m"], name="mm"),
             helper.make_node("QuantizeLinear", ["m", "so", "zo"], ["mq"]),
             helper.make_node("DequantizeLinear", ["mq", "so", "zo"], ["y"])]
    return _qdq_graph(nodes, inits)


def test_int16_activations_stay_float_with_a_warning_and_reference_semantics():
    m = _qdq_linear(np.int16)
    g0 = qe.from_onnx(m, lower=False)
    with pytest.warns(qe.QuantizationWarning, match="16-bit activations"):
        g, report = lower(g0, report=True)
    assert [(r.node, r.op_type) for r in report] == [("mm", "MatMul")]
    assert "int16" in report[0].reason
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(qe.Session(g).run({"x": x})["y"],
                               ReferenceEvaluator(m).run(None, {"x": x})[0], atol=0.02 * 1.001)


def test_int4_weights_are_unpacked_and_lowered():
    w = RNG.integers(-7, 8, (4, 3)).astype(np.int8)
    m = _qdq_linear(np.uint8, w)
    g = m.graph
    t = next(t for t in g.initializer if t.name == "w")
    t.CopyFrom(helper.make_tensor("w", TensorProto.INT4, [4, 3], w.reshape(-1).tolist()))
    t2 = next(t for t in g.initializer if t.name == "wz")
    t2.CopyFrom(helper.make_tensor("wz", TensorProto.INT4, [], [0]))
    lowered, report = lower(qe.from_onnx(m, lower=False), report=True)
    assert not report and any(n.op_type == "QGemm" for n in lowered.nodes)
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(qe.Session(lowered).run({"x": x})["y"],
                               ReferenceEvaluator(m).run(None, {"x": x})[0], atol=0.02 * 1.001)


def test_units_that_cannot_lower_are_reported_by_name_and_reason():
    # asymmetric uint8 weights (ORT's U8U8): the kernels take symmetric int8 weights
    w = RNG.integers(0, 256, (4, 3)).astype(np.uint8)
    m = _qdq_linear(np.uint8, w)
    next(t for t in m.graph.initializer if t.name == "wz").CopyFrom(
        numpy_helper.from_array(np.asarray(128, np.uint8), "wz"))
    g, report = lower(qe.from_onnx(m, lower=False), report=True)
    assert len(report) == 1 and report[0].node == "mm"
    assert "uint8" in report[0].reason
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(qe.Session(g).run({"x": x})["y"],
                               ReferenceEvaluator(m).run(None, {"x": x})[0], atol=0.02 * 1.001)


def test_keep_float_and_own_ptq_match_the_qdq_graph(float_model):
    """Static PTQ's own QDQ graph, lowered, equals that QDQ graph run in float (ONNX
    semantics) within one output step; keep_float nodes stay float."""
    from qengine.workflows.ptq import (StaticQuantConfig, build_qdq, calibrate,
                                       observe_shapes, prepare_float_graph)
    g = prepare_float_graph(qe.from_onnx(float_model))
    data = {"x": RNG.standard_normal((8, 3, 16, 16)).astype(np.float32)}
    conv = next(n.name for n in g.nodes if n.op_type == "Conv")
    for cfg in (StaticQuantConfig(), StaticQuantConfig(keep_float=frozenset({conv}))):
        data = observe_shapes(g, data)
        qdq = build_qdq(g, calibrate(g, data, cfg), cfg)
        low, report = lower(qdq, report=True, keep_float=cfg.keep_float)
        assert {n.name for n in low.nodes if n.op_type == "Conv"} == cfg.keep_float
        assert bool(report) == bool(cfg.keep_float)     # its neighbours stay float, and say why
        assert all(r.reason for r in report)
        x = RNG.standard_normal((2, 3, 16, 16)).astype(np.float32)
        y = qe.Session(low).run({"x": x})["y"]
        yq = qe.Session(qdq).run({"x": x})["y"]
        out_dq = next(n for n in qdq.nodes if n.op_type == "DequantizeLinear" and
                      n.outputs[0] == "y")
        assert np.abs(y - yq).max() <= float(qdq.initializers[out_dq.inputs[1]]) * 1.001


def test_malformed_qdq_is_rejected_with_a_clear_error():
    m = _qdq_linear(np.uint8)
    # a zero point whose type differs from the quantized input's: a ModelError naming the node
    next(t for t in m.graph.initializer if t.name == "wz").CopyFrom(
        numpy_helper.from_array(np.asarray(0, np.uint8), "wz"))
    with pytest.raises(qe.ModelError):
        qe.Session(qe.from_onnx(m)).run({"x": np.zeros((1, 4), np.float32)})


def test_inspect_lists_the_float_units(tmp_path, capsys):
    import json

    from qengine.cli import main
    w = RNG.integers(0, 256, (4, 3)).astype(np.uint8)
    m = _qdq_linear(np.uint8, w)
    path = str(tmp_path / "u8u8.onnx")
    onnx.save(m, path)
    assert main(["inspect", path, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [(f["node"], f["op"]) for f in d["float_units"]] == [("mm", "MatMul")]
    assert "uint8" in d["float_units"][0]["reason"]
    assert main(["inspect", path]) == 0
    assert "QDQ units left in float (1)" in capsys.readouterr().out


def _tiny_activation_model():
    """Conv on inputs of ~1e-6 with a bias of ~1: at s_x·s_w ≈ 1e-13 the int32 bias would be
    ~1e13 (a randomly initialised MobileNetV2's deep layers look like this)."""
    w = (RNG.standard_normal((4, 3, 3, 3)) * 0.1).astype(np.float32)
    b = np.array([1.0, -0.5, 0.25, 2.0], np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], name="conv")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     ["n", 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_a_bias_that_does_not_fit_int32_widens_the_weight_scale_not_saturates():
    m = _tiny_activation_model()
    calib = {"x": (RNG.standard_normal((8, 3, 6, 6)) * 1e-6).astype(np.float32)}
    q = qe.quantize_static(qe.from_onnx(m), calib)
    x = (RNG.standard_normal((2, 3, 6, 6)) * 1e-6).astype(np.float32)
    y = qe.Session(q).run({"x": x})["y"]
    ref = ReferenceEvaluator(m).run(None, {"x": x})[0]
    assert 10 * np.log10((ref ** 2).sum() / ((y - ref) ** 2).sum()) > 40


def test_lowering_refuses_a_float_bias_that_would_saturate():
    from qengine.qdq.insert import Plan, insert_qdq
    g = qe.from_onnx(_tiny_activation_model())
    # qparams by hand: s_x = 1e-8, weights quantized normally → bias/(s_x·s_w) ≈ 1e11
    qdq = insert_qdq(g, Plan(g, frozenset()), lambda v: (1e-8, 128) if v == "x" else (0.02, 128))
    # undo the PTQ's own widening: quantize the weights at their natural scale again
    wq = next(k for k in qdq.initializers if k.endswith("W_quantized"))
    ws = next(k for k in qdq.initializers if k.endswith("W_scale"))
    w = g.initializers["w"]
    s = np.abs(w.reshape(4, -1)).max(1) / 127
    qdq.initializers[ws] = s.astype(np.float32)
    qdq.initializers[wq] = np.rint(w / s[:, None, None, None]).astype(np.int8)
    low, report = lower(qdq, report=True)
    assert [r.node for r in report] == ["conv"] and "int32" in report[0].reason
    x = (RNG.standard_normal((2, 3, 6, 6)) * 1e-6).astype(np.float32)
    np.testing.assert_allclose(qe.Session(low).run({"x": x})["y"],
                               qe.Session(qdq).run({"x": x})["y"], rtol=0, atol=1e-6)


def test_cli_quantize_and_run_take_a_qdq_file(float_model, tmp_path, capsys):
    from qengine.cli import main
    path = _ort_qdq(float_model, str(tmp_path / "q.onnx"), "QInt8", True)
    assert main(["quantize", path, "-o", str(tmp_path / "q.qe")]) == 0
    out = capsys.readouterr().out
    assert "already quantized" in out and "none left float" in out
    x = RNG.standard_normal((2, 3, 16, 16)).astype(np.float32)
    y_engine = qe.load(str(tmp_path / "q.qe")).run({"x": x})["y"]
    np.testing.assert_array_equal(y_engine, qe.Session(qe.from_onnx(path)).run({"x": x})["y"])


def test_int16_qdq_round_trips_through_export_at_opset_21(tmp_path):
    m = _qdq_linear(np.int16)
    g = qe.from_onnx(m, lower=False)
    path = tmp_path / "int16.onnx"
    qe.export_onnx(g, path)
    out = onnx.load(str(path))
    assert [o.version for o in out.opset_import if o.domain in ("", "ai.onnx")] == [21]
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    y_ort = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    with pytest.warns(qe.QuantizationWarning):
        y = qe.Session(qe.from_onnx(str(path))).run({"x": x})["y"]
    np.testing.assert_allclose(y, y_ort, atol=0.02 * 1.001)
    np.testing.assert_allclose(y, ReferenceEvaluator(m).run(None, {"x": x})[0], atol=0.02 * 1.001)


def test_per_channel_activation_scales_between_a_conv_and_a_depthwise_conv():
    """NNCF's form before depthwise convs: the expand conv's ReLU6 output quantized per channel
    (zero point 0). The conv writes it with per-channel multipliers, the depthwise conv reads
    it with the scales folded into its own: both lower, and match onnx.reference."""
    c = 6
    w1 = RNG.integers(-127, 128, (c, 3, 1, 1)).astype(np.int8)
    w2 = RNG.integers(-127, 128, (c, 1, 3, 3)).astype(np.int8)
    # per channel, each ≤ 6/255 as a calibrated ReLU6 output is: the clip at 6 is beyond 255
    s_mid = (RNG.uniform(0.3, 1.0, c) * 6 / 255).astype(np.float32)
    inits = {
        "sx": np.float32(0.02), "zx": np.uint8(128),
        "w1": w1, "s1": (RNG.uniform(0.5, 1.5, c) * 0.002).astype(np.float32),
        "z1": np.zeros(c, np.int8), "b1": RNG.integers(-500, 500, c).astype(np.int32),
        "b1s": None,
        "smid": s_mid, "zmid": np.zeros(c, np.uint8),
        "w2": w2, "s2": (RNG.uniform(0.5, 1.5, c) * 0.004).astype(np.float32),
        "z2": np.zeros(c, np.int8),
        "lo": np.float32(0.0), "hi": np.float32(6.0),
        "so": np.float32(0.05), "zo": np.uint8(100)}
    inits["b1s"] = (np.float32(0.02) * inits["s1"]).astype(np.float32)
    inits["zb"] = np.zeros(c, np.int32)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w1", "s1", "z1"], ["w1d"], axis=0),
        helper.make_node("DequantizeLinear", ["b1", "b1s", "zb"], ["b1d"], axis=0),
        helper.make_node("Conv", ["xd", "w1d", "b1d"], ["c1"], name="expand"),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
        helper.make_node("QuantizeLinear", ["r1", "smid", "zmid"], ["mq"], axis=1),
        helper.make_node("DequantizeLinear", ["mq", "smid", "zmid"], ["md"], axis=1),
        helper.make_node("DequantizeLinear", ["w2", "s2", "z2"], ["w2d"], axis=0),
        helper.make_node("Conv", ["md", "w2d"], ["c2"], name="dw", group=c, pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c2", "so", "zo"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     ["n", 3, 7, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    low, report = lower(qe.from_onnx(m, lower=False), report=True)
    assert report == [] and sum(n.op_type == "QConv" for n in low.nodes) == 2
    with pytest.raises(qe.ModelError, match="per-channel scales"):    # not exportable yet
        qe.export_onnx(low, "unused.onnx")
    x = RNG.standard_normal((3, 3, 7, 7)).astype(np.float32)
    y = qe.Session(low).run({"x": x})["y"]
    ref = ReferenceEvaluator(m).run(None, {"x": x})[0]
    assert np.abs(y - ref).max() <= 0.05 * 1.001 and (np.abs(y - ref) > 1e-6).mean() < 0.05
    # the per-channel tensor read by a float op: dequantized per channel, exactly
    nodes2 = nodes[:8] + [helper.make_node("Sigmoid", ["md"], ["y"])]
    g2 = helper.make_graph(nodes2, "g2", list(g.input), list(g.output), list(g.initializer))
    m2 = helper.make_model(g2, opset_imports=[helper.make_opsetid("", 19)])
    low2 = lower(qe.from_onnx(m2, lower=False))
    np.testing.assert_allclose(qe.Session(low2).run({"x": x})["y"],
                               ReferenceEvaluator(m2).run(None, {"x": x})[0], atol=1e-6)
    # a scale whose clip at 6 falls inside the uint8 range needs a per-channel clamp: refused
    next(t for t in m.graph.initializer if t.name == "smid").CopyFrom(
        numpy_helper.from_array(np.full(c, 0.05, np.float32), "smid"))
    _, report = lower(qe.from_onnx(m, lower=False), report=True)
    assert [r.node for r in report][:1] == ["expand"] and "clamp" in report[0].reason
