"""Graph IR verify/toposort, passes, registry extension, executor lifetimes/profiling, Session
input validation and concurrent runs. Oracles are plain NumPy expressions."""
import threading

import numpy as np
import pytest

import qengine
from qengine import ModelError, Session, ShapeError
from qengine.graph import (Executor, Graph, Node, ValueInfo, fold_constants, optimize,
                           remove_dead_nodes)
from qengine.ops import Op, register_op, registered_ops, unregister_op

rng = np.random.default_rng(5)


def _mlp():
    w1 = rng.standard_normal((4, 8)).astype(np.float32)
    w2 = rng.standard_normal((3, 8)).astype(np.float32)
    b2 = rng.standard_normal(3).astype(np.float32)
    nodes = [Node("MatMul", "mm", ("x", "w1"), ("h",)),
             Node("Relu", "relu", ("h",), ("r",)),
             Node("Gemm", "gemm", ("r", "w2", "b2"), ("y",), {"transB": 1, "alpha": 0.5}),
             Node("Tanh", "dead", ("h",), ("unused",))]
    g = Graph([ValueInfo("x", "float32", ("batch", 4))], [ValueInfo("y")], nodes,
              {"w1": w1, "w2": w2, "b2": b2})
    ref = lambda x: 0.5 * (np.maximum(x @ w1, 0) @ w2.T) + b2  # noqa: E731
    return g, ref


def test_verify_catches_structural_errors():
    g, _ = _mlp()
    g.verify()
    cases = [
        (lambda g: g.nodes.reverse(), "before it is defined"),
        (lambda g: g.nodes.append(Node("Relu", "dup", ("x",), ("h",))), "defined twice"),
        (lambda g: g.nodes.append(Node("Frobnicate", "f", ("x",), ("z",))), "unknown op type"),
        (lambda g: g.nodes.append(Node("Relu", "mm", ("x",), ("z",))), "used twice"),
        (lambda g: g.outputs.append(ValueInfo("nowhere")), "not produced"),
        (lambda g: g.nodes.append(Node("Softmax", "s", ("x",), ("z",), {"axis": 1.5})), "kind int"),
        (lambda g: g.nodes.append(Node("Softmax", "s", ("x",), ("z",), {"bogus": 1})),
         "unknown attribute"),
        (lambda g: g.nodes.append(Node("Add", "a", ("x",), ("z",))), "expected 2 inputs"),
    ]
    for mutate, msg in cases:
        bad, _ = _mlp()
        mutate(bad)
        with pytest.raises(ModelError, match=msg):
            bad.verify()
    with pytest.raises(ModelError, match="attribute"):
        Node("Relu", "n", ("x",), ("y",), {"w": np.zeros(3)})


