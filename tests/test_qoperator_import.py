"""ONNX Runtime's QOperator and dynamic IntegerOps formats imported by qengine.

Oracles: onnx.reference (QLinearConv, QLinearMatMul, DynamicQuantizeLinear, MatMulInteger,
ConvInteger) and onnxruntime (the com.microsoft ops, whole models) running the same file.

Tolerances, and why:
* one QOperator node rewritten to DQ → float op → Q agrees with the integer definition within
  1 LSB of its output (the float op rounds in float32, so a value within rounding of a .5
  boundary may quantize either way);
* a whole QOperator model: those 1-LSB differences can propagate, so the final outputs may differ
  by a few output steps; we allow 4 steps and require almost all elements to be equal;
* the exact integer ops equal onnx.reference bit for bit;
* fused dynamic IntegerOps (qengine's own activation quantization instead of
  DynamicQuantizeLinear) are compared by accuracy: their error against the float model must not
  be worse than ORT's own on the same file (plus a small margin), not by bits.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from qengine import ModelError, Session  # noqa: E402
from qengine.frontends.onnx import from_onnx  # noqa: E402
from qengine.graph.integer_ops import fuse_integer_ops  # noqa: E402

rng = np.random.default_rng(11)
U8, I8, I32, F = TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, TensorProto.FLOAT
_NP = {U8: np.uint8, I8: np.int8, F: np.float32, I32: np.int32}


def _model(nodes, inputs, outputs, inits, opset=13):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset),
                                            helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m


def _qengine(m, feeds):
    """qengine's unlowered QDQ execution (ONNX semantics of the rewritten graph)."""
    try:
        g = from_onnx(m, lower=False, optimize=False)
    except TypeError:           # before the lead's `lower` keyword exists: nothing lowers yet
        g = from_onnx(m, optimize=False)
    return list(Session(g).run(feeds).values())


def _ort(m, feeds):
    return ort.InferenceSession(m.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)


def _reference(m, feeds):
    return ReferenceEvaluator(m).run(None, feeds)


def _within_1lsb(got, want, what="", equal=0.95):
    assert got.dtype == want.dtype and got.shape == want.shape, what
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert diff.max() <= 1, f"{what}: max diff {diff.max()} LSB"
    assert (diff == 0).mean() >= equal, f"{what}: {(diff != 0).mean():.0%} differ by 1"


def _q(shape, dtype):
    lo, hi = (0, 256) if dtype == U8 else (-128, 128)
    return rng.integers(lo, hi, shape).astype(_NP[dtype])


def _zp(dtype, v=None):
    if v is None:
        v = 128 if dtype == U8 else 0
    return np.array(v, _NP[dtype])


# ---- (a) each op against its oracle ---------------------------------------------------------

@pytest.mark.parametrize("act,wt,per_channel,group", [
    (U8, I8, False, 1), (U8, I8, True, 1), (I8, I8, True, 1), (U8, U8, False, 1),
    (U8, I8, True, 2)])
def test_qlinearconv(act, wt, per_channel, group):
    cin, cout = 4, 6
    x = _q((2, cin, 9, 8), act)
    w = _q((cout, cin // group, 3, 3), wt)
    ws = (rng.uniform(0.002, 0.01, cout) if per_channel else np.array(0.005)).astype(np.float32)
    wz = np.zeros(cout if per_channel else (), _NP[wt]) + (0 if wt == I8 else 120)
    b = rng.integers(-3000, 3000, cout).astype(np.int32)
    inits = {"xs": np.float32(0.02), "xz": _zp(act, 100 if act == U8 else -3), "w": w, "ws": ws,
             "wz": wz.astype(_NP[wt]), "ys": np.float32(0.05), "yz": _zp(act), "b": b}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                            ["y"], pads=[1, 0, 1, 2], strides=[2, 1], group=group, name="conv")
    m = _model([node], [("x", act, x.shape)], [("y", act)], inits)
    got, = _qengine(m, {"x": x})
    want, = _reference(m, {"x": x})
    _within_1lsb(got, want)
    # (no onnxruntime check here: its u8s8 kernels on AVX2 saturate pairs of products in int16
    # for full-range int8 weights, so ORT itself is several LSB off the definition)


@pytest.mark.parametrize("opset", [10, 21])
@pytest.mark.parametrize("act,wt,per_column", [(U8, I8, False), (U8, U8, False),
                                                (I8, I8, True)])
def test_qlinearmatmul(opset, act, wt, per_column):
    a, b = _q((3, 5, 16), act), _q((16, 7), wt)
    bs = (rng.uniform(0.002, 0.01, 7) if per_column else np.array(0.004)).astype(np.float32)
    bz = np.zeros(7 if per_column else (), _NP[wt])
    inits = {"as": np.float32(0.03), "az": _zp(act, 7), "b": b, "bs": bs, "bz": bz,
             "ys": np.float32(0.1), "yz": _zp(act)}
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"],
                            ["y"], name="mm")
    m = _model([node], [("a", act, a.shape)], [("y", act)], inits, opset=max(opset, 13)
               if per_column else opset)
    got, = _qengine(m, {"a": a})
    _within_1lsb(got, _reference(m, {"a": a})[0])


