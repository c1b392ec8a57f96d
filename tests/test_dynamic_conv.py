"""Dynamic-int8 convolution (quantize_dynamic on CNNs): the compiled layer equals the NumPy
composition of the numerics' definitions bit for bit on every ISA, and a CNN quantized
dynamically stays close to its float output."""
import numpy as np
import pytest

import qengine
from qengine import _runtime
from qengine.quantized.dynamic_conv import DynamicConv2d
from qengine.quantized.weights import quantize_per_channel_symmetric
from qengine.reference.conv import qconv2d_acc_ref
from qengine.reference.gemm import dequant_epilogue_ref, quantize_activations_ref

ISAS = _runtime.available_isas()


def reference(x, wq, ws, b, stride, pads, dilation, groups):
    """The NumPy composition: quantize the NHWC input per tensor, int64 conv, dequant epilogue;
    float32 NCHW."""
    cout, cin = wq.shape[0], x.shape[1]
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    q, sc, z = quantize_activations_ref(xh.reshape(-1, cin))
    acc = qconv2d_acc_ref(q.reshape(xh.shape), int(z), wq, stride, pads, dilation, groups)
    assert np.all(np.abs(acc) < 2**31)
    want = dequant_epilogue_ref(acc.reshape(-1, cout).astype(np.int32), sc, ws, b)
    return want.reshape(acc.shape).transpose(0, 3, 1, 2)


CASES = [  # cin, cout, k, stride, pads, dilation, groups
    (3, 8, 3, 1, (1, 1, 1, 1), 1, 1), (6, 10, 3, 2, (0, 1, 1, 0), 1, 2),
    (8, 8, 3, 1, (1, 1, 1, 1), 2, 8), (5, 7, 1, 1, (0, 0, 0, 0), 1, 1),
    (3, 16, 7, 2, (3, 3, 3, 3), 1, 1),
    # cin_g % 4 == 0: the indirect (igemm) path, A read in place through pointers
    (16, 24, 3, 2, (1, 0, 1, 1), 1, 1), (64, 66, 3, 1, (1, 1, 1, 1), 1, 2),
    (8, 65, 3, 1, (2, 2, 2, 2), 2, 1)]


