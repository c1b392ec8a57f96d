"""Integer GEMM: NumPy reference vs int64 brute force; every runnable ISA bit-exact vs the
reference (and so vs the scalar C path); epilogues; dynamic quantizer; errors; dispatch."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import qengine
from qengine import ConfigError, ShapeError, functional as F
from qengine import _runtime
from qengine._ext import _cpu, _gemm
from qengine.qtensor import QTensor
from qengine.reference import gemm as R

KERNELS = {_runtime.ISA_NAMES[r["isa"]]: r for r in _gemm.kernel_table()}
ISAS = [pytest.param(i, marks=pytest.mark.skipif(
    i not in _runtime.available_isas(), reason=f"{i} not compiled in or not runnable on this CPU"))
    for i in _runtime.ISA_NAMES]


def rnd(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape, dtype=dtype)


def brute_int64(a, za, w, zw=None):
    """Independent oracle: explicit Python-int sums."""
    m, k = a.shape
    n = w.shape[0]
    za = np.broadcast_to(np.asarray(za), (m,))
    zw = np.zeros(n, np.int64) if zw is None else np.broadcast_to(np.asarray(zw), (n,))
    out = np.zeros((m, n), np.int64)
    for i in range(m):
        for j in range(n):
            out[i, j] = sum((int(a[i, q]) - int(za[i])) * (int(w[j, q]) - int(zw[j])) for q in range(k))
    return out


def same_bits(x, y):
    assert x.dtype == y.dtype and x.shape == y.shape
    assert np.array_equal(np.atleast_1d(x).view(np.uint8), np.atleast_1d(y).view(np.uint8)), \
        f"{np.count_nonzero(x != y)} of {x.size} differ"


# ------------------------------------------------------------------ reference tier
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 5, 7), (4, 2, 9)])
def test_reference_equals_bruteforce(m, n, k):
    rng = np.random.default_rng(m * 100 + n * 10 + k)
    a, w = rnd(rng, (m, k), np.uint8), rnd(rng, (n, k), np.int8)
    za, zw = rng.integers(0, 256, m), rng.integers(-128, 128, n)
    assert np.array_equal(R.matmul_int32_ref(a, 17, w), brute_int64(a, 17, w))
    assert np.array_equal(R.matmul_int32_ref(a, za, w, zw), brute_int64(a, za, w, zw))


def test_requantize_ref_rounding_and_clamp():
    acc = np.array([[5, 15, 25, -5, -15, 10**6, -10**6]], np.int32)
    y = R.requantize_ref(acc, np.float32(0.1), 10, 0, 255)
    # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2 (half to even; 0.1f is slightly above 0.1 though)
    v = acc.astype(np.float32) * np.float32(0.1)
    assert np.array_equal(y[0, :5], (np.rint(v[0, :5]) + 10).astype(np.int32))
    assert y[0, 5] == 255 and y[0, 6] == 0


# ------------------------------------------------------------------ int32 GEMM, every ISA
@pytest.mark.parametrize("isa", ISAS)
def test_tile_edges_int32(isa):
    kr = KERNELS[isa]
    mr, nr, kpad = kr["mr"], kr["nr"], kr["kpad"]
    rng = np.random.default_rng(1)
    ks = sorted({1, kr["kr"] - 1 or 1, kr["kr"], kr["kr"] + 1, kpad, kpad + 1, 2 * kpad + 3, 67})
    for k in ks:
        for m in range(1, mr + 2):
            n = nr + 3
            a, w = rnd(rng, (m, k), np.uint8), rnd(rng, (n, k), np.int8)
            za = int(rng.integers(0, 256))
            assert np.array_equal(F.matmul_int32(a, za, w, isa=isa), R.matmul_int32_ref(a, za, w)), (m, n, k)
        for n in range(1, nr + 2):
            m = mr + 1
            a, w = rnd(rng, (m, k), np.uint8), rnd(rng, (n, k), np.int8)
            assert np.array_equal(F.matmul_int32(a, 255, w, isa=isa), R.matmul_int32_ref(a, 255, w)), (m, n, k)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("wval", [-128, 127, "alt"])
@pytest.mark.parametrize("aval,za", [(255, 0), (0, 255), (255, 255), (128, 3)])
def test_extremes(isa, wval, aval, za):
    k, m, n = 1000, 5, 37
    a = np.full((m, k), aval, np.uint8)
    w = (np.where(np.arange(k) % 2, 127, -128)[None, :].repeat(n, 0).astype(np.int8)
         if wval == "alt" else np.full((n, k), wval, np.int8))
    assert np.array_equal(F.matmul_int32(a, za, w, isa=isa), R.matmul_int32_ref(a, za, w))


@pytest.mark.parametrize("isa", ISAS)
def test_deep_k_at_the_bound(isa):
    k = F.MAX_K                                   # 65793: the exact int32 limit
    a = np.full((2, k), 255, np.uint8)
    w = np.full((3, k), -128, np.int8)
    w[1] = 127
    got = F.matmul_int32(a, 0, w, isa=isa)
    assert got[0, 0] == -255 * 128 * k and got[0, 1] == 255 * 127 * k
    rng = np.random.default_rng(5)
    a, w = rnd(rng, (3, 65536), np.uint8), rnd(rng, (4, 65536), np.int8)
    assert np.array_equal(F.matmul_int32(a, 77, w, isa=isa), R.matmul_int32_ref(a, 77, w))


@pytest.mark.parametrize("isa", ISAS)
def test_large_threaded_and_per_row_zero_points(isa):
    rng = np.random.default_rng(2)
    m, n, k = 50, 300, 200                        # above the parallel threshold, odd tiles
    a, w = rnd(rng, (m, k), np.uint8), rnd(rng, (n, k), np.int8)
    za = rng.integers(0, 256, m)
    want = R.matmul_int32_ref(a, za, w)
    old = _runtime.get_num_threads()
    try:
        for t in (1, 2):
            _runtime.set_num_threads(t)
            assert np.array_equal(F.matmul_int32(a, za, w, isa=isa), want)
    finally:
        _runtime.set_num_threads(old)


@pytest.mark.parametrize("isa", ISAS)
def test_int8_activations_and_weight_zero_points(isa):
    rng = np.random.default_rng(3)
    a8, w = rnd(rng, (7, 45), np.int8), rnd(rng, (19, 45), np.int8)
    want = brute_int64(a8, -3, w)
    assert np.array_equal(F.matmul_int32(a8, -3, w, isa=isa), want)
    zw = rng.integers(-128, 128, 19)
    a = rnd(rng, (7, 45), np.uint8)
    wp = F.pack_weights(w, w_zero_point=zw, isa=isa)
    za = rng.integers(0, 256, 7)
    assert np.array_equal(F.matmul_int32(a, za, wp), brute_int64(a, za, w, zw))


@pytest.mark.parametrize("isa", ISAS)
def test_noncontiguous_inputs(isa):
    rng = np.random.default_rng(4)
    a = rnd(rng, (20, 70), np.uint8)[::2, 3:60]
    w = np.asfortranarray(rnd(rng, (33, 57), np.int8))
    assert np.array_equal(F.matmul_int32(a, 9, w, isa=isa), R.matmul_int32_ref(a, 9, w))


# ------------------------------------------------------------------ epilogues
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_dequant_epilogue_bit_exact(isa, per_row, with_bias):
    rng = np.random.default_rng(6)
    m, n, k = 13, 45, 70
    a, w = rnd(rng, (m, k), np.uint8), rnd(rng, (n, k), np.int8)
    sa = rng.uniform(1e-3, 0.1, m).astype(np.float32) if per_row else np.float32(0.02)
    za = rng.integers(0, 256, m) if per_row else 128
    sw = rng.uniform(1e-4, 1e-2, n).astype(np.float32)
    bias = rng.normal(size=n).astype(np.float32) if with_bias else None
    wp = F.pack_weights(w, isa=isa)
    same_bits(F.matmul_dequant(a, sa, za, wp, sw, bias), R.matmul_dequant_ref(a, sa, za, w, sw, bias))
    prev = rng.normal(size=(m, n)).astype(np.float32)
    out = prev.copy()
    F.matmul_dequant(a, sa, za, wp, sw, bias, out=out, accumulate=True)
    same_bits(out, R.matmul_dequant_ref(a, sa, za, w, sw, bias, out=prev))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("out_dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("clamp", [None, "relu", (20, 100)])
def test_requant_epilogue_bit_exact(isa, out_dtype, clamp):
    rng = np.random.default_rng(7)
    m, n, k = 9, 70, 61
    a, w = rnd(rng, (m, k), np.uint8), rnd(rng, (n, k), np.int8)
    bias = rng.integers(-50000, 50000, n).astype(np.int32)
    mult = np.exp(rng.uniform(-14, -6, n)).astype(np.float32)   # some saturate, most do not
    zy = 100 if out_dtype == np.uint8 else -5
    if clamp == "relu":
        clamp = (zy, 255 if out_dtype == np.uint8 else 127)
    wp = F.pack_weights(w, isa=isa)
    got = F.matmul_requant(a, 37, wp, bias, mult, zy, out_dtype, clamp)
    want = R.matmul_requant_ref(a, 37, w, bias, mult, zy, out_dtype, clamp)
    assert got.dtype == np.dtype(out_dtype)
    assert np.array_equal(got, want)
    assert 0 < np.count_nonzero((want != want.min()) & (want != want.max()))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("out_dtype", [np.uint8, np.int8])
def test_fused_requant_kernel_tile_edges(isa, out_dtype):
    """The record's fused requantizing microkernel (used when z_a is folded into the bias and
    z_w = 0) equals the int32-tile kernel + epilogue (selected by passing a_zp) and the
    reference, over every row count of the tile, column tails around NR/2 and NR, K tails,
    with and without bias."""
    rng = np.random.default_rng(11)
    r = KERNELS[isa]
    mr, nr = r["mr"], r["nr"]
    dt = np.dtype(out_dtype)
    zy = 100 if dt == np.uint8 else -5
    lo, hi = (zy, 255) if dt == np.uint8 else (-100, 90)
    for m in sorted({1, mr - 1, mr, mr + 1, 2 * mr + 3}):
        for n in sorted({1, nr // 2 - 1, nr // 2, nr // 2 + 1, nr - 1, nr, nr + 1, 2 * nr + 5}):
            for k in (1, 5, 16, 37):
                if m < 1 or n < 1:
                    continue
                a, w = rnd(rng, (m, k), np.uint8), rnd(rng, (n, k), np.int8)
                bias = rng.integers(-3000, 3000, n).astype(np.int32) if k != 5 else None
                mult = np.exp(rng.uniform(-9, -4, n)).astype(np.float32)
                wp = F.pack_weights(w, isa=isa)
                want = R.matmul_requant_ref(a, 0, w, bias, mult, zy, dt, (lo, hi))
                kind = _gemm.EPI_U8 if dt == np.uint8 else _gemm.EPI_S8
                col = None if bias is None else bias.astype(np.int32)
                fused = np.empty((m, n), dt)
                _gemm.gemm(_runtime.ISA_NAMES.index(isa), a, wp._c(), kind, fused, col_bias=col,
                           multiplier=mult, out_zp=zy, lo=lo, hi=hi)
                unfused = np.empty((m, n), dt)
                _gemm.gemm(_runtime.ISA_NAMES.index(isa), a, wp._c(), kind, unfused,
                           a_zp=np.zeros(1, np.int32), col_bias=col, multiplier=mult, out_zp=zy,
                           lo=lo, hi=hi)
                assert np.array_equal(fused, want), (m, n, k)
                assert np.array_equal(unfused, want), (m, n, k)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("out_dtype,lo,hi", [(np.uint8, 0, 255), (np.uint8, 7, 120),
                                             (np.int8, -128, 127), (np.int8, 0, 100)])
def test_fused_requant_every_row_remainder_and_range(isa, out_dtype, lo, hi):
    """The fused requantizing kernel over every row remainder 1..MR (and 2·MR + each), N tails,
    K not a multiple of the K-group, clamps that keep a u8 output under 128 and an s8 one
    non-negative (the AVX2 kernel narrows with a signed or unsigned pack chosen from [lo, hi]),
    and 255 × −128 / 255 × 127 extremes at K = 65536 that drive acc to the clamps."""
    rng = np.random.default_rng(12)
    r = KERNELS[isa]
    mr, nr = r["mr"], r["nr"]
    dt = np.dtype(out_dtype)
    zy = 10 if dt == np.uint8 else 3
    kind = _gemm.EPI_U8 if dt == np.uint8 else _gemm.EPI_S8
    cases = [(m, n, k) for m in range(1, 2 * mr + 2) for n, k in ((nr + 3, 2 * r["kr"] + 1),
                                                                  (nr - 1, 1), (3, 67))]
    for m, n, k in cases + [(mr + 1, nr + 1, 65536)]:
        if k == 65536:
            a = np.full((m, k), 255, np.uint8)
            w = np.where(np.arange(n)[:, None] % 2, 127, -128).repeat(k, 1).astype(np.int8)
            mult = np.full(n, 1e-9, np.float32)
            mult[::3] = 3e-7                      # these columns land inside [lo, hi]
        else:
            a, w = rnd(rng, (m, k), np.uint8), rnd(rng, (n, k), np.int8)
            mult = np.exp(rng.uniform(-9, -4, n)).astype(np.float32)
        bias = rng.integers(-3000, 3000, n).astype(np.int32)
        wp = F.pack_weights(w, isa=isa)
        want = R.matmul_requant_ref(a, 0, w, bias, mult, zy, dt, (lo, hi))
        got = np.empty((m, n), dt)
        _gemm.gemm(_runtime.ISA_NAMES.index(isa), a, wp._c(), kind, got, col_bias=bias,
                   multiplier=mult, out_zp=zy, lo=lo, hi=hi)
        assert np.array_equal(got, want), (m, n, k)


@pytest.mark.parametrize("isa", [i for i in ISAS if KERNELS.get(i.values[0], {}).get("indirect")]
                         or [pytest.param("none", marks=pytest.mark.skip("no indirect kernel"))])
@pytest.mark.parametrize("threads", [1, 2])
def test_direct_a_kernels_bit_exact(isa, threads):
    """With K % 4 == 0 and M ≥ MR the record's igemm kernels read A in place (no packing pass):
    int32 (fused z_a·colsum and col_bias) and fused requant outputs equal the scalar kernel's on the same inputs and
    the int64 reference, for odd M, N around the 32-column panels, K tails of the padded W,
    long K, rows at odd addresses with a stride > K, 255 × −128 extremes, 1 and 2 threads."""
    rng = np.random.default_rng(13)
    ix, sx = _runtime.ISA_NAMES.index(isa), _runtime.ISA_NAMES.index("scalar")
    old = _runtime.get_num_threads()
    cases = [(m, n, k) for m in (12, 13, 97) for n in (64, 63, 65, 96, 128) for k in (4, 12, 36, 576)]
    cases += [(25, 64, 4100), (3136, 64, 576)]
    try:
        _runtime.set_num_threads(threads)
        for i, (m, n, k) in enumerate(cases):
            big = rnd(rng, (m, k + 7), np.uint8)
            a = big[:, 1:k + 1]                  # odd row starts, lda = k + 7
            w = rnd(rng, (n, k), np.int8)
            if i % 5 == 0:
                a[...] = 255
                w[...] = -128
            za = int(rng.integers(0, 256))
            want = R.matmul_int32_ref(np.ascontiguousarray(a), za, w)
            outs = {}
            for name, x in (("isa", ix), ("scalar", sx)):
                wp = F.pack_weights(w, isa=_runtime.ISA_NAMES[x])
                bias = rng.integers(-3000, 3000, n).astype(np.int32) if name == "isa" else bias
                o32 = np.empty((m, n), np.int32)
                _gemm.gemm(x, a, wp._c(), _gemm.EPI_INT32, o32, a_zp=np.array([za], np.int32),
                           col_bias=bias if i % 2 else None)
                if i % 2:
                    o32 -= bias
                if name == "isa":                # outputs spread over the u8 range
                    mult = (60.0 / (np.abs(want).mean(0) + 1.0)).astype(np.float32)
                o8 = np.empty((m, n), np.uint8)
                _gemm.gemm(x, a, wp._c(), _gemm.EPI_U8, o8, col_bias=bias, multiplier=mult,
                           out_zp=7, lo=0, hi=250)
                outs[name] = (o32, o8)
            assert np.array_equal(outs["isa"][0], want), (m, n, k)
            assert np.array_equal(outs["isa"][0], outs["scalar"][0]), (m, n, k)
            assert np.array_equal(outs["isa"][1], outs["scalar"][1]), (m, n, k)
            assert np.array_equal(outs["isa"][1], R.matmul_requant_ref(
                np.ascontiguousarray(a), 0, w, bias, mult, 7, np.uint8, (0, 250))), (m, n, k)
            assert len(np.unique(outs["isa"][1])) > 50 or i % 5 == 0 or m * n < 1000
    finally:
        _runtime.set_num_threads(old)


@pytest.mark.parametrize("isa", ISAS)
def test_fused_dequant_kernels_tile_edges(isa):
    """The record's fused dequantizing kernels (the F32 epilogue on the accumulators: dynamic
    Linear, LSTM/GRU projection and steps; gemv_dequant for one row) equal the int32-tile kernel
    + epilogue (selected by passing a zero col_bias) and the NumPy definition: every row count
    of the tile, one row (GEMV, up to 4 panels and beyond), column tails, K tails, per-tensor and
    per-row z_a, with and without bias, written or accumulated."""
    rng = np.random.default_rng(12)
    r = KERNELS[isa]
    mr, nr = r["mr"], r["nr"]
    for m in sorted({1, mr - 1, mr, mr + 1, 2 * mr + 3}):
        for n in sorted({1, nr // 2 + 1, nr - 1, nr, 4 * nr + 5}):
            for k in (1, 5, 37):
                if m < 1:
                    continue
                per_row, with_bias, acc = (m + n + k) % 2, (n + k) % 3 != 0, k == 37
                a, w = rnd(rng, (m, k), np.uint8), rnd(rng, (n, k), np.int8)
                za = rng.integers(0, 256, m if per_row else 1).astype(np.int32)
                sa = rng.uniform(1e-3, 0.1, m if per_row else 1).astype(np.float32)
                sw = rng.uniform(1e-4, 1e-2, n).astype(np.float32)
                bias = rng.normal(size=n).astype(np.float32) if with_bias else None
                prev = rng.normal(size=(m, n)).astype(np.float32)
                want = R.matmul_dequant_ref(a, sa if per_row else sa[0], za if per_row else za[0],
                                            w, sw, bias, out=prev.copy() if acc else None)
                wp = F.pack_weights(w, isa=isa)
                outs = []
                for col in (None, np.zeros(n, np.int32)):   # fused, then forced unfused
                    out = prev.copy()
                    _gemm.gemm(_runtime.ISA_NAMES.index(isa), a, wp._c(), _gemm.EPI_F32, out,
                               a_zp=za, a_scale=sa, row_step=int(per_row), col_bias=col,
                               w_scale=sw, bias=bias, accumulate=acc)
                    outs.append(out)
                same_bits(outs[0], want)
                same_bits(outs[1], want)


def test_requant_ties_round_half_even():
    # acc·M lands exactly on .5: M = 0.5, acc odd
    w = np.ones((1, 1), np.int8)
    a = np.arange(0, 16, dtype=np.uint8).reshape(-1, 1)
    for isa in _runtime.available_isas():
        got = F.matmul_requant(a, 0, F.pack_weights(w, isa=isa), None, np.float32(0.5), 0)
        assert np.array_equal(got[:, 0], np.rint(np.arange(16) * 0.5).astype(np.uint8))


@pytest.mark.parametrize("isa", ISAS)
def test_quantized_linear(isa):
    rng = np.random.default_rng(8)
    m, n, k = 6, 20, 33
    x = QTensor(rnd(rng, (m, k), np.int8), np.array(0.05, np.float32), np.array(-7, np.int32))
    sw = rng.uniform(0.001, 0.01, n).astype(np.float32)
    w = QTensor(rnd(rng, (n, k), np.int8), sw, np.zeros(n, np.int32), axis=0)
    bias = rng.normal(size=n).astype(np.float32)
    y = F.quantized_linear(x, w, bias, 0.1, 3, np.uint8, relu=True, isa=isa)
    bq = np.rint(bias.astype(np.float64) / (np.float32(0.05) * sw).astype(np.float64)).astype(np.int32)
    mult = (np.float64(np.float32(0.05)) * sw.astype(np.float64) / np.float64(np.float32(0.1))).astype(np.float32)
    a_u8 = (x.data.astype(np.int16) + 128).astype(np.uint8)
    want = R.matmul_requant_ref(a_u8, 121, w.data, bq, mult, 3, np.uint8, (3, 255))
    assert np.array_equal(y.data, want) and y.data.min() >= 3
    real = (x.data.astype(np.float64) + 7) * 0.05 @ (w.data.astype(np.float64) * sw[:, None]).T + bias
    assert np.max(np.abs((y.data.astype(np.float64) - 3) * 0.1 - np.clip(real, 0, 25.2))) <= 0.05 + 1e-5


# ------------------------------------------------------------------ dynamic quantization
def special_rows(rng, k):
    x = rng.normal(0, 3, (7, k)).astype(np.float32)
    x[1] = 0.0
    x[2] = 4.25                                    # constant positive
    x[3, ::5] = np.nan
    x[4, 1::7] = np.inf
    x[4, 2::7] = -np.inf
    x[5] = np.abs(x[5])                            # range starts at 0
    x[6] = np.nan
    return x


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("k", [1, 7, 16, 33, 250])
def test_quantize_activations_bit_exact(isa, per_row, k):
    x = special_rows(np.random.default_rng(k), k)
    q, s, z = F.quantize_activations(x, per_row=per_row, isa=isa)
    qr, sr, zr = R.quantize_activations_ref(x, per_row)
    same_bits(s, sr)
    assert np.array_equal(z, zr) and np.array_equal(q, qr)


def test_quantize_activations_semantics():
    x = np.array([[np.nan, np.inf, -np.inf, 0.0, 1.0, -1.0]], np.float32)
    q, s, z = F.quantize_activations(x)
    assert q[0, 0] == z and q[0, 1] == 255 and q[0, 2] == 0 and q[0, 3] == z
    assert s == np.float32(2.0 / 255)
    q, s, z = F.quantize_activations(np.zeros((2, 3), np.float32))
    assert s == 1.0 and np.all(q == z)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("per_row", [False, True])
def test_linear_dynamic_bit_exact(isa, per_row):
    rng = np.random.default_rng(9)
    m, n, k = 11, 50, 130
    x = rng.normal(size=(m, k)).astype(np.float32)
    w = rnd(rng, (n, k), np.int8)
    sw = rng.uniform(1e-3, 1e-2, n).astype(np.float32)
    bias = rng.normal(size=n).astype(np.float32)
    wp = F.pack_weights(w, isa=isa)
    same_bits(F.linear_dynamic(x, wp, sw, bias, per_row), R.linear_dynamic_ref(x, w, sw, bias, per_row))
    real = x.astype(np.float64) @ (w * sw[:, None]).T.astype(np.float64) + bias
    got = F.linear_dynamic(x, wp, sw, bias, per_row)
    assert np.max(np.abs(got - real)) < 0.05 * np.max(np.abs(real))


# ------------------------------------------------------------------ properties
@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 14), n=st.integers(1, 40), k=st.integers(1, 80), seed=st.integers(0, 2**31),
       za=st.integers(0, 255))
def test_property_all_isas_agree(m, n, k, seed, za):
    rng = np.random.default_rng(seed)
    a, w = rnd(rng, (m, k), np.uint8), rnd(rng, (n, k), np.int8)
    want = R.matmul_int32_ref(a, za, w)
    mult = np.float32(2.0 ** rng.integers(-16, -8))
    wq = R.matmul_requant_ref(a, za, w, None, mult, 128)
    for isa in _runtime.available_isas():
        wp = F.pack_weights(w, isa=isa)
        assert np.array_equal(F.matmul_int32(a, za, wp), want)
        assert np.array_equal(F.matmul_requant(a, za, wp, None, mult, 128), wq)


# ------------------------------------------------------------------ errors
def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(10)
    w = rnd(rng, (8, 16), np.int8)
    wp = F.pack_weights(w)
    a = rnd(rng, (3, 16), np.uint8)
    with pytest.raises(ShapeError, match="K mismatch.*K=15.*K=16"):
        F.matmul_int32(a[:, :15], 0, wp)
    with pytest.raises(ShapeError, match="dtype uint8 or int8"):
        F.matmul_int32(a.astype(np.int32), 0, wp)
    with pytest.raises(ShapeError, match="2-D"):
        F.matmul_int32(a[0], 0, wp)
    with pytest.raises(ShapeError, match="dtype int8"):
        F.pack_weights(w.astype(np.uint8))
    with pytest.raises(ShapeError, match="outside 1..65793"):
        F.pack_weights(np.zeros((1, F.MAX_K + 1), np.int8))
    with pytest.raises(ShapeError, match="outside 1..33025"):
        F.pack_weights(np.zeros((1, 40000), np.int8), w_zero_point=1)
    with pytest.raises(ConfigError, match=r"a_zero_point must lie in \[0, 255\]"):
        F.matmul_int32(a, 256, wp)
    with pytest.raises(ShapeError, match=r"a_zero_point must be a scalar or have shape \(3,\)"):
        F.matmul_int32(a, [1, 2], wp)
    with pytest.raises(ConfigError, match="finite and > 0"):
        F.matmul_requant(a, 0, wp, None, np.float32(np.nan), 0)
    with pytest.raises(ConfigError, match="empty range"):
        F.matmul_requant(a, 0, wp, None, 0.1, 0, np.int8, clamp=(100, 50))
    with pytest.raises(ConfigError, match="uint8 or int8"):
        F.matmul_requant(a, 0, wp, None, 0.1, 0, np.int16)
    with pytest.raises(ShapeError, match=r"w_scale must be a scalar or have shape \(8,\)"):
        F.matmul_dequant(a, 0.1, 0, wp, np.ones(7, np.float32))
    with pytest.raises(ConfigError, match="unknown ISA"):
        F.pack_weights(w, isa="sse9")
    with pytest.raises(ShapeError, match="bias_i32 must be an integer array of shape"):
        F.matmul_requant(a, 0, wp, np.zeros(3, np.int32), 0.1, 0)
    with pytest.raises(ShapeError, match="out must be a float32 array of shape"):
        F.matmul_dequant(a, 0.1, 0, wp, np.ones(8, np.float32), out=np.zeros((3, 7), np.float32))
    other = [i for i in _runtime.available_isas() if i != wp.isa]
    if other:
        with pytest.raises(ConfigError, match="packed for"):
            F.matmul_int32(a, 0, wp, isa=other[0])


# ------------------------------------------------------------------ build and dispatch
def test_build_has_openmp_and_every_runnable_isa():
    assert _cpu.openmp_enabled(), "qengine was built without OpenMP"
    missing = [i for i in _cpu.runnable_isas() if i not in _cpu.compiled_isas()]
    assert not missing, f"CPU can run {missing} but the build lacks them"
    assert set(_cpu.compiled_isas()) <= set(KERNELS), "a compiled ISA has no GEMM kernel"


def _run_env(isa):
    code = ("import qengine, qengine.functional as F, qengine._runtime as r;"
            "print(qengine.active_isa(), r.config()['kernels']['gemm_u8s8'])")
    env = dict(os.environ, QENGINE_ISA=isa, PYTHONPATH=os.getcwd())
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("isa", ISAS)
def test_env_forces_isa(isa):
    p = _run_env(isa)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [isa, KERNELS[isa]["name"]]


def test_env_unknown_isa_errors():
    p = _run_env("avx1024")
    assert p.returncode != 0 and "QENGINE_ISA='avx1024' is not an ISA qengine knows" in p.stderr
    if "neondot" not in _cpu.runnable_isas():
        p = _run_env("neondot")
        assert p.returncode != 0 and "neondot" in p.stderr and "ConfigError" in p.stderr
