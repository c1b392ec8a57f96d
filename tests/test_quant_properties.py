"""Hypothesis properties of quantize/dequantize with choose_qparams: the round trip stays within
half a step inside the range, quantization is monotone, and 0.0 is exact."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import qengine as qe

finite32 = st.floats(-2.0**100, 2.0**100, allow_nan=False, width=32)
kinds = st.sampled_from([(b, s, sym) for b in [2, 3, 4, 5, 6, 7, 8, 16] for s in (False, True)
                         for sym in (False, True) if not (b == 16 and not s)])


@st.composite
def range_and_data(draw):
    a, b = sorted((draw(finite32), draw(finite32)))
    n = draw(st.integers(1, 40))
    u = np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    x = (a + (b - a) * u).astype(np.float32)
    return a, b, np.clip(x, np.float32(a), np.float32(b))


@settings(max_examples=300, deadline=None)
@given(range_and_data(), kinds)
def test_round_trip_within_half_step(rd, kind):
    a, b, x = rd
    bits, signed, symmetric = kind
    p = qe.choose_qparams(a, b, bits=bits, signed=signed, symmetric=symmetric)
    s = float(p.scale)
    r = p.quantize(x).dequantize().astype(np.float64)
    # s/2 from rounding, + float32 rounding of the scale (<= 2^-24 * 65535 steps), the
    # division and the product (relative 2^-23).
    tol = s * (0.5 + 2**-24 * (p.qmax - p.qmin)) + 2**-22 * np.abs(x) + 1e-45
    assert np.all(np.abs(r - x) <= tol), (a, b, s, int(p.zero_point))


@settings(max_examples=200, deadline=None)
@given(st.lists(finite32, min_size=2, max_size=60), kinds,
       st.sampled_from(qe.available_isas()))
def test_monotone_and_zero_exact(values, kind, isa):
    bits, signed, symmetric = kind
    x = np.sort(np.array(values, np.float32))
    p = qe.choose_qparams_from_data(x, bits=bits, signed=signed, symmetric=symmetric)
    q = qe.quantize(np.append(x, np.float32(0)), p.scale, p.zero_point, dtype=p.dtype,
                    bits=bits, narrow_range=p.narrow_range, isa=isa)
    assert np.all(np.diff(q.data[:-1].astype(np.int64)) >= 0)
    assert q.data[-1] == p.zero_point and q.dequantize(isa=isa)[-1] == 0.0
