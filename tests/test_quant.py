"""Quantize/dequantize kernels against the NumPy reference, float64 formulas and hand-derived
values; every SIMD path against the scalar C path (docs/numerics.md)."""
import numpy as np
import pytest

import qengine as qe
from qengine import ConfigError, ShapeError
from qengine.reference.quant import dequantize_ref, qrange_ref, quantize_ref

ISAS = qe.available_isas()
SIMD_ISAS = [i for i in ISAS if i != "scalar"]
# (dtype, bits, narrow)
TYPES = ([(np.uint8, b, False) for b in range(2, 9)] + [(np.int8, b, n) for b in range(2, 9)
         for n in (False, True)] + [(np.int16, 16, False), (np.int16, 16, True),
                                   (np.int16, 12, False)])
TYPE_IDS = [f"{np.dtype(d).name}-b{b}{'-narrow' if n else ''}" for d, b, n in TYPES]


def _qrange(dtype, bits, narrow):
    return qrange_ref(bits, np.dtype(dtype).kind == "i", narrow)


def _data(rng, shape, spread=4.0):
    """Normal data plus the values that stress a quantizer: ties, infinities, NaN, huge."""
    x = (rng.standard_normal(shape) * spread).astype(np.float32)
    flat = x.reshape(-1)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3e38, -3e38, 1e-40, 0.5, -0.5],
                        np.float32)
    k = min(flat.size, specials.size)
    flat[rng.choice(flat.size, k, replace=False)] = specials[:k]
    return x


def _params(rng, dtype, bits, narrow, C=None):
    qmin, qmax = _qrange(dtype, bits, narrow)
    n = () if C is None else (C,)
    scale = (rng.uniform(0.01, 1.0, n) * 4.0 / (qmax - qmin + 1)).astype(np.float32)
    zp = rng.integers(qmin, qmax + 1, n) if not narrow else np.zeros(n, np.int64)
    return scale, zp, qmin, qmax


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype,bits,narrow", TYPES, ids=TYPE_IDS)
def test_per_tensor_equals_reference(isa, dtype, bits, narrow):
    rng = np.random.default_rng(bits)
    x = _data(rng, (1000,))
    scale, zp, qmin, qmax = _params(rng, dtype, bits, narrow)
    q = qe.quantize(x, scale, zp, dtype=dtype, bits=bits, narrow_range=narrow, isa=isa)
    assert q.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(q.data, quantize_ref(x, scale, zp, qmin, qmax))
    np.testing.assert_array_equal(q.dequantize(isa=isa), dequantize_ref(q.data, scale, zp))


@pytest.mark.parametrize("dtype,bits,narrow", TYPES, ids=TYPE_IDS)
def test_close_to_float64_formula(dtype, bits, narrow):
    """Independent of the float32 reference: the plain formula in float64 may differ only where
    the float32 division rounds across a .5 boundary, so by at most 1."""
    rng = np.random.default_rng(100 + bits)
    x = (rng.standard_normal(5000) * 3).astype(np.float32)
    scale, zp, qmin, qmax = _params(rng, dtype, bits, narrow)
    q = qe.quantize(x, scale, zp, dtype=dtype, bits=bits, narrow_range=narrow).data
    q64 = np.clip(np.rint(x.astype(np.float64) / np.float64(scale)) + zp, qmin, qmax)
    assert np.max(np.abs(q.astype(np.int64) - q64)) <= 1
    assert np.mean(q != q64) < 1e-3


@pytest.mark.parametrize("isa", ISAS)
def test_round_half_to_even(isa):
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 126.5, -127.5], np.float32)
    q = qe.quantize(x, 1.0, 0, dtype=np.int8, isa=isa).data
    np.testing.assert_array_equal(q, [0, 2, 2, 0, -2, -2, 4, 126, -128])
    # The same ties after a division by an exact power of two, with a zero point.
    q = qe.quantize(x * 0.25, 0.25, 10, dtype=np.uint8, isa=isa).data
    np.testing.assert_array_equal(q, [10, 12, 12, 10, 8, 8, 14, 136, 0])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype,bits,narrow", TYPES, ids=TYPE_IDS)
