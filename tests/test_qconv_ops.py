"""Static-int8 pooling / elementwise / LUT / concat / linear: references vs brute force, the
compiled kernels bit-exact vs the references on every ISA, threads 1 = 2, edge sizes."""
import numpy as np
import pytest

import qengine
from qengine import ShapeError, _runtime
from qengine.quantized.elementwise import QAdd, QConcat, QLookupTable, QMul, apply_table
from qengine.quantized.pool import QAveragePool2d, QGlobalAveragePool, QMaxPool2d
from qengine.quantized.linear import QLinear
from qengine.reference import conv as R
from qengine.reference import gemm as RG

ISAS = [pytest.param(i, marks=pytest.mark.skipif(
    i not in _runtime.available_isas(), reason=f"{i} not compiled in or not runnable on this CPU"))
    for i in _runtime.ISA_NAMES]


def brute_pool(x, kind, k, s, pads, ceil, cip, zx, d=1):
    """Independent oracle: explicit windows (taps d apart), integer sums, count by the
    PyTorch/ORT rule: the taps inside the input, or with count_include_pad inside the input and
    its explicit pads (never the ceil_mode overhang past them)."""
    n, h, w, c = x.shape
    (pt, pl, pb, pr) = pads
    oh = R.conv_out_size(h, k, s, d, pt, pb, ceil)
    ow = R.conv_out_size(w, k, s, d, pl, pr, ceil)
    out = np.zeros((n, oh, ow, c), np.int64)
    cnt = np.zeros((oh, ow), np.int64)
    for oy in range(oh):
        for ox in range(ow):
            y0, x0 = oy * s - pt, ox * s - pl
            ty = range(y0, y0 + (k - 1) * d + 1, d)
            tx = range(x0, x0 + (k - 1) * d + 1, d)
            ys = [y for y in ty if 0 <= y < h]
            xs = [xx for xx in tx if 0 <= xx < w]
            win = x[:, ys][:, :, xs].astype(np.int64)
            if kind == "max":
                out[:, oy, ox] = win.max(axis=(1, 2))
            else:
                out[:, oy, ox] = (win - zx).sum(axis=(1, 2))
                if cip:
                    cnt[oy, ox] = sum(y < h + pb for y in ty) * sum(xx < w + pr for xx in tx)
                else:
                    cnt[oy, ox] = len(ys) * len(xs)
    return out, cnt


@pytest.mark.parametrize("k,s,pads,ceil,cip", [
    (3, 2, (1, 1, 1, 1), False, False), (3, 2, (1, 1, 1, 1), True, True),
    (2, 2, (0, 0, 0, 0), True, False), (3, 3, (1, 0, 0, 1), True, True),
    (3, 1, (0, 2, 1, 0), False, True), (1, 1, (0, 0, 0, 0), False, False)])
def test_pool_ref_and_kernel(k, s, pads, ceil, cip):
    rng = np.random.default_rng(k * 7 + s)
    x = rng.integers(0, 256, (2, 7, 8, 17), dtype=np.uint8)
    mx, _ = brute_pool(x, "max", k, s, pads, ceil, cip, 0)
    ref_max = R.qpool_ref(x, "max", (k, k), (s, s), pads, (1, 1), ceil)
    assert np.array_equal(ref_max, mx)
    M = QMaxPool2d(k, s, pads, ceil_mode=ceil)
    assert np.array_equal(M(x), ref_max)
    sx, zx, sy, zy = 0.05, 31, 0.03, 12
    acc, cnt = brute_pool(x, "avg", k, s, pads, ceil, cip, zx)
    mult = R.avgpool_multipliers(sx, sy, k * k)[cnt]
    expect = RG.requantize_ref(acc.astype(np.int32), mult[None, :, :, None], zy, 0, 255)
    ref_avg = R.qpool_ref(x, "avg", (k, k), (s, s), pads, (1, 1), ceil, cip, sx, zx, sy, zy)
    assert np.array_equal(ref_avg, expect)
    A = QAveragePool2d(k, s, pads, ceil, cip, input_scale=sx, input_zero_point=zx,
                       output_scale=sy, output_zero_point=zy)
    assert np.array_equal(A(x), ref_avg)


@pytest.mark.parametrize("k,s,d,pads,ceil,cip", [
    (3, 1, 2, (2, 2, 2, 2), False, False), (3, 2, 2, (1, 0, 2, 1), True, True),
    (2, 3, 3, (0, 0, 0, 0), True, False), (2, 2, 3, (1, 1, 0, 2), True, True),
    (3, 2, 2, (0, 1, 1, 0), False, True), (2, 1, 4, (3, 0, 0, 3), True, False)])
