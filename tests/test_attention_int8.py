"""Attention in static int8: QMatMul (a MatMul between two uint8 activations), scalar
arithmetic as a table (attention's 1/√d), Gather / Slice moving codes.

Oracles: an int64 NumPy reference for QMatMul's sums (with numerics.md's Quantize after);
onnx.reference / ONNX Runtime on the float model for whole graphs; ONNX Runtime running the
exported QDQ / QOperator files."""
import numpy as np
import pytest

import qengine as qe
from qengine import _runtime
from qengine.errors import ConfigError, ShapeError
from qengine.quantized.linear import F32_EXACT_K, MAX_K, QMatMul
from qengine.reference.conv import quantize_u8_ref

RNG = np.random.default_rng(11)


def _ref(a, b, za, zb, acc_scale, zy, lo=0, hi=255):
    acc = np.matmul(a.astype(np.int64) - za, b.astype(np.int64) - zb)
    assert np.abs(acc).max(initial=0) < 2 ** 31
    y = quantize_u8_ref(acc.astype(np.float32), acc_scale, zy)
    return np.clip(y, lo, hi).astype(np.uint8)


def _layer(za=131, zb=117, zy=128, act=None, isa=None, s=(0.02, 0.03, 0.05)):
    return QMatMul(s[0], za, s[1], zb, s[2], zy, activation=act, isa=isa)


@pytest.mark.parametrize("isa", _runtime.available_isas())
@pytest.mark.parametrize("shapes", [((5, 7), (7, 3)), ((2, 4, 33, 16), (2, 4, 16, 33)),
                                    ((2, 1, 6, 9), (3, 9, 4)), ((1, 1), (1, 1)),
                                    ((3, F32_EXACT_K), (F32_EXACT_K, 5)),
                                    ((3, F32_EXACT_K + 1), (F32_EXACT_K + 1, 5)),
                                    ((2, 1000), (1000, 3))])
def test_qmatmul_matches_the_integer_reference(isa, shapes):
    a = RNG.integers(0, 256, shapes[0], dtype=np.uint8)
    b = RNG.integers(0, 256, shapes[1], dtype=np.uint8)
    q = _layer(isa=isa, s=(0.02, 0.03, 0.05 * np.sqrt(shapes[0][-1])))
    want = _ref(a, b, q.a_zero_point, q.b_zero_point, q.acc_scale, q.output_zero_point)
    np.testing.assert_array_equal(q(a, b), want)


def test_qmatmul_extremes_and_long_k():
    """255 against zero point 0 times 0 against zero point 255: every product −65025, the
    largest sums there are, in the float32 range and past it (float64), and saturation."""
    for k in (1, 64, F32_EXACT_K, F32_EXACT_K + 1, 4096):
        a = np.full((2, k), 255, np.uint8)
        b = np.zeros((k, 3), np.uint8)
        for scales in ((1.0, 1.0, 65025.0 * k / 100), (1e-3, 1e-3, 1.0), (1.0, 1.0, 1.0)):
            q = QMatMul(scales[0], 0, scales[1], 255, scales[2], 200)
            got = q(a, b)
            np.testing.assert_array_equal(got, _ref(a, b, 0, 255, q.acc_scale, 200))
        assert got.max() == 0                   # the last: saturated low


def test_qmatmul_views_clamp_and_output_buffer():
    a = RNG.integers(0, 256, (4, 8, 6), dtype=np.uint8).transpose(0, 2, 1)     # [4, 6, 8] view
    b = RNG.integers(0, 256, (4, 5, 8), dtype=np.uint8).transpose(0, 2, 1)     # [4, 8, 5] view
    q = _layer(act="relu")
    out = np.empty((4, 6, 5), np.uint8)
    got = q(a, b, out=out)
    assert got is out
    np.testing.assert_array_equal(got, _ref(a, b, 131, 117, q.acc_scale, 128, lo=128))


def test_qmatmul_rejects_bad_input():
    q = _layer()
    u8 = lambda *s: np.zeros(s, np.uint8)  # noqa: E731
    with pytest.raises(ShapeError, match="second to last"):
        q(u8(2, 3), u8(4, 2))
    with pytest.raises(ShapeError, match="rank >= 2"):
        q(u8(3), u8(3, 2))
    with pytest.raises(ShapeError, match="uint8"):
        q(np.zeros((2, 3), np.float32), u8(3, 2))
    with pytest.raises(ShapeError, match="overflow"):
        q(u8(1, MAX_K + 1), u8(MAX_K + 1, 1))
    with pytest.raises(ConfigError):
        QMatMul(0.1, 0, 0.1, 0, 0.0, 0)


