"""qengine.export_onnx against ONNX Runtime (and OpenVINO when installed) as oracles.

Models are small torch modules exported to ONNX here, quantized by qengine, exported, and run
by the other runtimes on the same inputs as qengine's Session on the same int8 graph.

Tolerances, and why:
- ORT with graph optimizations off runs the QDQ file op by op in float — the file's ONNX
  meaning. It must equal qengine's bytes to within 1 output step (1 LSB); the only freedom is
  float32 rounding (a DQ'd product sum, a Sigmoid in float32 where qengine's table is float64)
  landing on the other side of a rounding boundary. Seen: 0 LSB.
- ORT's (and OpenVINO's) int8 kernels on an AVX2 CPU without VNNI multiply u8 × s8 with
  `vpmaddubsw`, which saturates pairs of products at int16 (ORT documents it; qengine's design
  refuses it): with full-range weights their outputs are off by tens of LSB on this machine.
  Those tests use weights halved to 7 bits (|w| <= 63: no pair can saturate), which makes the
  comparison about the export, and allow 1 LSB for the requantize multiplier ORT computes in
  float32 (s_x·s_w/s_y) where qengine rounds it from float64. Seen: 0 LSB.
- Dynamic Linear/Conv: ORT's DynamicQuantizeLinear + MatMulInteger/ConvInteger do qengine's
  arithmetic (same activation qparams rule, exact int32 sums, float32 scaling): 1e-5 relative
  to the output's range. LSTM runs in float in ORT (ONNX has no int8 LSTM), so there the
  tolerance is the dynamic-quantization error of qengine's int8 LSTM: 5e-3 absolute on outputs
  in [-1, 1] (seen: ~3e-4).
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
nn = torch.nn

import qengine  # noqa: E402
from qengine.errors import ModelError  # noqa: E402
from qengine.graph import Graph, Node, ValueInfo  # noqa: E402


# ------------------------------------------------------------------------------ models
class SmallCNN(nn.Module):
    """conv → relu → maxpool → conv → relu → flatten → gemm (LeNet's shape, small)."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 8, 3)
        self.fc = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        y = nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        return self.fc(torch.flatten(torch.relu(self.c2(y)), 1))


class Mixed(nn.Module):
    """A residual block (QConvAdd), a depthwise conv, HardSwish, Sigmoid, Concat, AveragePool,
    GlobalAveragePool (both outputs), Gemm."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.c3 = nn.Conv2d(8, 4, 1)
        self.fc = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x):
        y = nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        z = torch.relu(self.c2(y) + y)
        c = torch.cat([nn.functional.hardswish(self.dw(z)), torch.sigmoid(self.c3(z))], 1)
        c = nn.functional.avg_pool2d(c, 2)
        return self.fc(torch.flatten(c, 1)), nn.functional.adaptive_avg_pool2d(c, 1)


MODELS = {"cnn": (SmallCNN, ["logits"]), "mixed": (Mixed, ["logits", "pooled"])}
CONFIGS = {"per_channel": {}, "per_tensor": {"per_channel": False},
           "symmetric": {"symmetric_activations": True}}


def _onnx_model(name, path, opset=13):
    cls, outputs = MODELS[name]
    torch.manual_seed(0)
    m = cls().eval()
    torch.onnx.export(m, torch.randn(2, 3, 16, 16), str(path), input_names=["x"],
                      output_names=outputs, dynamo=False, opset_version=opset,
                      dynamic_axes={"x": {0: "batch"}, **{o: {0: "batch"} for o in outputs}})
    return path


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((24, 3, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """{(model, config): int8 graph}, built once."""
    d = tmp_path_factory.mktemp("export")
    cache = {}

    def get(model, config):
        if (model, config) not in cache:
            path = _onnx_model(model, d / f"{model}.onnx")
            cfg = qengine.StaticQuantConfig(**CONFIGS[config])
            cache[model, config] = qengine.quantize_static(path, {"x": _data()}, cfg)
        return cache[model, config]
    return get


def _seven_bit(g: Graph) -> Graph:
    """The same int8 graph with every int8 weight halved (|w| <= 63): what ORT's and
    OpenVINO's AVX2 u8×s8 kernels compute without int16 saturation (module docstring)."""
    g = g.copy()
    g.initializers = {k: (v // 2).astype(np.int8) if v.dtype == np.int8 else v
                      for k, v in g.initializers.items()}
    return g


def _ort(path, feeds, optimize=True, optimized_path=None):
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


def _out_scale(g: Graph, name: str) -> float:
    """The output step of graph output `name`: the scale of the DequantizeU8 writing it."""
    (n,) = [n for n in g.nodes if name in n.outputs]
    assert n.op_type == "DequantizeU8", n.op_type
    return n.attrs["scale"]


def _assert_lsb(g, got: dict, want: dict, lsb=1):
    worst = {}
    for name, ref in want.items():
        step = _out_scale(g, name)
        d = np.abs(got[name].astype(np.float64) - ref) / step
        worst[name] = float(d.max())
        assert d.max() <= lsb + 1e-3, f"{name}: {d.max():.2f} LSB (step {step:g})"
    return worst


def _feeds():
    return {"x": _data()[:5]}


# ------------------------------------------------------------------------------ static
@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_qdq_file_means_what_qengine_computes(quantized, tmp_path, model, config):
    q = quantized(model, config)
    path = tmp_path / "q.onnx"
    qengine.export_onnx(q, path)
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = {n.op_type for n in m.graph.node}
    assert "Transpose" not in ops, "the int8 region's NHWC layout changes must not be exported"
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert m.opset_import[0].version in (13, 14)          # 14 for HardSwish
    # inputs and outputs keep their names, dtypes and shapes (the symbolic batch included)
    assert [i.name for i in m.graph.input] == ["x"]
    dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 16, 16]
    assert [o.name for o in m.graph.output] == MODELS[model][1]
    want = qengine.Session(q).run(_feeds())
    _assert_lsb(q, _ort(path, _feeds(), optimize=False), want)


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_ort_int8_kernels_run_the_export(quantized, tmp_path, model, config, fmt):
    q = _seven_bit(quantized(model, config))
    path = tmp_path / f"q.{fmt}.onnx"
    qengine.export_onnx(q, path, format=fmt)
    got = _ort(path, _feeds(), optimized_path=tmp_path / "opt.onnx")
    _assert_lsb(q, got, qengine.Session(q).run(_feeds()))
    # ORT really ran int8: its optimized graph has QLinearConv (fused from Q/DQ for "qdq").
    # With symmetric activations a conv's Relu clamps at zero point 128, which ORT does not
    # fuse (it drops a Relu before Q only when the zero point is 0): those convs run in float
    # in ORT, between Q/DQ (still within 1 LSB); the Gemm is int8
    opt = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    assert "QLinearConv" in opt or (config == "symmetric" and "QGemm" in opt), sorted(opt)


def test_qoperator_ops(quantized, tmp_path):
    q = quantized("mixed", "per_channel")
    m = qengine.export_onnx(q, tmp_path / "q.onnx", format="qoperator")
    ops = [n.op_type for n in m.graph.node]
    for op in ("QLinearConv", "QGemm", "QLinearAdd", "QLinearConcat", "QLinearSigmoid",
               "QLinearAveragePool", "QLinearGlobalAveragePool", "MaxPool"):
        assert op in ops, op
    # what has no QOperator form stays a QDQ unit: the HardSwish chain, between a DQ and a Q
    assert ops.count("DequantizeLinear") == 1 + 2     # the two outputs, the chain's input
    assert {"Mul", "Clip"} <= set(ops)
    assert {i.domain: i.version for i in m.opset_import}["com.microsoft"] == 1


def test_symmetric_relu_stays_qdq_in_qoperator(quantized, tmp_path):
    """A Relu clamp at zero point 128 cuts into [0, 255]: QLinearConv cannot express it."""
    q = quantized("cnn", "symmetric")
    m = qengine.export_onnx(q, tmp_path / "q.onnx", format="qoperator")
    ops = [n.op_type for n in m.graph.node]
    assert "QLinearConv" not in ops and ops.count("Relu") == 2 and "Conv" in ops


def test_weights_bias_and_scales_are_exact(quantized, tmp_path):
    """int8 weights per channel on axis 0 (a scalar scale when per tensor) and the bias as the
    kernels quantize it: rint(b / float32(s_x·s_w)), scale float32(s_x·s_w)."""
    from onnx import numpy_helper
    for config, per_channel in (("per_channel", True), ("per_tensor", False)):
        q = quantized("cnn", config)
        m = qengine.export_onnx(q, tmp_path / f"{config}.onnx")
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        conv = next(n for n in q.nodes if n.op_type == "QConv")
        x_s = np.float32(conv.attrs["x_scale"])
        w_s = q.initializers[conv.inputs[2]]
        wdq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and
                   n.input[0] == conv.inputs[1])       # the graph's own int8 weights, read by
        assert np.array_equal(inits[wdq.input[0]], q.initializers[conv.inputs[1]])  # a DQ
        assert inits[wdq.input[1]].shape == ((6,) if per_channel else ())
        assert np.array_equal(inits[wdq.input[1]], w_s if per_channel else w_s[0])
        assert [a.i for a in wdq.attribute if a.name == "axis"] == [0]
        b = q.initializers[conv.inputs[3]].astype(np.float64)
        bscale = (x_s * w_s).astype(np.float32)
        assert np.array_equal(inits[f"{conv.name}.B_int32"],
                              np.rint(b / bscale.astype(np.float64)).astype(np.int32))
        got = inits[f"{conv.name}.B_scale"]
        assert np.array_equal(got, bscale if per_channel else bscale[:1].reshape(()))


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_openvino_runs_the_export(quantized, tmp_path, fmt):
    ov = pytest.importorskip("openvino")
    q = _seven_bit(quantized("mixed", "per_channel"))
    path = tmp_path / "q.onnx"
    qengine.export_onnx(q, path, format=fmt)
    if fmt == "qoperator":        # OpenVINO does not read ORT's com.microsoft ops
        with pytest.raises(Exception):
            ov.Core().compile_model(str(path), "CPU")
        return
    c = ov.Core().compile_model(str(path), "CPU")
    r = c(_feeds())
    got = {o.get_any_name(): r[o] for o in c.outputs}
    _assert_lsb(q, got, qengine.Session(q).run(_feeds()))