def _ms(op, ins, outs=("y",), **attrs):
    return helper.make_node(op, list(ins), list(outs), name=op.lower(), domain="com.microsoft",
                            **attrs)


@pytest.mark.parametrize("dt", [U8, I8])
@pytest.mark.parametrize("op", ["QLinearAdd", "QLinearMul"])
def test_qlinear_binary(op, dt):
    a, b = _q((2, 3, 4, 5), dt), _q((3, 1, 5), dt)
    inits = {"as": np.float32(0.05), "az": _zp(dt, 3), "bs": np.float32(0.02),
             "cs": np.float32(0.08 if op == "QLinearAdd" else 0.3), "cz": _zp(dt, 10)}
    inits["bz"] = _zp(dt, -7 if dt == I8 else 130)
    node = _ms(op, ["a", "as", "az", "b", "bs", "bz", "cs", "cz"])
    m = _model([node], [("a", dt, a.shape), ("b", dt, b.shape)], [("y", dt)], inits)
    feeds = {"a": a, "b": b}
    _within_1lsb(_qengine(m, feeds)[0], _ort(m, feeds)[0])


@pytest.mark.parametrize("dt", [U8, I8])
def test_qlinear_unary_and_pooling(dt):
    x = _q((2, 6, 7, 5), dt)
    s = {"xs": np.float32(0.04), "xz": _zp(dt, 5), "ys": np.float32(1 / 255),
         "yz": _zp(dt, 0 if dt == U8 else -128), "ys2": np.float32(0.03), "yz2": _zp(dt, 2)}
    nodes = [
        _ms("QLinearSigmoid", ["x", "xs", "xz", "ys", "yz"], ["sig"]),
        helper.make_node("QLinearLeakyRelu", ["x", "xs", "xz", "ys2", "yz2"], ["lrelu"],
                         domain="com.microsoft", alpha=0.2, name="lrelu"),
        helper.make_node("QLinearGlobalAveragePool", ["x", "xs", "xz", "ys2", "yz2"], ["gap"],
                         domain="com.microsoft", name="gap"),
        helper.make_node("QLinearGlobalAveragePool", ["x", "xs", "xz", "ys2", "yz2"],
                         ["gap_nhwc"], domain="com.microsoft", channels_last=1, name="gap2"),
        helper.make_node("QLinearAveragePool", ["x", "xs", "xz", "ys2", "yz2"], ["avg"],
                         domain="com.microsoft", kernel_shape=[3, 2], strides=[2, 2],
                         pads=[1, 0, 1, 1], count_include_pad=0, name="avg"),
        helper.make_node("QLinearAveragePool", ["x", "xs", "xz", "ys2", "yz2"], ["avg_nhwc"],
                         domain="com.microsoft", kernel_shape=[2, 2], channels_last=1,
                         name="avg2"),
        helper.make_node("QLinearSoftmax", ["x", "xs", "xz", "ys", "yz"], ["sm"],
                         domain="com.microsoft", axis=-1, opset=13, name="sm"),
        helper.make_node("QLinearConcat", ["ys2", "yz2", "x", "xs", "xz", "sig", "ys", "yz"],
                         ["cat"], domain="com.microsoft", axis=1, name="cat"),
    ]
    outs = ["sig", "lrelu", "gap", "gap_nhwc", "avg", "avg_nhwc", "sm", "cat"]
    m = _model(nodes, [("x", dt, x.shape)], [(o, dt) for o in outs], s)
    got, want = _qengine(m, {"x": x}), _ort(m, {"x": x})
    for name, g, w in zip(outs, got, want):
        # ORT's QLinearSoftmax normalises a table of exp(x) with its own rounding: 1 LSB,
        # in about a fifth of the elements
        _within_1lsb(g, w, name, equal=0.7 if name == "sm" else 0.95)