def _dynamic_ref(a, b):
    """Per (broadcast) matrix pair: A's rows and B's columns quantized by the dynamic Linear's
    reference rule, the int sums, the dequant epilogue (qengine/reference/gemm.py)."""
    from qengine.reference.gemm import (dequant_epilogue_ref, matmul_int32_ref,
                                        quantize_activations_ref)
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, lead + a.shape[-2:])
    b = np.broadcast_to(b, lead + b.shape[-2:])
    out = np.empty(lead + (a.shape[-2], b.shape[-1]), np.float32)
    for i in np.ndindex(*lead):
        qa, sa, za = quantize_activations_ref(a[i], per_row=True)
        qb, sb, zb = quantize_activations_ref(b[i].T, per_row=True)
        acc = matmul_int32_ref(qa, za, qb.astype(np.int64), zb)
        out[i] = dequant_epilogue_ref(acc, sa, sb)
    return out


@pytest.mark.parametrize("isa", _runtime.available_isas())
@pytest.mark.parametrize("shapes", [((5, 7), (7, 3)), ((1, 4, 32, 16), (1, 4, 16, 32)),
                                    ((2, 1, 6, 9), (3, 9, 4)),
                                    ((3, F32_EXACT_K + 3), (F32_EXACT_K + 3, 2))])
def test_dynamic_matmul_matches_the_reference(isa, shapes):
    from qengine.quantized.linear import DynamicMatMul
    a = (RNG.standard_normal(shapes[0]) * 3).astype(np.float32)
    b = (RNG.standard_normal(shapes[1]) + 0.5).astype(np.float32)
    a.reshape(-1)[:3] = [0.0, 1e-30, -7.5]         # a zero, a denormal-sized, an extreme
    b.reshape(-1)[0] = np.nan                       # quantized to its zero point, as Linear's
    got = DynamicMatMul(isa=isa)(a, b)
    np.testing.assert_array_equal(got, _dynamic_ref(a, b))
    assert np.isfinite(got).all()