def test_hardswish_at_opset_13_is_decomposed(quantized, tmp_path):
    q = quantized("mixed", "per_channel")
    lut = next(n for n in q.nodes if n.op_type == "QLut" and n.attrs["function"] == "chain")
    q = q.copy()      # the chain as the plain QLut HardSwish a HardSwish node lowers to
    q.nodes = [n.replace(attrs={k: v for k, v in n.attrs.items()
                                if k not in ("steps", "registers", "constants")} |
                         {"function": "hardswish"}) if n is lut else n for n in q.nodes]
    m14 = qengine.export_onnx(q, tmp_path / "a.onnx")
    m13 = qengine.export_onnx(q, tmp_path / "b.onnx", opset=13)
    assert m14.opset_import[0].version == 14
    assert "HardSwish" in {n.op_type for n in m14.graph.node}
    assert "HardSwish" not in {n.op_type for n in m13.graph.node}
    want = qengine.Session(q).run(_feeds())
    for p in ("a.onnx", "b.onnx"):
        _assert_lsb(q, _ort(tmp_path / p, _feeds(), optimize=False), want)


# ------------------------------------------------------------------------------ dynamic
class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 32)
        self.lstm = nn.LSTM(32, 24, bidirectional=True)
        self.out = nn.Linear(48, 5)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, x, im):
        y, _ = self.lstm(torch.relu(self.fc(x)))
        return self.out(y), torch.relu(self.conv(im))


