"""The compiled float32 attention core (include/qengine/f32/qe_f32_attention.h, the kernel
behind the AttentionCore op): the same bits on every ISA this machine runs, a float64 NumPy
reference within float rounding, strided views read in place, NumPy's NaN rows, clear errors
on bad arguments; and the op's choice between it and the NumPy path."""
import numpy as np
import pytest

from qengine import _runtime
from qengine._ext import _f32
from qengine.graph.ir import Node
from qengine.ops.linear import AttentionCore

ISAS = [_runtime.isa_index(n) for n in _runtime.available_isas()]
# batch, query rows, d, keys, e: tails around the 8-row × 16-column blocks, a long reduction
SHAPES = [(1, 1, 1, 1, 1), (4, 32, 16, 32, 16), (3, 9, 5, 17, 15), (2, 8, 300, 20, 64),
          (1, 24, 64, 130, 33), (2, 100, 8, 7, 1)]


def _reference(q, k, v, cq, ck):
    s = (q.astype(np.float64) * cq) @ (k.astype(np.float64) * ck)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(s - s.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)) @ v.astype(np.float64)


def _run_all(q, k, v, cq=0.5, ck=0.25):
    outs = [_f32.attention(q, k, v, cq, ck, isa) for isa in ISAS]
    for y in outs[1:]:
        np.testing.assert_array_equal(y.view(np.uint32), outs[0].view(np.uint32))
    return outs[0]


@pytest.mark.parametrize("shape", SHAPES)
def test_same_bits_on_every_isa_and_close_to_float64(shape):
    b, sq, d, sk, e = shape
    rng = np.random.default_rng(sum(shape))
    q, k, v = (rng.standard_normal(s).astype(np.float32) * 2
               for s in ((b, sq, d), (b, d, sk), (b, sk, e)))
    y = _run_all(q, k, v)
    assert y.shape == (b, sq, e) and y.flags.c_contiguous
    # as accurate as the unfused float32 nodes (NumPy's BLAS), whose error grows with d too
    ref = _reference(q, k, v, 0.5, 0.25)
    s = np.matmul(q * np.float32(0.5), k * np.float32(0.25))
    p = np.exp(s - s.max(-1, keepdims=True))
    numpy_err = np.abs(np.matmul(p / p.sum(-1, keepdims=True), v) - ref).max()
    assert np.abs(y - ref).max() <= 2 * numpy_err + 1e-6


def test_strided_views_as_a_transformer_leaves_them():
    """Q, Kᵀ and V as the views a fused QKV projection [tokens, 3·heads·d] gives after its
    Reshape / Transpose chain (no copy): the results of contiguous copies, bit for bit."""
    rng = np.random.default_rng(3)
    tokens, heads, d = 32, 4, 16
    qkv = rng.standard_normal((tokens, 3 * heads * d)).astype(np.float32)
    parts = qkv.reshape(tokens, 3, heads, d)
    q = parts[:, 0].transpose(1, 0, 2)          # [heads, tokens, d]
    k = parts[:, 1].transpose(1, 2, 0)          # [heads, d, tokens]: Kᵀ
    v = parts[:, 2].transpose(1, 0, 2)
    assert not (q.flags.c_contiguous or k.flags.c_contiguous or v.flags.c_contiguous)
    y = _run_all(q, k, v)
    np.testing.assert_array_equal(y, _run_all(*(np.ascontiguousarray(a) for a in (q, k, v))))
    np.testing.assert_allclose(y, _reference(q, k, v, 0.5, 0.25), rtol=1e-5, atol=2e-6)