def test_saturation_and_infinities(isa, dtype, bits, narrow):
    qmin, qmax = _qrange(dtype, bits, narrow)
    z = 0 if narrow else (qmin + qmax) // 2
    x = np.array([np.inf, -np.inf, 1e30, -1e30, 3.4e38, -3.4e38, qmax - z + 0.49,
                  qmax - z + 0.51, qmin - z - 0.51, np.nan], np.float32)
    q = qe.quantize(x, 1.0, z, dtype=dtype, bits=bits, narrow_range=narrow, isa=isa).data
    np.testing.assert_array_equal(q, [qmax, qmin, qmax, qmin, qmax, qmin, qmax, qmax, qmin, z])


@pytest.mark.parametrize("isa", ISAS)
def test_nan_maps_to_zero_point_and_check_raises(isa):
    x = np.zeros((3, 4), np.float32)
    x[1, 2] = np.nan
    x[2, 0] = np.nan
    q = qe.quantize(x, 0.1, 7, isa=isa)
    assert q.data[1, 2] == 7 and q.data[2, 0] == 7
    with pytest.raises(ConfigError, match=r"2 NaN value\(s\) \(first at index \(1, 2\)\)"):
        qe.quantize(x, 0.1, 7, check=True, isa=isa)
    qe.quantize(np.ones(3, np.float32), 0.1, 7, check=True, isa=isa)      # no NaN: no error


@pytest.mark.parametrize("isa", SIMD_ISAS)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16])
def test_simd_equals_scalar_on_tails_and_offsets(isa, dtype):
    """Every size 1..67 at offsets 0..3 (unaligned loads, masked/scalar tails)."""
    rng = np.random.default_rng(7)
    base = _data(rng, (80,))
    for n in range(1, 68):
        for off in range(4):
            x = base[off:off + n]
            a = qe.quantize(x, 0.05, 3, dtype=dtype, isa=isa)
            b = qe.quantize(x, 0.05, 3, dtype=dtype, isa="scalar")
            np.testing.assert_array_equal(a.data, b.data, err_msg=f"n={n} off={off}")
            np.testing.assert_array_equal(a.dequantize(isa=isa), b.dequantize(isa="scalar"))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16])
def test_tails_equal_reference(isa, dtype):
    rng = np.random.default_rng(8)
    qmin, qmax = _qrange(dtype, np.dtype(dtype).itemsize * 8, False)
    for n in range(1, 68):
        x = _data(rng, (n + 1,))[1:]
        q = qe.quantize(x, 0.03, 1, dtype=dtype, isa=isa).data
        np.testing.assert_array_equal(q, quantize_ref(x, 0.03, 1, qmin, qmax), err_msg=f"n={n}")


SHAPES_AXES = [((5, 6, 7), 0), ((5, 6, 7), 1), ((5, 6, 7), -1), ((2, 3, 4, 5), 1),
               ((2, 3, 4, 5), 0), ((2, 3, 4, 5), -1), ((2, 3, 4, 5), 2), ((17,), 0), ((3, 1, 4), 1)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
@pytest.mark.parametrize("dtype,bits,narrow", [(np.uint8, 8, False), (np.int8, 8, True),
                                                (np.int8, 4, False), (np.int16, 16, False)])
def test_per_channel(isa, shape, axis, dtype, bits, narrow):
    rng = np.random.default_rng(len(shape) * 10 + axis)
    x = _data(rng, shape)
    C = shape[axis]
    scale, zp, qmin, qmax = _params(rng, dtype, bits, narrow, C)
    q = qe.quantize(x, scale, zp, dtype=dtype, axis=axis, bits=bits, narrow_range=narrow, isa=isa)
    assert q.axis == axis % len(shape)
    np.testing.assert_array_equal(q.data, quantize_ref(x, scale, zp, qmin, qmax, q.axis))
    # Independent check: each channel equals per-tensor quantization of that slice.
    for c in range(C):
        sl = np.take(x, c, axis=axis)
        pt = qe.quantize(sl, scale[c], zp[c], dtype=dtype, bits=bits, narrow_range=narrow, isa=isa)
        np.testing.assert_array_equal(np.take(q.data, c, axis=axis), pt.data)
        np.testing.assert_array_equal(np.take(q.dequantize(isa=isa), c, axis=axis),
                                      pt.dequantize(isa=isa))
    np.testing.assert_array_equal(q.dequantize(isa=isa), dequantize_ref(q.data, scale, zp, q.axis))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape,axis", [((300_007,), None), ((3, 100_003), 0),
                                        ((60_001, 5), 1), ((2, 3, 50_000), 1)])