def test_dynamic_graph_runs_in_ort(tmp_path):
    torch.manual_seed(0)
    x, im = torch.randn(7, 3, 16), torch.randn(2, 2, 8, 8)
    torch.onnx.export(Recurrent().eval(), (x, im), str(tmp_path / "m.onnx"),
                      input_names=["x", "im"], output_names=["y", "c"], dynamo=False,
                      opset_version=13)
    g = qengine.from_onnx(tmp_path / "m.onnx")
    q = _seven_bit(qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(cost_model=False)))
    assert {"DynamicQuantLinear", "DynamicQuantLSTM", "DynamicQuantConv"} <= \
        {n.op_type for n in q.nodes}
    m = qengine.export_onnx(q, tmp_path / "q.onnx")
    ops = {n.op_type for n in m.graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "LSTM"} <= ops
    feeds = {"x": x.numpy(), "im": im.numpy()}
    want = qengine.Session(q).run(feeds)
    got = _ort(tmp_path / "q.onnx", feeds, optimized_path=tmp_path / "opt.onnx")
    assert "DynamicQuantizeMatMul" in {n.op_type for n in onnx.load(
        str(tmp_path / "opt.onnx")).graph.node}, "ORT did not fuse the int8 MatMul"
    c_err = np.abs(got["c"] - want["c"]).max() / np.abs(want["c"]).max()
    y_err = np.abs(got["y"] - want["y"]).max()
    assert c_err < 1e-5, c_err
    assert y_err < 5e-3, y_err


