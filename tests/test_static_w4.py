"""Static Conv / Gemm with 4-bit weights held two per byte in memory (include/qengine/conv/
qe_conv_w4.h): every ISA against the NumPy references (qconv2d_ref, matmul_requant_ref, qadd_ref),
the automatic choice and its errors, and whole quantized models whose layers then hold int4 —
bit for bit what the int8 kernels give on the same int8 weights. The C harness
(tests/c/test_isa_kernels.c, test_conv_w4) covers the same driver on NEON under qemu."""
import copy

import numpy as np
import pytest

import qengine
from qengine import ConfigError, ModelError, _runtime
from qengine.quantized.conv import QConv2d, QConvAdd2d
from qengine.quantized.elementwise import QAdd
from qengine.quantized.linear import QLinear
from qengine.reference import conv as R
from qengine.reference.gemm import matmul_requant_ref

ISAS = [pytest.param(i, marks=pytest.mark.skipif(
    i not in _runtime.available_isas(), reason=f"{i} not compiled in or not runnable on this CPU"))
    for i in _runtime.ISA_NAMES]

# cout, cin, kh, kw, stride, pads (t, l, b, r), dilation, groups, input (n, h, w)
CONVS = [
    (5, 3, 3, 3, 1, (1, 1, 1, 1), 1, 1, (1, 5, 5)),          # K = 27: a zero tail to 32
    (20, 8, 3, 3, 2, (1, 1, 1, 1), 1, 1, (2, 7, 6)),         # batch, stride 2
    (17, 4, 3, 3, 1, (2, 2, 2, 2), 2, 1, (1, 9, 9)),         # dilation
    (8, 8, 1, 1, 1, (0, 0, 0, 0), 1, 2, (1, 6, 6)),          # 1×1 groups
    (16, 3, 7, 7, 2, (3, 3, 3, 3), 1, 1, (1, 11, 11)),       # RGB stem
    (33, 6, 2, 3, 1, (1, 0, 0, 2), 1, 3, (1, 4, 5)),         # asymmetric padding, groups 3
    (40, 32, 1, 1, 1, (0, 0, 0, 0), 1, 1, (1, 13, 7)),       # 1×1 read in place (C = 32)
    (64, 64, 3, 3, 1, (1, 1, 1, 1), 1, 1, (1, 9, 9)),        # deep K, 81 pixels: 2 blocks
]


