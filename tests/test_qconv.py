"""QConv2d (static int8, NHWC): the reference vs brute force; every compiled path and ISA
bit-exact vs qengine.reference.conv.qconv2d_ref (and so vs scalar); threads 1 = 2; extremes;
fused clamps; float accuracy of the dequantized result."""
import zlib

import numpy as np
import pytest

from qengine import ConfigError, ShapeError, _runtime
from qengine.quantized.conv import QConv2d
from qengine.quantized.weights import quantize_per_channel_symmetric
from qengine.reference import conv as R

ISAS = [pytest.param(i, marks=pytest.mark.skipif(
    i not in _runtime.available_isas(), reason=f"{i} not compiled in or not runnable on this CPU"))
    for i in _runtime.ISA_NAMES]

# (n, h, w, cin, cout, k, stride, dilation, pads (t, l, b, r), groups)
CASES = {
    "1x1_c1": (1, 5, 4, 1, 3, 1, 1, 1, (0, 0, 0, 0), 1),
    "1x1_c17_b2": (2, 3, 5, 17, 17, 1, 1, 1, (0, 0, 0, 0), 1),
    "1x1_s2": (1, 7, 6, 3, 5, 1, 2, 1, (0, 0, 0, 0), 1),
    "1x1_pad": (1, 4, 4, 8, 40, 1, 1, 1, (1, 0, 0, 1), 1),
    "3x3_c3": (1, 9, 8, 3, 17, 3, 1, 1, (1, 1, 1, 1), 1),
    "3x3_s2_b3": (3, 11, 10, 17, 33, 3, 2, 1, (1, 1, 1, 1), 1),
    "3x3_dil2_asym": (1, 12, 13, 5, 7, 3, 1, 2, (0, 2, 3, 1), 1),
    "5x5_s2": (1, 13, 12, 4, 9, 5, 2, 1, (2, 2, 2, 2), 1),
    "7x7_s2_c3": (2, 15, 16, 3, 64, 7, 2, 1, (3, 3, 3, 3), 1),
    "3x3_g2": (1, 8, 9, 6, 10, 3, 1, 1, (1, 1, 1, 1), 2),
    "3x3_c64_b2": (2, 9, 10, 64, 40, 3, 1, 1, (1, 1, 1, 1), 1),      # cin_g % 4 == 0: whole
    "3x3_dil2_s2_c8": (1, 14, 13, 8, 12, 3, 2, 2, (2, 1, 2, 3), 1),  # K-groups per tap
    "3x3_g4_s2": (2, 9, 7, 16, 8, 3, 2, 1, (0, 1, 1, 0), 4),
    "1x1_g4": (1, 5, 5, 8, 12, 1, 1, 1, (0, 0, 0, 0), 4),
    "dw3x3_c17": (2, 9, 10, 17, 17, 3, 1, 1, (1, 1, 1, 1), 17),
    "dw3x3_s2_c40": (1, 12, 11, 40, 40, 3, 2, 1, (1, 1, 1, 1), 40),
    "dw5x5_dil2": (1, 11, 12, 19, 19, 5, 1, 2, (4, 3, 2, 4), 19),
    "dw_mult2": (1, 8, 7, 5, 10, 3, 1, 1, (1, 1, 1, 1), 5),
    "dw_c1": (1, 6, 6, 1, 1, 3, 1, 1, (1, 1, 1, 1), 1),
    "tiny_1x1px": (2, 1, 1, 3, 5, 3, 1, 1, (1, 1, 1, 1), 1),
    "tiny_2x3px": (1, 2, 3, 17, 4, 3, 2, 1, (1, 1, 1, 1), 1),
    "tiny_k_gt_input": (1, 2, 3, 4, 4, 5, 1, 1, (2, 2, 2, 2), 1),
    "dw_tiny_2x3px": (1, 2, 3, 33, 33, 3, 1, 1, (1, 1, 1, 1), 33),
    # short kernel rows (kw·cin_g < 8): K-groups gathered from a zero-point frame
    "lenet_5x5_c1_b2": (2, 28, 28, 1, 6, 5, 1, 1, (2, 2, 2, 2), 1),
    "3x3_c1_s2_dil2": (3, 13, 11, 1, 5, 3, 2, 2, (3, 0, 1, 2), 1),
    "3x3_c2_asym": (1, 10, 9, 2, 7, 3, 1, 1, (0, 2, 1, 0), 1),
    "3x3_g2_cin2": (2, 7, 8, 4, 6, 3, 1, 1, (1, 1, 1, 1), 2),
    "1x1_c7_s2_pad": (1, 9, 9, 7, 5, 1, 2, 1, (1, 1, 0, 0), 1),
    "3x3_c1_no_frame": (1, 150, 130, 1, 3, 3, 1, 1, (1, 1, 1, 1), 1),   # frame > 16 KiB
}