@pytest.mark.parametrize("trans_b,alpha,per_column,quantized", [
    (1, 1.0, False, True), (0, 0.5, True, True), (1, 1.0, True, False), (0, 2.0, False, False)])
def test_qgemm(trans_b, alpha, per_column, quantized):
    a = _q((4, 12), U8)
    # 7-bit weights: ORT (the oracle here) saturates u8·s8 pairs in int16 on AVX2 otherwise
    b = (_q((9, 12) if trans_b else (12, 9), I8) // 2).astype(np.int8)
    bs = (rng.uniform(0.002, 0.01, 9) if per_column else np.array(0.006)).astype(np.float32)
    inits = {"as": np.float32(0.03), "az": _zp(U8, 90), "b": b, "bs": bs,
             "bz": np.zeros(9 if per_column else (), np.int8),
             "c": rng.integers(-2000, 2000, 9).astype(np.int32),
             "ys": np.float32(0.07), "yz": _zp(U8, 100)}
    ins = ["a", "as", "az", "b", "bs", "bz", "c"] + (["ys", "yz"] if quantized else [])
    node = _ms("QGemm", ins, transB=trans_b, alpha=alpha)
    m = _model([node], [("a", U8, a.shape)], [("y", U8 if quantized else F)], inits)
    got, want = _qengine(m, {"a": a})[0], _ort(m, {"a": a})[0]
    if quantized:
        _within_1lsb(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_qlinearwhere_and_com_microsoft_qdq():
    x, v = _q((3, 4), U8), _q((1, 4), U8)
    cond = rng.random((3, 4)) > 0.5
    inits = {"xs": np.float32(0.1), "xz": _zp(U8, 3), "vs": np.float32(0.05),
             "vz": _zp(U8, 200), "zs": np.float32(0.08), "zz": _zp(U8, 50),
             "s": np.float32(0.01), "z": np.array(-4, np.int8)}
    nodes = [_ms("QLinearWhere", ["c", "x", "xs", "xz", "v", "vs", "vz", "zs", "zz"], ["w"]),
             _ms("DequantizeLinear", ["w", "zs", "zz"], ["wf"]),
             helper.make_node("QuantizeLinear", ["wf", "s", "z"], ["q"], domain="com.microsoft",
                              name="q")]
    m = _model(nodes, [("c", TensorProto.BOOL, cond.shape), ("x", U8, x.shape),
                       ("v", U8, v.shape)], [("w", U8), ("wf", F), ("q", I8)], inits)
    feeds = {"c": cond, "x": x, "v": v}
    got, want = _qengine(m, feeds), _ort(m, feeds)
    _within_1lsb(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    _within_1lsb(got[2], want[2])


# ---- (b) whole ORT-quantized models against onnxruntime --------------------------------------

torch = pytest.importorskip("torch")


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 5)
        self.mm = torch.nn.Parameter(torch.randn(5, 4))

    def forward(self, x):
        a = torch.relu(self.c1(x))
        b = torch.nn.functional.leaky_relu(self.c2(a) + a, 0.1)
        c = torch.cat([b, torch.sigmoid(a)], 1)
        c = torch.nn.functional.max_pool2d(torch.nn.functional.avg_pool2d(c, 2), 2)
        g = c.mean((2, 3), keepdim=True).flatten(1)[:, :8]
        return torch.softmax(self.fc(g) * g[:, :5], -1), self.fc(g) @ self.mm


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("qop") / "f.onnx"
    torch.onnx.export(_Net().eval(), torch.randn(2, 3, 16, 16), str(path), dynamo=False,
                      opset_version=13, input_names=["x"], output_names=["y", "z"])
    return path


def _inputs(n=4):
    return [{"x": np.random.default_rng(i).standard_normal((2, 3, 16, 16)).astype(np.float32)}
            for i in range(n)]


class _Reader:
    def __init__(self):
        self.it = iter(_inputs())

    def get_next(self):
        return next(self.it, None)


@pytest.mark.parametrize("acts,per_channel", [("U8S8", False), ("U8S8", True),
                                              ("S8S8", False), ("S8S8", True)])
def test_qoperator_model_matches_onnxruntime(float_model, acts, per_channel, tmp_path):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    out = tmp_path / "q.onnx"
    # U8S8 with 7-bit weights (reduce_range, ORT's advice for non-VNNI CPUs): ORT's own u8s8
    # kernels on AVX2 saturate pairs of products in int16 with full-range weights, which makes
    # ORT the inexact one
    quantize_static(str(float_model), str(out), _Reader(), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8 if acts == "U8S8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=per_channel,
                    reduce_range=acts == "U8S8")
    m = onnx.load(str(out))
    ops = {n.op_type for n in m.graph.node}
    assert {"QLinearConv", "QLinearAdd", "QGemm", "QLinearSoftmax"} <= ops
    g0 = from_onnx(str(out), lower=False)          # the QDQ form: no QOperator op is left
    assert not any(n.op_type.startswith("QLinear") or n.op_type == "QGemm" for n in g0.nodes)
    g = from_onnx(str(out))                           # lowered (qengine's own QGemm may appear)
    # the outputs' own steps: y is QLinearSoftmax's (1/256), z a float QGemm... dequantized
    steps = {}
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.output[0] in ("y", "z"):
            steps[n.output[0]] = float(numpy_helper.to_array(
                next(t for t in m.graph.initializer if t.name == n.input[1])))
    sess = Session(g)
    for feeds in _inputs(3):
        want = dict(zip(("y", "z"), _ort(m, feeds)))
        got = sess.run(feeds)
        for k in ("y", "z"):
            step = steps.get(k, 1e-3 * np.abs(want[k]).max())
            diff = np.abs(got[k] - want[k]) / step
            assert diff.max() <= 4.01, (k, diff.max())
            assert (diff < 0.5).mean() > 0.9


# ---- exact integer ops against onnx.reference -------------------------------------------------

def _single(op, ins, inputs, outs, inits=(), **attrs):
    node = helper.make_node(op, ins, [o for o, _ in outs], name=op.lower(), **attrs)
    return _model([node], inputs, outs, dict(inits), opset=13)


@pytest.mark.parametrize("x", [rng.standard_normal((3, 7)).astype(np.float32) * 3,
                               np.zeros((2, 2), np.float32),
                               rng.uniform(0.5, 2, (4,)).astype(np.float32),
                               -rng.uniform(0.5, 2, (4,)).astype(np.float32)])
def test_dynamic_quantize_linear_exact(x):
    m = _single("DynamicQuantizeLinear", ["x"], [("x", F, x.shape)],
                [("y", U8), ("s", F), ("z", U8)])
    for g, w in zip(_qengine(m, {"x": x}), _reference(m, {"x": x})):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("at,bt,azs,bzs", [(U8, I8, (), ()), (U8, U8, (), (6,)),
                                           (I8, U8, (5,), (6,)), (U8, U8, (5,), ())])
def test_matmul_integer_exact(at, bt, azs, bzs):
    a, b = _q((5, 9), at), _q((9, 6), bt)
    az, bz = _q(azs, at), _q(bzs, bt)
    m = _single("MatMulInteger", ["a", "b", "az", "bz"], [("a", at, a.shape)], [("y", I32)],
                {"b": b, "az": az, "bz": bz})
    got = _qengine(m, {"a": a})[0]
    if azs:     # per row of A: onnx.reference broadcasts a 1-D zero point along columns
        want = (a.astype(np.int64) - az.astype(np.int64)[:, None]) @ \
            (b.astype(np.int64) - bz.astype(np.int64))
        np.testing.assert_array_equal(got, want)
        return
    np.testing.assert_array_equal(got, _reference(m, {"a": a})[0])
    if bt == U8:    # (ORT's u8s8 kernels saturate in int16 on AVX2: no bit-exact oracle)
        np.testing.assert_array_equal(got, _ort(m, {"a": a})[0])


@pytest.mark.parametrize("rank,attrs,wzs,xt,wt", [
    (4, {"pads": [1, 2, 0, 1], "strides": [2, 1]}, (), U8, U8),
    (4, {"group": 2, "dilations": [2, 1]}, (6,), U8, U8),
    (4, {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (), U8, I8),
    (3, {"pads": [2, 1]}, (), I8, I8)])
def test_conv_integer_exact(rank, attrs, wzs, xt, wt):
    x = _q((2, 4, 9, 7)[:rank], xt)
    cin = 4 // attrs.get("group", 1)
    w = _q((6, cin, 3, 2)[:rank], wt)
    m = _single("ConvInteger", ["x", "w", "xz", "wz"], [("x", xt, x.shape)], [("y", I32)],
                {"w": w, "xz": _q((), xt), "wz": _q(wzs, wt)}, **attrs)
    np.testing.assert_array_equal(_qengine(m, {"x": x})[0], _reference(m, {"x": x})[0])


# ---- dynamic IntegerOps models --------------------------------------------------------------

class _DynNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 4 * 4, 6)
        self.w = torch.nn.Parameter(torch.randn(6, 7))

    def forward(self, x):
        a = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.c1(x)), 4)
        return self.fc(a.flatten(1)) @ self.w


