"""fuse_matmul_bias and simplify_layout (qengine/graph/fusion.py, qengine/graph/layout.py):
the rewritten graph against onnx.reference on the ONNX model it came from, the node counts
that show the rewrite happened, and the cases each must leave alone."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import qengine  # noqa: E402
from qengine.graph.layout import simplify_layout  # noqa: E402

rng = np.random.default_rng(7)
F = TensorProto.FLOAT


def _model(nodes, x_shape, outputs, inits, opset=17):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F, x_shape)],
                          [helper.make_tensor_value_info(o, F, None) for o in outputs],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _check(m, x, rtol=1e-5):
    """qengine (optimized) against onnx.reference; returns the optimized graph."""
    want = ReferenceEvaluator(m).run(None, {"x": x})
    g = qengine.from_onnx(m)
    got = qengine.Session(g).run({"x": x})
    for o, w in zip((o.name for o in m.graph.output), want):
        assert got[o].shape == w.shape, o
        np.testing.assert_allclose(got[o], w, rtol=rtol, atol=1e-5)
    return g


def _ops(g):
    return [n.op_type for n in g.nodes]


# ----------------------------------------------------------------------- MatMul + bias
@pytest.mark.parametrize("shape", [(5, 8), (2, 5, 8), (1, 3, 4, 8)])
@pytest.mark.parametrize("bias_shape", [(6,), (1, 6), (1, 1, 1, 6)])
def test_matmul_bias_becomes_one_gemm(shape, bias_shape):
    if len(bias_shape) > len(shape):
        bias_shape = bias_shape[-len(shape):]
    w, b = rng.standard_normal((8, 6)).astype(np.float32), rng.standard_normal(bias_shape)
    m = _model([helper.make_node("MatMul", ["x", "w"], ["t"]),
                helper.make_node("Add", ["b", "t"], ["y"])], shape, ["y"],
               {"w": w, "b": b.astype(np.float32)})
    g = _check(m, rng.standard_normal(shape).astype(np.float32))
    assert "Add" not in _ops(g) and _ops(g).count("Gemm") == 1, _ops(g)
    assert _ops(g).count("Reshape") == (0 if len(shape) == 2 else 2)


@pytest.mark.parametrize("case", ["per_row_bias", "matmul_read_twice", "two_activations",
                                  "symbolic_batch"])
def test_matmul_bias_left_alone(case):
    w = rng.standard_normal((8, 6)).astype(np.float32)
    inits, shape = {"w": w, "b": rng.standard_normal((5, 6)).astype(np.float32)}, [2, 5, 8]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["t"]),
             helper.make_node("Add", ["t", "b"], ["y"])]
    outs = ["y"]
    if case == "per_row_bias":              # the bias varies along the rows: not a Gemm's C
        pass
    else:
        inits["b"] = rng.standard_normal(6).astype(np.float32)
    if case == "matmul_read_twice":
        outs.append("t")
    if case == "two_activations":           # x·xᵀ: no constant [K, N]
        nodes[0] = helper.make_node("MatMul", ["x", "xt"], ["t"])
        nodes.insert(0, helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]))
        inits["b"] = rng.standard_normal(5).astype(np.float32)
    if case == "symbolic_batch":
        shape = ["n", 5, 8]
    m = _model(nodes, shape, outs, inits)
    g = _check(m, rng.standard_normal((2, 5, 8)).astype(np.float32))
    assert "Add" in _ops(g) and "Gemm" not in _ops(g), _ops(g)


def test_static_int8_linear_on_3d_keeps_no_float_add():
    """nn.Linear on [N, T, C], exported as MatMul + Add: the bias goes into the int8 GEMM's
    accumulator, no float Add (with its DequantizeLinear / QuantizeLinear) is left."""
    w1, w2 = (rng.standard_normal((16, 16)).astype(np.float32) * 0.3 for _ in range(2))
    m = _model([helper.make_node("MatMul", ["x", "w1"], ["t1"]),
                helper.make_node("Add", ["t1", "b1"], ["h"]),
                helper.make_node("Relu", ["h"], ["r"]),
                helper.make_node("MatMul", ["r", "w2"], ["t2"]),
                helper.make_node("Add", ["t2", "b2"], ["y"])], [1, 12, 16], ["y"],
               {"w1": w1, "w2": w2, "b1": rng.standard_normal(16).astype(np.float32),
                "b2": rng.standard_normal(16).astype(np.float32)})
    calib = [{"x": rng.standard_normal((1, 12, 16)).astype(np.float32)} for _ in range(8)]
    x = rng.standard_normal((1, 12, 16)).astype(np.float32)
    want = ReferenceEvaluator(m).run(None, {"x": x})[0]
    st = qengine.quantize_static(qengine.from_onnx(m), calib)
    assert _ops(st).count("QGemm") == 2 and "Add" not in _ops(st), _ops(st)
    got = qengine.Session(st).run({"x": x})["y"]
    sqnr = 10 * np.log10(np.sum(want ** 2) / np.sum((got - want) ** 2))
    assert sqnr > 20, sqnr            # 26 dB measured; a lost bias lands far below


# ----------------------------------------------------------------------- layout chains
def _const(name, values):
    return name, np.array(values, np.int64)


def test_reshape_chain_is_one_reshape():
    inits = dict([_const("s1", [2, 3, 4]), _const("ax", [0]), _const("s2", [6, 4])])
    m = _model([helper.make_node("Reshape", ["x", "s1"], ["a"]),
                helper.make_node("Unsqueeze", ["a", "ax"], ["b"]),
                helper.make_node("Transpose", ["b"], ["c"], perm=[1, 0, 2, 3]),  # moves a 1
                helper.make_node("Flatten", ["c"], ["d"], axis=2),
                helper.make_node("Reshape", ["d", "s2"], ["y"])], [24], ["y"], inits)
    g = _check(m, rng.standard_normal(24).astype(np.float32))
    assert _ops(g) == ["Reshape"]


def test_transposes_compose_and_cancel():
    m = _model([helper.make_node("Transpose", ["x"], ["a"], perm=[2, 0, 1]),
                helper.make_node("Transpose", ["a"], ["b"], perm=[0, 2, 1]),
                helper.make_node("Relu", ["b"], ["c"]),
                helper.make_node("Transpose", ["c"], ["d"], perm=[1, 2, 0]),
                helper.make_node("Transpose", ["d"], ["e"], perm=[2, 0, 1]),
                helper.make_node("Relu", ["e"], ["y"])],
               [2, 3, 4], ["y"], {})
    g = _check(m, rng.standard_normal((2, 3, 4)).astype(np.float32))
    assert _ops(g) == ["Transpose", "Relu", "Relu"], _ops(g)


def test_head_split_becomes_reshape_transpose():
    """torch's head split: Reshape [T, H, D] → Transpose → Reshape adding the batch 1."""
    inits = dict([_const("s1", [32, 4, 16]), _const("s2", [1, 4, 32, 16])])
    m = _model([helper.make_node("Reshape", ["x", "s1"], ["a"]),
                helper.make_node("Transpose", ["a"], ["b"], perm=[1, 0, 2]),
                helper.make_node("Reshape", ["b", "s2"], ["c"]),
                helper.make_node("Transpose", ["c"], ["y"], perm=[0, 1, 3, 2])],
               [32, 1, 64], ["y"], inits)
    g = _check(m, rng.standard_normal((32, 1, 64)).astype(np.float32))
    assert _ops(g) == ["Reshape", "Transpose"], _ops(g)


