"""Static post-training quantization end to end: the digits CNN shipped for the demo (trained on
real data) and generated graphs, against the float model and ONNX Runtime."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine import _runtime
from qengine.graph import Graph, Node, ValueInfo

# `digits` (the demo CNN and its data) is tests/conftest.py's fixture


def _sqnr(y, ref):
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((np.asarray(y, np.float64) - ref) ** 2))


def test_digits_cnn_is_integer_only_and_keeps_accuracy(digits):
    g, xc, x, y = digits
    q = qengine.quantize_static(g, {"image": xc})
    ops = [n.op_type for n in q.nodes]
    assert ops[0] == "QuantizeU8" and ops[-1] == "DequantizeU8"
    float_ops = {"Conv", "Gemm", "MaxPool", "GlobalAveragePool", "Relu", "Clip"} & set(ops)
    assert not float_ops, f"left in float: {float_ops}"
    fp = qengine.Session(g).run({"image": x})["logits"]
    q8 = qengine.Session(q).run({"image": x})["logits"]
    acc_fp, acc_q = (fp.argmax(1) == y).mean(), (q8.argmax(1) == y).mean()
    assert acc_fp > 0.95
    assert acc_q >= acc_fp - 0.005, (acc_fp, acc_q)     # target: drop ≤ 0.5 pp
    assert _sqnr(q8, fp) > 30


@pytest.mark.parametrize("method", ["minmax", "moving_average", "entropy", "percentile", "mse",
                                    "auto"])
def test_every_calibration_method_works(digits, method):
    g, xc, x, y = digits
    q = qengine.quantize_static(g, {"image": xc}, qengine.StaticQuantConfig(method=method))
    fp = qengine.Session(g).run({"image": x[:64]})["logits"]
    assert _sqnr(qengine.Session(q).run({"image": x[:64]})["logits"], fp) > 25


def test_bias_correction_helps_per_tensor_weights(digits):
    g, xc, x, _ = digits
    fp = qengine.Session(g).run({"image": x})["logits"]
    sq = {}
    for bc in (False, True):
        cfg = qengine.StaticQuantConfig(per_channel=False, bias_correction=bc)
        q = qengine.quantize_static(g, {"image": xc}, cfg)
        sq[bc] = _sqnr(qengine.Session(q).run({"image": x})["logits"], fp)
    assert sq[True] > sq[False] + 2, sq


def test_every_isa_and_thread_count_gives_identical_outputs(digits, tmp_path):
    """The integer kernels are bit-exact across ISAs, so is the whole model (run in child
    processes: QENGINE_ISA chooses the ISA at import)."""
    g, xc, x, _ = digits
    qengine.save(qengine.quantize_static(g, {"image": xc}), tmp_path / "q.qe")
    np.save(tmp_path / "x.npy", x[:40])
    code = ("import numpy as np, qengine, sys; s = qengine.load(sys.argv[1]); "
            "sys.stdout.buffer.write(s.run({'image': np.load(sys.argv[2])})['logits'].tobytes())")
    results = {}
    for isa in _runtime.available_isas():
        for threads in ("1", "2"):
            env = dict(os.environ, QENGINE_ISA=isa, OMP_NUM_THREADS=threads,
                       PYTHONPATH=str(Path(qengine.__file__).parents[1]))
            r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "q.qe"),
                                str(tmp_path / "x.npy")], capture_output=True, env=env,
                               timeout=120)
            assert r.returncode == 0, r.stderr.decode()[-500:]
            results[(isa, threads)] = r.stdout
    first = next(iter(results.values()))
    assert len(first) == 40 * 10 * 4
    assert all(v == first for v in results.values()), list(results)


def test_keep_float_and_engine_round_trip(digits, tmp_path):
    g, xc, x, _ = digits
    conv = next(n.name for n in g.nodes if n.op_type == "Conv")
    q = qengine.quantize_static(g, {"image": xc},
                                qengine.StaticQuantConfig(keep_float={conv}))
    assert conv in {n.name for n in q.nodes if n.op_type == "Conv"}
    qengine.save(q, tmp_path / "q.qe")
    a = qengine.Session(q).run({"image": x[:16]})["logits"]
    b = qengine.load(tmp_path / "q.qe").run({"image": x[:16]})["logits"]
    np.testing.assert_array_equal(a, b)


def test_config_and_data_errors(digits):
    g, xc, _, _ = digits
    with pytest.raises(qengine.ConfigError, match="method"):
        qengine.StaticQuantConfig(method="magic")
    with pytest.raises(qengine.ConfigError, match="not in the graph"):
        qengine.quantize_static(g, {"image": xc}, qengine.StaticQuantConfig(keep_float={"x"}))
    with pytest.raises(qengine.QEngineError):
        qengine.quantize_static(g, {"wrong_name": xc})
    with pytest.raises(qengine.QEngineError):
        qengine.quantize_static(g, {"image": xc[:, :, :4]})


def _block_graph():
    """Conv+Relu → (branch a: Conv 3x3 stride 2 ; branch b: AveragePool) → Add+Relu → Concat →
    Sigmoid → Softmax (float island) → Flatten → MatMul: exercises layouts, binary ops,
    concatenation, a LUT, a float island in the middle of int8 regions, and requantization."""
    rng = np.random.default_rng(0)
    inits = {
        "w1": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "b1": (rng.standard_normal(8) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32),
        "w3": (rng.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float32),
        "fc": (rng.standard_normal((16 * 4 * 4, 5)) * 0.1).astype(np.float32),
        "shape": np.array([0, -1], np.int64),
    }
    nodes = [
        Node("Conv", "c1", ("x", "w1", "b1"), ("c1",), {"pads": [1, 1, 1, 1]}),
        Node("Relu", "r1", ("c1",), ("r1",)),
        Node("Conv", "c2", ("r1", "w2"), ("c2",), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
        Node("AveragePool", "ap", ("r1",), ("ap",), {"kernel_shape": [2, 2], "strides": [2, 2]}),
        Node("Add", "add", ("c2", "ap"), ("add",)),
        Node("Relu", "r2", ("add",), ("r2",)),
        Node("Conv", "dw", ("r2", "w3"), ("dw",), {"pads": [1, 1, 1, 1], "group": 8}),
        Node("Concat", "cat", ("r2", "dw"), ("cat",), {"axis": 1}),
        Node("Sigmoid", "sig", ("cat",), ("sig",)),
        Node("Softmax", "sm", ("sig",), ("sm",), {"axis": 1}),
        Node("Reshape", "flat", ("sm", "shape"), ("flat",)),
        Node("MatMul", "fcm", ("flat", "fc"), ("y",)),
    ]
    return Graph([ValueInfo("x", "float32", ("N", 3, 8, 8))], [ValueInfo("y", "float32", None)],
                  nodes, inits)


def test_mixed_graph_layouts_and_float_islands():
    g = _block_graph()
    rng = np.random.default_rng(1)
    calib = rng.standard_normal((64, 3, 8, 8)).astype(np.float32)
    x = rng.standard_normal((8, 3, 8, 8)).astype(np.float32)
    q = qengine.quantize_static(g, {"x": calib})
    ops = [n.op_type for n in q.nodes]
    # the Add of c2 (a QConv only it reads) runs in that conv's epilogue: one QConvAdd
    for op in ("QConv", "QAveragePool", "QConvAdd", "QConcat", "QLut", "QGemm", "Softmax"):
        assert op in ops, (op, ops)
    unfused = qengine.quantize_static(g, {"x": calib},
                                      qengine.StaticQuantConfig(fuse_residual=False))
    assert "QAdd" in [n.op_type for n in unfused.nodes]
    want = qengine.Session(g).run({"x": x})["y"]
    got = qengine.Session(q).run({"x": x})["y"]
    assert got.shape == want.shape
    assert _sqnr(got, want) > 20
    assert np.array_equal(got, qengine.Session(unfused).run({"x": x})["y"])


def test_onnx_runtime_quantize_static_on_the_same_model_and_data(digits, tmp_path):
    """qengine's output SQNR with MinMax calibration is not worse than ONNX Runtime's
    quantize_static (QDQ, QUInt8 activations, QInt8 per-channel weights) with MinMax."""
    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "train_demo_cnn", Path(__file__).parents[1] / "scripts" / "train_demo_cnn.py")
    pytest.importorskip("sklearn")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_demo_cnn"] = mod
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    model, xtr, xte, _, yte = mod.train(epochs=3)
    path = mod.export_onnx(model, tmp_path / "cnn.onnx")
    xc = xtr[:128, None].astype(np.float32) / 16
    x = xte[:, None].astype(np.float32) / 16
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"image": xc[i:i + 16]} for i in range(0, len(xc), 16)])

        def get_next(self):
            return next(self.it, None)

    qdq = str(tmp_path / "qdq.onnx")
    quantize_static(path, qdq, Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    y_ort = ort.InferenceSession(qdq, providers=["CPUExecutionProvider"]).run(None,
                                                                             {"image": x})[0]
    q = qengine.quantize_static(qengine.from_onnx(path), {"image": xc})
    y_qe = qengine.Session(q).run({"image": x})["logits"]
    assert _sqnr(y_qe, ref) >= _sqnr(y_ort, ref) - 0.5, (_sqnr(y_qe, ref), _sqnr(y_ort, ref))


def test_a_generator_of_batches_calibrates_like_the_same_batches_in_a_list(digits):
    g, xc, x, _ = digits
    batches = [{"image": xc[i:i + 32]} for i in range(0, len(xc), 32)]
    from_list = qengine.quantize_static(g, batches)
    from_gen = qengine.quantize_static(g, (b for b in batches))      # one-shot iterator
    a = qengine.Session(from_list).run({"image": x[:32]})["logits"]
    b = qengine.Session(from_gen).run({"image": x[:32]})["logits"]
    np.testing.assert_array_equal(a, b)


def _onnx_model(nodes, x_shape, inits=(), opset=19):
    """A float ONNX model x → nodes → y (x's spatial dims symbolic, so any size runs)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    dims = [x_shape[0], x_shape[1], "H", "W"]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     dims)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in dict(inits).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    return m


def _ort(m, x):
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def _within_one_step(q, got, want, op_type):
    """|int8 − float| within the rounding of the int8 node's input and output grids (half a
    step each; the inputs lie inside the calibrated range), after clipping the float result to
    the range the node's output grid covers (outputs beyond it saturate by design)."""
    nodes = [n for n in q.nodes if n.op_type == op_type]
    assert len(nodes) == 1, [n.op_type for n in q.nodes]
    a = nodes[0].attrs
    tol = (a["x_scale"] + a["y_scale"]) / 2 * 1.001
    lo, hi = a["y_scale"] * (0 - a["y_zero_point"]), a["y_scale"] * (255 - a["y_zero_point"])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, np.clip(want, lo, hi), rtol=0, atol=tol)