@pytest.fixture(scope="module")
def dyn_float_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("dyn") / "f.onnx"
    torch.onnx.export(_DynNet().eval(), torch.randn(2, 3, 16, 16), str(path), dynamo=False,
                      opset_version=13, input_names=["x"], output_names=["y"])
    return path


@pytest.mark.parametrize("weight_type,per_channel", [("QInt8", False), ("QInt8", True),
                                                     ("QUInt8", False)])
def test_integer_ops_model(dyn_float_model, weight_type, per_channel, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    out = tmp_path / "d.onnx"
    quantize_dynamic(str(dyn_float_model), str(out), weight_type=getattr(QuantType, weight_type),
                     per_channel=per_channel, op_types_to_quantize=["Conv", "MatMul", "Gemm"])
    m = onnx.load(str(out))
    assert {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} <= \
        {n.op_type for n in m.graph.node}
    report = []
    fuse_integer_ops(from_onnx(m, optimize=False), report)
    g = from_onnx(str(out))
    ops = [n.op_type for n in g.nodes]
    fused = weight_type == "QInt8"
    if fused:       # int8 symmetric weights: qengine's dynamic ops, the file's weights
        assert ops.count("DynamicQuantLinear") == 2 and ops.count("DynamicQuantConv") == 1
        assert not {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} & set(ops)
        assert report == []
    else:           # uint8 asymmetric weights: the exact ops run, and the report says why
        assert len(report) == 3 and all("exact integer ops" in r for r in report)
    ref_float = ort.InferenceSession(str(dyn_float_model), providers=["CPUExecutionProvider"])
    sess = Session(g)
    for feeds in _inputs(3):
        got = sess.run(feeds)["y"]
        want_ort = _ort(m, feeds)[0]
        want_ref = _reference(m, feeds)[0]            # ONNX's exact integer semantics
        flt = ref_float.run(None, feeds)[0]
        span = np.abs(flt).max()
        if not fused:
            np.testing.assert_allclose(got, want_ref, rtol=1e-5, atol=1e-6 * span)
            np.testing.assert_allclose(got, want_ort, rtol=1e-5, atol=1e-6 * span)
        else:
            # accuracy, not bits: no worse than ORT's (its u8s8 kernels on AVX2 machines
            # saturate in int16, which can make ORT's error large) nor than the exact semantics
            err = np.abs(got - flt).max()
            assert err <= 1.5 * max(np.abs(want_ort - flt).max(), np.abs(want_ref - flt).max()) \
                + 0.01 * span, (err, span)


# ---- (c) malformed QOperator nodes -----------------------------------------------------------

def _conv_model(**change):
    inits = {"xs": np.float32(0.02), "xz": _zp(U8), "w": _q((6, 4, 3, 3), I8),
             "ws": np.float32(0.01), "wz": np.array(0, np.int8), "ys": np.float32(0.05),
             "yz": _zp(U8)}
    ins = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
    attrs = change.pop("attrs", {})
    for k, v in change.items():
        if v is None:
            ins[ins.index(k)] = ""
        else:
            inits[k] = v
    node = helper.make_node("QLinearConv", ins, ["y"], name="bad_conv", **attrs)
    return _model([node], [("x", U8, (1, 4, 5, 5))], [("y", U8)], inits)


@pytest.mark.parametrize("model,match", [
    (lambda: _conv_model(ws=np.full(3, 0.01, np.float32)), "w_scale must be a scalar or 1-D of "
                                                            "length 6"),
    (lambda: _conv_model(xs=np.full((1, 2), 0.01, np.float32)), "x_scale must be a scalar"),
    (lambda: _conv_model(yz=None), "y_zero_point is required"),
    (lambda: _conv_model(ys=np.float32(0.0)), "y_scale must be positive"),
    (lambda: _conv_model(attrs={"foo": 1}), r"attribute\(s\) \['foo'\] are not supported"),
    (lambda: _model([_ms("QLinearSoftmax", ["x", "s", "z", "s", "z"])],
                    [("x", U8, (2, 3))], [("y", U8)],
                    {"s": np.float32(0.1), "z": _zp(U8)}), "attribute 'opset' is required"),
    (lambda: _model([_ms("QGemm", ["a", "s", "z", "b", "s", "bz", "", "s"])],
                    [("a", U8, (2, 3))], [("y", U8)],
                    {"s": np.float32(0.1), "z": _zp(U8), "b": _q((3, 4), I8),
                     "bz": np.array(0, np.int8)}), "y_scale and y_zero_point must be given"),
    (lambda: _model([_ms("QLinearAdd", ["a", "s", "", "a", "sd", "", "s", ""])],
                    [("a", U8, (2, 3)), ("sd", F, ())], [("y", U8)],
                    {"s": np.float32(0.1)}), "B_scale .* must be a constant"),
])
def test_malformed_nodes_name_the_node(model, match):
    with pytest.raises(ModelError, match=match) as e:
        from_onnx(model())
    assert "node '" in str(e.value)


# ---- a real ORT-IntegerOps model: ddddocr (captcha OCR) --------------------------------------

def _real_model(name):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        import real_models
    finally:
        sys.path.pop(0)
    try:
        return real_models.find(name) or real_models.fetch(name)
    except Exception as e:     # offline, pip missing, the wheel changed
        pytest.skip(f"{name} not available: {e}")


def test_ddddocr_integer_ops_model():
    """ddddocr's common_old.onnx (ORT IntegerOps: uint8 asymmetric conv weights with a bias
    quantized at run time via Div/Floor/Cast, an int8 DynamicQuantizeLSTM, a uint8
    MatMulInteger): qengine runs the exact integer ops for the convs and the MatMul and its
    DynamicQuantLSTM for the LSTM. Compared on random and striped images with onnxruntime on
    the same file: the CTC logits within 3% of their range (the LSTM's activations are quantized
    differently, per the dynamic-op contract) and the greedy CTC decoding (argmax per frame)
    equal on at least 98% of the frames."""
    path = _real_model("ddddocr_int8")
    g = from_onnx(str(path))
    ops = [n.op_type for n in g.nodes]
    assert "DynamicQuantLSTM" in ops and "ConvInteger" in ops
    sess = Session(g)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    r = np.random.default_rng(5)
    stripes = np.tile((np.arange(128) // 9 % 2).astype(np.float32), (64, 1))
    for x in (r.random((1, 1, 64, 96), np.float32), stripes[None, None]):
        got = list(sess.run({"input1": x}).values())[0]
        want = ref.run(None, {"input1": x})[0]
        assert got.shape == want.shape
        span = np.abs(want).max()
        assert np.abs(got - want).max() <= 0.03 * span
        assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.98
