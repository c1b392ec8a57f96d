"""The compiled row kernels behind float32 Softmax and LayerNormalization (include/qengine/f32/
qe_f32_rows.h): the same bits on every ISA this machine runs, a float64 NumPy reference within
float rounding, NumPy's answers on NaN / inf / −inf-masked rows, and the ops taking them (and
falling back to NumPy where they do not apply)."""
import numpy as np
import pytest

import qengine
from qengine import _runtime
from qengine._ext import _f32
from qengine.graph.ir import Graph, Node, ValueInfo

ISAS = [_runtime.isa_index(n) for n in _runtime.available_isas()]
SHAPES = [(1, 1), (3, 7), (2, 4, 32, 32), (5, 17), (2, 65), (1, 1000), (4, 3, 129)]


def _softmax64(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _layer_norm64(x, scale, bias):
    x = x.astype(np.float64)
    d = x - x.mean(-1, keepdims=True)
    inv = 1 / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-5)
    return d * inv * scale + (0 if bias is None else bias), x.mean(-1), inv[..., 0]


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_rows_same_bits_on_every_isa_and_close_to_float64(shape):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 6).astype(np.float32)
    outs = []
    for isa in ISAS:
        y = np.empty_like(x)
        _f32.softmax_rows(x, y, isa)
        outs.append(y)
    for y in outs[1:]:
        np.testing.assert_array_equal(y.view(np.uint32), outs[0].view(np.uint32))
    np.testing.assert_allclose(outs[0], _softmax64(x), rtol=2e-6, atol=1e-9)


def test_softmax_rows_special_values_as_numpy():
    n = 40
    x = np.zeros((5, n), np.float32)
    x[0, ::3] = -np.inf                      # an attention mask: exactly 0 where masked
    x[1, 7] = np.nan                         # NaN anywhere: the row is NaN
    x[2, 3] = np.inf                         # inf − inf: NaN, as NumPy
    x[3, :] = -np.inf                        # everything masked: NaN, as NumPy
    x[4, :] = np.float32(3e38)               # huge but finite: uniform
    x[4, 0] = -3e38
    for isa in ISAS:
        y = np.empty_like(x)
        _f32.softmax_rows(x, y, isa)
        with np.errstate(invalid="ignore"):
            want = _softmax64(x)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
        assert (y[0, ::3] == 0).all()
        np.testing.assert_allclose(y[0], want[0], rtol=2e-6)
        np.testing.assert_allclose(y[4], want[4], rtol=2e-6, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_layer_norm_rows_same_bits_on_every_isa_and_close_to_float64(shape, with_bias):
    rng = np.random.default_rng(sum(shape) + with_bias)
    x = (rng.standard_normal(shape) * 3 + 1.5).astype(np.float32)
    n = shape[-1]
    scale = rng.standard_normal(n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    rows = x.size // n
    got = []
    for isa in ISAS:
        y, mean, inv = np.empty_like(x), np.empty(rows, np.float32), np.empty(rows, np.float32)
        _f32.layer_norm_rows(x, scale, bias, 1e-5, y, mean, inv, isa)
        got.append((y, mean, inv))
    for out in got[1:]:
        for a, b in zip(out, got[0]):
            np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    y_ref, mean_ref, inv_ref = _layer_norm64(x, scale, bias)
    y, mean, inv = got[0]
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean, mean_ref.reshape(-1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(inv, inv_ref.reshape(-1), rtol=1e-6)


def test_layer_norm_rows_non_finite_rows_are_nan_as_numpy():
    x = np.ones((3, 8), np.float32)
    x[0, 2], x[1, 5] = np.nan, np.inf
    x[2] = np.arange(8, dtype=np.float32)
    for isa in ISAS:
        y, mean, inv = np.empty_like(x), np.empty(3, np.float32), np.empty(3, np.float32)
        _f32.layer_norm_rows(x, np.ones(8, np.float32), None, 1e-5, y, mean, inv, isa)
        assert np.isnan(y[:2]).all() and np.isfinite(y[2]).all()
        assert np.isnan(mean[0]) and mean[1] == np.inf and np.isnan(inv[:2]).all()
        # the one NaN everywhere: its bits do not depend on the CPU
        assert (y[:2].view(np.uint32) == np.float32(np.nan).view(np.uint32)).all()


def test_row_kernels_refuse_what_they_cannot_run():
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="C-contiguous float32"):
        _f32.softmax_rows(x.T, np.empty((4, 2), np.float32), ISAS[0])
    with pytest.raises(ValueError, match="C-contiguous float32"):
        _f32.softmax_rows(x.astype(np.float64), np.empty_like(x), ISAS[0])
    with pytest.raises(ValueError, match="rows of scale.size"):
        _f32.layer_norm_rows(x, np.ones(3, np.float32), None, 1e-5, np.empty_like(x), None,
                             None, ISAS[0])
    with pytest.raises(ValueError, match="bias has 3 values"):
        _f32.layer_norm_rows(x, np.ones(4, np.float32), np.ones(3, np.float32), 1e-5,
                             np.empty_like(x), None, None, ISAS[0])


def _session(op, inputs, attrs, outputs=("y",), inits=None):
    ins = [ValueInfo(n, "float32", s) for n, s in inputs]
    outs = [ValueInfo(o, "float32", None) for o in outputs]
    g = Graph(ins, outs, [Node(op, "n", tuple(n for n, _ in inputs) + tuple(inits or {}),
                               outputs, attrs)], dict(inits or {}))
    return qengine.Session(g)


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_softmax_op_compiled_or_numpy_matches_float64(axis):
    x = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32) * 4
    s = _session("Softmax", [("x", (3, 6))], {"axis": axis})
    y = s.run({"x": x})["y"]
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis, keepdims=True), rtol=2e-6)
    # a non-contiguous input takes NumPy's path: the same answer
    xt = np.asfortranarray(x)
    np.testing.assert_allclose(s.run({"x": xt})["y"], y, rtol=2e-6)


@pytest.mark.parametrize("axis", [-1, -2, 1])
@pytest.mark.parametrize("scale_shape", ["exact", "broadcast"])
def test_layer_norm_op_compiled_or_numpy_matches_float64(axis, scale_shape):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 6)).astype(np.float32) * 2 + 1
    norm = x.shape[axis:]
    scale = rng.standard_normal(norm).astype(np.float32)
    if scale_shape == "broadcast":         # [1, ..., n]: broadcasts, takes NumPy's path
        scale = scale.reshape((1,) * (3 - len(norm)) + norm)
    bias = rng.standard_normal(scale.shape).astype(np.float32)
    s = _session("LayerNormalization", [("x", x.shape)], {"axis": axis},
                 outputs=("y", "mean", "inv"), inits={"scale": scale, "bias": bias})
    out = s.run({"x": x})
    axes = tuple(range(axis % 3, 3))
    x64 = x.astype(np.float64)
    mean = x64.mean(axes, keepdims=True)
    inv = 1 / np.sqrt(((x64 - mean) ** 2).mean(axes, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out["y"], (x64 - mean) * inv * scale + bias, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["mean"], mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["inv"], inv, rtol=1e-6)