def test_dilated_pool_ref_and_kernel(k, s, d, pads, ceil, cip):
    rng = np.random.default_rng(k * 13 + d)
    x = rng.integers(0, 256, (2, 11, 12, 9), dtype=np.uint8)
    mx, _ = brute_pool(x, "max", k, s, pads, ceil, cip, 0, d)
    ref_max = R.qpool_ref(x, "max", (k, k), (s, s), pads, (d, d), ceil)
    assert np.array_equal(ref_max, mx)
    assert np.array_equal(QMaxPool2d(k, s, pads, d, ceil)(x), ref_max)
    sx, zx, sy, zy = 0.05, 31, 0.03, 12
    acc, cnt = brute_pool(x, "avg", k, s, pads, ceil, cip, zx, d)
    expect = RG.requantize_ref(acc.astype(np.int32),
                               R.avgpool_multipliers(sx, sy, k * k)[cnt][None, :, :, None],
                               zy, 0, 255)
    ref_avg = R.qpool_ref(x, "avg", (k, k), (s, s), pads, (d, d), ceil, cip, sx, zx, sy, zy)
    assert np.array_equal(ref_avg, expect)
    A = QAveragePool2d(k, s, pads, ceil, cip, input_scale=sx, input_zero_point=zx,
                       output_scale=sy, output_zero_point=zy, dilation=d)
    assert np.array_equal(A(x), ref_avg)


# A QAveragePool graph node (what quantize_static writes into engine files) with dilations,
# ceil_mode and count_include_pad, run by a child process with QENGINE_ISA forcing the ISA.
_POOL_NODE = dict(kernel_shape=[2, 3], strides=[1, 2], pads=[1, 1, 2, 0], dilations=[3, 2],
                  ceil_mode=1, count_include_pad=1, x_scale=0.05, x_zero_point=31,
                  y_scale=0.03, y_zero_point=12)
_POOL_CHILD = """
import sys, numpy as np, qengine
from qengine.graph.ir import Node
from qengine.ops import get_op_class
attrs = eval(sys.argv[1])
x = np.random.default_rng(7).integers(0, 256, (2, 11, 12, 9), dtype=np.uint8)
out = []
for op, extra in (("QAveragePool", {}), ("QMaxPool", None)):
    a = dict(attrs) if extra is not None else {k: attrs[k] for k in
        ("kernel_shape", "strides", "pads", "dilations", "ceil_mode")}
    (y,) = get_op_class(op)(Node(op, "p", ("x",), ("y",), a), {}).run(x)
    out.append(y)
assert qengine.active_isa() == sys.argv[2]
np.save(sys.stdout.buffer, np.concatenate([o.reshape(-1) for o in out]))
"""


@pytest.mark.parametrize("isa", ISAS)
def test_dilated_pool_graph_ops_on_every_isa(isa):
    """The QAveragePool / QMaxPool graph ops hand dilations to the kernel, bit-exact with the
    NumPy reference whichever ISA the process runs."""
    import io
    import os
    import subprocess
    import sys
    from pathlib import Path
    a = _POOL_NODE
    x = np.random.default_rng(7).integers(0, 256, (2, 11, 12, 9), dtype=np.uint8)
    geo = ((2, 3), (1, 2), (1, 1, 2, 0), (3, 2), True)
    want = np.concatenate([
        R.qpool_ref(x, "avg", *geo, True, 0.05, 31, 0.03, 12).reshape(-1),
        R.qpool_ref(x, "max", *geo).reshape(-1)])
    env = dict(os.environ, QENGINE_ISA=isa, PYTHONPATH=str(Path(qengine.__file__).parents[1]))
    r = subprocess.run([sys.executable, "-c", _POOL_CHILD, repr(a), isa], capture_output=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-800:]
    got = np.load(io.BytesIO(r.stdout))
    assert np.array_equal(got, want)


