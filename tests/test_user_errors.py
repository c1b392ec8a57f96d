"""What a new user meets, part 2: summaries that say what really happened (float islands and
their cost, static LSTMs, shared weights counted once, unreachable SQNR targets) and errors that
say what to do. CLI cases run `python -m qengine` in a subprocess, as a shell would; API cases
use the public names."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import qengine

ROOT = Path(__file__).resolve().parent.parent
MODEL = Path(qengine.__file__).parent / "data" / "demo_cnn_digits.qe"


def qe(*args, check_rc=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "qengine", *map(str, args)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                       timeout=300)
    if check_rc is not None:
        assert p.returncode == check_rc, p.stderr
    return p


def one_line_error(p, *fragments):
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qengine: error: "), p.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


# ---- models -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """Conv-Relu-Conv-Relu-ReduceMax-Gemm-Softmax: ReduceMax and Softmax have no int8 kernel,
    so static mode leaves two float islands."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("islands")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 10)

        def forward(self, x):
            y = torch.relu(self.c2(torch.relu(self.c1(x))))
            return torch.softmax(self.fc(y.amax(dim=(2, 3))), -1)

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), (torch.randn(1, 1, 8, 8),), str(d / "cnn.onnx"),
                          dynamo=False, input_names=["image"], output_names=["p"],
                          dynamic_axes={"image": {0: "b"}, "p": {0: "b"}})
    x = np.random.default_rng(0).standard_normal((48, 1, 8, 8)).astype(np.float32)
    np.savez(d / "calib.npz", image=x)
    return {"dir": d, "onnx": d / "cnn.onnx", "calib": d / "calib.npz", "x": x}


