"""Compiled FP32 window kernels (include/qengine/f32, qengine/ops/f32_window.py): convolution,
depthwise convolution, max/average pooling.

Contract tested here:
* every SIMD path is bit-identical to the scalar C twin (all use one fused multiply-add chain
  per output in reduction order; pooling is exact max / a sum in tap order);
* the same bits for 1 and 2 threads (no reduction is split across threads);
* against a float64 reference (written here, independent of the kernels) every convolution
  output is within the rigorous bound of a length-K chain of fused multiply-adds:
  |y − ref| ≤ (K + 1)·2⁻²⁴·(Σ|w·x| + |b|);
* shapes from the tiles: output channels around MR (4, 6, 8), pixel counts around NR (8, 16,
  32), odd sizes, strides, dilations, groups, asymmetric and SAME padding, batch, 1-D windows.
The ONNX-level checks against onnxruntime are in tests/test_f32_onnx.py.
"""
import numpy as np
import pytest

import qengine
from qengine import _runtime
from qengine._ext import _cpu, _f32

ISAS = list(_runtime.ISA_NAMES[:3])
U = 2.0 ** -24


def _isa_or_skip(name):
    if name not in _runtime.available_isas():
        pytest.skip(f"{name} not available on this CPU/build")
    return _runtime.isa_index(name)


def _out(n, k, s, d, pb, pe):
    return (n + pb + pe - (k - 1) * d - 1) // s + 1


def ref_conv(x, w, b, stride, dil, pads, groups):
    """float64 direct convolution (NCHW, OIHW) and Σ|w·x| + |b| (the error scale)."""
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = stride, dil, pads
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    w = w.astype(np.float64)
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    oh, ow = (h - (kh - 1) * dh - 1) // sh + 1, (wd - (kw - 1) * dw - 1) // sw + 1
    mg = m // groups
    y = np.zeros((n, m, oh, ow))
    scale = np.zeros((n, m, oh, ow))
    for g in range(groups):
        xs = x[:, g * cg:(g + 1) * cg]
        for ky in range(kh):
            for kx in range(kw):
                win = xs[:, :, ky * dh:ky * dh + (oh - 1) * sh + 1:sh,
                         kx * dw:kx * dw + (ow - 1) * sw + 1:sw]
                wt = w[g * mg:(g + 1) * mg, :, ky, kx]
                y[:, g * mg:(g + 1) * mg] += np.einsum("mc,nchw->nmhw", wt, win)
                scale[:, g * mg:(g + 1) * mg] += np.einsum("mc,nchw->nmhw", np.abs(wt),
                                                           np.abs(win))
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
        scale += np.abs(b.astype(np.float64))[None, :, None, None]
    return y, scale


def run_conv(x, w, b, stride, dil, pads, groups, isa, lo=-np.inf, hi=np.inf, orient=None):
    m, cg, kh, kw = w.shape
    oh = _out(x.shape[2], kh, stride[0], dil[0], pads[0], pads[2])
    ow = _out(x.shape[3], kw, stride[1], dil[1], pads[1], pads[3])
    geom = (kh, kw, stride[0], stride[1], dil[0], dil[1], pads[0], pads[1], oh, ow)
    y = np.full((x.shape[0], m, oh, ow), np.nan, np.float32)
    if cg == 1 and groups > 1:
        _f32.dwconv2d(x, np.ascontiguousarray(w.reshape(m, -1)), b, geom, lo, hi, y, isa)
    else:
        if orient is None:
            orient = _f32.conv_orientation(isa, geom, x.shape, m, groups)
        packed, tile = _f32.conv_pack(np.ascontiguousarray(w.reshape(m, -1)), groups, isa,
                                      orient)
        _f32.conv2d(x, packed, orient, tile, b, geom, groups, m, lo, hi, y, isa)
    return y