def test_dynamic_linear_alone_is_exact_up_to_float_rounding(tmp_path):
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(20, 12), nn.ReLU(), nn.Linear(12, 6)).eval()
    x = torch.randn(9, 20)
    torch.onnx.export(m, x, str(tmp_path / "m.onnx"), input_names=["x"], output_names=["y"],
                      dynamo=False, opset_version=13)
    q = _seven_bit(qengine.quantize_dynamic(qengine.from_onnx(tmp_path / "m.onnx"),
                                            qengine.DynamicQuantConfig(cost_model=False)))
    qengine.export_onnx(q, tmp_path / "q.onnx")
    want = qengine.Session(q).run({"x": x.numpy()})["y"]
    got = _ort(tmp_path / "q.onnx", {"x": x.numpy()})["y"]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


# ------------------------------------------------------------------------------ other graphs
def test_a_qdq_graph_is_written_as_it_is(tmp_path):
    """A QDQ graph (not lowered) goes out node for node: ORT gives the same outputs on it as
    on the file it came from."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(np.full(4, 0.02, np.float32) *
                                     np.arange(1, 5, dtype=np.float32), "ws"),
             numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
             numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.array(120, np.uint8), "z"),
             numpy_helper.from_array(np.array(0.1, np.float32), "s2"),
             numpy_helper.from_array(np.array(3, np.uint8), "z2")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xf"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
             helper.make_node("Conv", ["xf", "wf"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["y", "s2", "z2"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "s2", "z2"], ["out"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 8, 8])], [helper.make_tensor_value_info(
            "out", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    src = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(src, str(tmp_path / "src.onnx"))
    g = qengine.from_onnx(tmp_path / "src.onnx", optimize=False, lower=False)
    m = qengine.export_onnx(g, tmp_path / "out.onnx")
    assert [n.op_type for n in m.graph.node] == [n.op_type for n in nodes]
    feeds = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}
    assert np.array_equal(_ort(tmp_path / "out.onnx", feeds)["out"],
                          _ort(tmp_path / "src.onnx", feeds)["out"])


def test_unexportable_graphs_say_which_node_and_why(quantized, tmp_path):
    with pytest.raises(ModelError, match="format"):
        qengine.export_onnx(quantized("cnn", "per_channel"), tmp_path / "a.onnx", format="qop")
    with pytest.raises(ModelError, match="opset"):
        qengine.export_onnx(quantized("cnn", "per_channel"), tmp_path / "a.onnx", opset=11)
    g = Graph([ValueInfo("x", "float32", (1, 4, 2, 2))], [ValueInfo("y", "float32", None)],
              [Node("QGemm", "qg0", ("x", "w", "ws"), ("y",),
                    {"x_scale": 0.1, "x_zero_point": 0, "y_scale": 0.1, "y_zero_point": 0})])
    with pytest.raises(ModelError, match="qg0.*initializers"):
        qengine.export_onnx(g, tmp_path / "b.onnx")
    assert not (tmp_path / "b.onnx").exists()


def test_fused_squeeze_excite_and_float_output_gemm_export(tmp_path):
    """qengine's fused float SqueezeExcite goes out as the nodes it was fused from; a
    QGemmDequant (quantized input, float output) as DQ → Gemm."""
    class SE(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc1, self.fc2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
            self.head = nn.Linear(8, 5)

        def forward(self, x):
            x = torch.relu(self.conv(x))
            s = nn.functional.adaptive_avg_pool2d(x, 1)
            x = x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))
            return self.head(x.mean((2, 3)))

    torch.manual_seed(0)
    src = tmp_path / "se.onnx"
    torch.onnx.export(SE().eval(), torch.randn(1, 3, 8, 8), str(src), dynamo=False,
                      input_names=["x"], output_names=["y"], opset_version=13)
    g = qengine.from_onnx(str(src))
    assert any(n.op_type == "SqueezeExcite" for n in g.nodes)
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    qengine.export_onnx(g, tmp_path / "f.onnx")
    np.testing.assert_allclose(_ort(tmp_path / "f.onnx", {"x": x})["y"],
                               qengine.Session(g).run({"x": x})["y"], rtol=1e-5, atol=1e-5)
    from qengine.qdq.insert import Plan, insert_qdq
    from qengine.workflows.ptq import prepare_float_graph
    fg = prepare_float_graph(g)
    qdq = insert_qdq(fg, Plan(fg, frozenset()), lambda v: (0.05, 128))
    out_q = next(n for n in qdq.nodes if n.op_type == "QuantizeLinear" and
                 n.inputs[0] == "y.float")     # drop the output's Q/DQ: a float last layer
    qdq.nodes = [n for n in qdq.nodes if n is not out_q and n.inputs[0] != out_q.outputs[0]]
    qdq.nodes = [n.replace(outputs=("y",)) if n.outputs[0] == "y.float" else n
                 for n in qdq.nodes]
    g8 = qengine.qdq.lower(qdq)
    assert any(n.op_type == "QGemmDequant" for n in g8.nodes)
    qengine.export_onnx(g8, tmp_path / "q.onnx")
    np.testing.assert_allclose(_ort(tmp_path / "q.onnx", {"x": x}, optimize=False)["y"],
                               qengine.Session(g8).run({"x": x})["y"], rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------ round trip
def test_round_trip_through_the_lowering_is_bit_identical(quantized, tmp_path):
    """export → qengine.from_onnx (which lowers QDQ files) → the same bytes as the int8 graph.
    Runs once qengine.qdq.lower exists."""
    qdq = pytest.importorskip("qengine.qdq")
    if not hasattr(qdq, "lower"):
        pytest.skip("qengine.qdq.lower is not there yet")
    for model in sorted(MODELS):
        for config in sorted(CONFIGS):
            q = quantized(model, config)
            qengine.export_onnx(q, tmp_path / "q.onnx")
            back = qengine.from_onnx(tmp_path / "q.onnx")
            want = qengine.Session(q).run(_feeds())
            got = qengine.Session(back).run(_feeds())
            for name in want:
                assert np.array_equal(got[name], want[name]), (model, config, name)


# ------------------------------------------------------------------------------ CLI
def test_cli_writes_the_onnx_export(tmp_path):
    from qengine.cli import main
    _onnx_model("cnn", tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", x=_data())
    rc = main(["quantize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "q.qe"), "--mode",
               "static", "--calib", str(tmp_path / "calib.npz"), "--onnx-out",
               str(tmp_path / "q.onnx"), "--onnx-format", "qoperator"])
    assert rc == 0
    q = qengine.load_graph(tmp_path / "q.qe")
    m = onnx.load(str(tmp_path / "q.onnx"))
    assert "QLinearConv" in {n.op_type for n in m.graph.node}
    # the file exported from the engine file is the CLI's
    again = qengine.export_onnx(tmp_path / "q.qe", tmp_path / "again.onnx", format="qoperator")
    assert again.graph == m.graph
    assert q is not None