def test_large_arrays_openmp_path(isa, shape, axis):
    rng = np.random.default_rng(11)
    x = _data(rng, shape)
    C = 1 if axis is None else shape[axis]
    scale = np.float32(0.02) if axis is None else np.linspace(0.01, 0.05, C, dtype=np.float32)
    zp = 128 if axis is None else np.arange(C) + 120
    q = qe.quantize(x, scale, zp, axis=axis, isa=isa)
    np.testing.assert_array_equal(q.data, quantize_ref(x, scale, zp, 0, 255, axis))
    np.testing.assert_array_equal(q.dequantize(isa=isa), dequantize_ref(q.data, scale, zp, axis))
    threads = qe.get_num_threads()
    try:
        qe.set_num_threads(1)
        np.testing.assert_array_equal(qe.quantize(x, scale, zp, axis=axis, isa=isa).data, q.data)
    finally:
        qe.set_num_threads(threads)


def test_non_contiguous_and_float64_input():
    rng = np.random.default_rng(12)
    x64 = rng.standard_normal((8, 10)) * 3
    x = x64[:, ::3]                                  # strided, float64
    q = qe.quantize(x, 0.1, 0, dtype=np.int8)
    np.testing.assert_array_equal(q.data, quantize_ref(x.astype(np.float32), 0.1, 0, -128, 127))
    assert qe.quantize(np.float32(0.3), 0.1, 0).data == 3      # 0-d arrays work
    assert qe.quantize(np.zeros((0, 3)), [0.1] * 3, 0, axis=1).data.shape == (0, 3)


@pytest.mark.parametrize("isa", ISAS)
def test_dequantize_int32_and_int16(isa):
    big = np.array([2**31 - 1, -2**31, 2**24 + 1, -(2**24) - 3, 0, 7] * 5, np.int32)
    t = qe.QTensor(big, np.float32(1e-3), 0, bits=32)
    np.testing.assert_array_equal(t.dequantize(isa=isa), dequantize_ref(big, 1e-3, 0))
    assert t.dequantize(isa=isa)[0] == np.float32(np.float32(2.0**31) * np.float32(1e-3))
    d = np.arange(-32768, 32768, 97, dtype=np.int16)
    t = qe.QTensor(d, np.float32(0.5), -1000, bits=16)
    ref = (d.astype(np.float64) + 1000) * 0.5                   # exact in float32 here
    np.testing.assert_array_equal(t.dequantize(isa=isa), ref.astype(np.float32))


def test_dequantize_is_scale_times_difference():
    q = qe.QTensor(np.array([0, 1, 128, 255], np.uint8), np.float32(0.1), 128)
    expect = np.float32(0.1) * np.array([-128, -127, 0, 127], np.float32)
    np.testing.assert_array_equal(q.dequantize(), expect)
    assert q.dequantize()[2] == 0.0


def test_registered_kernel_names():
    kernels = qe._runtime.config()["kernels"]
    active = qe._runtime.active_isa()
    suffix = {"scalar": "__scalar", "avx2": "__avx2", "avx512vnni": "__avx512",
              "neondot": "__scalar"}[active]
    assert kernels["quantize"] == "qe_f32_qu8_vcvt" + suffix
    assert kernels["dequantize"] == "qe_qu8_f32_vcvt" + suffix


def test_qtensor_properties_and_repr():
    t = qe.quantize(np.zeros((2, 3), np.float32), [0.5, 0.25, 1.0], 0, dtype=np.int8, axis=-1,
                    bits=4, narrow_range=True)
    assert (t.qmin, t.qmax, t.bits, t.axis, t.signed) == (-7, 7, 4, 1, True)
    assert t.scale.dtype == np.float32 and t.zero_point.dtype == np.int32
    assert t.zero_point.shape == (3,)
    assert "axis=1" in repr(t) and "range=[-7, 7]" in repr(t)
    u = qe.QTensor(np.zeros(4, np.uint8), 0.1, 3)
    assert (u.qmin, u.qmax, u.axis, u.scale.shape) == (0, 255, None, ())
    assert "zero_point=3" in repr(u)


