"""choose_qparams / choose_qparams_from_data against the scalar float64 reference and against
properties derived by hand (zero exact, degenerate ranges, symmetric zero points)."""
import numpy as np
import pytest

import qengine as qe
from qengine import ConfigError, ShapeError
from qengine.reference.quant import choose_qparams_ref, qrange_ref

FLT_MIN = np.finfo(np.float32).tiny
KINDS = ([(b, s, False) for b in list(range(2, 9)) + [16] for s in (False, True)
          if not (b == 16 and not s)])


@pytest.mark.parametrize("bits,symmetric,signed", [(b, sym, s) for b, s, _ in KINDS
                                                   for sym in (False, True)])
def test_matches_reference(bits, symmetric, signed):
    rng = np.random.default_rng(bits * 4 + symmetric * 2 + signed)
    lo = -np.abs(rng.standard_normal(50)) * 10.0 ** rng.integers(-30, 30, 50)
    hi = np.abs(rng.standard_normal(50)) * 10.0 ** rng.integers(-30, 30, 50)
    lo[:5] = [0, 0, 1, -5, 2]            # positive-only / negative-only / zero-width ranges
    hi[:5] = [0, 3, 4, -1, 2]
    narrow = symmetric and signed
    qmin, qmax = qrange_ref(bits, signed, narrow)
    p = qe.choose_qparams(lo, hi, bits=bits, symmetric=symmetric, signed=signed)
    assert p.narrow_range == narrow and (p.qmin, p.qmax) == (qmin, qmax) and p.axis == 0
    for c in range(lo.size):
        s, z = choose_qparams_ref(lo[c], hi[c], qmin, qmax, symmetric, signed)
        assert p.scale[c] == s and p.zero_point[c] == z, (c, lo[c], hi[c])
        t = qe.choose_qparams(lo[c], hi[c], bits=bits, symmetric=symmetric, signed=signed)
        assert t.scale == s and t.zero_point == z and t.axis is None


@pytest.mark.parametrize("bits,signed,_", KINDS)
@pytest.mark.parametrize("rng_", [(0.0, 0.0), (3.0, 3.0), (-2.0, -2.0), (-1e-30, 1e-30),
                                  (0.0, 1e-30), (-1e38, 1e38), (-3.4e38, 3.4e38), (1e-44, 1e-44),
                                  (-1.0, 1.0), (-0.1, 7.3)])
@pytest.mark.parametrize("symmetric", [False, True])
def test_valid_scale_and_exact_zero(bits, signed, _, rng_, symmetric):
    p = qe.choose_qparams(*rng_, bits=bits, signed=signed, symmetric=symmetric)
    s = float(p.scale)
    assert np.isfinite(s) and s >= FLT_MIN and p.qmin <= int(p.zero_point) <= p.qmax
    if rng_ == (0.0, 0.0):
        assert s == 1.0
    q = p.quantize(np.array([0.0, *rng_], np.float32))
    assert q.dequantize()[0] == 0.0                     # 0.0 exactly representable
    # Range ends round-trip within half a step (+ float32 rounding of the scale).
    # Near FLT_MAX the scale is lowered so every code stays finite; the ends may then
    # saturate by up to one step.
    deq = q.dequantize()
    assert np.all(np.isfinite(deq))
    err = np.abs(deq[1:].astype(np.float64) - np.array(rng_, np.float32))
    tol = np.where(np.abs(rng_) > 3e38, 1.01, 0.505) * s + 1e-6 * np.abs(rng_)
    assert np.all(err <= tol), (err, s)


