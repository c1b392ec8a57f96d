"""FP32 Gemm/MatMul with a constant B on the compiled GEMM (qengine/ops/linear.py): against
float64 NumPy within the FMA-chain bound, every attribute form (transA/transB, alpha, beta,
vector / matrix / runtime C, fused Relu/Clip/LeakyRelu), MatMul with 1-D and batched A, and
the same bits for 1 and 2 threads. The kernel itself is tested in tests/test_f32_rnn.py."""
import numpy as np
import pytest

import qengine
from qengine import Session
from qengine._ext import _cpu
from qengine.graph import Graph, Node, ValueInfo

rng = np.random.default_rng(21)
U = 2.0 ** -24


def _gemm_graph(a, b, c, attrs, c_const=True):
    inputs = [ValueInfo("a", "float32", a.shape)]
    inits = {"b": b}
    if c is not None and c_const:
        inits["c"] = c
    elif c is not None:
        inputs.append(ValueInfo("c", "float32", c.shape))
    names = ("a", "b", "c") if c is not None else ("a", "b")
    return Graph(inputs, [ValueInfo("y")], [Node("Gemm", "g", names, ("y",), attrs)], inits)


@pytest.mark.parametrize("attrs,c_shape,c_const", [
    ({}, None, True), ({}, (37,), True), ({"transB": 1}, (1, 37), True),
    ({"transA": 1, "alpha": 0.5, "beta": 2.0}, (37,), True), ({}, (5, 37), True),
    ({}, (37,), False), ({"fused_activation": "Relu", "fused_activation_params": []}, (37,), True),
    ({"fused_activation": "Clip", "fused_activation_params": [-0.5, 0.5]}, None, True),
    ({"fused_activation": "LeakyRelu", "fused_activation_params": [0.1]}, (37,), True)], ids=str)
def test_gemm_forms(attrs, c_shape, c_const):
    k, n = 29, 37
    a = rng.standard_normal((k, 5) if attrs.get("transA") else (5, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if attrs.get("transB") else (k, n)).astype(np.float32)
    c = None if c_shape is None else rng.standard_normal(c_shape).astype(np.float32)
    feeds = {"a": a} if c is None or c_const else {"a": a, "c": c}
    got = Session(_gemm_graph(a, b, c, attrs, c_const)).run(feeds)["y"]
    a64 = a.astype(np.float64).T if attrs.get("transA") else a.astype(np.float64)
    b64 = b.astype(np.float64).T if attrs.get("transB") else b.astype(np.float64)
    ref = attrs.get("alpha", 1.0) * a64 @ b64
    scale = abs(attrs.get("alpha", 1.0)) * np.abs(a64) @ np.abs(b64)
    if c is not None:
        ref = ref + attrs.get("beta", 1.0) * c
        scale = scale + np.abs(attrs.get("beta", 1.0) * c)
    act, params = attrs.get("fused_activation"), attrs.get("fused_activation_params")
    if act == "Relu":
        ref = np.maximum(ref, 0)
    elif act == "Clip":
        ref = np.clip(ref, *params)
    elif act == "LeakyRelu":
        ref = np.where(ref < 0, params[0] * ref, ref)
    assert np.all(np.abs(got - ref) <= (k + 3) * U * scale)


@pytest.mark.parametrize("a_shape", [(30,), (1, 30), (7, 30), (2, 3, 30)])
def test_matmul_constant_b(a_shape):
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal((30, 65)).astype(np.float32)
    g = Graph([ValueInfo("a", "float32", a_shape)], [ValueInfo("y")],
              [Node("MatMul", "m", ("a", "b"), ("y",))], {"b": b})
    got = Session(g).run({"a": a})["y"]
    ref = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    assert got.shape == ref.shape
    assert np.all(np.abs(got - ref) <= 31 * U * scale)


@pytest.mark.parametrize("m", [1, 64])
def test_gemm_same_bits_for_1_and_2_threads(m):
    a = rng.standard_normal((m, 512)).astype(np.float32)
    b = rng.standard_normal((512, 1000)).astype(np.float32)
    c = rng.standard_normal(1000).astype(np.float32)
    s = Session(_gemm_graph(a, b, c, {}))
    before = qengine.get_num_threads()
    try:
        qengine.set_num_threads(1)
        one = s.run({"a": a})["y"]
        qengine.set_num_threads(2)
        _cpu.max_team(reset=True)
        two = s.run({"a": a})["y"]
        team = _cpu.max_team()
    finally:
        qengine.set_num_threads(before)
    if _cpu.openmp_enabled():
        assert team == 2
    np.testing.assert_array_equal(one.view(np.uint32), two.view(np.uint32))


@pytest.mark.parametrize("act", [None, ("Relu", []), ("Clip", [-0.5, 0.5])])
def test_gemm_fast_path_is_the_general_path(act):
    """The per-op fast path (prepared kernel call for A·B + vector C [+ clamp]) gives the bits
    of the checked path, which a non-contiguous A still takes."""
    from qengine.ops import get_op_class
    attrs = {} if act is None else {"fused_activation": act[0], "fused_activation_params": act[1]}
    b = rng.standard_normal((19, 37)).astype(np.float32)
    c = rng.standard_normal(37).astype(np.float32)
    op = get_op_class("Gemm", "g")(Node("Gemm", "g", ("a", "b", "c"), ("y",), attrs),
                                  {"b": b, "c": c})
    assert op._fast is not None
    a = rng.standard_normal((23, 19)).astype(np.float32)
    strided = np.asfortranarray(a)                  # same values, not C-contiguous: checked path
    np.testing.assert_array_equal(op.run(a, b, c)[0], op.run(strided, b, c)[0])


def test_layer_norm_fast_path_is_the_general_path():
    from qengine.ops import get_op_class
    s, bias = (rng.standard_normal(48).astype(np.float32) for _ in range(2))
    node = Node("LayerNormalization", "ln", ("x", "s", "b"), ("y",), {"axis": -1})
    fast = get_op_class("LayerNormalization", "ln")(node, {"s": s, "b": bias})
    general = get_op_class("LayerNormalization", "ln")(node, {})     # Scale, B at run time
    assert fast._fast is not None and general._fast is None
    x = rng.standard_normal((3, 7, 48)).astype(np.float32)
    np.testing.assert_array_equal(fast.run(x, s, bias)[0], general.run(x, s, bias)[0])
