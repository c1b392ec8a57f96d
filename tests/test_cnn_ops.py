"""FP32 CNN ops, one ONNX node at a time, against onnx.reference.ReferenceEvaluator (and
onnxruntime for the pools, whose ceil_mode/count_include_pad corners are where runtimes
differ), over attribute combinations and opset-dependent forms."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from qengine import ModelError, Session, ShapeError  # noqa: E402
from qengine.frontends.onnx import from_onnx  # noqa: E402
from qengine.graph import Graph, Node, ValueInfo, infer_shapes  # noqa: E402

rng = np.random.default_rng(11)
F = TensorProto.FLOAT


def _randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _model(op, feeds, inits, attrs, opset, n_out=1, input_order=None):
    """One-node model: `feeds` are graph inputs, `inits` initializers ("" = omitted input)."""
    order = input_order or [*feeds, *inits]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, order, outs, **attrs)
    g = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in feeds.items()],
        [helper.make_tensor_value_info(o, F, None) for o in outs],
        [numpy_helper.from_array(v, k) for k, v in inits.items() if k])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7 if opset < 15 else 8
    return m


def _check(m, feeds, rtol=1e-5, atol=1e-5, ort=False, ref=True):
    oracles = [ReferenceEvaluator(m).run(None, feeds)] if ref else []
    if ort:
        ort_mod = pytest.importorskip("onnxruntime")
        sess = ort_mod.InferenceSession(m.SerializeToString(),
                                        providers=["CPUExecutionProvider"])
        oracles.append(sess.run(None, feeds))
    for optimize in (False, True):
        g = from_onnx(m, optimize=optimize)
        got = list(Session(g).run(feeds).values())
        for oracle in oracles:
            for w, o in zip(oracle, got):
                assert o.shape == w.shape, (o.shape, w.shape)
                np.testing.assert_allclose(o, w, rtol=rtol, atol=atol)
        # static shape inference agrees with the computed shapes (rank, and every dim it
        # knows: dims it cannot know statically are None)
        inferred = infer_shapes(g).value_info
        for name, o in zip(g.output_names, got):
            if name in inferred:
                s = inferred[name].shape
                assert len(s) == o.ndim and all(d is None or d == k for d, k in zip(s, o.shape))
    return got


CONV_CASES = [
    # (x shape, w shape, attrs)
    ((2, 3, 9, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 3, 10, 9), (5, 3, 3, 2), {"strides": [2, 1], "pads": [0, 1, 2, 0]}),
    ((1, 2, 11, 12), (3, 2, 3, 3), {"dilations": [2, 1], "strides": [1, 2], "pads": [2, 0, 1, 3]}),
    ((2, 4, 7, 7), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    ((1, 4, 8, 8), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((2, 4, 8, 7), (8, 1, 3, 3), {"group": 4, "dilations": [2, 2], "pads": [2, 1, 2, 1]}),
    ((1, 3, 9, 10), (4, 3, 4, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 3, 9, 10), (4, 3, 4, 3), {"auto_pad": "SAME_LOWER", "strides": [2, 3]}),
    ((1, 3, 9, 10), (4, 3, 3, 3), {"auto_pad": "VALID", "strides": [2, 2]}),
    ((2, 6, 5, 5), (4, 6, 1, 1), {}),
    ((1, 6, 7, 5), (4, 6, 1, 1), {"strides": [2, 2]}),
    ((2, 3, 13), (4, 3, 5), {"strides": [3], "pads": [2, 1], "dilations": [2]}),
    ((1, 2, 5, 6, 4), (3, 2, 3, 2, 2), {"pads": [1, 0, 1, 1, 1, 0], "strides": [2, 1, 1]}),
    ((1, 3, 6, 6), (4, 3, 3, 3), {"kernel_shape": [3, 3]}),
]


@pytest.mark.parametrize("opset", [7, 11, 21])
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv(case, opset):
    xs, ws, attrs = CONV_CASES[case]
    x, w, b = _randn(*xs), _randn(*ws), _randn(ws[0])
    with_bias = case % 3 != 1
    inits = {"w": w, "b": b} if with_bias else {"w": w}
    _check(_model("Conv", {"x": x}, inits, attrs, opset), {"x": x})


def test_conv_runtime_weights_and_errors():
    x, w, b = _randn(1, 4, 6, 6), _randn(6, 2, 3, 3), _randn(6)
    m = _model("Conv", {"x": x, "w": w, "b": b}, {}, {"group": 2, "pads": [1, 1, 1, 1]}, 13)
    _check(m, {"x": x, "w": w, "b": b})
    g = from_onnx(m)
    g.inputs = [ValueInfo(v.name) for v in g.inputs]  # shapes unknown: the op must check
    sess = Session(g)
    with pytest.raises(ShapeError, match="channels"):
        sess.run({"x": _randn(1, 3, 6, 6), "w": w, "b": b})
    with pytest.raises(ShapeError, match="smaller than"):
        sess.run({"x": _randn(1, 4, 1, 1), "w": _randn(6, 2, 5, 5), "b": b})
    bad = _model("Conv", {"x": x}, {"w": _randn(5, 2, 3, 3)}, {"group": 2}, 13)
    with pytest.raises(ModelError, match="multiple of group"):
        Session(from_onnx(bad, optimize=False))


POOL_CASES = [
    ((2, 3, 9, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 10, 11), {"kernel_shape": [3, 2], "strides": [2, 3], "pads": [0, 1, 1, 0]}),
    ((1, 2, 10, 11), {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 9, 9), {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1,
                    "pads": [1, 1, 0, 0]}),
    ((1, 2, 9, 10), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 9, 10), {"kernel_shape": [4, 3], "strides": [3, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 9, 10), {"kernel_shape": [3, 3], "auto_pad": "VALID"}),
    ((2, 3, 12), {"kernel_shape": [4], "strides": [3], "pads": [1, 2]}),
    ((1, 2, 5, 6, 7), {"kernel_shape": [2, 3, 2], "strides": [1, 2, 2], "pads": [0, 1, 1, 1, 0, 0]}),
]


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
@pytest.mark.parametrize("opset", [8, 11, 19])
def test_maxpool(case, opset):
    xs, attrs = POOL_CASES[case]
    if opset < 10 and "ceil_mode" in attrs:
        pytest.skip("ceil_mode exists from opset 10")
    x = _randn(*xs)
    # onnx.reference's MaxPool disagrees with onnxruntime (and us) on this SAME_LOWER case
    # (odd total pad); its AveragePool agrees, see test_averagepool
    _check(_model("MaxPool", {"x": x}, {}, attrs, opset), {"x": x}, ort=True,
           ref=attrs.get("auto_pad") != "SAME_LOWER")


@pytest.mark.parametrize("dil", [[2, 2], [1, 3]])
@pytest.mark.parametrize("ceil", [0, 1])
def test_maxpool_dilations(dil, ceil):
    x = _randn(1, 2, 11, 12)
    attrs = {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1], "dilations": dil,
             "ceil_mode": ceil}
    _check(_model("MaxPool", {"x": x}, {}, attrs, 12), {"x": x}, ort=True)


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
@pytest.mark.parametrize("include", [0, 1])
def test_averagepool(case, include):
    xs, attrs = POOL_CASES[case]
    x = _randn(*xs)
    attrs = dict(attrs, count_include_pad=include)
    _check(_model("AveragePool", {"x": x}, {}, attrs, 11), {"x": x}, ort=True)


def test_averagepool_opset7_and_dilations_opset19():
    x = _randn(1, 3, 8, 9)
    _check(_model("AveragePool", {"x": x}, {}, {"kernel_shape": [2, 2], "pads": [1, 0, 0, 1],
                                                "count_include_pad": 1}, 7), {"x": x}, ort=True)
    attrs = {"kernel_shape": [2, 3], "dilations": [2, 1], "strides": [1, 2],
             "pads": [1, 1, 1, 0]}
    _check(_model("AveragePool", {"x": x}, {}, attrs, 19), {"x": x})


@pytest.mark.parametrize("dil,strides", [([2, 3], [2, 1]), ([3, 2], [3, 2])])
@pytest.mark.parametrize("ceil", [0, 1])
@pytest.mark.parametrize("include", [0, 1])
def test_averagepool_dilations_vs_onnxruntime(dil, strides, ceil, include):
    """Dilated windows with ceil_mode and count_include_pad: the divisor counts the taps in the
    input (and its explicit pads), never the ceil_mode overhang. onnx.reference 1.23 gets every
    window of the ceil_mode case with strides [3, 2] wrong (checked by hand: onnxruntime and we
    agree with explicit window sums), so there onnxruntime is the only oracle."""
    x = _randn(1, 2, 11, 12)
    attrs = {"kernel_shape": [3, 2], "strides": strides, "pads": [1, 0, 2, 1],
             "dilations": dil, "ceil_mode": ceil, "count_include_pad": include}
    _check(_model("AveragePool", {"x": x}, {}, attrs, 19), {"x": x}, ort=True,
           ref=not (ceil and strides == [3, 2]))


def test_maxpool_indices_output_is_refused():
    x = _randn(1, 1, 4, 4)
    m = _model("MaxPool", {"x": x}, {}, {"kernel_shape": [2, 2]}, 12, n_out=2)
    with pytest.raises(ModelError, match="Indices"):
        from_onnx(m)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 4, 7), (1, 2, 3, 4, 2)])
def test_global_pools(op, shape):
    x = _randn(*shape)
    # onnx.reference's GlobalMaxPool drops dims for rank != 4 inputs
    _check(_model(op, {"x": x}, {}, {}, 13), {"x": x}, ort=True, ref=len(shape) == 4)


@pytest.mark.parametrize("opset", [7, 9, 15])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 3), (2, 3, 7)])
def test_batchnorm(opset, shape):
    x = _randn(*shape)
    c = shape[1]
    inits = {"s": _randn(c), "b": _randn(c), "m": _randn(c),
             "v": rng.uniform(0.5, 2, c).astype(np.float32)}
    # onnxruntime only below opset 14: onnx.reference's BatchNormalization crashes at opset 7
    # and disagrees with onnxruntime (which agrees with us) at opset 9
    _check(_model("BatchNormalization", {"x": x}, inits, {"epsilon": 1e-3}, opset), {"x": x},
           ort=True, ref=opset >= 14)


def test_batchnorm_runtime_stats_and_training_mode_refused():
    x, c = _randn(2, 3, 4, 4), 3
    feeds = {"x": x, "s": _randn(c), "b": _randn(c), "m": _randn(c),
             "v": rng.uniform(0.5, 2, c).astype(np.float32)}
    _check(_model("BatchNormalization", feeds, {}, {}, 14), feeds)
    m = _model("BatchNormalization", feeds, {}, {"training_mode": 1}, 15)
    with pytest.raises(ModelError, match="training_mode"):
        from_onnx(m)


def _lrn_spec(x, size, alpha, beta, bias):
    """The ONNX spec's formula, loop for loop, in float64."""
    x64, c = x.astype(np.float64), x.shape[1]
    y = np.empty_like(x64)
    for ch in range(c):
        lo, hi = max(0, ch - (size - 1) // 2), min(c - 1, ch + -(-(size - 1) // 2))
        sq = np.sum(x64[:, lo:hi + 1] ** 2, axis=1)
        y[:, ch] = x64[:, ch] / (bias + alpha / size * sq) ** beta
    return y


@pytest.mark.parametrize("size", [1, 3, 4, 5])
def test_lrn(size):
    """onnxruntime (odd sizes only: it refuses even ones) and the spec formula; onnx.reference
    disagrees with both."""
    x = _randn(2, 7, 3, 4)
    attrs = {"size": size, "alpha": 1e-2, "beta": 0.75, "bias": 2.0}
    got = _check(_model("LRN", {"x": x}, {}, attrs, 13), {"x": x}, rtol=1e-5, atol=1e-6,
                 ort=size % 2 == 1, ref=False)
    np.testing.assert_allclose(got[0], _lrn_spec(x, size, 1e-2, 0.75, 2.0), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("opset", [7, 11, 18])
def test_pad(mode, opset):
    x = _randn(2, 3, 5, 6)
    pads = [0, 1, 2, 1, 0, 0, 1, 2]
    if opset < 11:
        attrs = {"pads": pads, "mode": mode, "value": 1.5}
        m = _model("Pad", {"x": x}, {}, attrs, opset)
    elif opset < 18:
        m = _model("Pad", {"x": x}, {"p": np.array(pads, np.int64),
                                     "v": np.array(1.5, np.float32)}, {"mode": mode}, opset)
    else:  # axes input: pad only the two spatial axes; negative pads crop
        m = _model("Pad", {"x": x}, {"p": np.array([1, -1, 2, 0], np.int64),
                                     "v": np.array(1.5, np.float32),
                                     "a": np.array([2, -1], np.int64)}, {"mode": mode}, opset)
    # onnx.reference's Pad cannot crop (negative pads)
    _check(m, {"x": x}, ort=True, ref=opset < 18)



@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap", "constant"])
@pytest.mark.parametrize("pads", [[0, 3, 0, 0], [0, 7, 0, 9], [0, 0, 0, 1], [0, -2, 0, 5]])
def test_pad_gather_path_matches_numpy(mode, pads):
    """Pad gathers precomputed indices instead of calling np.pad: np.pad is the oracle, with
    pads longer than the axis (reflect repeats periodically), a size-1 axis, crops, and two
    calls with different input widths through the same node (its per-shape plan cache)."""
    m = _model("Pad", {"x": _randn(2, 5)}, {"p": np.array(pads, np.int64),
                                           "v": np.array(-2.5, np.float32)},
               {"mode": mode}, 18)
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "w"
    sess = Session(from_onnx(m, optimize=False))
    for w in (5, 1, 4, 5):
        x = _randn(2, w)
        crop = x[:, max(-pads[1], 0):w - max(-pads[3], 0)]
        width = ((0, 0), (max(pads[1], 0), max(pads[3], 0)))
        kw = {"constant_values": -2.5} if mode == "constant" else {}
        if crop.shape[1] == 0 and mode != "constant":
            with pytest.raises(ShapeError):
                sess.run({"x": x})
            continue
        np.testing.assert_array_equal(sess.run({"x": x})["y0"], np.pad(crop, width, mode, **kw))


def test_gather_constant_indices_checked_per_shape():
    """Constant indices are range-checked once per axis size; a smaller input still fails."""
    m = _model("Gather", {"x": _randn(6, 3)}, {"i": np.array([5, -6], np.int64)}, {"axis": 0}, 13)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
    sess = Session(from_onnx(m, optimize=False))
    x = _randn(6, 3)
    for _ in range(2):
        np.testing.assert_array_equal(sess.run({"x": x})["y0"], x[[5, 0]])
    with pytest.raises(ShapeError, match="indices"):
        sess.run({"x": _randn(5, 3)})
    np.testing.assert_array_equal(sess.run({"x": x})["y0"], x[[5, 0]])

ELEMENTWISE = [
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 7),
    ("HardSigmoid", {}, 13),
    ("HardSwish", {}, 14),
    ("LeakyRelu", {"alpha": 0.2}, 7),
    ("Relu", {}, 14),
    ("Sigmoid", {}, 13),
    ("Softmax", {"axis": 1}, 7),
    ("Softmax", {"axis": 1}, 13),
    ("Flatten", {"axis": 2}, 9),
    ("Transpose", {"perm": [0, 2, 3, 1]}, 13),
    ("Identity", {}, 13),
    ("Dropout", {"ratio": 0.3}, 7),
    ("Dropout", {}, 13),
]


@pytest.mark.parametrize("op,attrs,opset", ELEMENTWISE)
def test_unary_ops(op, attrs, opset):
    x = _randn(2, 3, 4, 5) * 4
    # onnx.reference runs pre-13 Softmax with the opset-13 (single axis) semantics
    _check(_model(op, {"x": x}, {}, attrs, opset), {"x": x}, ort=True,
           ref=not (op == "Softmax" and opset < 13))


def test_dropout_mask_unread_is_dropped():
    x = _randn(2, 3)
    _check(_model("Dropout", {"x": x}, {}, {}, 9, n_out=1), {"x": x})
    node = helper.make_node("Dropout", ["x"], ["y0", "mask"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", F, [2, 3])],
                          [helper.make_tensor_value_info("y0", F, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)])
    m.ir_version = 7
    _check(m, {"x": x})


@pytest.mark.parametrize("op", ["Sum", "Max", "Min", "Mean"])
@pytest.mark.parametrize("opset", [8, 13])
def test_variadic(op, opset):
    feeds = {"a": _randn(2, 3, 4), "b": _randn(3, 1), "c": _randn(1, 4)}
    _check(_model(op, feeds, {}, {}, opset), feeds)
    one = {"a": _randn(2, 3)}
    _check(_model(op, one, {}, {}, opset), one)


@pytest.mark.parametrize("opset", [7, 11, 13])
def test_clip_forms(opset):
    x = _randn(3, 4) * 3
    if opset < 11:
        m = _model("Clip", {"x": x}, {}, {"min": -0.5, "max": 6.0}, opset)
    else:
        m = _model("Clip", {"x": x}, {"lo": np.array(0, np.float32),
                                      "hi": np.array(6, np.float32)}, {}, opset)
    _check(m, {"x": x})


def test_concat_reshape_mul_add_broadcast():
    a, b = _randn(2, 3, 4, 4), _randn(2, 5, 4, 4)
    _check(_model("Concat", {"a": a, "b": b}, {}, {"axis": 1}, 7), {"a": a, "b": b})
    _check(_model("Concat", {"a": a, "b": b}, {}, {"axis": -3}, 13), {"a": a, "b": b})
    s = _randn(3, 1, 1)
    _check(_model("Mul", {"a": a}, {"s": s}, {}, 13), {"a": a})
    _check(_model("Add", {"a": a}, {"s": s}, {}, 7), {"a": a})
    _check(_model("Reshape", {"a": a}, {"s": np.array([0, -1], np.int64)}, {}, 7), {"a": a})


def test_reshape_with_a_constant_target_follows_each_input_shape():
    """Reshape caches its resolved target per input shape: a symbolic batch must get a fresh
    one for every new shape, and a wrong size still fails, also after a good call."""
    g = Graph([ValueInfo("x", "float32", ("n", 6))], [ValueInfo("y")],
              [Node("Reshape", "r", ("x", "s"), ("y",))], {"s": np.array([0, 2, -1], np.int64)})
    s = Session(g)
    for n in (1, 4, 1, 7):
        x = _randn(n, 6)
        np.testing.assert_array_equal(s.run({"x": x})["y"], x.reshape(n, 2, 3))
    bad = Graph([ValueInfo("x", "float32", ("n", 6))], [ValueInfo("y")],
                [Node("Reshape", "r", ("x", "s"), ("y",))], {"s": np.array([-1, 4], np.int64)})
    sb = Session(bad)
    sb.run({"x": _randn(2, 6)})
    with pytest.raises(ShapeError, match="cannot reshape"):
        sb.run({"x": _randn(3, 6)})


@pytest.mark.parametrize("op", ["Erf", "Gelu", "Mod", "PRelu"])
def test_shape_inference_goes_through_elementwise_ops(op):
    """An op without a shape rule stopped shape inference, and with it the folding of every
    shape computation after it (a torch TransformerEncoder kept its Shape nodes past layer 0)."""
    nodes = [Node(op, "e", ("x", "k") if op in ("Mod", "PRelu") else ("x",), ("e",),
                  {"fmod": 1} if op == "Mod" else {}),
             Node("Shape", "s", ("e",), ("shape",))]
    g = Graph([ValueInfo("x", "float32", (2, 3))], [ValueInfo("shape")], nodes,
              {"k": np.full((1, 3), 0.5, np.float32)})
    info = infer_shapes(g).value_info
    assert info["e"].shape == (2, 3) and info["e"].dtype == "float32"
    assert info["shape"].shape == (2,)


def test_fused_activation_attribute_on_conv_and_gemm():
    """The FP32 ops apply fused_activation themselves (numpy oracle: conv then clamp)."""
    x, w = _randn(1, 2, 5, 5), _randn(3, 2, 3, 3)
    plain = Graph([ValueInfo("x", "float32", (1, 2, 5, 5))], [ValueInfo("y")],
                  [Node("Conv", "c", ("x", "w"), ("y",))], {"w": w})
    ref = Session(plain).run({"x": x})["y"]
    for act, params, fn in [("Relu", [], lambda v: np.maximum(v, 0)),
                            ("Clip", [-0.5, 1.0], lambda v: np.clip(v, -0.5, 1.0)),
                            ("LeakyRelu", [0.1], lambda v: np.where(v < 0, 0.1 * v, v))]:
        g = plain.copy()
        g.nodes = [g.nodes[0].replace(attrs={"fused_activation": act,
                                             "fused_activation_params": params})]
        np.testing.assert_allclose(Session(g).run({"x": x})["y"], fn(ref), rtol=1e-6)
    bad = plain.copy()
    bad.nodes = [bad.nodes[0].replace(attrs={"fused_activation": "Clip",
                                             "fused_activation_params": [1.0]})]
    with pytest.raises(ModelError, match="takes 2 params"):
        bad.verify()
    bad.nodes = [bad.nodes[0].replace(attrs={"fused_activation": "Tanh"})]
    with pytest.raises(ModelError, match="not one of"):
        bad.verify()
    a, bm = _randn(4, 5), _randn(5, 3)
    gg = Graph([ValueInfo("a", "float32", (4, 5))], [ValueInfo("y")],
               [Node("Gemm", "g", ("a", "b"), ("y",),
                     {"fused_activation": "Clip", "fused_activation_params": [0.0, 0.5]})],
               {"b": bm})
    np.testing.assert_allclose(Session(gg).run({"a": a})["y"], np.clip(a @ bm, 0, 0.5),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op,inits,attrs,opset", [
    ("Slice", {"s": np.array([1, 0], np.int64), "e": np.array([-1, 9], np.int64),
               "a": np.array([1, 0], np.int64), "st": np.array([2, 1], np.int64)}, {}, 13),
    ("Squeeze", {"a": np.array([0], np.int64)}, {}, 13),
    ("Unsqueeze", {"a": np.array([0, -1], np.int64)}, {}, 13),
])
def test_shape_ops_plan_cache_follows_the_input_shape(op, inits, attrs, opset):
    """Slice/Squeeze/Unsqueeze cache their index/shape per input shape: several shapes through
    one node in turn (a cached one again at the end) match onnx.reference each time, and a
    shape the node cannot take still fails after a good one."""
    m = _model(op, {"x": _randn(1, 7)}, inits, attrs, opset)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param, dims[1].dim_param = "a", "b"
    sess = Session(from_onnx(m, optimize=False))
    for shape in ((1, 7), (1, 3), (1, 12), (1, 7)):
        x = _randn(*shape)
        np.testing.assert_array_equal(sess.run({"x": x})["y0"],
                                      ReferenceEvaluator(m).run(None, {"x": x})[0])
    if op == "Squeeze":
        with pytest.raises(ShapeError, match="size is not 1"):
            sess.run({"x": _randn(2, 7)})