def test_toposort_and_replace_nodes():
    g, ref = _mlp()
    g.nodes = g.nodes[::-1]
    g.toposort()
    g.verify()
    # a pass swaps Relu+Gemm for an equivalent pair: how quantize passes replace nodes
    by_name = {n.name: n for n in g.nodes}
    relu, gemm = by_name["relu"], by_name["gemm"]
    g2 = g.copy()
    g2.initializers.update(w2t=np.ascontiguousarray(g.initializers["w2"].T),
                           zero=np.array(0.0, np.float32), eye=np.eye(3, dtype=np.float32))
    g2.replace_nodes([relu, gemm], [
        Node("MatMul", "mm2", ("r2", "w2t"), ("y0",)),
        Node("Clip", "clip", ("h", "zero"), ("r2",)),
        Node("Gemm", "fin", ("y0", "eye", "b2"), ("y",), {"alpha": 0.5})])
    g2.verify()
    x = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(Session(g2).run([x])["y"], ref(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Session(g).run([x])["y"], ref(x), rtol=1e-5, atol=1e-6)
    cyc = Graph([ValueInfo("x")], [ValueInfo("b")], [Node("Relu", "1", ("a",), ("b",)),
                                                     Node("Relu", "2", ("b",), ("a",))])
    with pytest.raises(ModelError, match="cycle"):
        cyc.toposort()


def test_passes_fold_and_remove_dead():
    g, ref = _mlp()
    g.nodes.insert(0, Node("Transpose", "t", ("w2",), ("w2t",), {"perm": [1, 0]}))
    g.nodes = [n.replace(inputs=("r", "w2t", "b2"), attrs={"alpha": 0.5}) if n.name == "gemm"
               else n for n in g.nodes]
    g.nodes.insert(1, Node("Shape", "shape_x", ("x",), ("sx",)))  # not static: must stay
    g.nodes.append(Node("Identity", "id", ("sx",), ("sx2",)))
    g.outputs.append(ValueInfo("sx2", "int64"))
    folded = fold_constants(g)
    assert "w2t" in folded.initializers and "t" not in {n.name for n in folded.nodes}
    np.testing.assert_array_equal(folded.initializers["w2t"], g.initializers["w2"].T)
    assert "shape_x" in {n.name for n in folded.nodes}
    assert "dead" not in {n.name for n in remove_dead_nodes(g).nodes}
    opt = optimize(g)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    out = Session(opt).run([x])
    np.testing.assert_allclose(out["y"], ref(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["sx2"], [2, 4])
    # with a static input shape the Shape node folds too
    g.inputs = [ValueInfo("x", "float32", (2, 4))]
    assert "shape_x" not in {n.name for n in optimize(g).nodes}


def test_executor_frees_values_after_last_use():
    g, _ = _mlp()
    ex = Executor(g)
    freed = {v: i for i, names in enumerate(ex.free_after) for v in names}
    names = [n.name for n in g.nodes]
    assert freed["h"] == names.index("dead") and freed["r"] == names.index("gemm")
    assert freed["unused"] == names.index("dead") and "y" not in freed and "w1" not in freed


def test_profile_returns_per_node_and_per_op_times():
    g, ref = _mlp()
    sess = Session(g)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    out, profiles = sess.profile([x], repeat=2)
    np.testing.assert_allclose(out["y"], ref(x), rtol=1e-5, atol=1e-6)
    assert len(profiles) == 2
    p = profiles[0]
    assert [n for n, _, _ in p.nodes] == [n.name for n in g.nodes]
    assert set(p.by_op_type) == {"MatMul", "Relu", "Gemm", "Tanh"} and p.total > 0


def test_session_input_validation():
    g, ref = _mlp()
    sess = Session(g)
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(sess.run({"x": x})["y"], ref(x.astype(np.float32)), rtol=1e-5,
                               atol=1e-6)  # float64 → float32 is accepted
    with pytest.raises(ShapeError, match=r"missing \['x'\]"):
        sess.run({})
    with pytest.raises(ShapeError, match=r"unexpected \['z'\]"):
        sess.run({"x": x, "z": x})
    with pytest.raises(ShapeError, match="'x'.*expected dtype float32, got int64"):
        sess.run({"x": np.ones((3, 4), np.int64)})
    with pytest.raises(ShapeError, match="'x'.*rank 2.*rank 1"):
        sess.run({"x": np.ones(4)})
    with pytest.raises(ShapeError, match="'x'.*dim 1 must be 4.*got shape \\[3, 5\\]"):
        sess.run({"x": np.ones((3, 5))})
    with pytest.raises(ShapeError, match="unknown output"):
        sess.run([x], output_names=["nope"])
    assert list(sess.run([x], output_names=["y"])) == ["y"]


def test_symbolic_dims_bind_across_inputs_and_int_inputs():
    emb = rng.standard_normal((10, 3)).astype(np.float32)
    g = Graph([ValueInfo("ids", "int64", ("batch", 2)), ValueInfo("b", "float32", ("batch", 1, 1))],
              [ValueInfo("y")],
              [Node("Gather", "g", ("emb", "ids"), ("e",)), Node("Add", "a", ("e", "b"), ("y",))],
              {"emb": emb})
    sess = Session(g)
    ids = np.array([[1, 2], [3, 9]], np.int32)          # int32 → int64 is lossless
    b = np.zeros((2, 1, 1), np.float32)
    np.testing.assert_allclose(sess.run([ids, b])["y"], emb[ids])
    with pytest.raises(ShapeError, match="'batch'"):
        sess.run([ids, np.zeros((3, 1, 1), np.float32)])
    with pytest.raises(ShapeError, match="expected dtype int64, got float32"):
        sess.run([ids.astype(np.float32), b])
    with pytest.raises(ShapeError, match="do not fit"):
        sess.run([np.array([[1, 2**63]], np.uint64), b[:1]])
    with pytest.raises(ShapeError, match="indices must lie"):
        sess.run([np.array([[1, 10]]), b[:1]])


def test_concurrent_runs_are_independent():
    g, ref = _mlp()
    sess = Session(g)
    xs = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(8)]
    errors = []

    def work(x):
        for _ in range(50):
            if not np.allclose(sess.run([x])["y"], ref(x), rtol=1e-5, atol=1e-6):
                errors.append("mismatch")

    threads = [threading.Thread(target=work, args=(x,)) for x in xs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_registering_a_custom_op():
    @register_op
    class TimesTwo(Op):
        """Packs its constant at load: the pattern quantized ops follow."""
        op_type = "TestTimesTwo"
        ATTRS = {"scale": ("float", 2.0)}

        def prepare(self, initializers):
            self.k = self.float_dtype.type(self.attrs["scale"])

        def run(self, x):
            return (x * self.k,)

    try:
        assert "TestTimesTwo" in registered_ops()
        with pytest.raises(ValueError, match="already registered"):
            register_op(type("Other", (Op,), {"op_type": "TestTimesTwo"}))
        g = Graph([ValueInfo("x")], [ValueInfo("y")], [Node("TestTimesTwo", "n", ("x",), ("y",))])
        np.testing.assert_array_equal(Session(g).run([np.ones(2, np.float32)])["y"], [2, 2])
        g64 = Session(g, float_dtype=np.float64).run([np.ones(2, np.float32)])["y"]
        assert g64.dtype == np.float64
    finally:
        unregister_op("TestTimesTwo")


def test_runtime_errors_name_the_node():
    g = Graph([ValueInfo("a", "float32", (2,)), ValueInfo("b", "float32", (3,))], [ValueInfo("y")],
              [Node("Add", "the_add", ("a", "b"), ("y",))])
    with pytest.raises(ShapeError, match="the_add"):
        Session(g).run([np.ones(2), np.ones(3)])


def test_top_level_api():
    for name in ("Session", "Graph", "Node", "ValueInfo", "save", "load", "from_onnx",
                 "from_torch_state_dict"):
        assert hasattr(qengine, name)