def test_reshape_moves_past_a_per_element_op():
    inits = dict([_const("s1", [6, 4]), _const("s2", [2, 3, 4])])
    m = _model([helper.make_node("Reshape", ["x", "s1"], ["a"]),
                helper.make_node("Sigmoid", ["a"], ["b"]),
                helper.make_node("Reshape", ["b", "s2"], ["c"]),
                helper.make_node("Relu", ["c"], ["y"])], [2, 3, 4], ["y"], inits)
    g = _check(m, rng.standard_normal((2, 3, 4)).astype(np.float32))
    assert _ops(g) == ["Sigmoid", "Relu"], _ops(g)


def test_values_read_elsewhere_keep_their_shape():
    """An intermediate that is also a graph output, or read by another node, stays as it
    was; a graph output that equals the input keeps its node."""
    inits = dict([_const("s1", [6, 4]), _const("s2", [2, 12])])
    m = _model([helper.make_node("Reshape", ["x", "s1"], ["a"]),
                helper.make_node("Sigmoid", ["a"], ["b"]),
                helper.make_node("Reshape", ["b", "s2"], ["c"]),
                helper.make_node("Reshape", ["a", "s2"], ["d"]),
                helper.make_node("Transpose", ["x"], ["e"], perm=[0, 1, 2]),
                helper.make_node("Add", ["c", "d"], ["y"])], [2, 3, 4], ["y", "a", "b", "e"],
               inits)
    g = _check(m, rng.standard_normal((2, 3, 4)).astype(np.float32))
    vi = {o: g.value_info.get(o) for o in ("a", "b")}
    assert all(v is None or tuple(v.shape) == (6, 4) for v in vi.values())