def make(rng, case, extreme=None):
    n, h, w, cin, cout, k, s, d, pads, g = case
    x = rng.integers(0, 256, (n, h, w, cin), dtype=np.uint8)
    wt = rng.integers(-128, 128, (cout, cin // g, k, k), dtype=np.int8)
    za = int(rng.integers(0, 256))
    if extreme == "x255_w127":
        x[:], wt[:], za = 255, 127, 0
    elif extreme == "x255_wm128":
        x[:], wt[:], za = 255, -128, 0
    elif extreme == "alternating":
        wt = np.where(np.indices(wt.shape).sum(0) % 2, 127, -128).astype(np.int8)
        x = np.where(np.indices(x.shape).sum(0) % 2, 255, 0).astype(np.uint8)
    bias = rng.integers(-2**12, 2**12, cout).astype(np.int32)
    wscale = rng.uniform(0.002, 0.02, cout).astype(np.float32)
    return x, wt, za, bias, wscale


def layer(case, wt, za, bias, wscale, isa=None, algorithm=None, activation=None, yscale=0.7,
          yzp=117):
    _, _, _, _, _, _, s, d, pads, g = case
    return QConv2d(wt, bias, input_scale=0.05, input_zero_point=za, output_scale=yscale,
                   output_zero_point=yzp, weight_scale=wscale, stride=s, padding=pads,
                   dilation=d, groups=g, activation=activation, isa=isa, algorithm=algorithm)


def ref(L, x, wt):
    return R.qconv2d_ref(x, L.input_zero_point, wt, L.bias_int32, L.multiplier,
                         L.output_zero_point, L.lo, L.hi, L.stride, L.padding, L.dilation,
                         L.groups)


def test_reference_acc_equals_bruteforce():
    """Independent oracle for the reference: explicit loops with bounds checks (no padding
    array), grouped, strided, dilated, asymmetric pads."""
    rng = np.random.default_rng(0)
    n, h, w, cin, cout, k, (sh, sw), (dh, dw), (pt, pl, pb, pr), g = \
        1, 5, 6, 4, 6, 3, (2, 1), (1, 2), (1, 2, 0, 1), 2
    x = rng.integers(0, 256, (n, h, w, cin), dtype=np.uint8)
    wt = rng.integers(-128, 128, (cout, cin // g, k, k), dtype=np.int8)
    acc = R.qconv2d_acc_ref(x, 9, wt, (sh, sw), (pt, pl, pb, pr), (dh, dw), g)
    oh, ow = (h + pt + pb - dh * (k - 1) - 1) // sh + 1, (w + pl + pr - dw * (k - 1) - 1) // sw + 1
    assert acc.shape == (n, oh, ow, cout)
    for oy in range(oh):
        for ox in range(ow):
            for o in range(cout):
                gi, tot = o // (cout // g), 0
                for ci in range(cin // g):
                    for ky in range(k):
                        for kx in range(k):
                            iy, ix = oy * sh + ky * dh - pt, ox * sw + kx * dw - pl
                            if 0 <= iy < h and 0 <= ix < w:
                                tot += (int(x[0, iy, ix, gi * (cin // g) + ci]) - 9) * int(wt[o, ci, ky, kx])
                assert acc[0, oy, ox, o] == tot


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_conv_bit_exact_vs_reference(isa, name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    case = CASES[name]
    x, wt, za, bias, wscale = make(rng, case)
    L = layer(case, wt, za, bias, wscale, isa=isa)
    y = L(x)
    r = ref(L, x, wt)
    assert y.shape == r.shape and y.dtype == np.uint8
    assert np.array_equal(y, r), f"{L}: {np.count_nonzero(y != r)} of {y.size} differ"
    assert len(np.unique(y)) > 2, "degenerate test: output saturated"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name,algos", [("1x1_c17_b2", ("1x1", "im2col")),
                                        ("1x1_g4", ("1x1", "im2col")),
                                        ("dw3x3_c17", ("dw", "im2col")),
                                        ("dw_mult2", ("dw", "im2col"))])
def test_forced_algorithms_agree(isa, name, algos):
    rng = np.random.default_rng(5)
    case = CASES[name]
    x, wt, za, bias, wscale = make(rng, case)
    r = ref(layer(case, wt, za, bias, wscale, isa=isa), x, wt)
    for a in algos:
        L = layer(case, wt, za, bias, wscale, isa=isa, algorithm=a)
        assert L.algorithm == a
        assert np.array_equal(L(x), r), a


@pytest.mark.parametrize("isa", ISAS)
def test_every_isa_equals_scalar(isa):
    rng = np.random.default_rng(11)
    for name in ("3x3_s2_b3", "dw5x5_dil2", "1x1_c17_b2"):
        case = CASES[name]
        x, wt, za, bias, wscale = make(rng, case)
        ys = layer(case, wt, za, bias, wscale, isa="scalar")(x)
        assert np.array_equal(layer(case, wt, za, bias, wscale, isa=isa)(x), ys), name


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", [(1, 16, 16, 32, 48, 3, 1, 1, (1, 1, 1, 1), 1),
                                  (2, 9, 9, 64, 520, 1, 1, 1, (0, 0, 0, 0), 1),
                                  (1, 48, 48, 64, 64, 3, 1, 1, (1, 1, 1, 1), 64),
                                  (1, 7, 7, 256, 256, 3, 1, 1, (1, 1, 1, 1), 2)],
                         ids=["im2col", "1x1", "dw", "grouped_small_m"])
def test_threads_1_and_2_identical(isa, case):
    rng = np.random.default_rng(3)
    x, wt, za, bias, wscale = make(rng, case)
    L = layer(case, wt, za, bias, wscale, isa=isa)
    y1, y2 = L(x, nthreads=1), L(x, nthreads=2)
    assert np.array_equal(y1, y2)
    assert np.array_equal(y1, ref(L, x, wt))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("extreme", ["x255_w127", "x255_wm128", "alternating"])
@pytest.mark.parametrize("name", ["7x7_s2_c3", "dw3x3_c17", "1x1_c17_b2", "3x3_g2"])
def test_extremes(isa, extreme, name):
    rng = np.random.default_rng(7)
    case = CASES[name]
    x, wt, za, bias, wscale = make(rng, case, extreme)
    # a large output scale so that the extreme accumulators still land inside the u8 range
    L = layer(case, wt, za, bias, wscale, isa=isa, yscale=40.0, yzp=128)
    assert np.array_equal(L(x), ref(L, x, wt))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 2])
def test_indirect_path_bit_exact(isa, threads):
    """cin_g % 4 == 0: kernels with an igemm twin read the input in place through an
    indirection buffer (no im2col). Equal to the scalar kernel on the same inputs and to the
    reference: Cout = 64/63/65/96/128 around the 32-column panels, pixel counts that leave
    partial 12-row panels, strides, asymmetric pads, dilation, groups, 255 × −128, deep K."""
    rng = np.random.default_rng(21)
    cases = [(1, 13, 11, 64, 64, 3, 1, 1, (1, 1, 1, 1), 1),
             (2, 9, 7, 64, 63, 3, 2, 1, (1, 0, 1, 1), 1),
             (1, 10, 10, 32, 65, 3, 1, 2, (2, 2, 1, 2), 1),
             (1, 7, 9, 8, 96, 5, 1, 1, (2, 2, 2, 2), 1),
             (1, 6, 5, 128, 128, 3, 1, 1, (1, 1, 1, 1), 2),
             (1, 11, 11, 4, 64, 1, 2, 1, (0, 0, 0, 0), 1),
             (1, 5, 4, 1024, 64, 3, 1, 1, (1, 1, 1, 1), 1),      # K = 9216
             (1, 7, 7, 512, 512, 3, 1, 1, (1, 1, 1, 1), 1)]      # W 2.4 MB: columns split first
    for j, case in enumerate(cases):
        for extreme in (None, "x255_wm128"):
            x, wt, za, bias, wscale = make(rng, case, extreme)
            yscale = 0.7 if extreme is None else 40.0 * case[3] * case[5] ** 2 / 64
            ys = layer(case, wt, za, bias, wscale, isa="scalar", yscale=yscale, yzp=128)(x)
            L = layer(case, wt, za, bias, wscale, isa=isa, yscale=yscale, yzp=128)
            y = L(x, nthreads=threads)
            assert np.array_equal(y, ys), (case, extreme)
            assert np.array_equal(y, ref(L, x, wt)), (case, extreme)
            assert extreme or len(np.unique(y)) > 20, case


def test_deep_k_extreme():
    """K = 7·7·256 = 12544 with x = 255, w = −128: |acc| = 4.1e8, exact in int32."""
    case = (1, 7, 7, 256, 16, 7, 1, 1, (3, 3, 3, 3), 1)
    rng = np.random.default_rng(8)
    x, wt, za, bias, wscale = make(rng, case, "x255_wm128")
    for isa in _runtime.available_isas():
        L = layer(case, wt, za, bias, wscale, isa=isa, yscale=3000.0, yzp=128)
        assert np.array_equal(L(x), ref(L, x, wt)), isa


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("activation", ["relu", "relu6", ("clip", -1.5, 2.0)])
@pytest.mark.parametrize("name", ["3x3_c3", "dw3x3_c17", "1x1_c17_b2"])
def test_fused_activation(isa, activation, name):
    rng = np.random.default_rng(9)
    case = CASES[name]
    x, wt, za, bias, wscale = make(rng, case)
    L = layer(case, wt, za, bias, wscale, isa=isa, activation=activation, yscale=0.05, yzp=100)
    y = L(x)
    assert np.array_equal(y, ref(L, x, wt))
    # the clamp is the quantized activation: compare against quantizing the clipped real value
    plain = layer(case, wt, za, bias, wscale, isa=isa, yscale=0.05, yzp=100)(x)
    r = (plain.astype(np.float32) - 100) * np.float32(0.05)
    a, b = {"relu": (0.0, np.inf), "relu6": (0.0, 6.0)}.get(activation, activation[1:])
    expect = R.quantize_u8_ref(np.clip(r, a, b), 0.05, 100)
    assert np.abs(y.astype(int) - expect.astype(int)).max() <= 1


@pytest.mark.parametrize("name", ["3x3_s2_b3", "dw3x3_c17", "3x3_g2", "7x7_s2_c3"])
def test_float_accuracy(name):
    """int8 conv dequantized ≈ float64 conv of the dequantized inputs (+ float bias), within
    one output step (the output rounding) plus float slack."""
    n, h, w, cin, cout, k, s, d, pads, g = CASES[name]
    rng = np.random.default_rng(13)
    xf = rng.normal(0.3, 1.0, (n, h, w, cin)).astype(np.float32)
    wf = rng.normal(0, 0.2, (cout, cin // g, k, k)).astype(np.float32)
    bf = rng.normal(0, 0.5, cout).astype(np.float32)
    sx = np.float32((xf.max() - min(xf.min(), 0)) / 255)
    zx = int(np.clip(-np.rint(min(xf.min(), 0) / sx), 0, 255))
    xq = R.quantize_u8_ref(xf, sx, zx)
    wq, ws = quantize_per_channel_symmetric(wf.reshape(cout, -1))
    wq = wq.reshape(wf.shape)
    xd = (xq.astype(np.float64) - zx) * sx
    wd = wq.astype(np.float64) * ws.astype(np.float64)[:, None, None, None]
    acc = R.qconv2d_acc_ref(np.zeros_like(xq), 0, wq, (s, s), pads, (d, d), g)  # shape only
    yf = np.zeros(acc.shape)
    # float conv through the int reference's window logic on float data: one explicit loop
    xp = np.pad(xd, ((0, 0), (pads[0], pads[2] + s), (pads[1], pads[3] + s), (0, 0)))
    oh, ow = acc.shape[1:3]
    cg, og = cin // g, cout // g
    for ky in range(k):
        for kx in range(k):
            win = xp[:, ky * d:ky * d + (oh - 1) * s + 1:s, kx * d:kx * d + (ow - 1) * s + 1:s, :]
            for gi in range(g):
                yf[..., gi * og:(gi + 1) * og] += win[..., gi * cg:(gi + 1) * cg] @ \
                    wd[gi * og:(gi + 1) * og, :, ky, kx].T
    yf += bf
    sy = np.float32((yf.max() - min(yf.min(), 0)) / 255)
    zy = int(np.clip(-np.rint(min(yf.min(), 0) / sy), 0, 255))
    L = QConv2d(wf, bf, input_scale=sx, input_zero_point=zx, output_scale=sy,
                output_zero_point=zy, stride=s, padding=pads, dilation=d, groups=g)
    assert np.array_equal(L.weight_int8, wq)
    y = (L(xq).astype(np.float64) - zy) * sy
    err = np.abs(y - yf).max()
    assert err <= 0.5 * sy + 1e-4 * np.abs(yf).max() + 0.5 * sx * 1e-3, (err, sy)


def test_errors():
    wt = np.zeros((4, 2, 3, 3), np.int8)
    kw = dict(input_scale=0.1, input_zero_point=0, output_scale=0.1, output_zero_point=0,
              weight_scale=0.1)
    L = QConv2d(wt, **kw)
    with pytest.raises(ShapeError):
        L(np.zeros((1, 5, 5, 3), np.uint8))               # wrong channel count
    with pytest.raises(ShapeError):
        L(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ConfigError):
        QConv2d(wt, algorithm="dw", **kw)                  # not depthwise
    with pytest.raises(ConfigError):
        QConv2d(wt, groups=3, **kw)
    with pytest.raises(ConfigError):
        QConv2d(wt, **{**kw, "weight_scale": None})        # int8 weights need scales
    with pytest.raises(ConfigError):
        QConv2d(wt, **{**kw, "input_zero_point": 300})
    # an output smaller than the kernel is empty, not an error
    assert QConv2d(np.zeros((4, 2, 5, 5), np.int8), **kw)(np.zeros((1, 3, 3, 2), np.uint8)).shape \
        == (1, 0, 0, 4)


# Depthwise row runs (qe_dwconv.h) and the 64-channel vpdpbusd kernel: channel counts around
# the 8/64-channel blocks, strides 1 and 2, pads that make left/right edge pixels (and widths
# with no interior run at all), 1×k and k×1 windows, dilation, batch > 1.
DW_SHAPES = [(n, h, w, c, k, s, d, pads)
             for c in (1, 3, 8, 31, 63, 64, 65, 128, 144, 200)
             for (n, h, w, k, s, d, pads) in [(2, 7, 9, (3, 3), 1, 1, (1, 1, 1, 1)),
                                              (1, 9, 8, (3, 3), 2, 1, (1, 1, 1, 1)),
                                              (1, 6, 11, (3, 3), 2, 1, (0, 0, 1, 1))]] + [
    (1, 5, 13, 24, (1, 5), 1, 1, (0, 2, 0, 2)),
    (1, 13, 5, 70, (5, 1), 2, 1, (2, 0, 2, 0)),
    (1, 8, 9, 66, (3, 3), 1, 2, (2, 2, 2, 2)),
    (1, 3, 2, 130, (3, 3), 1, 1, (1, 1, 1, 1)),      # width 2: every pixel is an edge pixel
    (1, 4, 4, 96, (3, 3), 3, 1, (0, 1, 2, 0)),       # stride 3, asymmetric pads
    (1, 5, 6, 64, (3, 3), 1, 1, (0, 0, 0, 0)),       # no padding: one run per row
    (1, 9, 23, 70, (3, 3), 4, 2, (2, 2, 2, 2)),      # stride = 2·dilation: tap 2 = next tap 0
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", DW_SHAPES, ids=lambda s: "x".join(map(str, s[:4])) +
                         f"_k{s[4][0]}{s[4][1]}_s{s[5]}_d{s[6]}_p{''.join(map(str, s[7]))}")
def test_depthwise_runs_bit_exact(isa, shape):
    n, h, w, c, (kh, kw), s, d, pads = shape
    rng = np.random.default_rng(zlib.crc32(repr(shape).encode()))
    x = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    wt = rng.integers(-128, 128, (c, 1, kh, kw), dtype=np.int8)
    bias = rng.integers(-2**12, 2**12, c).astype(np.int32)
    wscale = rng.uniform(0.002, 0.02, c).astype(np.float32)
    L = QConv2d(wt, bias, input_scale=0.05, input_zero_point=int(rng.integers(0, 256)),
                output_scale=0.4, output_zero_point=117, weight_scale=wscale, stride=s,
                padding=pads, dilation=d, groups=c, isa=isa, algorithm="dw")
    r = R.qconv2d_ref(x, L.input_zero_point, wt, L.bias_int32, L.multiplier,
                      L.output_zero_point, L.lo, L.hi, L.stride, L.padding, L.dilation, c)
    for nt in (1, 2):
        y = L(x, nthreads=nt)
        assert np.array_equal(y, r), f"{L} nthreads={nt}: {np.count_nonzero(y != r)} differ"


# The AVX-512 VNNI kernel's lanes hold 4 taps of one channel in a permuted channel order that
# the narrowing packs undo (qe_u8_s8_dwconv_minmax_ukernel_c64__avx512vnni.h): every channel
# count 1..200, with 3×3 rows that share interleaves between pixel pairs (stride = dilation)
# and rows that do not, equal to the scalar kernel on the same inputs.
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("k, s, d", [((3, 3), 1, 1), ((3, 3), 2, 1), ((3, 3), 2, 2),
                                     ((1, 3), 1, 1)], ids=["3x3s1", "3x3s2", "3x3s2d2", "1x3s1"])
def test_depthwise_every_channel_count_equals_scalar(isa, k, s, d):
    rng = np.random.default_rng(11)
    for c in range(1, 201):
        x = rng.integers(0, 256, (1, 5, 12, c), dtype=np.uint8)
        wt = rng.integers(-128, 128, (c, 1, *k), dtype=np.int8)
        bias = rng.integers(-2**12, 2**12, c).astype(np.int32)
        wscale = rng.uniform(0.002, 0.02, c).astype(np.float32)
        kw = dict(input_scale=0.05, input_zero_point=int(rng.integers(0, 256)), output_scale=0.4,
                  output_zero_point=0 if c % 2 else int(rng.integers(0, 256)),   # 0: no clamp
                  weight_scale=wscale, stride=s, padding=(1, 1, 1, 1), dilation=d, groups=c,
                  algorithm="dw")
        want = QConv2d(wt, bias, isa="scalar", **kw)(x)
        L = QConv2d(wt, bias, isa=isa, **kw)
        for nt in (1, 2):
            y = L(x, nthreads=nt)
            assert np.array_equal(y, want), f"c={c} nthreads={nt}: {np.count_nonzero(y != want)}"


# Extreme accumulators and multipliers through the narrowing clamp: x = 255 with w = −128 or
# 127, alternating signs, and inputs near z_a; multipliers < 1, > 1 (some outputs in range) and
# ~1e5 (float32(acc)·mult beyond ±2^31, where vcvtps2dq alone would give INT_MIN); fused clamps;
# output zero point 0 without a clamp (the kernel's narrowing alone).
DW_EXTREME_SHAPES = [((3, 3), 1, 1), ((3, 3), 2, 1), ((5, 5), 1, 1), ((1, 5), 1, 1),
                     ((3, 3), 1, 2)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("extreme", ["x255_wm128", "x255_w127", "alternating", "near_za"])
@pytest.mark.parametrize("yscale", [40.0, 3e-4, 1e-9])
def test_depthwise_extremes(isa, extreme, yscale):
    rng = np.random.default_rng(12)
    for (k, s, d), c, act in zip(DW_EXTREME_SHAPES * 2, (16, 17, 63, 64, 65, 96, 144, 130, 3, 200),
                                 [None, "relu6", ("clip", -1.5, 2.0), None, "relu"] * 2):
        x = rng.integers(0, 256, (1, 7, 13, c), dtype=np.uint8)
        wt = rng.integers(-128, 128, (c, 1, *k), dtype=np.int8)
        za = int(rng.integers(0, 256))
        if extreme == "x255_wm128":
            x[:], wt[:], za = 255, -128, 0
        elif extreme == "x255_w127":
            x[:], wt[:], za = 255, 127, 0
        elif extreme == "alternating":
            wt = np.where(np.indices(wt.shape).sum(0) % 2, 127, -128).astype(np.int8)
            x = np.where(np.indices(x.shape).sum(0) % 2, 255, 0).astype(np.uint8)
        else:
            x = np.clip(za + rng.integers(-3, 4, x.shape), 0, 255).astype(np.uint8)
            wt = rng.integers(-5, 6, wt.shape).astype(np.int8)
        bias = rng.integers(-2**8, 2**8, c).astype(np.int32)
        wscale = rng.uniform(0.005, 0.02, c).astype(np.float32)
        L = QConv2d(wt, bias, input_scale=0.05, input_zero_point=za, output_scale=yscale,
                    output_zero_point=0 if c % 2 == 0 else int(rng.integers(0, 256)),
                    weight_scale=wscale, stride=s, padding=(1, 2, 1, 2), dilation=d, groups=c,
                    activation=act, isa=isa, algorithm="dw")
        r = ref(L, x, wt)
        for nt in (1, 2):
            y = L(x, nthreads=nt)
            assert np.array_equal(y, r), f"{L} nthreads={nt}: {np.count_nonzero(y != r)} differ"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("mode", ["same_upper", "same_lower"])
def test_same_padding_is_resolved_per_input_size(isa, mode):
    """padding='same_*' (ONNX auto_pad) gives ONNX's SAME pads for every input size: the
    reference with pads computed by hand (out = ceil(in / s), the odd pad at the end for UPPER,
    at the beginning for LOWER), on the im2col, depthwise and 1×1 paths."""
    rng = np.random.default_rng(9)
    for k, s, d, g, cin in ((4, 2, 1, 1, 5), (3, 2, 2, 6, 6), (1, 1, 1, 1, 8)):
        wt = rng.integers(-128, 128, (6, cin // g, k, k), dtype=np.int8)
        L = QConv2d(wt, None, input_scale=0.05, input_zero_point=3, output_scale=0.7,
                    output_zero_point=117, weight_scale=0.01, stride=s, padding=mode.upper(),
                    dilation=d, groups=g, isa=isa)
        assert L.algorithm == ("1x1" if k == 1 else "dw" if g > 1 else "im2col")
        for h, w in ((7, 8), (8, 7), (1, 2)):
            x = rng.integers(0, 256, (2, h, w, cin), dtype=np.uint8)
            pads = []
            for size in (h, w):
                out = -(-size // s)
                total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
                big = total - total // 2
                pads.append((total - big, big) if mode == "same_upper" else (big, total - big))
            (pt, pb), (pl, pr) = pads
            want = R.qconv2d_ref(x, 3, wt, L.bias_int32, L.multiplier, 117, 0, 255, (s, s),
                                 (pt, pl, pb, pr), (d, d), g)
            y = L(x)
            assert y.shape == (2, -(-h // s), -(-w // s), 6) and np.array_equal(y, want)
    with pytest.raises(ConfigError, match="same_upper"):
        QConv2d(wt, None, input_scale=0.05, input_zero_point=3, output_scale=0.7,
                output_zero_point=117, weight_scale=0.01, padding="same")


# The AVX2 depthwise kernel pairs taps (qe_u8_s8_dwconv_minmax_ukernel_c16__avx2.h): even and
# odd tap counts (the odd last tap pairs with 0), 64 taps (its most) and 81 (then the c8
# kernel), channel counts around its 16-channel blocks (the tail through c8, then scalar), and
# 255 × −128 / 127 at every tap; equal to the scalar kernel.
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("k", [(1, 2), (2, 2), (2, 4), (3, 3), (8, 8), (9, 9)],
                         ids=lambda k: f"{k[0]}x{k[1]}")
def test_depthwise_tap_pairs_equal_scalar(isa, k):
    rng = np.random.default_rng(13)
    for c, extreme in [(15, None), (16, "wm128"), (17, "w127"), (24, None), (32, "wm128"),
                       (40, None), (47, "w127")]:
        x = rng.integers(0, 256, (1, 11, 12, c), dtype=np.uint8)
        wt = rng.integers(-128, 128, (c, 1, *k), dtype=np.int8)
        za = int(rng.integers(0, 256))
        if extreme:
            x[:], za = 255, 0
            wt[:] = -128 if extreme == "wm128" else 127
        bias = rng.integers(-2**12, 2**12, c).astype(np.int32)
        wscale = rng.uniform(0.002, 0.02, c).astype(np.float32)
        kw = dict(input_scale=0.05, input_zero_point=za, output_scale=0.4 if not extreme else 30.0,
                  output_zero_point=int(rng.integers(0, 256)), weight_scale=wscale, stride=1,
                  padding=(k[0] // 2, k[1] // 2, (k[0] - 1) // 2, (k[1] - 1) // 2), groups=c,
                  algorithm="dw")
        want = QConv2d(wt, bias, isa="scalar", **kw)(x)
        L = QConv2d(wt, bias, isa=isa, **kw)
        for nt in (1, 2):
            y = L(x, nthreads=nt)
            assert np.array_equal(y, want), f"c={c} nthreads={nt}: {np.count_nonzero(y != want)}"


# 1×1 convs as GEMM with A packed per tile (qe_gemm.h, one N tile): several M tiles with a last
# partial panel (every row remainder), K tails, N up to the one-tile limit and past it, 1 and
# 2 threads; equal to the scalar kernel.
@pytest.mark.parametrize("isa", ISAS)
def test_conv1x1_tile_packed_a_equals_scalar(isa):
    rng = np.random.default_rng(14)
    for (h, w), cin, cout in [((9, 29), 16, 96), ((5, 31), 3, 24), ((7, 13), 33, 256),
                              ((6, 7), 17, 257), ((11, 3), 160, 40), ((1, 1), 8, 16),
                              ((2, 3), 24, 144)]:
        x = rng.integers(0, 256, (1, h, w, cin), dtype=np.uint8)
        wt = rng.integers(-128, 128, (cout, cin, 1, 1), dtype=np.int8)
        if cin == 16:
            x[:], wt[:] = 255, -128
        bias = rng.integers(-2**12, 2**12, cout).astype(np.int32)
        wscale = rng.uniform(0.002, 0.02, cout).astype(np.float32)
        kw = dict(input_scale=0.05, input_zero_point=int(rng.integers(0, 256)), output_scale=0.4,
                  output_zero_point=int(rng.integers(0, 256)), weight_scale=wscale,
                  algorithm="1x1")
        want = QConv2d(wt, bias, isa="scalar", **kw)(x)
        L = QConv2d(wt, bias, isa=isa, **kw)
        for nt in (1, 2):
            y = L(x, nthreads=nt)
            assert np.array_equal(y, want), f"{h}x{w} {cin}->{cout} nthreads={nt}"