def test_hand_derived_values():
    p = qe.choose_qparams(-0.5, 127 / 256)                          # u8 asymmetric
    assert p.scale == 2.0**-8 and p.zero_point == 128               # 0 - rhe(-128)
    p = qe.choose_qparams(-0.5 - 2**-9, 127 / 256 - 2**-9)           # rmin/s = -128.5 -> -128
    assert p.zero_point == 128
    p = qe.choose_qparams(-0.5 - 3 * 2**-9, 127 / 256 - 3 * 2**-9)   # -129.5 -> -130 (even)
    assert p.zero_point == 130
    p = qe.choose_qparams(0.0, 255 / 64)
    assert p.scale == 1 / 64 and p.zero_point == 0
    p = qe.choose_qparams(-255 / 64, 0.0)
    assert p.zero_point == 255
    p = qe.choose_qparams(-3.0, 1.0, symmetric=True)                # s8 narrow
    assert p.dtype == np.int8 and p.scale == np.float32(3 / 127) and p.zero_point == 0
    assert (p.qmin, p.qmax) == (-127, 127)
    p = qe.choose_qparams(-3.0, 1.0, symmetric=True, signed=False)  # u8 symmetric
    assert p.zero_point == 128 and p.scale == np.float32(3 / 127)
    p = qe.choose_qparams(-1.0, 1.0, bits=16)
    assert p.dtype == np.int16 and p.scale == np.float32(2 / 65535) and p.zero_point == 0
    p = qe.choose_qparams(-1.0, 1.0, bits=4, dtype=np.int8)
    assert (p.qmin, p.qmax) == (-8, 7) and p.scale == np.float32(2 / 15)


def test_from_data_ignores_nan_and_inf():
    x = np.array([[1.0, np.nan, -2.0], [np.inf, 4.0, -np.inf], [np.nan, np.nan, np.nan]],
                 np.float32)
    p = qe.choose_qparams_from_data(x)
    assert p == p and p.scale == qe.choose_qparams(-2.0, 4.0).scale
    pc = qe.choose_qparams_from_data(x, axis=-2, symmetric=True)
    assert pc.axis == 0
    np.testing.assert_array_equal(pc.scale, qe.choose_qparams([-2.0, 0.0, 0.0], [1.0, 4.0, 0.0],
                                                              symmetric=True).scale)
    q = pc.quantize(x)
    assert q.data[1, 0] == 127 and q.data[1, 2] == -127 and q.data[0, 1] == 0


@pytest.mark.parametrize("shape,axis", [((4, 5, 6), 0), ((4, 5, 6), 1), ((4, 5, 6), -1),
                                        ((2, 3, 4, 5), 1)])
def test_from_data_per_channel_equals_slices(shape, axis):
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    p = qe.choose_qparams_from_data(x, axis=axis)
    for c in range(shape[axis]):
        sl = np.take(x, c, axis=axis)
        t = qe.choose_qparams(float(sl.min()), float(sl.max()))
        assert p.scale[c] == t.scale and p.zero_point[c] == t.zero_point


@pytest.mark.parametrize("args,kw,err,msg", [
    ((2.0, 1.0), {}, ConfigError, r"rmin > rmax at channel 0: 2.0 > 1.0"),
    (([0, 3], [1, 2]), {}, ConfigError, "channel 1"),
    ((np.nan, 1.0), {}, ConfigError, "rmin must be finite"),
    ((0.0, np.inf), {}, ConfigError, "rmax must be finite"),
    (([0, 1], [1, 2, 3]), {}, ShapeError, "one shape"),
    ((0.0, 1.0), dict(bits=16, signed=False), ConfigError, "unsigned 16-bit"),
    ((0.0, 1.0), dict(bits=1), ConfigError, "bits must be an int in 2..16"),
    ((0.0, 1.0), dict(dtype=np.int8, signed=False), ConfigError, "contradicts"),
    ((0.0, 1.0), dict(dtype=np.int32), ConfigError, "uint8, int8 or int16"),
    ((0.0, 1.0), dict(dtype=np.uint8, bits=9), ConfigError, "expected 2..8"),
    ((0.0, 1.0), dict(narrow_range=True), ConfigError, "signed types only"),
    ((0.0, 1.0), dict(axis=0), ConfigError, "per-channel"),
])
def test_bad_arguments(args, kw, err, msg):
    with pytest.raises(err, match=msg):
        qe.choose_qparams(*args, **kw)
    with pytest.raises(ShapeError, match="floating-point"):
        qe.choose_qparams_from_data(np.arange(3))