def test_pool_threads_and_relu():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 40, 40, 64), dtype=np.uint8)
    A = QAveragePool2d(3, 1, 1, input_scale=0.1, input_zero_point=128, output_scale=0.05,
                       output_zero_point=10, activation="relu")
    y1, y2 = A(x, nthreads=1), A(x, nthreads=2)
    assert np.array_equal(y1, y2) and y1.min() >= 10
    assert np.array_equal(y1, R.qpool_ref(x, "avg", (3, 3), (1, 1), (1, 1, 1, 1), x_scale=0.1,
                                          x_zero_point=128, y_scale=0.05, y_zero_point=10,
                                          lo=10))
    M = QMaxPool2d(3, 2, 1)
    assert np.array_equal(M(x, nthreads=1), M(x, nthreads=2))


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 7, 7, 33), (1, 2, 3, 512)])
def test_global_average_pool(shape):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    G = QGlobalAveragePool(input_scale=0.1, input_zero_point=100, output_scale=0.02,
                           output_zero_point=128)
    ref = R.qpool_ref(x, "avg", shape[1:3], (1, 1), x_scale=0.1, x_zero_point=100,
                      y_scale=0.02, y_zero_point=128)
    assert np.array_equal(G(x), ref)


def brute_add(a, b, qa, qb, qy, lo=0, hi=255):
    """Element by element with Python floats forced to float32 at each step."""
    ma = np.float32(np.float64(np.float32(qa[0])) / np.float64(np.float32(qy[0])))
    mb = np.float32(np.float64(np.float32(qb[0])) / np.float64(np.float32(qy[0])))
    out = np.empty(a.shape, np.uint8)
    for i, (x, y) in enumerate(zip(a.ravel(), b.ravel())):
        v = np.float32(np.float32(int(x) - qa[1]) * ma) + np.float32(np.float32(int(y) - qb[1]) * mb)
        v = min(max(np.float32(v), np.float32(lo - qy[1])), np.float32(hi - qy[1]))
        out.ravel()[i] = int(np.rint(v)) + qy[1]
    return out


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [1, 7, 8, 15, 16, 17, 100, 200003])
def test_add_mul_kernels(isa, n):
    rng = np.random.default_rng(n)
    a = rng.integers(0, 256, n, dtype=np.uint8)
    b = rng.integers(0, 256, n, dtype=np.uint8)
    qa, qb, qy = (0.031, 3), (0.2, 250), (0.15, 128)
    ref = R.qadd_ref(a, *qa, b, *qb, *qy)
    if n <= 100:
        assert np.array_equal(ref, brute_add(a, b, qa, qb, qy))
    assert np.array_equal(QAdd(*qa, *qb, *qy, isa=isa)(a, b), ref)
    add = QAdd(*qa, *qb, *qy, isa=isa, activation="relu")
    assert np.array_equal(add(a, b, nthreads=2), R.qadd_ref(a, *qa, b, *qb, *qy, lo=128))
    mul = QMul(*qa, *qb, 0.5, 20, isa=isa)
    acc = (a.astype(np.int64) - 3) * (b.astype(np.int64) - 250)
    m = np.float32(np.float64(np.float32(0.031)) * np.float64(np.float32(0.2)) / 0.5)
    assert np.array_equal(mul(a, b), RG.requantize_ref(acc.astype(np.int32), m, 20, 0, 255))
    assert np.array_equal(mul(a, b, nthreads=1), mul(a, b, nthreads=2))


@pytest.mark.parametrize("isa", ISAS)
def test_add_extremes_and_broadcast(isa):
    a = np.array([0, 255, 0, 255], np.uint8)
    b = np.array([0, 0, 255, 255], np.uint8)
    for qa, qb, qy in [((1.0, 0), (1.0, 0), (2.0, 0)), ((1e-3, 255), (50.0, 0), (0.01, 128))]:
        assert np.array_equal(QAdd(*qa, *qb, *qy, isa=isa)(a, b), R.qadd_ref(a, *qa, b, *qb, *qy))
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (2, 3, 4, 5), dtype=np.uint8)
    se = rng.integers(0, 256, (2, 1, 1, 5), dtype=np.uint8)
    assert np.array_equal(QMul(0.1, 3, 0.004, 0, 0.1, 3, isa=isa)(x, se),
                          R.qmul_ref(x, 0.1, 3, se, 0.004, 0, 0.1, 3))


@pytest.mark.parametrize("fn,kw", [("sigmoid", {}), ("hardswish", {}), ("tanh", {}),
                                   ("leakyrelu", {"alpha": 0.2}), ("gelu", {}), ("silu", {})])
