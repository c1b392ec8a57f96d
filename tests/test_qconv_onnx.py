"""Static-int8 CNN ops against the independent oracle onnx.reference: QLinearConv, ConvInteger,
QLinearMatMul, MatMulInteger, and Dequantize → float op → QuantizeLinear chains for pooling,
Add, Mul, Concat and the activation tables. Our outputs are bit-exact with our NumPy reference
(tests/test_qconv*.py) and within ±1 of ONNX's float requantization here; integer-only results
(accumulators, max pooling) are exact."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from qengine import functional as F  # noqa: E402
from qengine.quantized.conv import QConv2d  # noqa: E402
from qengine.quantized.elementwise import QAdd, QConcat, QLookupTable, QMul  # noqa: E402
from qengine.quantized.pool import QAveragePool2d, QGlobalAveragePool, QMaxPool2d  # noqa: E402
from qengine.quantized.linear import QLinear  # noqa: E402
from qengine.reference import conv as R  # noqa: E402
from qengine.reference import gemm as RG  # noqa: E402

NP2ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.uint8): TensorProto.UINT8,
           np.dtype(np.int8): TensorProto.INT8, np.dtype(np.int32): TensorProto.INT32}


def run(nodes, feeds, out_dtype, opset=21, oracle="reference"):
    """A one-output graph of `nodes` (helper.make_node list) evaluated by onnx.reference, or by
    onnxruntime with oracle="ort" (for the cases where onnx.reference is known to be wrong)."""
    ins = [helper.make_tensor_value_info(k, NP2ONNX[np.asarray(v).dtype], np.shape(v))
           for k, v in feeds.items()]
    out = helper.make_tensor_value_info("y", NP2ONNX[np.dtype(out_dtype)], None)
    g = helper.make_graph(nodes, "g", ins, [out])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    feeds = {k: np.asarray(v) for k, v in feeds.items()}
    if oracle == "ort":
        ort = pytest.importorskip("onnxruntime")
        model.ir_version = 9
        so = ort.SessionOptions()
        # no QDQ fusion: the float op itself is the oracle, not ORT's own QLinear kernels
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    return ReferenceEvaluator(model).run(None, feeds)[0]


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def close(ours, theirs, tol=1):
    d = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
    assert d.max() <= tol, f"max |diff| {d.max()} ({np.count_nonzero(d)} of {d.size} differ)"
    return d


CONV_CASES = [  # (n, h, w, cin, cout, k, stride, dilation, pads, groups)
    (1, 8, 9, 3, 17, 3, 1, 1, (1, 1, 1, 1), 1),
    (2, 9, 8, 17, 8, 5, 2, 1, (2, 1, 0, 2), 1),
    (1, 10, 10, 5, 6, 3, 1, 2, (2, 2, 2, 2), 1),
    (1, 7, 7, 8, 12, 3, 2, 1, (1, 1, 1, 1), 4),
    (1, 9, 9, 16, 16, 3, 1, 1, (1, 1, 1, 1), 16),
    (1, 6, 5, 4, 8, 3, 1, 1, (0, 1, 1, 0), 4),
    (1, 5, 6, 33, 20, 1, 1, 1, (0, 0, 0, 0), 1),
    (1, 2, 3, 7, 5, 3, 2, 1, (1, 1, 1, 1), 1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[:6])) + f"_g{c[-1]}")
def test_qlinearconv_and_convinteger(case):
    n, h, w, cin, cout, k, s, d, pads, g = case
    rng = np.random.default_rng(cin * 31 + cout)
    x = rng.integers(0, 256, (n, h, w, cin), dtype=np.uint8)
    wt = rng.integers(-127, 128, (cout, cin // g, k, k), dtype=np.int8)
    b = rng.integers(-3000, 3000, cout).astype(np.int32)
    sx, zx, sy, zy = np.float32(0.03), np.uint8(rng.integers(0, 256)), np.float32(0.25), np.uint8(90)
    sw = rng.uniform(0.003, 0.02, cout).astype(np.float32)
    attrs = dict(strides=[s, s], dilations=[d, d], pads=list(pads), group=g,
                 kernel_shape=[k, k])
    L = QConv2d(wt, b, input_scale=sx, input_zero_point=int(zx), output_scale=sy,
                output_zero_point=int(zy), weight_scale=sw, stride=s, padding=pads, dilation=d,
                groups=g)
    ours = L(x)
    # ConvInteger: the exact int32 accumulators (zero point subtracted, padded taps = 0)
    acc = run([helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], **attrs)],
              {"x": nchw(x), "w": wt, "xz": zx, "wz": np.int8(0)}, np.int32)
    assert np.array_equal(nhwc(acc), R.qconv2d_acc_ref(x, int(zx), wt, (s, s), pads, (d, d), g))
    # QLinearConv: float requantization, ±1 of ours; ours is our reference bit for bit
    y = run([helper.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"],
                              ["y"], **attrs)],
            {"x": nchw(x), "sx": sx, "zx": zx, "w": wt, "sw": sw,
             "zw": np.zeros(cout, np.int8), "sy": sy, "zy": zy, "b": b}, np.uint8)
    dd = close(ours, nhwc(y))
    assert np.count_nonzero(dd) <= 0.02 * dd.size + 1
    assert np.array_equal(ours, R.qconv2d_ref(x, int(zx), wt, b, L.multiplier, int(zy), 0, 255,
                                              (s, s), pads, (d, d), g))


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (5, 33, 17), (13, 64, 40)])
def test_qlinearmatmul_and_matmulinteger(m, k, n):
    rng = np.random.default_rng(m + k + n)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    wt = rng.integers(-127, 128, (n, k), dtype=np.int8)
    sa, za, sy, zy = np.float32(0.02), np.uint8(17), np.float32(0.2), np.uint8(130)
    sw = rng.uniform(0.005, 0.02, n).astype(np.float32)
    acc = run([helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])],
              {"a": a, "b": np.ascontiguousarray(wt.T), "az": za, "bz": np.int8(0)}, np.int32)
    assert np.array_equal(acc, F.matmul_int32(a, int(za), wt))
    y = run([helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"],
                              ["y"])],
            {"a": a, "sa": sa, "za": za, "b": np.ascontiguousarray(wt.T), "sb": sw,
             "zb": np.zeros(n, np.int8), "sy": sy, "zy": zy}, np.uint8)
    L = QLinear(wt, None, input_scale=sa, input_zero_point=int(za), output_scale=sy,
                output_zero_point=int(zy), weight_scale=sw)
    ours = L(a)
    close(ours, y)
    assert np.array_equal(ours, RG.matmul_requant_ref(a, int(za), wt, None, L.multiplier, int(zy)))


def dq_op_q(op, xs, qps, sy, zy, oracle="reference", **attrs):
    """DequantizeLinear each input → op (float32) → QuantizeLinear: ONNX's float path."""
    nodes, feeds, names = [], {}, []
    for i, (x, (s, z)) in enumerate(zip(xs, qps)):
        feeds.update({f"x{i}": x, f"s{i}": np.float32(s), f"z{i}": np.uint8(z)})
        nodes.append(helper.make_node("DequantizeLinear", [f"x{i}", f"s{i}", f"z{i}"], [f"f{i}"]))
        names.append(f"f{i}")
    nodes.append(helper.make_node(op, names, ["r"], **attrs))
    feeds.update({"sy": np.float32(sy), "zy": np.uint8(zy)})
    nodes.append(helper.make_node("QuantizeLinear", ["r", "sy", "zy"], ["y"]))
    return run(nodes, feeds, np.uint8, oracle=oracle)