def test_special_values_give_numpys_nan_rows():
    """A NaN or an infinity in a query row makes that row's scores NaN / ±inf: the whole output
    row is NaN as in NumPy, one NaN bit pattern on every ISA; the other rows are untouched."""
    rng = np.random.default_rng(4)
    q = rng.standard_normal((1, 9, 8)).astype(np.float32)
    k = rng.standard_normal((1, 8, 10)).astype(np.float32)
    v = rng.standard_normal((1, 10, 6)).astype(np.float32)
    q[0, 2, 3] = np.nan
    q[0, 5, 0] = np.inf
    y = _run_all(q, k, v)
    want = _reference(q, k, v, 0.5, 0.25)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    assert np.isnan(y[0, [2, 5]]).all()
    assert len({int(u) for u in y.view(np.uint32)[np.isnan(y)]}) == 1
    ok = [i for i in range(9) if i not in (2, 5)]
    np.testing.assert_allclose(y[0, ok], want[0, ok], rtol=1e-5, atol=2e-6)


def test_bad_arguments_are_refused():
    a = np.zeros((1, 4, 8), np.float32)
    kt = np.zeros((1, 8, 5), np.float32)
    v = np.zeros((1, 5, 3), np.float32)
    with pytest.raises(ValueError, match="q must be a 3-D float32"):
        _f32.attention(a.astype(np.float64), kt, v, 1.0, 1.0, ISAS[0])
    with pytest.raises(ValueError, match="v must be a 3-D float32"):
        _f32.attention(a, kt, v[0], 1.0, 1.0, ISAS[0])
    with pytest.raises(ValueError, match="do not chain"):
        _f32.attention(a, kt[:, :7], v, 1.0, 1.0, ISAS[0])
    with pytest.raises(ValueError, match="do not chain"):
        _f32.attention(a, kt, v[:, :4], 1.0, 1.0, ISAS[0])
    with pytest.raises(ValueError, match="non-zero"):
        _f32.attention(a[:, :0], kt, v, 1.0, 1.0, ISAS[0])


def _op():
    return AttentionCore(Node("AttentionCore", "a", ("q", "k", "v"), ("y",),
                              {"q_scale": [0.5], "k_scale": [0.25]}), {})


def test_op_runs_the_kernel_from_eight_query_rows_and_numpy_below():
    """The op hands float32 attention with ≥ 8 query rows to the kernel (its bits), and a
    decoder step's single query row to NumPy (the unfused nodes' bits: multiply, matmul, the
    Softmax op, matmul); both agree with float64."""
    from qengine.ops.elementwise import Softmax
    rng = np.random.default_rng(5)
    op = _op()
    sm = Softmax(Node("Softmax", "s", ("s",), ("p",), {"axis": -1}), {})
    for sq in (8, 1):
        q = rng.standard_normal((2, 3, sq, 16)).astype(np.float32)
        k = rng.standard_normal((2, 3, 16, 20)).astype(np.float32)
        v = rng.standard_normal((2, 3, 20, 12)).astype(np.float32)
        y = op.run(q, k, v)[0]
        assert y.shape == (2, 3, sq, 12)
        if sq >= AttentionCore.COMPILED_MIN_QUERIES:
            want = _f32.attention(q.reshape(6, sq, 16), k.reshape(6, 16, 20),
                                  v.reshape(6, 20, 12), 0.5, 0.25, _runtime.isa_index())
            np.testing.assert_array_equal(y, want.reshape(y.shape))
        else:
            p = sm.run(np.matmul(np.multiply(q, np.float32(0.5)),
                                 np.multiply(k, np.float32(0.25))))[0]
            np.testing.assert_array_equal(y, np.matmul(p, v))
        np.testing.assert_allclose(y, _reference(q, k, v, 0.5, 0.25), rtol=1e-5, atol=2e-6)
    # broadcast leading dims and float64 stay on NumPy
    q = rng.standard_normal((1, 3, 8, 16)).astype(np.float32)
    k = rng.standard_normal((2, 3, 16, 8)).astype(np.float32)
    v = rng.standard_normal((2, 3, 8, 4)).astype(np.float32)
    np.testing.assert_allclose(op.run(q, k, v)[0], _reference(q, k, v, 0.5, 0.25), rtol=1e-5,
                               atol=2e-6)