def test_lut(fn, kw):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (3, 5, 7, 11), dtype=np.uint8)
    T = QLookupTable(fn, input_scale=0.05, input_zero_point=120, output_scale=0.02,
                     output_zero_point=60, **kw)
    tab = R.activation_table_ref(fn, 0.05, 120, 0.02, 60, **kw)
    assert np.array_equal(T.table, tab)
    assert np.array_equal(T(x), tab[x])
    big = rng.integers(0, 256, 300001, dtype=np.uint8)
    assert np.array_equal(T(big, nthreads=2), tab[big])
    # the table is quantize(f(dequantize(q))): check a few entries with explicit float64 math
    f = R.ACTIVATIONS[fn]
    for q in (0, 120, 200, 255):
        r = np.float32(q - 120) * np.float32(0.05)
        want = int(np.clip(np.rint(np.float32(f(np.float64(r), **kw)) / np.float32(0.02)) + 60,
                           0, 255))
        assert abs(int(tab[q]) - want) <= 1


def test_concat():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (1, 3, 4, 5), dtype=np.uint8)
    b = rng.integers(0, 256, (1, 3, 4, 2), dtype=np.uint8)
    C = QConcat([(0.1, 10), (0.3, 128)], 0.3, 128, axis=3)
    y = C([a, b])
    assert np.array_equal(y, R.qconcat_ref([a, b], [(0.1, 10), (0.3, 128)], 0.3, 128, axis=3))
    assert np.array_equal(y[..., 5:], b)                  # equal qparams: a plain copy
    # the requant table is qe_requantize of q − z_x by float32(s_x/s_y)
    m = np.float32(np.float64(np.float32(0.1)) / np.float64(np.float32(0.3)))
    want = RG.requantize_ref((a.astype(np.int32) - 10), m, 128, 0, 255)
    assert np.array_equal(y[..., :5], want)
    with pytest.raises(ShapeError):
        C([a])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n", [(1, 3, 1), (7, 33, 17), (64, 200, 70)])
def test_qlinear(isa, m, k, n):
    rng = np.random.default_rng(m * k)
    w = rng.normal(0, 0.1, (n, k)).astype(np.float32)
    bias = rng.normal(0, 0.2, n).astype(np.float32)
    L = QLinear(w, bias, input_scale=0.02, input_zero_point=77, output_scale=0.05,
                output_zero_point=128, activation="relu6", isa=isa)
    x = rng.integers(0, 256, (2, m, k), dtype=np.uint8)
    y = L(x)
    ref = RG.matmul_requant_ref(x.reshape(-1, k), 77, L.weight_int8, L.bias_int32, L.multiplier,
                                128, clamp=(L.lo, L.hi)).reshape(2, m, n)
    assert y.shape == (2, m, n) and np.array_equal(y, ref)
    assert L.lo == 128 and L.hi == 128 + 120


def test_apply_table_rejects_non_u8():
    with pytest.raises(ShapeError):
        apply_table(np.zeros(3, np.int8), np.zeros(256, np.uint8))


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 1, 28, 28), (3, 10), (300, 1000)])
def test_quantize_dequantize_u8_ops_match_api(shape):
    """The graph's QuantizeU8 / DequantizeU8 call the kernels directly (qparams checked at
    build); they must equal qengine.quantize / dequantize, NaN/±Inf, float64 input and the
    NHWC moves included, above and below the threading threshold."""
    from qengine.graph.ir import Node
    from qengine.ops import get_op_class
    from qengine.qtensor import QTensor
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 3).astype(np.float64)
    x.reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
    s, z = 0.0123, 117
    nhwc = len(shape) == 4
    qop = get_op_class("QuantizeU8")(Node("QuantizeU8", "q", ("x",), ("y",),
                                          {"scale": s, "zero_point": z, "to_nhwc": 1}), {})
    (q,) = qop.run(x)
    xr = np.transpose(x, (0, 2, 3, 1)) if nhwc else x
    want = qengine.quantize(xr, np.float32(s), z, dtype=np.uint8).data
    assert q.dtype == np.uint8 and q.flags.c_contiguous and np.array_equal(q, want)
    dop = get_op_class("DequantizeU8")(Node("DequantizeU8", "d", ("y",), ("z",),
                                            {"scale": s, "zero_point": z, "from_nhwc": 1}), {})
    (y,) = dop.run(q)
    yr = qengine.dequantize(QTensor(q, np.float32(s), np.int32(z)))
    yr = np.transpose(yr, (0, 3, 1, 2)) if nhwc else yr
    assert y.dtype == np.float32 and y.flags.c_contiguous and np.array_equal(y, yr)
    with pytest.raises(qengine.ModelError):
        get_op_class("QuantizeU8")(Node("QuantizeU8", "bad", ("x",), ("y",),
                                        {"scale": 0.0, "zero_point": z}), {})