@pytest.mark.parametrize("k,s,pads,ceil,cip", [
    (3, 2, (1, 1, 1, 1), False, False), (3, 2, (1, 1, 1, 1), True, True),
    (3, 2, (0, 1, 1, 0), True, False), (2, 2, (0, 0, 0, 0), True, True),
    (5, 1, (2, 2, 2, 2), False, True), (3, 3, (1, 0, 0, 1), True, True)])
def test_pools_vs_onnx(k, s, pads, ceil, cip):
    rng = np.random.default_rng(k * 10 + s)
    x = rng.integers(0, 256, (2, 9, 10, 19), dtype=np.uint8)
    attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=list(pads), ceil_mode=int(ceil))
    mx = run([helper.make_node("MaxPool", ["x"], ["y"], **attrs)], {"x": nchw(x)}, np.uint8)
    assert np.array_equal(QMaxPool2d(k, s, pads, ceil_mode=ceil)(x), nhwc(mx))
    sx, zx, sy, zy = 0.05, 37, 0.04, 20
    P = QAveragePool2d(k, s, pads, ceil, cip, input_scale=sx, input_zero_point=zx,
                       output_scale=sy, output_zero_point=zy)
    # onnx.reference 1.23 AveragePool mis-averages windows with ceil_mode + count_include_pad
    # (e.g. k=3, s=3, pads=(1,0,0,1) on 9x10: off by up to 66 vs onnxruntime, which agrees
    # with PyTorch's rule); onnxruntime is the oracle for those cases
    oracle = "ort" if ceil and cip else "reference"
    av = dq_op_q("AveragePool", [nchw(x)], [(sx, zx)], sy, zy, oracle,
                 count_include_pad=int(cip), **attrs)
    ours = P(x)
    assert ours.shape == nhwc(av).shape
    close(ours, nhwc(av))
    assert np.array_equal(ours, R.qpool_ref(x, "avg", (k, k), (s, s), pads, (1, 1), ceil, cip,
                                            sx, zx, sy, zy))