@pytest.mark.parametrize("ceil,cip", [(0, 0), (1, 1), (1, 0)])
def test_dilated_average_pool_runs_in_int8_with_its_dilations(ceil, cip):
    """AveragePool (dilations since opset 19) and MaxPool with dilations, ceil_mode and
    count_include_pad: the int8 graph against ONNX Runtime on the float model."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import helper
    attrs = dict(kernel_shape=[3, 2], strides=[2, 1], pads=[2, 1, 1, 0], dilations=[2, 3],
                 ceil_mode=ceil)
    m = _onnx_model([helper.make_node("AveragePool", ["x"], ["a"], count_include_pad=cip,
                                      **attrs),
                     helper.make_node("MaxPool", ["a"], ["y"], kernel_shape=[2, 2],
                                      dilations=[2, 2], ceil_mode=ceil)], (2, 3))
    x = np.random.default_rng(3).standard_normal((2, 3, 13, 11)).astype(np.float32)
    q = qengine.quantize_static(qengine.from_onnx(m), {"x": x})
    _within_one_step(q, qengine.Session(q).run({"x": x})["y"], _ort(m, x), "QAveragePool")
    assert {n.op_type: n.attrs.get("dilations") for n in q.nodes if "Pool" in n.op_type} == \
        {"QAveragePool": [2, 3], "QMaxPool": [2, 2]}


@pytest.mark.parametrize("auto", ["SAME_UPPER", "SAME_LOWER"])
def test_same_padding_is_resolved_for_each_input_size(auto, tmp_path):
    """Calibrated on one spatial size, run on others: SAME pads depend on the input size (a
    stride-2 window pads differently at odd and even sizes), so the int8 graph resolves them per
    call, like the float graph. Both against ONNX Runtime on the float model, also after an
    engine-file round trip."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import helper
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((4, 3, 4, 3)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(4) * 0.1).astype(np.float32)
    m = _onnx_model([
        helper.make_node("Conv", ["x", "w", "b"], ["c"], auto_pad=auto, strides=[2, 2]),
        helper.make_node("AveragePool", ["c"], ["a"], auto_pad=auto, kernel_shape=[3, 2],
                         strides=[2, 1], count_include_pad=1),
        helper.make_node("MaxPool", ["a"], ["y"], auto_pad=auto, kernel_shape=[2, 3],
                         strides=[1, 2])], (2, 3), {"w": w, "b": b})
    g = qengine.from_onnx(m)
    q = qengine.quantize_static(g, {"x": rng.standard_normal((16, 3, 9, 10)).astype(np.float32)})
    ops = [n.op_type for n in q.nodes]
    assert {"QConv", "QAveragePool", "QMaxPool"} <= set(ops), ops
    qengine.save(q, tmp_path / "q.qe")
    sessions = {"float": qengine.Session(g), "int8": qengine.Session(q),
                "int8 from file": qengine.load(tmp_path / "q.qe")}
    for size in [(9, 10), (12, 7), (6, 13), (1, 2)]:
        x = rng.standard_normal((2, 3, *size)).astype(np.float32)
        want = _ort(m, x)
        got = {k: s.run({"x": x})["y"] for k, s in sessions.items()}
        assert all(v.shape == want.shape for v in got.values()), (size, want.shape)
        np.testing.assert_allclose(got["float"], want, rtol=1e-5, atol=1e-5)
        assert _sqnr(got["int8"], want) > 20, (size, _sqnr(got["int8"], want))
        np.testing.assert_array_equal(got["int8 from file"], got["int8"])