@pytest.mark.parametrize("case", CASES)
def test_bit_exact_with_numpy_definition_on_every_isa(case):
    cin, cout, k, s, p, d, g = case
    rng = np.random.default_rng(cin * 100 + cout)
    W = rng.standard_normal((cout, cin // g, k, k)).astype(np.float32)
    wq, ws = quantize_per_channel_symmetric(W.reshape(cout, -1))
    wq = wq.reshape(W.shape)
    b = rng.standard_normal(cout).astype(np.float32)
    x = rng.standard_normal((2, cin, 13, 11)).astype(np.float32)
    x[0, 0, 0, :3] = [np.inf, -np.inf, np.nan]                 # saturate / zero point
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    q, sc, z = quantize_activations_ref(xh.reshape(-1, cin))
    acc = qconv2d_acc_ref(q.reshape(xh.shape), int(z), wq, (s, s), p, (d, d), g)
    want = dequant_epilogue_ref(acc.reshape(-1, cout).astype(np.int32), sc, ws, b)
    want = want.reshape(acc.shape).transpose(0, 3, 1, 2)
    for isa in _runtime.available_isas():
        for threads in (1, 2):
            got = DynamicConv2d(wq, ws, b, stride=s, padding=p, dilation=d, groups=g,
                                isa=isa)(x, nthreads=threads)
            np.testing.assert_array_equal(got, want, err_msg=f"{isa} {threads} threads")



@pytest.mark.parametrize("size", [(7, 8), (8, 7)])
def test_same_padding_follows_the_input_size(size):
    """padding='same_lower' resolves ONNX's SAME pads for each input (here odd/even sizes with
    stride 2 and a 4-wide kernel: total pad 2 or 3, the odd one at the beginning)."""
    rng = np.random.default_rng(4)
    wq, ws = quantize_per_channel_symmetric(rng.standard_normal((5, 36)).astype(np.float32))
    wq = wq.reshape(5, 3, 4, 3)
    x = rng.standard_normal((1, 3, *size)).astype(np.float32)
    pads = [(3 - 3 // 2, 3 // 2) if n % 2 else (1, 1) for n in size]   # k=4: 3 or 2, s=2
    pads[1] = (1, 1) if size[1] % 2 else (1, 0)                         # k=3: 2 or 1
    (pt, pb), (pl, pr) = pads
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    q, sc, z = quantize_activations_ref(xh.reshape(-1, 3))
    acc = qconv2d_acc_ref(q.reshape(xh.shape), int(z), wq, (2, 2), (pt, pl, pb, pr))
    want = dequant_epilogue_ref(acc.reshape(-1, 5).astype(np.int32), sc, ws, None)
    want = want.reshape(acc.shape).transpose(0, 3, 1, 2)
    got = DynamicConv2d(wq, ws, stride=2, padding="same_lower")(x)
    assert got.shape == (1, 5, -(-size[0] // 2), -(-size[1] // 2))
    np.testing.assert_array_equal(got, want)

def test_quantize_dynamic_on_a_cnn():
    from qengine.engine_file import load_graph
    from pathlib import Path
    g = load_graph(Path(qengine.__file__).parent / "data" / "demo_cnn_digits.qe")
    q = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(cost_model=False))
    ops = [n.op_type for n in q.nodes]
    assert ops.count("DynamicQuantConv") == 3 and "Conv" not in ops
    x = np.random.default_rng(0).random((16, 1, 8, 8)).astype(np.float32)
    want = qengine.Session(g).run({"image": x})["logits"]
    got = qengine.Session(q).run({"image": x})["logits"]
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.03


def test_bad_input_is_a_clear_error():
    wq = np.ones((4, 3, 3, 3), np.int8)
    layer = DynamicConv2d(wq, np.ones(4, np.float32))
    with pytest.raises(qengine.ShapeError, match="3 channels"):
        layer(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(qengine.ShapeError, match="too small"):
        layer(np.zeros((1, 3, 2, 2), np.float32))


# Depthwise through the dequant twin of the dw kernels: channel counts around each kernel's block
# (c8 AVX2, c64 AVX-512 with its masked tail), odd sizes, strides, dilations, asymmetric pads
# (taps in the left/right/top/bottom padding and the full-run middle), batch > 1.
DW_CASES = [  # c, (h, w), k, stride, pads, dilation, batch
    (2, (5, 6), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (7, (9, 8), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2),
    (8, (6, 13), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1),
    (9, (7, 7), (3, 3), (1, 2), (0, 1, 2, 0), (2, 1), 3),
    (63, (5, 11), (3, 3), (2, 1), (1, 1, 1, 1), (1, 1), 1),
    (64, (4, 9), (1, 3), (1, 1), (0, 1, 0, 1), (1, 1), 2),
    (65, (6, 5), (5, 5), (1, 1), (2, 2, 2, 2), (1, 2), 1),
    (130, (3, 17), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (24, (1, 1), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),        # every tap but one padded
    (16, (12, 40), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 2),       # above the threading threshold
    (144, (6, 13), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),       # 3×3 rows shared by pixel pairs
    (17, (7, 12), (3, 3), (2, 2), (1, 1, 1, 1), (2, 2), 1),        # stride = dilation 2: shared too
]


def _dw_case(c, hw, k, bias=True, seed=0):
    rng = np.random.default_rng(seed + c)
    W = rng.standard_normal((c, 1, *k)).astype(np.float32)
    wq, ws = quantize_per_channel_symmetric(W.reshape(c, -1))
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    return wq.reshape(W.shape), ws, b


@pytest.mark.parametrize("case", DW_CASES)
@pytest.mark.parametrize("isa", ISAS)
def test_depthwise_bit_exact_on_every_isa(case, isa):
    c, (h, w), k, s, p, d, n = case
    wq, ws, b = _dw_case(c, (h, w), k, bias=c % 2 == 1)
    x = np.random.default_rng(c).standard_normal((n, c, h, w)).astype(np.float32) * 3
    want = reference(x, wq, ws, b, s, p, d, c)
    layer = DynamicConv2d(wq, ws, b, stride=s, padding=p, dilation=d, groups=c, isa=isa)
    assert layer.algorithm == "dw" and "dequant" in layer.kernel
    for threads in (1, 2):
        np.testing.assert_array_equal(layer(x, nthreads=threads), want,
                                      err_msg=f"{isa} {threads} threads")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ["dw", "1x1", "im2col"])
def test_extremes_255_times_minus_128(isa, algorithm):
    """Every input at the top of its range (z_a = 0, q = 255) against weights of −128: the most
    negative accumulator, exactly; and alternating signs."""
    c = 70 if algorithm == "dw" else 37
    g = c if algorithm == "dw" else 1
    k = (1, 1) if algorithm == "1x1" else (3, 3)
    pads = (0, 0, 0, 0) if algorithm == "1x1" else (1, 1, 1, 1)
    x = np.full((2, c, 5, 9), 2.5, np.float32)
    for wq in (np.full((c, c // g, *k), -128, np.int8),
               np.where(np.arange(c * (c // g) * k[0] * k[1]) % 2, 127, -128)
               .astype(np.int8).reshape(c, c // g, *k)):
        ws = np.linspace(0.5, 2.0, c).astype(np.float32)
        want = reference(x, wq, ws, None, (1, 1), pads, (1, 1), g)
        layer = DynamicConv2d(wq, ws, None, padding=pads, groups=g, isa=isa, algorithm=algorithm)
        np.testing.assert_array_equal(layer(x), want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cin,cout,groups", [(1, 1, 1), (5, 7, 1), (16, 33, 1), (64, 64, 1),
                                              (70, 130, 1), (12, 18, 3)])
def test_1x1_bit_exact_on_every_isa(isa, cin, cout, groups):
    """1×1 stride-1 convolutions run as a GEMM over the NHWC pixels: N around the GEMM tiles,
    M (pixels) = 1 and beyond one 12-row panel, groups as column offsets."""
    rng = np.random.default_rng(cin + cout)
    W = rng.standard_normal((cout, cin // groups, 1, 1)).astype(np.float32)
    wq, ws = quantize_per_channel_symmetric(W.reshape(cout, -1))
    wq = wq.reshape(W.shape)
    b = rng.standard_normal(cout).astype(np.float32)
    for shape in ((1, cin, 1, 1), (2, cin, 5, 7), (1, cin, 13, 29)):
        x = rng.standard_normal(shape).astype(np.float32)
        want = reference(x, wq, ws, b, (1, 1), (0, 0, 0, 0), (1, 1), groups)
        layer = DynamicConv2d(wq, ws, b, groups=groups, isa=isa)
        assert layer.algorithm == "1x1"
        for threads in (1, 2):
            np.testing.assert_array_equal(layer(x, nthreads=threads), want)


@pytest.mark.parametrize("isa", ISAS)
def test_every_algorithm_agrees_where_it_applies(isa):
    """A depthwise 1×1 can run as 'dw', '1x1' or 'im2col': the same bits from each."""
    c = 40
    wq, ws, b = _dw_case(c, (1, 1), (1, 1))
    x = np.random.default_rng(1).standard_normal((1, c, 6, 10)).astype(np.float32)
    want = reference(x, wq, ws, b, (1, 1), (0, 0, 0, 0), (1, 1), c)
    for algorithm in ("dw", "1x1", "im2col"):
        layer = DynamicConv2d(wq, ws, b, groups=c, isa=isa, algorithm=algorithm)
        np.testing.assert_array_equal(layer(x), want, err_msg=algorithm)
    with pytest.raises(qengine.ConfigError, match="does not apply"):
        DynamicConv2d(wq, ws, b, groups=c, stride=2, algorithm="1x1")


@pytest.mark.parametrize("isa", ISAS)
def test_depth_multiplier_runs_depthwise(isa):
    """groups = Cin with Cout = 3·Cin: each output channel o reads input channel o // 3."""
    cin, mult = 6, 3
    rng = np.random.default_rng(7)
    W = rng.standard_normal((cin * mult, 1, 3, 3)).astype(np.float32)
    wq, ws = quantize_per_channel_symmetric(W.reshape(cin * mult, -1))
    wq = wq.reshape(W.shape)
    x = rng.standard_normal((2, cin, 7, 8)).astype(np.float32)
    want = reference(x, wq, ws, None, (2, 2), (1, 1, 1, 1), (1, 1), cin)
    layer = DynamicConv2d(wq, ws, stride=2, padding=1, groups=cin, isa=isa)
    assert layer.algorithm == "dw"
    np.testing.assert_array_equal(layer(x), want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 3, 48, 320), (2, 70, 7, 9), (1, 130, 3, 65),
                                   (2, 64, 24, 40)])
def test_quantize_nchw_into_nhwc_equals_the_reference(isa, shape):
    """The fused quantize + transpose gives the bytes, scale and zero point of
    quantize_activations_ref on the NHWC copy (NaN -> z, ±Inf saturate), on 1 and 2 threads."""
    from qengine._ext import _conv
    x = np.random.default_rng(shape[1]).standard_normal(shape).astype(np.float32) * 4 - 1
    if x.size > 3:
        x.reshape(-1)[[0, 1, -1]] = [np.nan, np.inf, -np.inf]
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    q0, s0, z0 = quantize_activations_ref(xh.reshape(-1, shape[1]))
    for threads in (1, 2):
        q = np.empty(xh.shape, np.uint8)
        s, z = _conv.dynq_nchw(_runtime.ISA_NAMES.index(isa), x, q, threads)
        assert (np.float32(s), z) == (s0, z0)
        np.testing.assert_array_equal(q.reshape(-1, shape[1]), q0)


def test_graph_op_reuses_its_buffers_and_matches_the_layer():
    """DynamicQuantConv keeps its scratch in the executor's per-thread arena: repeated runs give
    the layer's result, and a graph output is never a buffer the next run overwrites."""
    from qengine.graph import Graph, Node, ValueInfo
    rng = np.random.default_rng(3)
    wq, ws, b = _dw_case(16, (1, 1), (3, 3))
    w1, s1 = quantize_per_channel_symmetric(rng.standard_normal((8, 16)).astype(np.float32))
    inits = {"wq": wq, "ws": ws, "b": b, "w1": w1.reshape(8, 16, 1, 1), "s1": s1}
    nodes = [Node("DynamicQuantConv", "dw", ("x", "wq", "ws", "b"), ("h",),
                  {"group": 16, "pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}),
             Node("DynamicQuantConv", "pw", ("h", "w1", "s1"), ("y",), {"kernel_shape": [1, 1]})]
    g = Graph([ValueInfo("x", "float32", (1, 16, 9, 11))], [ValueInfo("y")], nodes, inits)
    x = rng.standard_normal((1, 16, 9, 11)).astype(np.float32)
    want = DynamicConv2d(w1.reshape(8, 16, 1, 1), s1)(
        DynamicConv2d(wq, ws, b, padding=1, groups=16)(x))
    sess = qengine.Session(g)
    y1 = sess.run({"x": x})["y"]
    y2 = sess.run({"x": x * 2})["y"]
    y3 = sess.run({"x": x})["y"]
    np.testing.assert_array_equal(y1, want)
    np.testing.assert_array_equal(y3, want)
    assert not np.shares_memory(y1, y3) and not np.array_equal(y2, y1)


# ---- graph level: fused activations, 1-D convolutions, the keep-float rule -----------------

def _conv_graph(x_shape, w, act=None, bias=True, **attrs):
    """x -> Conv(w) [-> act] -> y, float, with static input shape."""
    from qengine.graph import Graph, Node, ValueInfo
    rng = np.random.default_rng(w.size)
    inits = {"w": w}
    ins = ("x", "w")
    if bias:
        inits["b"] = rng.standard_normal(w.shape[0]).astype(np.float32)
        ins += ("b",)
    nodes = [Node("Conv", "conv", ins, ("c" if act else "y",), dict(attrs))]
    if act == "Relu":
        nodes.append(Node("Relu", "act", ("c",), ("y",)))
    elif act == "Clip":
        inits["lo"], inits["hi"] = np.array(0.0, np.float32), np.array(6.0, np.float32)
        nodes.append(Node("Clip", "act", ("c", "lo", "hi"), ("y",)))
    elif act == "LeakyRelu":
        nodes.append(Node("LeakyRelu", "act", ("c",), ("y",), {"alpha": 0.1}))
    return Graph([ValueInfo("x", "float32", x_shape)], [ValueInfo("y")], nodes, inits)


@pytest.mark.parametrize("act", ["Relu", "Clip", "LeakyRelu"])
@pytest.mark.parametrize("kind", ["dw", "1x1", "3x3"])
def test_activation_after_the_conv_runs_in_its_output_pass(act, kind):
    """quantize_dynamic merges a Relu / Clip / LeakyRelu that is the conv's only reader into
    the DynamicQuantConv: the same bits as the dynamic conv followed by the float op (kept
    apart here with keep_float on the activation node)."""
    rng = np.random.default_rng(5)
    c = 24
    shape, group, pads = {"dw": ((c, 1, 3, 3), c, [1] * 4), "1x1": ((16, c, 1, 1), 1, [0] * 4),
                          "3x3": ((16, c, 3, 3), 1, [1] * 4)}[kind]
    g = _conv_graph((2, c, 7, 9), rng.standard_normal(shape).astype(np.float32), act,
                    group=group, pads=pads)
    fused = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(cost_model=False))
    apart = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(cost_model=False,
                                                                   keep_float={"act"}))
    assert [n.op_type for n in fused.nodes] == ["DynamicQuantConv"]
    assert fused.nodes[0].attrs["fused_activation"] == act
    assert [n.op_type for n in apart.nodes] == ["DynamicQuantConv", act]
    x = rng.standard_normal((2, c, 7, 9)).astype(np.float32) * 4
    want = qengine.Session(apart).run({"x": x})["y"]
    got = qengine.Session(fused).run({"x": x})["y"]
    np.testing.assert_array_equal(got, want)
    assert (got.min() >= 0) if act != "LeakyRelu" else (got.min() < 0)


def test_activation_is_not_merged_when_the_conv_output_has_other_readers():
    from qengine.graph import Node, ValueInfo
    rng = np.random.default_rng(6)
    g = _conv_graph((1, 8, 5, 5), rng.standard_normal((8, 8, 1, 1)).astype(np.float32), "Relu")
    g.outputs.append(ValueInfo("c"))                      # the conv's own output is read too
    q = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(cost_model=False))
    assert [n.op_type for n in q.nodes] == ["DynamicQuantConv", "Relu"]
    assert not q.nodes[0].attrs.get("fused_activation")
    del Node


@pytest.mark.parametrize("isa", ISAS)
def test_1d_convolution_runs_as_2d(isa):
    """Conv1d (silero's STFT and encoder): [N, C, L] through the 2-D kernels with H = 1, the
    same bits as the 2-D layer on x[:, :, None, :]."""
    rng = np.random.default_rng(8)
    for (n, c, length), (cout, k), stride, pad, group in (((3, 1, 300), (20, 64), 32, 0, 1),
                                                          ((2, 12, 17), (10, 3), 2, 1, 1),
                                                          ((1, 16, 21), (16, 5), 1, 2, 16)):
        W = rng.standard_normal((cout, c // group, k)).astype(np.float32)
        g = _conv_graph((n, c, length), W, group=group, strides=[stride], pads=[pad, pad])
        q = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(cost_model=False))
        node = q.nodes[0]
        assert node.op_type == "DynamicQuantConv" and q.initializers[node.inputs[1]].ndim == 3
        x = rng.standard_normal((n, c, length)).astype(np.float32)
        wq, ws = q.initializers[node.inputs[1]], q.initializers[node.inputs[2]]
        layer = DynamicConv2d(wq[:, :, None, :], ws, g.initializers["b"], stride=(1, stride),
                              padding=(0, pad, 0, pad), groups=group, isa=isa)
        want = layer(x[:, :, None, :])[:, :, 0, :]
        np.testing.assert_array_equal(qengine.Session(q).run({"x": x})["y"], want)
        np.testing.assert_array_equal(
            want, reference(x[:, :, None, :], wq[:, :, None, :], ws, g.initializers["b"],
                            (1, stride), (0, pad, 0, pad), (1, 1), group)[:, :, 0, :])


def test_keep_float_rule_is_deterministic_and_says_so():
    """A 1×1 conv with one output channel over a large input: quantizing its 64 input channels
    costs more than the float dot product it feeds, so the cost model keeps it float, names it
    in one QuantizationWarning and in slower_in_int8; a 3×3 64→64 conv is quantized. The
    decision is a pure function of the graph: the same on every call."""
    from qengine.workflows.dynamic import slower_in_int8
    rng = np.random.default_rng(9)
    thin = _conv_graph((1, 64, 56, 56), rng.standard_normal((1, 64, 1, 1)).astype(np.float32))
    wide = _conv_graph((1, 64, 28, 28), rng.standard_normal((64, 64, 3, 3)).astype(np.float32),
                       pads=[1] * 4)
    for _ in range(3):
        assert [name for name, _ in slower_in_int8(thin)] == ["conv"]
        assert slower_in_int8(wide) == []
    with pytest.warns(qengine.QuantizationWarning, match=r"kept 1 node.*Conv 'conv'.*predicted "
                      r"int8 .* µs vs float .* µs per call"):
        q = qengine.quantize_dynamic(thin)
    assert [n.op_type for n in q.nodes] == ["Conv"]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", qengine.QuantizationWarning)
        assert [n.op_type for n in qengine.quantize_dynamic(wide).nodes] == ["DynamicQuantConv"]
        q = qengine.quantize_dynamic(thin, qengine.DynamicQuantConfig(cost_model=False))
    assert [n.op_type for n in q.nodes] == ["DynamicQuantConv"]


def test_keep_float_rule_without_static_sizes_compares_per_pixel():
    """With a dynamic image size (as the text recognizer's width) the model compares the
    per-output-pixel costs: the same decisions for the same layers."""
    from qengine.workflows import dynamic_cost as C
    thin = C.conv_cost((1, 64, 1, 1), x_shape=None)
    wide = C.conv_cost((64, 64, 3, 3), pads=[1] * 4, x_shape=None)
    assert thin.keep_float and thin.basis == "per output pixel"
    assert not wide.keep_float
    dw = C.conv_cost((240, 1, 5, 5), group=240, pads=[2] * 4, x_shape=None)
    assert dw.keep_float and "depthwise" in dw.describe()


def test_keep_float_rule_keeps_depthwise_float_unless_the_map_is_small():
    """Depthwise int8 gains no arithmetic and measured slower than the float kernel on every
    map but the smallest (dynamic_cost.py): a 5×5 depthwise conv on 12×80 (PP-OCRv4's size)
    stays float, on 7×7 it is quantized; a regular conv on the same map is not held back."""
    from qengine.workflows import dynamic_cost as C
    big = C.conv_cost((240, 1, 5, 5), 240, None, [2] * 4, (1, 240, 12, 80), (1, 240, 12, 80))
    small = C.conv_cost((240, 1, 5, 5), 240, None, [2] * 4, (1, 240, 7, 7), (1, 240, 7, 7))
    dense = C.conv_cost((240, 240, 1, 1), 1, None, None, (1, 240, 12, 80), (1, 240, 12, 80))
    assert big.keep_float and "960 output pixels" in big.describe()
    assert not small.keep_float and not small.rule
    assert not dense.keep_float


def test_quantize_cli_prints_the_kept_float_note(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from qengine import cli
    rng = np.random.default_rng(10)
    g = _conv_graph((1, 64, 56, 56), rng.standard_normal((1, 64, 1, 1)).astype(np.float32))
    src = tmp_path / "thin.qe"
    qengine.save(g, src)
    rc = cli.main(["quantize", str(src), "-o", str(tmp_path / "q.qe")])
    out = capsys.readouterr().out
    assert rc == 0 and "kept 1 node(s) in float" in out and "'conv'" in out
    del onnx