def test_random_layout_chains_match_reference():
    """Random chains of Reshape / Transpose / Squeeze / Unsqueeze / Flatten with a Relu now
    and then, every output checked against onnx.reference."""
    for trial in range(40):
        r = np.random.default_rng(trial)
        shape = [int(d) for d in r.choice([1, 2, 3, 4], size=int(r.integers(2, 5)))]
        nodes, inits, cur, v = [], {}, list(shape), "x"
        for k in range(int(r.integers(2, 7))):
            out = f"v{k}"
            kind = r.choice(["Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Relu"])
            if kind == "Reshape":
                size = int(np.prod(cur))
                new = [size] if size < 2 else [d for d in (size // 2, 2) if size % 2 == 0] or \
                    [size]
                if int(np.prod(new)) != size:
                    new = [size]
                new = list(r.permutation(new + [1] * int(r.integers(0, 2))))
                inits[f"s{k}"] = np.array(new, np.int64)
                nodes.append(helper.make_node("Reshape", [v, f"s{k}"], [out]))
                cur = new
            elif kind == "Transpose":
                perm = [int(p) for p in r.permutation(len(cur))]
                nodes.append(helper.make_node("Transpose", [v], [out], perm=perm))
                cur = [cur[p] for p in perm]
            elif kind == "Squeeze":
                ones = [i for i, d in enumerate(cur) if d == 1]
                if not ones or len(cur) == 1:
                    continue
                inits[f"a{k}"] = np.array(ones[:1], np.int64)
                nodes.append(helper.make_node("Squeeze", [v, f"a{k}"], [out]))
                cur = cur[:ones[0]] + cur[ones[0] + 1:]
            elif kind == "Unsqueeze":
                ax = int(r.integers(0, len(cur) + 1))
                inits[f"a{k}"] = np.array([ax], np.int64)
                nodes.append(helper.make_node("Unsqueeze", [v, f"a{k}"], [out]))
                cur = cur[:ax] + [1] + cur[ax:]
            elif kind == "Flatten":
                ax = int(r.integers(0, len(cur) + 1))
                nodes.append(helper.make_node("Flatten", [v], [out], axis=ax))
                cur = [int(np.prod(cur[:ax])), int(np.prod(cur[ax:]))]
            else:
                nodes.append(helper.make_node("Relu", [v], [out]))
            v = out
        if not nodes:
            continue
        nodes.append(helper.make_node("Identity", [v], ["y"]))
        m = _model(nodes, shape, ["y"], inits)
        _check(m, r.standard_normal(shape).astype(np.float32))


def test_simplify_layout_needs_static_shapes():
    """Without shapes (no value_info) nothing is rewritten."""
    g = qengine.Graph(inputs=[qengine.ValueInfo("x", "float32", None)],
                      outputs=[qengine.ValueInfo("y", "float32", None)],
                      nodes=[qengine.Node("Transpose", "t1", ("x",), ("a",), {"perm": [1, 0]}),
                             qengine.Node("Transpose", "t2", ("a",), ("y",), {"perm": [1, 0]})])
    assert [n.name for n in simplify_layout(g).nodes] == ["t1", "t2"]


# ----------------------------------------------------------------------- runtime chains
def _head_split_model(batch="static"):
    inits = {"s1": np.array([12, 3, 2, 4], np.int64), "i1": np.array(1, np.int64),
             "s2": np.array([1, 2, 12, 4], np.int64)}
    n = helper.make_node
    m = _model([n("Reshape", ["x", "s1"], ["a"]), n("Transpose", ["a"], ["b"], perm=[1, 2, 0, 3]),
                n("Gather", ["b", "i1"], ["c"], axis=0), n("Relu", ["c"], ["d"]),
                n("Reshape", ["d", "s2"], ["e"]), n("Transpose", ["e"], ["f"], perm=[0, 1, 3, 2]),
                n("Sigmoid", ["f"], ["y"])], [12, 24] if batch == "static" else ["t", 24],
               ["y"], inits)
    return m


def test_session_runs_layout_chains_as_one_node():
    from qengine.graph.executor import Executor
    g = qengine.from_onnx(_head_split_model())
    s = qengine.Session(g)
    ops = [op.node.op_type for op in s._executor.ops]
    assert ops.count("LayoutChain") >= 1 and len(ops) < len(g.nodes), ops
    assert [n.op_type for n in s.graph.nodes] == [n.op_type for n in g.nodes]   # kept
    x = {"x": rng.standard_normal((12, 24)).astype(np.float32)}
    plain = Executor(g).run(x)["y"]                        # node by node
    np.testing.assert_array_equal(s.run(x)["y"], plain)
    want = ReferenceEvaluator(_head_split_model()).run(None, x)[0]
    np.testing.assert_allclose(s.run(x)["y"], want, rtol=1e-6)
    _, prof = s.profile(x)
    assert "LayoutChain" in prof[0].by_op_type


def test_no_chains_for_dynamic_inputs_or_calibration():
    from qengine.calibration.tap import TapSession
    g = qengine.from_onnx(_head_split_model("dynamic"))
    assert "LayoutChain" not in [op.node.op_type for op in qengine.Session(g)._executor.ops]
    g = qengine.from_onnx(_head_split_model())
    seen = []
    TapSession(g).run_tapped({"x": np.ones((12, 24), np.float32)},
                             lambda name, v: seen.append(name))
    assert {n.outputs[0] for n in g.nodes} <= set(seen)    # every value, one by one


def test_layout_chain_refuses_another_shape():
    g = qengine.Graph(inputs=[qengine.ValueInfo("x", "float32", (2, 3))],
                      outputs=[qengine.ValueInfo("y", "float32", (3, 2))],
                      nodes=[qengine.Node("LayoutChain", "c", ("x",), ("y",),
                                          {"steps": ["transpose:1,0"], "shape_in": [4, 3]})])
    with pytest.raises(qengine.QEngineError, match=r"expects an input of shape \(4, 3\)"):
        qengine.Session(g).run({"x": np.zeros((2, 3), np.float32)})


def test_dynamic_linear_on_3d_is_one_node():
    """quantize_dynamic takes the Reshape → Gemm → Reshape of a 3-D nn.Linear back to one
    DynamicQuantLinear on [..., K] (it takes any leading axes)."""
    w = rng.standard_normal((8, 6)).astype(np.float32)
    m = _model([helper.make_node("MatMul", ["x", "w"], ["t"]),
                helper.make_node("Add", ["t", "b"], ["y"])], [2, 5, 8], ["y"],
               {"w": w, "b": rng.standard_normal(6).astype(np.float32)})
    g = qengine.from_onnx(m)
    d = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(cost_model=False))
    assert _ops(d) == ["DynamicQuantLinear"], _ops(d)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    want = ReferenceEvaluator(m).run(None, {"x": x})[0]
    got = qengine.Session(d).run({"x": x})["y"]
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_symbolic_inputs_keep_shapes_symbolic():
    """With a symbolic batch: a 2-D MatMul + bias still becomes a Gemm (nothing to fix), a
    3-D one stays (its Reshape back would need the batch); value_info holding one batch's
    shapes (as static calibration records them) does not leak into any Reshape."""
    w = rng.standard_normal((8, 6)).astype(np.float32)
    for shape, fused in ((["n", 8], True), (["n", 5, 8], False)):
        m = _model([helper.make_node("MatMul", ["x", "w"], ["t"]),
                    helper.make_node("Add", ["t", "b"], ["u"]),
                    helper.make_node("Transpose", ["u"], ["v"]),
                    helper.make_node("Transpose", ["v"], ["y"])], shape, ["y"],
                   {"w": w, "b": rng.standard_normal(6).astype(np.float32)})
        g = qengine.from_onnx(m)
        assert ("Gemm" in _ops(g)) == fused, _ops(g)
        for batch in (1, 3):
            x = rng.standard_normal([batch] + shape[1:]).astype(np.float32)
            want = ReferenceEvaluator(m).run(None, {"x": x})[0]
            np.testing.assert_allclose(qengine.Session(g).run({"x": x})["y"], want, rtol=1e-5,
                                       atol=1e-5)
        g.value_info["t"] = qengine.ValueInfo("t", "float32", tuple([1] + shape[1:-1] + [6]))
        assert _ops(simplify_layout(g)) == _ops(g)