def test_bias_correction_from_a_generator_equals_the_same_batches_in_a_list(digits):
    """Bias correction needs the calibration data again after calibrating: a one-shot
    generator is materialized once, so it gives exactly what the list gives."""
    g, xc, x, _ = digits
    batches = [{"image": xc[i:i + 32]} for i in range(0, len(xc), 32)]
    cfg = qengine.StaticQuantConfig(per_channel=False, bias_correction=True)
    from_list = qengine.quantize_static(g, batches, cfg)
    from_gen = qengine.quantize_static(g, (b for b in batches), cfg)
    assert from_list.initializers.keys() == from_gen.initializers.keys()
    for k, v in from_list.initializers.items():
        np.testing.assert_array_equal(from_gen.initializers[k], v, err_msg=k)
    a = qengine.Session(from_list).run({"image": x[:32]})["logits"]
    b = qengine.Session(from_gen).run({"image": x[:32]})["logits"]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("auto", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("cip", [0, 1])
def test_same_padded_average_pool_runs_in_int8_at_any_size(auto, cip):
    """An AveragePool with SAME padding (count_include_pad counts the SAME pads, as ONNX
    Runtime does) runs in int8 and stays within quantization rounding of ONNX Runtime at sizes
    other than the calibration one."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import helper
    m = _onnx_model([helper.make_node("AveragePool", ["x"], ["y"], auto_pad=auto,
                                      kernel_shape=[3, 4], strides=[2, 3],
                                      count_include_pad=cip)], (2, 3))
    rng = np.random.default_rng(6)
    calib = rng.standard_normal((4, 3, 9, 10)).astype(np.float32)
    q = qengine.quantize_static(qengine.from_onnx(m), {"x": calib})
    for size in [(9, 10), (12, 7), (6, 13), (1, 2)]:
        x = np.clip(rng.standard_normal((2, 3, *size)), calib.min(), calib.max()).astype(np.float32)
        _within_one_step(q, qengine.Session(q).run({"x": x})["y"], _ort(m, x), "QAveragePool")


def test_layers_kept_float_can_store_float16_weights(digits, tmp_path):
    """The seed's mixed precision: sensitive layers (first and last) kept float, in float16."""
    g, xc, x, _ = digits
    keep = {"/features/features.0/Conv", "/fc/Gemm"}
    got, size, qs = {}, {}, {}
    for fw in ("float32", "float16"):
        q = qs[fw] = qengine.quantize_static(g, {"image": xc}, qengine.StaticQuantConfig(
            keep_float=keep, float_weights=fw))
        qengine.save(q, tmp_path / f"{fw}.qe")
        size[fw] = (tmp_path / f"{fw}.qe").stat().st_size
        got[fw] = qengine.load(tmp_path / f"{fw}.qe").run({"image": x})["logits"]
        kept = [n for n in q.nodes if n.name in keep]
        assert [n.op_type for n in kept] == ["Conv", "Gemm"]
        assert {q.initializers[n.inputs[1]].dtype.name for n in kept} == {fw}
    # reference: the float32 result with its kept weights rounded to float16 by NumPy
    q32 = qs["float32"]
    wnames = {n.inputs[1] for n in q32.nodes if n.name in keep}
    q_ref = qengine.Graph(q32.inputs, q32.outputs, q32.nodes, {
        k: (v.astype(np.float16).astype(np.float32) if k in wnames else v)
        for k, v in q32.initializers.items()})
    np.testing.assert_array_equal(got["float16"], qengine.Session(q_ref).run({"image": x})["logits"])
    fp32_kept = sum(g.initializers[n.inputs[1]].nbytes for n in g.nodes if n.name in keep)
    assert size["float32"] - size["float16"] >= fp32_kept // 2 - 64
    assert _sqnr(got["float16"], got["float32"]) > 50
    with pytest.raises(qengine.ConfigError, match="float_weights"):
        qengine.StaticQuantConfig(float_weights="bfloat16")
    # in ONNX the float16 weights reach their op through a Cast (one type per op): ONNX
    # Runtime gives exactly what it gives for the float32 export of the pre-rounded weights
    # (its QDQ run as written: its AVX2 int8 kernels saturate, docs/accuracy.md)
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    outs = []
    for name, q in (("m16", qs["float16"]), ("ref", q_ref)):
        qengine.export_onnx(q, tmp_path / f"{name}.onnx")
        s = ort.InferenceSession(str(tmp_path / f"{name}.onnx"), so,
                                 providers=["CPUExecutionProvider"])
        outs.append(s.run(None, {"image": x})[0])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_float16_keeps_weights_it_would_store_badly_in_float32(digits):
    """Weights in float16's subnormals (here ~1e-7) lose most of their bits: they stay float32;
    the rest of the graph still converts."""
    g, xc, x, _ = digits
    g = g.copy()
    g.initializers = dict(g.initializers)
    c1, fc = (next(n for n in g.nodes if n.name == k)
              for k in ("/features/features.0/Conv", "/fc/Gemm"))
    g.initializers[fc.inputs[1]] = g.initializers[fc.inputs[1]] * np.float32(1e-6)
    w16 = g.initializers[fc.inputs[1]].astype(np.float16).astype(np.float64)
    w = g.initializers[fc.inputs[1]].astype(np.float64)
    assert 10 * np.log10(np.sum(w ** 2) / np.sum((w16 - w) ** 2)) < 40   # what it would cost
    q = qengine.quantize_static(g, {"image": xc}, qengine.StaticQuantConfig(
        keep_float={c1.name, fc.name}, float_weights="float16"))
    assert q.initializers[fc.inputs[1]].dtype == np.float32
    assert q.initializers[c1.inputs[1]].dtype == np.float16