# (n, c, h, w, m, kh, kw, stride, dilation, pads t/l/b/r, groups)
CONV_CASES = [
    (1, 3, 9, 11, 5, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (2, 8, 17, 13, 13, 3, 3, (2, 2), (1, 1), (1, 0, 2, 1), 1),
    (1, 16, 7, 7, 32, 3, 3, (1, 1), (2, 2), (2, 2, 2, 2), 2),
    (1, 4, 6, 40, 1, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),       # direct, M = 1
    (3, 7, 5, 33, 7, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),       # direct, 165 px, batch 3
    (1, 5, 12, 12, 9, 3, 3, (1, 1), (1, 1), (0, 0, 0, 0), 1),      # VALID: direct, wide raster
    (1, 3, 31, 29, 17, 7, 7, (2, 2), (1, 1), (3, 3, 3, 3), 1),     # stem-like, odd sizes
    (1, 6, 10, 10, 9, 2, 3, (1, 3), (2, 1), (0, 1, 1, 0), 3),      # mixed strides/dilations
    (1, 12, 9, 9, 8, 3, 3, (3, 3), (1, 1), (1, 1, 1, 1), 4),       # stride 3, groups 4
    (2, 4, 5, 5, 6, 5, 5, (1, 1), (1, 1), (4, 4, 4, 4), 2),        # pads ≥ kernel − 1
    (1, 2, 1, 50, 4, 1, 5, (1, 2), (1, 3), (0, 2, 0, 1), 1),       # 1-D shaped (h = 1)
    (1, 1, 3, 3, 1, 3, 3, (1, 1), (1, 1), (0, 0, 0, 0), 1),        # one pixel
]
DW_CASES = [
    (1, 8, 13, 11, 8, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 8),
    (2, 5, 17, 18, 10, 3, 3, (2, 2), (1, 1), (0, 1, 1, 0), 5),     # multiplier 2
    (1, 3, 70, 9, 3, 5, 5, (1, 2), (2, 1), (4, 2, 4, 2), 3),       # long rows, dilation
    (1, 4, 7, 7, 4, 3, 3, (1, 1), (1, 1), (0, 0, 0, 0), 4),        # direct
    (1, 2, 1, 100, 6, 1, 7, (1, 3), (1, 1), (0, 3, 0, 3), 2),      # 1-D shaped, multiplier 3
    # horizontal stride 1 and rows of >= 16 pixels: the by-rows kernel (masked edge columns)
    (1, 6, 9, 40, 6, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 6),
    (2, 3, 11, 150, 6, 5, 5, (2, 1), (1, 2), (2, 4, 1, 3), 3),     # 3 blocks of 64, multiplier 2
    (1, 4, 7, 16, 4, 3, 7, (1, 1), (3, 1), (3, 0, 0, 6), 4),        # 16 wide, one-sided pads
    (1, 2, 5, 70, 2, 1, 16, (1, 1), (1, 1), (0, 15, 0, 0), 2),      # kw = 16, left pad 15
]


def _data(case, seed):
    n, c, h, w_, m, kh, kw, s, d, p, g = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    w = rng.standard_normal((m, c // g, kh, kw)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    return x, w, b


ORIENTS = {"cp": _f32.CONV_CP, "pc": _f32.CONV_PC}


@pytest.mark.parametrize("orient", ORIENTS)
@pytest.mark.parametrize("case", CONV_CASES + DW_CASES, ids=str)
def test_conv_within_fma_bound_of_float64(case, orient):
    x, w, b = _data(case, 1)
    _, _, _, _, m, kh, kw, s, d, p, g = case
    y = run_conv(x, w, b, s, d, p, g, 0, orient=ORIENTS[orient])
    ref, scale = ref_conv(x, w, b, s, d, p, g)
    k = w.shape[1] * kh * kw
    assert y.shape == ref.shape
    assert np.all(np.abs(y - ref) <= (k + 1) * U * scale + 1e-30)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", CONV_CASES + DW_CASES, ids=str)
def test_conv_simd_bit_exact_with_scalar(isa, case):
    """Both orientations of every ISA give the scalar cp kernel's bits (with and without bias,
    with a Relu and a Clip clamp)."""
    i = _isa_or_skip(isa)
    x, w, b = _data(case, 2)
    s, d, p, g = case[7:]
    for bias, lo, hi in ((b, -np.inf, np.inf), (None, 0.0, np.inf), (b, -0.5, 0.75)):
        want = run_conv(x, w, bias, s, d, p, g, 0, lo, hi, orient=_f32.CONV_CP)
        for orient in ORIENTS.values():
            got = run_conv(x, w, bias, s, d, p, g, i, lo, hi, orient=orient)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("m", list(range(1, 18)) + [31, 33])
@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (2, 8), (3, 11), (4, 8), (5, 7), (6, 11), (8, 8)])
def test_conv_tile_edges(m, hw):
    """Both orientations: channels 1..17, 31, 33 (cp MR = 4, 6, 8 and pc NR = 8, 16, 32
    edges) × pixels 1..64 (cp NR and pc MR = 4, 6, 8 edges)."""
    rng = np.random.default_rng(m * 100 + hw[0])
    x = rng.standard_normal((1, 3, *hw)).astype(np.float32)
    w = rng.standard_normal((m, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    ref, scale = ref_conv(x, w, b, (1, 1), (1, 1), (1, 1, 1, 1), 1)
    outs = [run_conv(x, w, b, (1, 1), (1, 1), (1, 1, 1, 1), 1, _runtime.isa_index(i), orient=o)
            for i in _runtime.available_isas() if i in ISAS for o in ORIENTS.values()]
    assert np.all(np.abs(outs[0] - ref) <= 28 * U * scale + 1e-30)
    for o in outs[1:]:
        np.testing.assert_array_equal(o.view(np.uint32), outs[0].view(np.uint32))


def test_conv_deep_k_and_nan():
    """K = 4608 (ResNet's last stage) stays in bound; NaN in the input propagates through the
    clamp (Relu) only to the outputs whose windows hold it."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 512, 7, 7)).astype(np.float32)
    w = (rng.standard_normal((24, 512, 3, 3)) * 0.05).astype(np.float32)
    ref, scale = ref_conv(x, w, None, (1, 1), (1, 1), (1, 1, 1, 1), 1)
    isa = _runtime.isa_index()
    y = run_conv(x, w, None, (1, 1), (1, 1), (1, 1, 1, 1), 1, isa)
    assert np.all(np.abs(y - ref) <= 4609 * U * scale)
    x[0, 7, 0, 0] = np.nan
    y = run_conv(x, w, None, (1, 1), (1, 1), (1, 1, 1, 1), 1, isa, 0.0, np.inf)
    assert np.isnan(y[:, :, :2, :2]).all() and not np.isnan(y[:, :, 2:, :]).any()
    assert not np.isnan(y[:, :, :, 2:]).any()


@pytest.mark.parametrize("case", [CONV_CASES[6],
                                  (2, 12, 37, 31, 13, 3, 3, (2, 2), (1, 1), (1, 0, 2, 1), 1),
                                  (2, 10, 61, 58, 20, 3, 3, (2, 2), (1, 1), (0, 1, 1, 0), 10),
                                  (2, 64, 30, 30, 96, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
                                  (1, 256, 7, 7, 256, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
                                  (1, 32, 56, 56, 32, 3, 3, (2, 2), (1, 1), (0, 0, 1, 1), 32)],
                         ids=str)
def test_conv_same_bits_for_1_and_2_threads(case):
    """Problems above the single-thread threshold, so that two threads really share them."""
    x, w, b = _data(case, 4)
    s, d, p, g = case[7:]
    isa = _runtime.isa_index()
    before = qengine.get_num_threads()
    try:
        qengine.set_num_threads(1)
        y1 = run_conv(x, w, b, s, d, p, g, isa)
        qengine.set_num_threads(2)
        _cpu.max_team(reset=True)
        y2 = run_conv(x, w, b, s, d, p, g, isa)
        team = _cpu.max_team()
    finally:
        qengine.set_num_threads(before)
    if _cpu.openmp_enabled():
        assert team == 2, "the 2-thread run must really run on two threads"
    np.testing.assert_array_equal(y1.view(np.uint32), y2.view(np.uint32))


# ---- pooling ---------------------------------------------------------------------------------
def ref_pool(x, kind, k, s, d, pads, ceil_mode, count_include_pad):
    """float64 pooling by explicit window enumeration (ONNX rules: −inf / 0 padding, divisor
    without the ceil_mode overhang)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr) = k, s, d, pads

    def size(i, kk, ss, dd, b, e):
        span = i + b + e - (kk - 1) * dd - 1
        o = (-(-span // ss) if ceil_mode else span // ss) + 1
        if ceil_mode and (o - 1) * ss >= i + b:
            o -= 1
        return o
    oh, ow = size(h, kh, sh, dh, pt, pb), size(w, kw, sw, dw, pl, pr)
    y = np.empty((n, c, oh, ow))
    xd = x.astype(np.float64)
    for oy in range(oh):
        for ox in range(ow):
            vals, cnt = [], 0
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * sh + ky * dh - pt, ox * sw + kx * dw - pl
                    inside = 0 <= iy < h and 0 <= ix < w
                    in_pads = -pt <= iy < h + pb and -pl <= ix < w + pr
                    if inside:
                        vals.append(xd[:, :, iy, ix])
                    cnt += inside or (count_include_pad and in_pads)
            if kind == "max":
                y[:, :, oy, ox] = np.max(vals, axis=0) if vals else -np.inf
            else:
                y[:, :, oy, ox] = np.sum(vals, axis=0) / cnt if vals else 0.0
    return y


def run_pool(x, kind, k, s, d, pads, ceil_mode, cip, isa):
    ref_shape = ref_pool(x[:1, :1], kind, k, s, d, pads, ceil_mode, cip).shape[2:]
    geom = (*k, *s, *d, pads[0], pads[1], *ref_shape)
    y = np.full(x.shape[:2] + ref_shape, np.nan, np.float32)
    _f32.pool2d(x, _f32.POOL_MAX if kind == "max" else _f32.POOL_AVG, geom, cip, pads[2],
                pads[3], y, isa)
    return y


POOL_CASES = [  # kernel, stride, dilation, pads t/l/b/r, ceil_mode, count_include_pad, h, w
    ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1), False, False, 20, 21),
    ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1), True, False, 20, 21),
    ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1), True, True, 19, 22),
    ((2, 2), (2, 2), (1, 1), (0, 0, 0, 0), False, False, 16, 16),      # direct
    ((3, 1), (1, 1), (1, 1), (0, 0, 0, 0), False, False, 9, 40),       # direct, wide
    ((5, 4), (3, 2), (2, 1), (2, 1, 3, 2), True, True, 23, 17),
    ((1, 3), (1, 1), (1, 2), (0, 2, 0, 2), False, True, 1, 70),        # 1-D shaped
    ((7, 7), (1, 1), (1, 1), (0, 0, 0, 0), False, False, 7, 7),        # global-like
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_against_float64_and_isas(kind, case):
    k, s, d, pads, ceil_mode, cip, h, w = case
    x = np.random.default_rng(5).standard_normal((2, 3, h, w)).astype(np.float32)
    ref = ref_pool(x, kind, k, s, d, pads, ceil_mode, cip)
    y0 = run_pool(x, kind, k, s, d, pads, ceil_mode, cip, 0)
    if kind == "max":
        np.testing.assert_array_equal(y0, ref.astype(np.float32))
    else:
        np.testing.assert_allclose(y0, ref, rtol=0, atol=k[0] * k[1] * U * np.abs(x).max() * 2)
    for name in _runtime.available_isas():
        if name in ISAS:
            y = run_pool(x, kind, k, s, d, pads, ceil_mode, cip, _runtime.isa_index(name))
            np.testing.assert_array_equal(y.view(np.uint32), y0.view(np.uint32))


@pytest.mark.parametrize("isa", ISAS)
def test_maxpool_nan_propagates(isa):
    i = _isa_or_skip(isa)
    x = np.zeros((1, 1, 4, 40), np.float32)
    x[0, 0, 1, 3] = np.nan
    x[0, 0, 2, 37] = np.nan
    y = run_pool(x, "max", (2, 2), (1, 1), (1, 1), (0, 0, 0, 0), False, False, i)
    nan = np.isnan(y[0, 0])
    assert nan[0:2, 2:4].all() and nan[1:3, 36:38].all() and nan.sum() == 8


def test_pool_same_bits_for_1_and_2_threads():
    x = np.random.default_rng(6).standard_normal((2, 64, 57, 57)).astype(np.float32)
    before = qengine.get_num_threads()
    try:
        out = []
        for t in (1, 2):
            qengine.set_num_threads(t)
            _cpu.max_team(reset=True)
            out.append([run_pool(x, kind, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), True, False,
                                 _runtime.isa_index()) for kind in ("max", "avg")])
            if _cpu.openmp_enabled() and t == 2:
                assert _cpu.max_team() == 2
    finally:
        qengine.set_num_threads(before)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
