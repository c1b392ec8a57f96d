"""The quantize/dequantize kernels write nothing past the end of their output, on every ISA.

AddressSanitizer cannot check this for the AVX-512 quantize kernels: their tails are written by
down-converting masked stores (vpmovdb/vpmovdw, `_mm512_mask_cvtepi32_storeu_epi8/16`), which
neither GCC nor Clang instruments (docs/sanitizers.md). So the output here is a view at the
start of a larger buffer filled with a canary, and the canary must survive every length.
"""
import numpy as np
import pytest

import qengine as qe
from qengine import _runtime
from qengine._ext import _quant
from qengine.qtypes import STORAGE

ISAS = qe.available_isas()
CANARY, SLACK = 0xA5, 128
LENGTHS = list(range(0, 70)) + [127, 128, 129, 1000]


def _canary_out(nbytes):
    buf = np.full(nbytes + SLACK, CANARY, np.uint8)
    return buf, buf[:nbytes]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16])
@pytest.mark.parametrize("C, inner", [(1, 1), (5, 1), (3, 7)])   # per tensor, channels last, NCHW
def test_quantize_stays_inside_its_output(isa, dtype, C, inner):
    dt = np.dtype(dtype)
    qtype = STORAGE[dt][0]
    qmin, qmax = (-128, 127) if dt == np.int8 else (-32768, 32767) if dt == np.int16 else (0, 255)
    rng = np.random.default_rng(0)
    for n in LENGTHS:
        n = n - n % (C * inner)                  # whole rows of the layout
        x = rng.standard_normal(n + 64).astype(np.float32)[:n]
        buf, y = _canary_out(n * dt.itemsize)
        scale = np.full(C, 0.05, np.float32)
        zp = np.zeros(C, np.int32)
        _quant.quantize(x, y, scale, zp, C, inner, qmin, qmax, qtype, dt.itemsize,
                        _runtime.isa_index(isa))
        assert (buf[n * dt.itemsize:] == CANARY).all(), (isa, dt, n)


@pytest.mark.parametrize("isa", ISAS)
def test_lean_u8_entries_stay_inside_their_output(isa):
    """quantize_u8 / dequantize_u8: the QuantizeU8 / DequantizeU8 ops' entry points."""
    for n in LENGTHS:
        x = np.linspace(-2, 2, n, dtype=np.float32)
        buf, q = _canary_out(n)
        _quant.quantize_u8(x, q, 0.02, 128, _runtime.isa_index(isa))
        assert (buf[n:] == CANARY).all(), (isa, n)
        fbuf = np.full(n + SLACK // 4, -7.0, np.float32)
        _quant.dequantize_u8(q, fbuf[:n], 0.02, 128, _runtime.isa_index(isa))
        assert (fbuf[n:] == -7.0).all(), (isa, n)