def test_global_average_pool_vs_onnx():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (3, 7, 6, 33), dtype=np.uint8)
    G = QGlobalAveragePool(input_scale=0.1, input_zero_point=100, output_scale=0.01,
                           output_zero_point=128)
    y = dq_op_q("GlobalAveragePool", [nchw(x)], [(0.1, 100)], 0.01, 128)
    close(G(x), nhwc(y))


@pytest.mark.parametrize("shape_b", [(2, 5, 6, 17), (1, 1, 1, 17)])
def test_add_mul_concat_vs_onnx(shape_b):
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (2, 5, 6, 17), dtype=np.uint8)
    b = rng.integers(0, 256, shape_b, dtype=np.uint8)
    qa, qb, qy = (0.03, 120), (0.07, 5), (0.08, 60)
    close(QAdd(*qa, *qb, *qy)(a, b), dq_op_q("Add", [a, b], [qa, qb], *qy))
    close(QMul(*qa, *qb, 0.5, 30)(a, b), dq_op_q("Mul", [a, b], [qa, qb], 0.5, 30))
    if shape_b == a.shape:
        close(QConcat([qa, qb], *qy, axis=3)([a, b]), dq_op_q("Concat", [a, b], [qa, qb], *qy,
                                                                  axis=3))


@pytest.mark.parametrize("fn,onnx_op,kw", [
    ("sigmoid", "Sigmoid", {}), ("tanh", "Tanh", {}), ("hardsigmoid", "HardSigmoid", {}),
    ("hardswish", "HardSwish", {}), ("leakyrelu", "LeakyRelu", {"alpha": 0.1}),
    ("relu", "Relu", {})])
def test_activation_tables_vs_onnx(fn, onnx_op, kw):
    q = np.arange(256, dtype=np.uint8)
    sx, zx, sy, zy = 0.06, 140, 0.01 if fn != "tanh" else 2 / 255, 0 if fn != "tanh" else 128
    if fn in ("hardswish", "leakyrelu", "relu"):
        sy, zy = 0.04, 40
    T = QLookupTable(fn, input_scale=sx, input_zero_point=zx, output_scale=sy,
                     output_zero_point=zy, **kw)
    attrs = {"alpha": kw["alpha"]} if kw else {}
    d = close(T(q), dq_op_q(onnx_op, [q], [(sx, zx)], sy, zy, **attrs))
    assert np.count_nonzero(d) <= 8