def test_dynamic_matmul_in_a_graph_and_its_errors():
    from qengine.quantized.linear import DynamicMatMul
    with pytest.raises(ShapeError, match="second to last"):
        DynamicMatMul()(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(ShapeError, match="float32"):
        DynamicMatMul()(np.zeros((2, 3), np.float64), np.zeros((3, 3), np.float32))


# ------------------------------------------------------------------------ whole graphs
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _attention_model(t=12, d=16, heads=2):
    """Self-attention as torch exports it after folding: a packed projection, heads split by
    Reshape / Transpose, Q and Kᵀ each scaled by d**-0.25, two MatMuls between activations."""
    f = TensorProto.FLOAT
    w = RNG.standard_normal((d, 3 * d)).astype(np.float32) * 0.3
    hd = d // heads
    inits = {"w": w, "b": RNG.standard_normal(3 * d).astype(np.float32) * 0.1,
             "s3": np.array([t, 3, heads, hd], np.int64),
             "c": np.array(hd ** -0.25, np.float32), "i0": np.array(0, np.int64),
             "i1": np.array(1, np.int64), "i2": np.array(2, np.int64),
             "so": np.array([t, d], np.int64),
             "wo": RNG.standard_normal((d, d)).astype(np.float32) * 0.3}
    n = helper.make_node
    nodes = [n("MatMul", ["x", "w"], ["p0"]), n("Add", ["p0", "b"], ["p"]),
             n("Reshape", ["p", "s3"], ["p4"]),
             n("Transpose", ["p4"], ["h"], perm=[1, 2, 0, 3]),        # [3, H, T, hd]
             n("Gather", ["h", "i0"], ["q"], axis=0), n("Gather", ["h", "i1"], ["k"], axis=0),
             n("Gather", ["h", "i2"], ["v"], axis=0),
             n("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             n("Mul", ["q", "c"], ["qs"]), n("Mul", ["kt", "c"], ["ks"]),
             n("MatMul", ["qs", "ks"], ["sc"]), n("Softmax", ["sc"], ["pr"], axis=-1),
             n("MatMul", ["pr", "v"], ["ctx"]),
             n("Transpose", ["ctx"], ["ct"], perm=[1, 0, 2]), n("Reshape", ["ct", "so"], ["c2"]),
             n("MatMul", ["c2", "wo"], ["y"])]
    g = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", f, [t, d])],
                          [helper.make_tensor_value_info("y", f, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _sqnr(y, ref):
    return 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) /
                         np.sum((y.astype(np.float64) - ref) ** 2))


@pytest.fixture(scope="module")
def attention():
    m = _attention_model()
    calib = [{"x": RNG.standard_normal((12, 16)).astype(np.float32)} for _ in range(16)]
    x = {"x": RNG.standard_normal((12, 16)).astype(np.float32)}
    from onnx.reference import ReferenceEvaluator
    return m, calib, x, ReferenceEvaluator(m).run(None, x)[0]


def test_static_attention_float_islands_by_default(attention):
    m, calib, x, ref = attention
    st = qe.quantize_static(qe.from_onnx(m), calib)
    ops = [n.op_type for n in st.nodes]
    assert ops.count("MatMul") == 2 and "QMatMul" not in ops, ops
    # the scales are tables on the codes, the head split moves codes
    assert ops.count("QLut") == 2 and "Mul" not in ops and ops.count("Gather") == 3, ops
    assert _sqnr(qe.Session(st).run(x)["y"], ref) > 25


def test_static_attention_int8_matches_float_and_exports(attention, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m, calib, x, ref = attention
    cfg = qe.StaticQuantConfig(activation_matmul="int8")
    st = qe.quantize_static(qe.from_onnx(m), calib, cfg)
    ops = [n.op_type for n in st.nodes]
    assert ops.count("QMatMul") == 2 and "MatMul" not in ops, ops
    y = qe.Session(st).run(x)["y"]
    assert _sqnr(y, ref) > 22
    for fmt, unit in (("qdq", "MatMul"), ("qoperator", "QLinearMatMul")):
        path = tmp_path / f"attn_{fmt}.onnx"
        qe.export_onnx(st, str(path), format=fmt)
        exported = onnx.load(str(path))
        assert sum(nd.op_type == unit for nd in exported.graph.node) >= 2, fmt
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, x)[0]
        # ORT's integer MatMul combines the scales its own way: within a few output steps
        assert _sqnr(got, ref) > 22, fmt
        assert np.abs(got - y).max() <= 0.1 * np.abs(ref).max(), fmt


def test_qdq_model_with_quantized_attention_lowers_to_qmatmul(attention, tmp_path):
    """A QDQ file whose activation MatMuls read two DequantizeLinear outputs (as ORT's
    quantizer writes attention) lowers to QMatMul whatever static PTQ's default is."""
    m, calib, x, ref = attention
    st = qe.quantize_static(qe.from_onnx(m), calib,
                            qe.StaticQuantConfig(activation_matmul="int8"))
    path = tmp_path / "attn_qdq.onnx"
    qe.export_onnx(st, str(path), format="qdq")
    back = qe.from_onnx(str(path))
    assert [n.op_type for n in back.nodes].count("QMatMul") == 2
    np.testing.assert_allclose(qe.Session(back).run(x)["y"], qe.Session(st).run(x)["y"],
                               atol=0.05 * np.abs(ref).max())


@pytest.mark.parametrize("op,c", [("Mul", 0.7), ("Div", 1.9), ("Add", 0.25), ("Sub", -0.5)])
def test_scalar_arithmetic_is_a_table_on_codes(op, c):
    """x·c, x/c, x + c, x − c after an int8 producer: one QLut on the codes; the static
    model stays as close to the float one as with the op in float."""
    f = TensorProto.FLOAT
    n = helper.make_node
    w = RNG.standard_normal((8, 8)).astype(np.float32)
    inits = {"w": w, "c": np.array([c], np.float32)}
    # after a residual add (nothing to fold the constant into), before a MatMul
    nodes = [n("MatMul", ["x", "w"], ["h0"], name="mm0"), n("Add", ["h0", "x"], ["h"], name="res"),
             n(op, ["h", "c"], ["a"], name="scalar"), n("MatMul", ["a", "w"], ["y"], name="mm1")]
    g = helper.make_graph(nodes, "s", [helper.make_tensor_value_info("x", f, [4, 8])],
                          [helper.make_tensor_value_info("y", f, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    calib = [{"x": RNG.standard_normal((4, 8)).astype(np.float32)} for _ in range(8)]
    st = qe.quantize_static(qe.from_onnx(m), calib)
    ops = [n.op_type for n in st.nodes]
    assert ops == ["QuantizeU8", "QGemm", "QAdd", "QLut", "QGemm", "DequantizeU8"], ops
    kept = qe.quantize_static(qe.from_onnx(m), calib,
                              qe.StaticQuantConfig(keep_float={"scalar"}))
    assert op in [n.op_type for n in kept.nodes]
    from onnx.reference import ReferenceEvaluator
    x = {"x": RNG.standard_normal((4, 8)).astype(np.float32)}
    ref = ReferenceEvaluator(m).run(None, x)[0]
    lut, island = (_sqnr(qe.Session(q).run(x)["y"], ref) for q in (st, kept))
    assert lut > 12 and lut > island - 1.5, (lut, island)     # 13–40 dB measured


def test_dynamic_attention_opt_in(attention, tmp_path):
    """quantize_dynamic leaves activation MatMuls float unless asked; asked, they become
    DynamicQuantMatMul (the model stays close to float) and export as ONNX IntegerOps."""
    ort = pytest.importorskip("onnxruntime")
    m, calib, x, ref = attention
    g = qe.from_onnx(m)
    plain = qe.quantize_dynamic(g, qe.DynamicQuantConfig(cost_model=False))
    assert "DynamicQuantMatMul" not in [n.op_type for n in plain.nodes]
    d = qe.quantize_dynamic(g, qe.DynamicQuantConfig(cost_model=False, activation_matmul=True))
    assert [n.op_type for n in d.nodes].count("DynamicQuantMatMul") == 2
    y = qe.Session(d).run(x)["y"]
    assert _sqnr(y, ref) > 30
    path = tmp_path / "attn_dyn.onnx"
    with pytest.warns(qe.QuantizationWarning, match="per tensor"):
        qe.export_onnx(d, str(path))
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert _sqnr(got, ref) > 25


@pytest.mark.parametrize("mode,op", [("static", "QMatMul"), ("dynamic", "DynamicQuantMatMul")])
def test_cli_activation_matmul(attention, tmp_path, mode, op, capsys):
    from qengine.cli import main
    from qengine.engine_file import load_graph
    m, calib, x, ref = attention
    src = tmp_path / "attn.onnx"
    onnx.save(m, str(src))
    np.savez(tmp_path / "calib.npz", x=calib[0]["x"])     # the model has no batch axis
    for flag, want in (("float", 0), ("int8", 2)):
        out = tmp_path / f"{mode}_{flag}.qe"
        args = ["quantize", str(src), "-o", str(out), "--mode", mode,
                "--activation-matmul", flag]
        if mode == "static":
            args += ["--calib", str(tmp_path / "calib.npz")]
        assert main(args) == 0, capsys.readouterr().err
        assert [n.op_type for n in load_graph(str(out)).nodes].count(op) == want


# ---------------------------------------------------------------- the runtime fusion
def _executor_ops(sess):
    return [op.node.op_type for op in sess._executor.ops]


def test_session_runs_attention_core_as_one_node(attention):
    """A Session runs scale / MatMul / Softmax / MatMul as one AttentionCore node: in float32
    (its 12 query rows go to the compiled kernel) the nodes one by one (an Executor without the
    fusions) to float rounding, float and static int8 (float attention between DequantizeU8s)
    alike; in float64 (NumPy's calls) their very bits."""
    from qengine.graph.executor import Executor
    m, calib, x, ref = attention
    g = qe.from_onnx(m)
    # (static int8: a float rounding difference before a QuantizeU8 may move a code by one)
    for graph, tol in ((g, 1e-6), (qe.quantize_static(g, calib), 1e-2)):
        s = qe.Session(graph)
        ops = _executor_ops(s)
        assert ops.count("AttentionCore") == 1 and "Softmax" not in ops, ops
        assert "Softmax" in [n.op_type for n in s.graph.nodes]          # the graph keeps it
        want = Executor(graph).run(x)["y"]
        np.testing.assert_allclose(s.run(x)["y"], want, rtol=1e-5,
                                   atol=tol * float(np.abs(want).max()))
    s64 = qe.Session(g, float_dtype=np.float64)
    np.testing.assert_array_equal(s64.run(x)["y"],
                                  Executor(g, float_dtype=np.float64).run(x)["y"])


def test_attention_core_left_alone_when_its_values_are_read():
    """Scores or probabilities that something else reads (or that are graph outputs), and
    calibration's TapSession, keep the nodes."""
    from qengine.calibration.tap import TapSession
    f = TensorProto.FLOAT
    n = helper.make_node
    for extra in ("probs_out", "scores_read"):
        nodes = [n("MatMul", ["x", "kt"], ["s"]), n("Softmax", ["s"], ["p"], axis=-1),
                 n("MatMul", ["p", "v"], ["y"])]
        outs = ["y"] + (["p"] if extra == "probs_out" else ["z"])
        if extra == "scores_read":
            nodes.append(n("Relu", ["s"], ["z"]))
        g = helper.make_graph(nodes, "a", [helper.make_tensor_value_info(v, f, [4, 6, 5])
                                           for v in ("x",)] +
                              [helper.make_tensor_value_info("kt", f, [4, 5, 6]),
                               helper.make_tensor_value_info("v", f, [4, 6, 3])],
                              [helper.make_tensor_value_info(o, f, None) for o in outs])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        assert "AttentionCore" not in _executor_ops(qe.Session(qe.from_onnx(m)))
    tap = TapSession(qe.from_onnx(_attention_model()))
    assert "AttentionCore" not in _executor_ops(tap)