BAD_QUANTIZE = [
    (dict(dtype=np.int32), ConfigError, "uint8, int8 or int16"),
    (dict(dtype=np.float32), ConfigError, "uint8, int8 or int16"),
    (dict(scale=0.0), ConfigError, "scale must be a finite float32"),
    (dict(scale=-1.0), ConfigError, "scale must be a finite float32"),
    (dict(scale=np.nan), ConfigError, "scale must be a finite float32"),
    (dict(scale=np.inf), ConfigError, "scale must be a finite float32"),
    (dict(scale=1e-40), ConfigError, "normal"),
    (dict(zero_point=256), ConfigError, r"zero_point must lie in \[0, 255\]"),
    (dict(zero_point=-1), ConfigError, r"zero_point must lie in \[0, 255\]"),
    (dict(zero_point=1.5), ConfigError, "zero_point must hold integers"),
    (dict(dtype=np.int8, zero_point=-128, narrow_range=True), ConfigError, r"\[-127, 127\]"),
    (dict(bits=1), ConfigError, "expected 2..8"),
    (dict(bits=9), ConfigError, "expected 2..8"),
    (dict(dtype=np.int16, bits=17), ConfigError, "expected 2..16"),
    (dict(narrow_range=True), ConfigError, "signed types only"),
    (dict(axis=3), ConfigError, r"axis=3 is out of range for a 2-D array"),
    (dict(axis=-3), ConfigError, "out of range"),
    (dict(axis=1.0), ConfigError, "axis must be an int"),
    (dict(axis=1, scale=[0.1, 0.2]), ShapeError, r"shape \(3,\) \(the size of axis 1\)"),
    (dict(axis=1, scale=[0.1] * 3, zero_point=[1, 2]), ShapeError, "zero_point must have shape"),
    (dict(scale=[0.1, 0.2, 0.3]), ShapeError, "pass axis= for per-channel"),
    (dict(x=np.zeros((2, 3), np.int32)), ShapeError, "floating-point array"),
    (dict(x=np.zeros((2, 3), bool)), ShapeError, "floating-point array"),
    (dict(scale="a"), ConfigError, "scale must be real numbers"),
]


@pytest.mark.parametrize("kw,err,msg", BAD_QUANTIZE)
def test_bad_quantize_arguments(kw, err, msg):
    args = dict(x=np.zeros((2, 3), np.float32), scale=0.1, zero_point=0)
    args.update(kw)
    with pytest.raises(err, match=msg):
        qe.quantize(args.pop("x"), args.pop("scale"), args.pop("zero_point"), **args)


def test_bad_qtensor_and_dequantize():
    with pytest.raises(ShapeError, match="uint8, int8, int16 or int32, got float32"):
        qe.QTensor(np.zeros(3, np.float32), 0.1, 0)
    with pytest.raises(ShapeError, match="numpy array"):
        qe.QTensor([1, 2], 0.1, 0)
    with pytest.raises(ConfigError, match=r"data must lie in \[-8, 7\].*2 value\(s\).*\(9\)"):
        qe.QTensor(np.array([0, 9, -9], np.int8), 0.1, 0, bits=4)
    with pytest.raises(ConfigError, match=r"data must lie in \[-127, 127\]"):
        qe.QTensor(np.array([-128], np.int8), 0.1, 0, narrow_range=True)
    with pytest.raises(ConfigError, match="32-bit QTensor needs zero_point 0"):
        qe.QTensor(np.zeros(3, np.int32), 0.1, 5, bits=32)
    with pytest.raises(ConfigError, match="expected 2..8"):
        qe.QTensor(np.zeros(3, np.uint8), 0.1, 0, bits=16)
    with pytest.raises(ShapeError, match="at least one dimension"):
        qe.QTensor(np.zeros((), np.uint8), [0.1], [0], axis=0)
    with pytest.raises(ShapeError, match="expects a QTensor"):
        qe.dequantize(np.zeros(3, np.uint8))
    with pytest.raises(ConfigError, match="unknown ISA"):
        qe.quantize(np.zeros(3), 0.1, 0, isa="sse9")
