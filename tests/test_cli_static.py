"""`qengine quantize --mode static`, `qengine analyze` and the CNN demo: the CLI's engine files
against the Python API on the same model and data, fixed-batch models (a .qe and a torch
export), plots, and bad arguments → one line, exit 2."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine.engine_file import load_graph, read_safetensors
from qengine.graph import ValueInfo
from qengine.workflows.sensitivity import auto_keep_float, layer_sensitivity

from test_cli import assert_one_line_error, cli

DATA = Path(qengine.__file__).parent / "data"
MODEL = DATA / "demo_cnn_digits.qe"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_static")
    calib = read_safetensors(DATA / "digits_calib.safetensors")[0]["calib.x_u8"]
    test = read_safetensors(DATA / "demo_lstm_digits.safetensors")[0]
    xc = calib[:, None].astype(np.float32) / 16
    x = test["test.x_u8"][:, None].astype(np.float32) / 16
    np.savez(d / "calib.npz", image=xc.astype(np.float64))     # float64: cast on load
    np.savez(d / "test.npz", image=x)
    np.save(d / "labels.npy", test["test.y"])
    np.savez(d / "wrong.npz", pixels=xc)
    np.save(d / "calib.npy", xc)
    g = load_graph(MODEL)
    fixed = g.copy()
    fixed.inputs = [ValueInfo("image", "float32", (1, 1, 8, 8))]
    fixed.outputs = [ValueInfo("logits", "float32", (1, 10))]
    qengine.save(fixed, d / "fixed1.qe")
    return {"dir": d, "g": g, "fixed": fixed, "xc": xc, "x": x, "y": test["test.y"]}


def _logits(graph_or_path, x, one_by_one=False):
    sess = qengine.load(graph_or_path) if isinstance(graph_or_path, Path) else \
        qengine.Session(graph_or_path)
    if one_by_one or sess.inputs[0].shape[0] == 1:        # fixed batch 1: one at a time
        return np.concatenate([sess.run({"image": x[i:i + 1]})["logits"] for i in range(len(x))])
    return sess.run({"image": x})["logits"]


@pytest.mark.parametrize("flags,cfg", [
    ([], qengine.StaticQuantConfig()),
    (["--method", "entropy", "--per-tensor", "--bias-correction"],
     qengine.StaticQuantConfig(method="entropy", per_channel=False, bias_correction=True)),
    (["--method", "percentile", "--symmetric-activations", "--keep-float", "/fc/Gemm"],
     qengine.StaticQuantConfig(method="percentile", symmetric_activations=True,
                               keep_float={"/fc/Gemm"})),
])
def test_static_quantize_matches_python_api(files, capsys, tmp_path, flags, cfg):
    out = tmp_path / "q.qe"
    rc, stdout, err = cli(capsys, "quantize", MODEL, "-o", out, "--mode", "static", "--calib",
                          files["dir"] / "calib.npz", *flags)
    assert rc == 0, err
    want = qengine.quantize_static(files["g"], {"image": files["xc"]}, cfg)
    np.testing.assert_array_equal(_logits(out, files["x"]), _logits(want, files["x"]))
    assert "QConv" in stdout and f"wrote {out}" in stdout
    n_float = 1 if cfg.keep_float else 0
    assert f"quantized {6 - n_float} of 6 quantizable nodes" in stdout
    assert f"{n_float} kept float" in stdout
    assert f"({out.stat().st_size} bytes" in stdout


def test_fixed_batch_engine_file_calibrates(files, capsys, tmp_path):
    out = tmp_path / "q.qe"
    rc, _, err = cli(capsys, "quantize", files["dir"] / "fixed1.qe", "-o", out, "--mode",
                     "static", "--calib", files["dir"] / "calib.npz")
    assert rc == 0, err
    x = files["x"][:50]
    api = qengine.quantize_static(files["fixed"], {"image": files["xc"]})
    np.testing.assert_array_equal(_logits(out, x), _logits(api, x))
    # batch 1 calibration sees the same values as batch 32 up to float rounding (the float
    # conv blocks differently per batch size), so min-max ranges agree to the last bits
    dyn = qengine.quantize_static(files["g"], {"image": files["xc"]})
    np.testing.assert_allclose(_logits(out, x), _logits(dyn, x, one_by_one=True), atol=1e-5)


def test_fixed_batch_onnx_export_calibrates(files, capsys, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU6(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(16, 10)).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
    path = tmp_path / "fixed.onnx"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False,
                          input_names=["image"], output_names=["logits"])   # batch fixed at 1
    g = qengine.from_onnx(path)
    assert g.inputs[0].shape == (1, 1, 8, 8)
    out = tmp_path / "q.qe"
    rc, stdout, err = cli(capsys, "quantize", path, "-o", out, "--mode", "static", "--calib",
                          files["dir"] / "calib.npz")
    assert rc == 0, err
    assert "0 kept float" in stdout
    x = files["x"][:40]
    want = qengine.quantize_static(path, {"image": files["xc"]})
    got = _logits(out, x)
    np.testing.assert_array_equal(got, _logits(want, x))
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    err = np.sum((got - ref) ** 2) / np.sum(ref ** 2)
    assert 10 * np.log10(1 / err) > 25


def test_auto_keep_float_cli_matches_api(files, capsys, tmp_path):
    out = tmp_path / "q.qe"
    rc, stdout, err = cli(capsys, "quantize", MODEL, "-o", out, "--mode", "static", "--calib",
                          files["dir"] / "calib.npz", "--auto-keep-float", "--target-sqnr", "45")
    assert rc == 0, err
    q, kept, achieved = auto_keep_float(files["g"], {"image": files["xc"]}, 45.0)
    assert achieved >= 45
    np.testing.assert_array_equal(_logits(out, files["x"]), _logits(q, files["x"]))
    assert f"output SQNR {achieved:.2f} dB" in stdout and "target 45 dB met" in stdout
    assert ", ".join(sorted(kept)) in stdout


def test_progress_bar_only_on_a_terminal(files, capsys, tmp_path, monkeypatch):
    argv = ["quantize", MODEL, "-o", tmp_path / "q.qe", "--mode", "static", "--calib",
            files["dir"] / "calib.npz"]
    rc, _, err = cli(capsys, *argv)
    assert rc == 0 and err == ""                        # a pipe or log gets no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    rc, _, err = cli(capsys, *argv, "--force")          # the first run wrote q.qe
    assert rc == 0
    assert err.startswith("\rcalibrating [") and err.endswith(" 8/8\n")   # 256 samples / 32


def test_dynamic_mode_on_cnn_quantizes_convs_per_call(files, capsys, tmp_path):
    out = tmp_path / "q.qe"
    rc, stdout, err = cli(capsys, "quantize", MODEL, "-o", out, "--mode", "dynamic")
    assert rc == 0, err
    ops = [n.op_type for n in load_graph(out).nodes]
    # every Conv and Gemm is int8 but those the keep-float rule names (int8 would be slower:
    # the 1-channel stem and the 10-class head of this 8×8 model), which the notes list
    from qengine.workflows.dynamic import slower_in_int8
    kept = dict(slower_in_int8(MODEL))
    kinds = [n.op_type for n in load_graph(MODEL).nodes if n.name in kept]
    assert ops.count("DynamicQuantConv") == 3 - kinds.count("Conv")
    assert ("DynamicQuantLinear" in ops) == ("Gemm" not in kinds)
    assert ops.count("Conv") == kinds.count("Conv")
    assert all(f"'{name}'" in stdout for name in kept)


def test_analyze_table_and_plots(files, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    d = files["dir"]
    rc, stdout, err = cli(capsys, "analyze", MODEL, "--calib", d / "calib.npz", "--eval",
                          d / "test.npz", "--labels", d / "labels.npy", "--plots",
                          tmp_path / "plots")
    assert rc == 0, err
    report = layer_sensitivity(files["g"], {"image": files["xc"]}, eval_data={"image": files["x"]},
                               labels=files["y"])
    lines = stdout.splitlines()
    for r in report:
        row = next(line for line in lines if f" {r.name} " in line)
        assert f"{r.sqnr_db:.2f}" in row and f"{r.layer_sqnr_db:.2f}" in row
        assert row.split()[0] == str(r.rank)
    assert f"accuracy FP32 {100 * report.float_metric:.2f}%" in stdout
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert len(pngs) == 1 + len(report)
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_analyze_plots_without_matplotlib(files, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)       # import matplotlib → ImportError
    rc, _, err = cli(capsys, "analyze", MODEL, "--calib", files["dir"] / "calib.npz", "--plots",
                     tmp_path / "plots")
    assert_one_line_error(rc, err, "matplotlib")
    assert not (tmp_path / "plots").exists()


def test_demo_cnn_part(capsys):
    rc, out, err = cli(capsys, "demo", "--only", "cnn", "--runs", 2, "--json")
    assert rc == 0, err
    c = json.loads(out)["cnn"]
    fp, q8, bc = c["fp32"], c["int8"], c["int8_bias_corrected"]
    assert c["test_samples"] == 540 and fp["accuracy"] > 0.95
    assert q8["accuracy"] >= fp["accuracy"] - 0.01 and bc["accuracy"] >= fp["accuracy"] - 0.01
    assert q8["weight_bytes"] * 3 < fp["weight_bytes"]
    assert bc["sqnr_db"] > q8["sqnr_db"] > 30
    rc, out, err = cli(capsys, "demo", "--runs", 2)
    assert rc == 0, err
    assert "INT8 (dynamic)" in out and "INT8 (static)" in out and "bias corr" in out


def test_bad_arguments_one_line(files, capsys, tmp_path):
    d, out = files["dir"], tmp_path / "q.qe"
    static = ["quantize", MODEL, "-o", out, "--mode", "static"]
    cases = [
        (static, ["--calib"]),
        (static + ["--calib", d / "missing.npz"], ["missing.npz"]),
        (static + ["--calib", d / "wrong.npz"], ["pixels", "image"]),
        (static + ["--calib", d / "calib.npy"], [".npz"]),
        (static + ["--calib", d / "calib.npz", "--method", "magic"], ["--method"]),
        (static + ["--calib", d / "calib.npz", "--target-sqnr", "40"], ["--auto-keep-float"]),
        (static + ["--calib", d / "calib.npz", "--auto-keep-float"], ["--target-sqnr"]),
        (static + ["--calib", d / "calib.npz", "--auto-keep-float", "--target-sqnr", "nan"],
         ["--target-sqnr"]),
        (static + ["--calib", d / "calib.npz", "--keep-float", "no_such_node"],
         ["no_such_node"]),
        (static + ["--calib", d / "calib.npz", "--per-row"], ["--per-row"]),
        (["quantize", MODEL, "-o", out, "--calib", d / "calib.npz"], ["--calib", "static"]),
        (["quantize", MODEL, "-o", out, "--bias-correction"], ["--bias-correction"]),
        (["analyze", MODEL], ["--calib"]),
        (["analyze", MODEL, "--calib", d / "calib.npz", "--labels", d / "labels.npy"],
         ["540 labels", "256"]),
        (["demo", "--only", "gru"], ["--only"]),
    ]
    for argv, fragments in cases:
        rc, _, err = cli(capsys, *argv)
        assert_one_line_error(rc, err, *fragments)
    assert not out.exists()


def test_auto_keep_float_cli_on_an_agreement_budget(files, capsys, tmp_path):
    out = tmp_path / "q.qe"
    rc, stdout, err = cli(capsys, "quantize", MODEL, "-o", out, "--mode", "static", "--calib",
                          files["dir"] / "calib.npz", "--auto-keep-float",
                          "--max-agreement-drop", "0", "--float-weights", "float16")
    assert rc == 0, err
    q, kept, achieved = auto_keep_float(
        files["g"], {"image": files["xc"]}, config=qengine.StaticQuantConfig(
            float_weights="float16"), max_metric_drop=0.0)
    np.testing.assert_array_equal(_logits(out, files["x"]), _logits(q, files["x"]))
    fp = _logits(files["g"], files["xc"])
    assert np.array_equal(_logits(out, files["xc"]).argmax(1), fp.argmax(1))
    assert "argmax agreement with FP32 100.00 %" in stdout and "FP32 -> all-int8" in stdout
    rc, _, err = cli(capsys, "quantize", MODEL, "-o", out, "--force", "--mode", "static",
                     "--calib", files["dir"] / "calib.npz", "--auto-keep-float",
                     "--max-agreement-drop", "0", "--target-sqnr", "40")
    assert rc == 2 and "one budget" in err