def _conv_case(rng, case, pattern):
    cout, cin, kh, kw, s, pads, d, g, (n, h, w) = case
    if pattern == "random":
        wq = rng.integers(-7, 8, (cout, cin // g, kh, kw)).astype(np.int8)
        x = rng.integers(0, 256, (n, h, w, cin)).astype(np.uint8)
        zx = int(rng.integers(0, 256))
    else:                  # 255 × ±7 on every tap, z_x = 0: the largest sums
        wq = np.full((cout, cin // g, kh, kw), 7 if pattern == "+7" else -7, np.int8)
        x = np.full((n, h, w, cin), 255, np.uint8)
        zx = 0
    ws = rng.uniform(0.5, 1.5, cout).astype(np.float32) * 0.02
    return wq, ws, x, zx


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", CONVS, ids=lambda c: "x".join(map(str, c[:4])) + f"g{c[7]}")
@pytest.mark.parametrize("pattern", ["random", "+7", "-7"])
def test_w4_conv_equals_the_reference(isa, case, pattern):
    rng = np.random.default_rng(hash((case, pattern)) % 2**32)
    wq, ws, x, zx = _conv_case(rng, case, pattern)
    cout, _, _, _, s, pads, d, g, _ = case
    bias = rng.normal(0, 2, cout).astype(np.float32)
    kw = dict(input_scale=0.04, input_zero_point=zx, output_scale=0.3 if pattern == "random"
              else 40.0, output_zero_point=120, weight_scale=ws, stride=s, padding=pads,
              dilation=d, groups=g, isa=isa)
    # no ReLU on the extremes: the −7 sums must reach the output, not the clamp
    conv = QConv2d(wq, bias, activation="relu" if pattern == "random" else None, **kw)
    assert conv.weight_bits == 4 and "_s4_" in conv.kernel
    want = R.qconv2d_ref(x, zx, wq, conv.bias_int32, conv.multiplier, 120, lo=conv.lo,
                         hi=conv.hi, stride=(s, s), pads=pads, dilation=(d, d), groups=g)
    np.testing.assert_array_equal(conv(x), want)
    assert 0 < (want > conv.lo).mean() and (want < conv.hi).mean() > 0.5   # not all clamped
    # the compiled call of the graph executor, on 1 and 2 threads
    shape, fn = conv.prepare_call(x.shape)
    y = np.empty(shape, np.uint8)
    fn(x, y)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(conv(x, nthreads=2), want)


@pytest.mark.parametrize("isa", ISAS)
def test_w4_conv_with_fused_residual_equals_conv_then_add(isa):
    rng = np.random.default_rng(3)
    for case in (CONVS[1], CONVS[6]):
        wq, ws, x, zx = _conv_case(rng, case, "random")
        conv = QConv2d(wq, None, input_scale=0.04, input_zero_point=zx, output_scale=0.3,
                       output_zero_point=120, weight_scale=ws, stride=case[4], padding=case[5],
                       groups=case[7], isa=isa)
        add = QAdd(0.3, 120, 0.2, 100, 0.5, 0, activation="relu", isa=isa)
        fused = QConvAdd2d(conv, add)
        skip = rng.integers(0, 256, conv.output_shape(x.shape)).astype(np.uint8)
        conv_ref = R.qconv2d_ref(x, zx, wq, conv.bias_int32, conv.multiplier, 120,
                                 stride=(case[4],) * 2, pads=case[5], groups=case[7])
        want = R.qadd_ref(conv_ref, 0.3, 120, skip, 0.2, 100, 0.5, 0, lo=0)
        assert fused.fused and conv.weight_bits == 4
        np.testing.assert_array_equal(fused(x, skip), want)
        shape, fn = fused.prepare_call(x.shape, skip.shape)
        y = np.empty(shape, np.uint8)
        fn(x, skip, y)
        np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n", [(1, 16, 16), (7, 50, 33), (64, 256, 40), (5, 4099, 17),
                                   (130, 48, 70)])
def test_w4_linear_equals_the_reference(isa, m, k, n):
    rng = np.random.default_rng(m * 1000 + k)
    wq = rng.integers(-7, 8, (n, k)).astype(np.int8)
    ws = rng.uniform(0.5, 1.5, n).astype(np.float32) * 0.01
    x = rng.integers(0, 256, (m, k)).astype(np.uint8)
    lin = QLinear(wq, rng.normal(0, 1, n).astype(np.float32), input_scale=0.05,
                  input_zero_point=9, output_scale=0.05 * np.sqrt(k), output_zero_point=128,
                  weight_scale=ws, isa=isa)
    assert lin.weight_bits == 4
    want = matmul_requant_ref(x, 9, wq, lin.bias_int32, lin.multiplier, 128)
    np.testing.assert_array_equal(lin(x), want)
    np.testing.assert_array_equal(lin(x.reshape(1, m, k))[0], want)   # leading dims
    shape, fn = lin.prepare_call(x.shape)
    y = np.empty(shape, np.uint8)
    fn(x, y)
    np.testing.assert_array_equal(y, want)


def test_weight_storage_is_chosen_from_the_weights_and_checked():
    rng = np.random.default_rng(0)
    small = rng.integers(-7, 8, (8, 4, 3, 3)).astype(np.int8)
    big = small.copy()
    big[0, 0, 0, 0] = 8
    qp = dict(input_scale=0.1, input_zero_point=0, output_scale=0.1, output_zero_point=0,
              weight_scale=np.ones(8, np.float32))
    assert QConv2d(small, **qp).weight_bits == 4
    assert QConv2d(big, **qp).weight_bits == 8
    assert QConv2d(small, weight_bits=8, **qp).weight_bits == 8
    assert QConv2d(np.zeros_like(small), **qp).weight_bits == 8       # nothing to gain
    with pytest.raises(ConfigError, match=r"weight_bits=4 needs int8 weights in \[-7, 7\].*8"):
        QConv2d(big, weight_bits=4, **qp)
    with pytest.raises(ConfigError, match="weight_bits must be None, 8 or 4"):
        QConv2d(small, weight_bits=2, **qp)
    dw = QConv2d(rng.integers(-7, 8, (4, 1, 3, 3)).astype(np.int8), groups=4,
                 **{**qp, "weight_scale": np.ones(4, np.float32)})
    assert dw.algorithm == "dw" and dw.weight_bits == 8      # depthwise stays int8


def test_w4_packing_is_half_a_byte_per_weight():
    rng = np.random.default_rng(1)
    wq = rng.integers(-7, 8, (64, 64, 3, 3)).astype(np.int8)
    qp = dict(input_scale=0.1, input_zero_point=0, output_scale=0.1, output_zero_point=0,
              weight_scale=np.ones(64, np.float32))
    w4 = QConv2d(wq, **qp)
    w8 = QConv2d(wq, weight_bits=8, **qp)
    b4 = sum(p[0].nbytes for p in w4._packs)
    b8 = sum(p[0].nbytes for p in w8._packs)
    assert b4 == wq.size // 2                                  # 64 × 576 weights, no padding
    assert b4 * 2 <= b8


@pytest.fixture(scope="module")
def w4_graph(digits):
    g, xc, x, _ = digits
    return qengine.quantize_static(g, {"image": xc}, qengine.StaticQuantConfig(weight_bits=4)), x


def _layers(sess):
    return [op.layer for op in sess._executor.ops if hasattr(op, "layer") and
            hasattr(op.layer, "weight_bits")]


def test_w4_static_model_holds_int4_and_equals_the_int8_kernels(w4_graph, tmp_path):
    q, x = w4_graph
    s4 = qengine.Session(q)
    layers = _layers(s4)
    assert layers and all(la.weight_bits == 4 for la in layers)
    q8 = copy.deepcopy(q)
    for n in q8.nodes:
        if n.op_type in ("QConv", "QConvAdd", "QGemm"):
            n.attrs["weight_bits"] = 8
    s8 = qengine.Session(q8)
    assert all(la.weight_bits == 8 for la in _layers(s8))
    y4 = s4.run({"image": x})["logits"]
    np.testing.assert_array_equal(y4, s8.run({"image": x})["logits"])
    # from the engine file (int4 two per byte there too): int4 layers, the same bytes
    qengine.save(q, tmp_path / "w4.qe")
    s4f = qengine.load(tmp_path / "w4.qe")
    assert all(la.weight_bits == 4 for la in _layers(s4f))
    np.testing.assert_array_equal(s4f.run({"image": x})["logits"], y4)


def test_bad_weight_bits_attribute_is_a_model_error(w4_graph):
    bad = copy.deepcopy(w4_graph[0])
    n = next(n for n in bad.nodes if n.op_type in ("QConv", "QConvAdd", "QGemm"))
    n.attrs["weight_bits"] = 3
    with pytest.raises(ModelError, match="weight_bits must be 0"):
        qengine.Session(bad)