@pytest.fixture(scope="module")
def lstms(tmp_path_factory):
    """One LSTM classifier exported by both exporters, batch and time dynamic."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("static_lstm")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(16, 32, batch_first=True)
            self.fc = torch.nn.Linear(32, 4)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.fc(y[:, -1])

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(2, 5, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(d / "ts.onnx"), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b", 1: "t"}})
        batch, time = torch.export.Dim("b"), torch.export.Dim("t")
        torch.onnx.export(net, (x,), str(d / "dynamo.onnx"), dynamo=True, input_names=["x"],
                          output_names=["y"], dynamic_shapes=({0: batch, 1: time},))
    xc = np.random.default_rng(1).standard_normal((16, 5, 16)).astype(np.float32)
    np.savez(d / "calib.npz", x=xc)
    with torch.no_grad():
        ref = net(torch.from_numpy(xc)).numpy()
    return {"dir": d, "calib": d / "calib.npz", "x": xc, "ref": ref}


# ---- honest summaries: float islands ------------------------------------------------------------
def _float_nodes(graph):
    """Independent of the island code: the nodes of a static int8 graph that compute in float
    (everything but the uint8 ops and the conversions), by op type."""
    return [n for n in graph.nodes if not n.op_type.startswith("Q") and
            n.op_type not in ("DequantizeU8", "Shape")]


def test_quantize_summary_lists_float_islands_with_their_cost(cnn, tmp_path):
    out = tmp_path / "q.qe"
    r = json.loads(qe("quantize", cnn["onnx"], "-o", out, "--mode", "static", "--calib",
                      cnn["calib"], "--json", check_rc=0).stdout)
    q = qengine.load_graph(out)
    assert [n.op_type for n in _float_nodes(q)] == ["ReduceMax", "Softmax"]
    islands = r["float_islands"]
    assert [[n["op"] for n in i["nodes"]] for i in islands] == [["ReduceMax"], ["Softmax"]]
    # timed on the first calibration batch: 32 of the 48 samples (the default batch size)
    assert r["float_island_cost"]["batch"] == 32 and "median" in r["float_island_cost"]["what"]
    # ReduceMax: dequantize its [32, 8, 8, 8] input, quantize its [32, 8] output;
    # Softmax: dequantize the [32, 10] logits (the graph output is float: no quantize after)
    assert [i["conversions"] for i in islands] == [2, 1]
    assert [i["converted_values"] for i in islands] == [32 * 8 * 8 * 8 + 32 * 8, 32 * 10]
    for i in islands:
        assert i["ms"] > 0 and 0 < i["share"] < 1
    assert sum(i["share"] for i in islands) < 1
    text = qe("quantize", cnn["onnx"], "-o", tmp_path / "t.qe", "--mode", "static", "--calib",
              cnn["calib"], check_rc=0).stdout
    assert "2 float islands" in text and "ReduceMax" in text and "Softmax" in text
    # the Python API gives the same islands
    feeds = {"image": cnn["x"][:32]}
    api = qengine.float_islands(q, feeds)
    assert [[op for _, op in i.nodes] for i in api] == [["ReduceMax"], ["Softmax"]]
    assert [i.converted_values for i in api] == [i["converted_values"] for i in islands]
    # dynamic mode has no islands by construction (every activation is float)
    r = json.loads(qe("quantize", cnn["onnx"], "-o", tmp_path / "d.qe", "--json",
                      check_rc=0).stdout)
    assert r["float_islands"] == []


# ---- honest summaries: static LSTM --------------------------------------------------------------
@pytest.mark.parametrize("export", ["ts", "dynamo"])
def test_static_lstm_becomes_integer_or_says_it_stays_float(lstms, export, tmp_path):
    model, out = lstms["dir"] / f"{export}.onnx", tmp_path / "s.qe"
    ref = lstms["ref"]

    def sqnr(got):
        return 10 * np.log10(np.sum(ref ** 2) / np.sum((got - ref) ** 2))
    # the default: the integer LSTM (16-bit activations), reported as quantized
    p = qe("quantize", model, "-o", out, "--mode", "static", "--calib", lstms["calib"],
           "--json", check_rc=0)
    r = json.loads(p.stdout)
    lstm_rows = [n for n in r["nodes"] if n["op"] == "LSTM"]
    assert len(lstm_rows) == 1 and lstm_rows[0]["quantized"]
    assert lstm_rows[0]["new_op"] == "StaticQuantLSTM"
    assert sqnr(qengine.load(out).run({"x": lstms["x"]})["y"]) > 30     # oracle: torch
    # --rnn float: it stays float and the summary says so, and what to use
    out = tmp_path / "f.qe"
    p = qe("quantize", model, "-o", out, "--mode", "static", "--calib", lstms["calib"],
           "--rnn", "float", "--json", check_rc=0)
    r = json.loads(p.stdout)
    notes = " ".join(r["notes"])
    assert "static quantization leaves LSTM" in notes and "--rnn" in notes
    assert not [n for n in r["nodes"] if n["op"] == "LSTM"][0]["quantized"]
    assert r["kept_float"] >= 1
    # the float LSTM is exact: the model's error is the int8 Gemm's alone
    assert sqnr(qengine.load(out).run({"x": lstms["x"]})["y"]) > 30
    # the advice works: quantizing the static result dynamically makes the LSTM int8
    hybrid = tmp_path / "h.qe"
    qe("quantize", out, "-o", hybrid, "--mode", "dynamic", check_rc=0)
    ops = [n.op_type for n in qengine.load_graph(hybrid).nodes]
    assert "DynamicQuantLSTM" in ops and "QGemm" in ops and "LSTM" not in ops
    # and so does --rnn dynamic, in one step
    out = tmp_path / "d.qe"
    qe("quantize", model, "-o", out, "--mode", "static", "--calib", lstms["calib"],
       "--rnn", "dynamic", check_rc=0)
    assert "DynamicQuantLSTM" in [n.op_type for n in qengine.load_graph(out).nodes]
    # the Python API warns with the same words
    with pytest.warns(qengine.QuantizationWarning, match="static quantization leaves LSTM"):
        qengine.quantize_static(model, {"x": lstms["x"]}, qengine.StaticQuantConfig(rnn="float"))
    with pytest.raises(qengine.ConfigError, match="rnn must be one of int16, int8, dynamic"):
        qengine.StaticQuantConfig(rnn="int4")


# ---- honest summaries: shared weights -------------------------------------------------------------
def test_shared_initializer_is_counted_once(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    w = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm1"),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "W"], ["y"], name="mm2")], "tied",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 16])],
        [numpy_helper.from_array(w, "W")])
    path = tmp_path / "tied.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    r = json.loads(qe("quantize", path, "-o", tmp_path / "q.qe", "--json", check_rc=0).stdout)
    assert r["weight_bytes_before"] == w.nbytes == r["initializer_bytes_before"]
    assert r["weight_bytes_after"] <= r["initializer_bytes_after"]
    text = qe("quantize", path, "-o", tmp_path / "q2.qe", check_rc=0).stdout
    assert "their weights 1.0 KiB" in text and "all initializers 1.0 KiB" in text


# ---- honest summaries: unreachable SQNR target --------------------------------------------------
def test_unreachable_sqnr_target_is_an_error_in_the_cli_and_a_warning_in_python(tmp_path):
    calib = tmp_path / "calib.npz"
    x = np.random.default_rng(0).random((64, 1, 8, 8), np.float32)
    np.savez(calib, image=x)
    out = tmp_path / "q.qe"
    line = one_line_error(qe("quantize", MODEL, "-o", out, "--mode", "static", "--calib", calib,
                             "--auto-keep-float", "--target-sqnr", "99"),
                          "SQNR target 99 dB", "every layer float", "choose a target")
    assert not out.exists()
    best = float(line.split("at most ")[1].split(" dB")[0])
    with pytest.warns(qengine.QuantizationWarning, match="every layer float"):
        q, kept, achieved = qengine.auto_keep_float(MODEL, {"image": x}, 99.0)
    # oracle for "at most": the best single int8 layer, measured by layer_sensitivity
    report = qengine.layer_sensitivity(MODEL, {"image": x})
    assert best == pytest.approx(max(r.sqnr_db for r in report), abs=0.01)
    # a reachable target still works
    qe("quantize", MODEL, "-o", out, "--mode", "static", "--calib", calib, "--auto-keep-float",
       "--target-sqnr", f"{best - 1:.2f}", check_rc=0)


# ---- errors that say what to do: the Python API -------------------------------------------------
def test_wrong_objects_get_errors_that_say_what_to_call(cnn, tmp_path):
    onnx = pytest.importorskip("onnx")
    graph = qengine.from_onnx(cnn["onnx"])
    sess = qengine.Session(graph)
    cases = [
        (lambda: qengine.Session(str(cnn["onnx"])), ["Session takes a qengine Graph", "str",
                                                      "qengine.from_onnx(path)",
                                                      "qengine.load(path)"]),
        (lambda: qengine.Session(onnx.load(cnn["onnx"])), ["ModelProto",
                                                            "qengine.from_onnx(model)"]),
        (lambda: qengine.save(sess, tmp_path / "s.qe"), ["save takes a qengine Graph",
                                                         "Session", "session.graph"]),
        (lambda: qengine.save(str(tmp_path / "s.qe"), graph), ["save(graph, path)"]),
    ]
    for call, fragments in cases:
        with pytest.raises(qengine.QEngineError) as e:
            call()
        assert isinstance(e.value, TypeError)
        for f in fragments:
            assert f in str(e.value), str(e.value)
    assert not (tmp_path / "s.qe").exists()


def test_load_names_the_kind_of_file_it_was_given(cnn, tmp_path):
    with pytest.raises(qengine.ModelError, match=r"is an ONNX model, not a qengine engine "
                                                 r"file.*qengine.from_onnx\(path\)"):
        qengine.load(cnn["onnx"])
    renamed = tmp_path / "model.bin"                   # detected by content, not by suffix
    renamed.write_bytes(Path(cnn["onnx"]).read_bytes())
    with pytest.raises(qengine.ModelError, match="is an ONNX model"):
        qengine.load(renamed)
    with pytest.raises(qengine.ModelError, match="is a NumPy .npz archive"):
        qengine.load(cnn["calib"])
    text = tmp_path / "notes.txt"
    text.write_text("hello world, this is not a model\n")
    with pytest.raises(qengine.ModelError, match="not a qengine engine file"):
        qengine.load(text)
    # the CLI reads a model by its content, whatever its name
    np.save(tmp_path / "x.npy", cnn["x"][:2])
    qe("run", renamed, "--input", f"image={tmp_path / 'x.npy'}", "-o", tmp_path / "o.npz",
       check_rc=0)
    want = qengine.Session(qengine.from_onnx(cnn["onnx"])).run({"image": cnn["x"][:2]})["p"]
    np.testing.assert_array_equal(np.load(tmp_path / "o.npz")["p"], want)
    one_line_error(qe("run", cnn["calib"], "--input", f"image={tmp_path / 'x.npy'}", "-o",
                      tmp_path / "o2.npz"), "is a NumPy .npz archive, not a model")


def test_quantize_functions_take_a_graph_an_onnx_path_or_an_engine_file(cnn, tmp_path):
    graph = qengine.from_onnx(cnn["onnx"])
    fp = tmp_path / "fp.qe"
    qengine.save(graph, fp)
    x = cnn["x"][:8]
    want = qengine.Session(qengine.quantize_dynamic(graph)).run({"image": x})["p"]
    for model in (fp, str(fp), cnn["onnx"]):
        got = qengine.Session(qengine.quantize_dynamic(model)).run({"image": x})["p"]
        np.testing.assert_array_equal(got, want)
    data = {"image": cnn["x"]}
    want = qengine.Session(qengine.quantize_static(graph, data)).run({"image": x})["p"]
    for model in (fp, cnn["onnx"]):
        got = qengine.Session(qengine.quantize_static(model, data)).run({"image": x})["p"]
        np.testing.assert_array_equal(got, want)
    with pytest.raises(qengine.QEngineError, match="session.graph"):
        qengine.quantize_dynamic(qengine.Session(graph))


# ---- errors that say what to do: the CLI -----------------------------------------------------------
def test_cli_prints_warnings_as_one_clean_line(tmp_path):
    g = qengine.load_graph(MODEL)
    fixed = g.copy()
    fixed.inputs = [qengine.ValueInfo("image", "float32", (4, 1, 8, 8))]
    fixed.outputs = [qengine.ValueInfo("logits", "float32", (4, 10))]
    model = tmp_path / "fixed4.qe"
    qengine.save(fixed, model)
    np.savez(tmp_path / "calib.npz", image=np.random.default_rng(0).random((30, 1, 8, 8)))
    p = qe("quantize", model, "-o", tmp_path / "q.qe", "--mode", "static", "--calib",
           tmp_path / "calib.npz", check_rc=0)
    lines = p.stderr.strip().splitlines()
    assert lines == ["qengine: warning: calibration: 30 samples do not fill batches of the "
                     "model's fixed batch size 4; the last 2 samples are skipped"], p.stderr
    assert ".py" not in p.stderr


def test_calibration_file_errors_name_the_problem(tmp_path):
    out = tmp_path / "q.qe"
    static = ["quantize", MODEL, "-o", out, "--mode", "static", "--calib"]
    text = tmp_path / "calib.txt"
    text.write_text("0.1 0.2 0.3\n")
    line = one_line_error(qe(*static, text), "calib.txt", "not an .npz archive",
                          "np.savez")
    assert "pickle" not in line
    np.savez(tmp_path / "nan.npz", image=np.full((8, 1, 8, 8), np.nan, np.float32))
    one_line_error(qe(*static, tmp_path / "nan.npz"), "'image'", "NaN", "calibration data")
    np.savez(tmp_path / "ok.npz", image=np.random.default_rng(0).random((8, 1, 8, 8)))
    line = one_line_error(qe("quantize", MODEL, "-o", out, "--calib", tmp_path / "ok.npz"),
                          "--calib", "--mode static", "default")
    assert not out.exists()


def test_input_file_that_is_text_says_so(tmp_path):
    text = tmp_path / "x.txt"
    text.write_text("1 2 3\n")
    line = one_line_error(qe("run", MODEL, "--input", f"image={text}", "-o",
                             tmp_path / "o.npz"), "x.txt", "not a .npy file", "np.save")
    assert "pickle" not in line


def test_analyze_labels_must_be_class_indices(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((32, 1, 8, 8), np.float32)
    np.savez(tmp_path / "calib.npz", image=x)
    logits = qengine.load(MODEL).run({"image": x})["logits"]
    classes = logits.argmax(1)
    soft = rng.random(32).astype(np.float32)
    np.save(tmp_path / "soft.npy", soft)
    np.save(tmp_path / "onehot.npy", np.eye(10, dtype=np.float32)[classes])
    np.save(tmp_path / "asfloat.npy", classes.astype(np.float32))
    args = ["analyze", MODEL, "--calib", tmp_path / "calib.npz", "--labels"]
    one_line_error(qe(*args, tmp_path / "soft.npy"), "--labels", "not integer class indices",
                   f"{soft[0]:.4g} at index 0")
    one_line_error(qe(*args, tmp_path / "onehot.npy"), "--labels", "one-hot", "[32, 10]",
                   "argmax(axis=1)")
    # float labels that are whole numbers are class indices: accuracy FP32 is 100% by
    # construction (labels = the float model's own predictions)
    r = json.loads(qe(*args, tmp_path / "asfloat.npy", "--json", check_rc=0).stdout)
    assert r["float_metric"] == 1.0
    with pytest.raises(qengine.ConfigError, match="one-hot"):
        qengine.layer_sensitivity(MODEL, {"image": x}, labels=np.eye(10)[classes])


def test_run_reports_nan_inputs_and_non_finite_outputs(tmp_path):
    x = np.random.default_rng(0).random((3, 1, 8, 8), np.float32)
    x[0, 0, 0, 0] = np.nan
    np.save(tmp_path / "x.npy", x)
    one_line_error(qe("run", MODEL, "--input", f"image={tmp_path / 'x.npy'}", "-o",
                      tmp_path / "o.npz"), "'image'", "1 NaN", "--nan allow")
    # MODEL is a float model: it propagates NaN to the outputs as ONNX Runtime does, and the
    # CLI says so instead of writing them silently
    p = qe("run", MODEL, "--input", f"image={tmp_path / 'x.npy'}", "-o", tmp_path / "o.npz",
           "--nan", "allow", check_rc=0)
    y = np.load(tmp_path / "o.npz")["logits"]
    assert np.isnan(y[0]).all() and np.isfinite(y[1:]).all()
    assert "note: output 'logits' holds 10 NaN and 0 Inf values (of 30)" in p.stdout
    x[0, 0, 0, 0] = np.inf
    x[1, 0, 0, 0] = np.nan
    np.save(tmp_path / "x2.npy", x)
    r = json.loads(qe("run", MODEL, "--input", f"image={tmp_path / 'x2.npy'}", "-o",
                      tmp_path / "o2.npz", "--nan", "allow", "--json", check_rc=0).stdout)
    y = np.load(tmp_path / "o2.npz")["logits"]
    assert r["outputs"]["logits"]["nan"] == int(np.isnan(y).sum())
    assert r["outputs"]["logits"]["inf"] == int(np.isinf(y).sum())
