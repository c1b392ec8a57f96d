"""The `qengine` command line: quantize → run → bench → inspect on models exported by torch,
checked against the Python API on the same model and against torch; the demo against the
accuracy PyTorch recorded at training and against torch itself; bad input → one line, exit 2."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine.cli import main
from qengine.engine_file import load_graph
from qengine.workflows.dynamic import slower_in_int8

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *argv):
    """Run the CLI in-process; returns (exit code, stdout, stderr). Parser errors exit via
    SystemExit, handler errors return 2: both are exit code 2 to a shell."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *fragments):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("qengine: error: ")
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(autouse=True)
def _restore_threads():
    n = qengine.get_num_threads()
    yield
    qengine.set_num_threads(n)


# ---- models exported from torch ---------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("cli_models")

    class LSTMHead(torch.nn.Module):
        """Takes and returns the LSTM state, so it can be streamed chunk by chunk."""
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(16, 48, batch_first=True)
            self.fc = torch.nn.Linear(48, 6)

        def forward(self, x, h0, c0):
            y, (h, c) = self.rnn(x, (h0, c0))
            return self.fc(y), h, c

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(20, 64)
            self.fc2 = torch.nn.Linear(64, 4)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))

    torch.manual_seed(0)
    lstm, mlp = LSTMHead().eval(), MLP().eval()
    g = torch.Generator().manual_seed(1)
    lstm_args = (torch.randn(2, 9, 16, generator=g), 0.3 * torch.randn(1, 2, 48, generator=g),
                 0.3 * torch.randn(1, 2, 48, generator=g))
    mlp_args = (torch.randn(3, 20, generator=g),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(lstm, lstm_args, str(d / "lstm.onnx"), dynamo=False,
                          input_names=["x", "h0", "c0"], output_names=["y", "h_n", "c_n"],
                          dynamic_axes={"x": {1: "time"}, "y": {1: "time"}})
        torch.onnx.export(mlp, mlp_args, str(d / "mlp.onnx"), dynamo=False,
                          input_names=["x"], output_names=["logits"])
    with torch.no_grad():
        lstm_out = [t.numpy() for t in lstm(*lstm_args)]
        mlp_out = [mlp(*mlp_args).numpy()]
    feeds = {}
    for name, args, inames in (("lstm", lstm_args, ["x", "h0", "c0"]), ("mlp", mlp_args, ["x"])):
        feeds[name] = {}
        for n, a in zip(inames, args):
            path = d / f"{name}_{n}.npy"
            np.save(path, a.numpy())
            feeds[name][n] = path
    return {"dir": d, "feeds": feeds,
            "torch": {"lstm": dict(zip(["y", "h_n", "c_n"], lstm_out)),
                      "mlp": {"logits": mlp_out[0]}}}


def _input_args(models, name):
    return [a for n, p in models["feeds"][name].items() for a in ("--input", f"{n}={p}")]


def _arrays(models, name):
    return {n: np.load(p) for n, p in models["feeds"][name].items()}


def _rel_err(got, want):
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.mark.parametrize("name", ["lstm", "mlp"])
@pytest.mark.parametrize("per_row", [False, True])
def test_quantize_run_matches_python_api_and_torch(models, name, per_row, tmp_path, capsys):
    src = models["dir"] / f"{name}.onnx"
    qe_path, out_path = tmp_path / "m.qe", tmp_path / "out.npz"
    rc, out, err = cli(capsys, "quantize", src, "-o", qe_path, "--mode", "dynamic",
                       *(["--per-row"] if per_row else []))
    assert rc == 0, err
    graph = qengine.from_onnx(src)
    quantizable = [n.name for n in graph.nodes if n.op_type in ("LSTM", "MatMul", "Gemm")]
    for node in quantizable:                      # the table lists every quantized node
        assert node in out
    # the keep-float rule's nodes (a thin linear head: int8 would be slower) are in the notes
    kept = [name for name, _ in slower_in_int8(graph)]
    assert f"quantized {len(quantizable) - len(kept)} of {len(quantizable)}" in out
    assert all(f"'{name}'" in out for name in kept) and ("in float because" in out) == bool(kept)
    assert f"({qe_path.stat().st_size} bytes" in out

    rc, out, err = cli(capsys, "run", qe_path, *_input_args(models, name), "-o", out_path)
    assert rc == 0, err
    with np.load(out_path, allow_pickle=False) as z:
        got = {k: z[k] for k in z.files}
    # the Python API on the same ONNX model, not going through the engine file
    want = qengine.Session(qengine.quantize_dynamic(
        src, qengine.DynamicQuantConfig(per_row=per_row))).run(_arrays(models, name))
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
        assert _rel_err(got[k], models["torch"][name][k]) < 0.03, k   # int8 vs float torch


def test_run_onnx_directly_is_fp32(models, tmp_path, capsys):
    out_path = tmp_path / "out.npz"
    rc, _, err = cli(capsys, "run", models["dir"] / "lstm.onnx", *_input_args(models, "lstm"),
                     "-o", out_path)
    assert rc == 0, err
    with np.load(out_path, allow_pickle=False) as z:
        for k, want in models["torch"]["lstm"].items():
            np.testing.assert_allclose(z[k], want, rtol=1e-4, atol=1e-5)


def test_keep_float_leaves_named_nodes_in_float(models, tmp_path, capsys):
    src = models["dir"] / "lstm.onnx"
    graph = qengine.from_onnx(src)
    lstm_node = next(n.name for n in graph.nodes if n.op_type == "LSTM")
    qe_path = tmp_path / "m.qe"
    rc, out, err = cli(capsys, "quantize", src, "-o", qe_path, "--keep-float", lstm_node)
    assert rc == 0, err
    kept = {name for name, _ in slower_in_int8(graph)}        # the keep-float rule's, if any
    assert f"quantized {1 - len(kept - {lstm_node})} of 2" in out
    ops = {n.name: n.op_type for n in load_graph(qe_path).nodes}
    assert ops[lstm_node] == "LSTM"
    assert ("DynamicQuantLinear" in ops.values()) == (not kept - {lstm_node})


def test_bench_json(models, tmp_path, capsys):
    rc, out, err = cli(capsys, "bench", models["dir"] / "lstm.onnx", *_input_args(models, "lstm"),
                       "--threads", 1, "--runs", 7, "--warmup", 1, "--json")
    assert rc == 0, err
    r = json.loads(out)                       # exactly one JSON document on stdout
    assert r["runs"] == 7 and r["threads"] == 1 and r["isa"] == qengine.active_isa()
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["p99_ms"]
    assert r["inputs"]["x"]["shape"] == [2, 9, 16]
    assert r["generated_inputs"] is False


def test_bench_profile_and_generated_inputs(models, tmp_path, capsys):
    qe_path = tmp_path / "mlp.qe"
    assert cli(capsys, "quantize", models["dir"] / "mlp.onnx", "-o", qe_path)[0] == 0
    rc, out, err = cli(capsys, "bench", qe_path, "--runs", 3, "--profile", "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["generated_inputs"] is True and r["inputs"]["x"]["shape"] == [3, 20]
    nodes = load_graph(qe_path).nodes
    assert [n["node"] for n in r["profile"]["nodes"]] == [n.name for n in nodes]
    assert {o["op"] for o in r["profile"]["op_types"]} == {n.op_type for n in nodes}
    rc, out, err = cli(capsys, "bench", qe_path, "--runs", 3, "--profile")
    assert rc == 0, err
    assert "median" in out and "time per op type" in out
    assert all(n.op_type in out for n in nodes)


def test_bench_needs_a_file_for_dynamic_dims(models, capsys):
    rc, _, err = cli(capsys, "bench", models["dir"] / "lstm.onnx", "--runs", 1)
    assert_one_line_error(rc, err, "'x'", "--input x=FILE.npy")


def test_inspect(models, tmp_path, capsys):
    qe_path = tmp_path / "m.qe"
    assert cli(capsys, "quantize", models["dir"] / "lstm.onnx", "-o", qe_path)[0] == 0
    graph = load_graph(qe_path)
    rc, out, err = cli(capsys, "inspect", qe_path, "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert [n["name"] for n in d["nodes"]] == [n.name for n in graph.nodes]
    assert d["total_bytes"] == sum(a.nbytes for a in graph.initializers.values())
    q = {(r["node"], r["weight"]): r for r in d["qparams"]}
    for node in graph.nodes:
        if node.op_type.startswith("DynamicQuant"):
            w, s = node.inputs[1], graph.initializers[node.inputs[2]]
            r = q[(node.name, w)]
            assert r["dtype"] == "int8" and r["shape"] == list(graph.initializers[w].shape)
            assert r["scale_min"] == pytest.approx(float(s.min()))
            assert r["scale_max"] == pytest.approx(float(s.max()))
    # LSTM W and R, and the linear's W unless the keep-float rule keeps that thin head float
    assert len(q) == 3 - len(slower_in_int8(models["dir"] / "lstm.onnx"))
    rc, out, err = cli(capsys, "inspect", qe_path)
    assert rc == 0, err
    for node in graph.nodes:
        assert node.name in out
    assert f"total initializer size {d['total_bytes']} bytes" in out


# ---- errors: one line, exit code 2 ------------------------------------------------------------
def test_bad_arguments_and_files(models, tmp_path, capsys):
    lstm = models["dir"] / "lstm.onnx"
    qe_path = tmp_path / "m.qe"
    assert cli(capsys, "quantize", lstm, "-o", qe_path)[0] == 0
    corrupt = tmp_path / "corrupt.qe"
    corrupt.write_bytes(qe_path.read_bytes()[:200])
    flipped = tmp_path / "flipped.qe"
    raw = bytearray(qe_path.read_bytes())
    raw[8:20] = b"\xff" * 12                                   # break the JSON header
    flipped.write_bytes(bytes(raw))
    garbage_onnx = tmp_path / "garbage.onnx"
    garbage_onnx.write_bytes(b"\x00\x01 not a protobuf")
    x_wrong = tmp_path / "x_wrong.npy"
    np.save(x_wrong, np.zeros((2, 9, 15), np.float32))
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    feeds = models["feeds"]["lstm"]
    h0c0 = ["--input", f"h0={feeds['h0']}", "--input", f"c0={feeds['c0']}"]
    out = tmp_path / "o.npz"
    cases = [
        (["run", tmp_path / "missing.qe", "-o", out], ["missing.qe"]),
        (["run", corrupt, *_input_args(models, "lstm"), "-o", out], ["corrupt.qe"]),
        (["inspect", flipped], ["flipped.qe"]),
        (["inspect", garbage_onnx], ["garbage.onnx"]),
        (["run", qe_path, "--input", f"z={feeds['x']}", *h0c0, "-o", out], ["unexpected ['z']"]),
        (["run", qe_path, *h0c0, "-o", out], ["missing ['x']"]),
        (["run", qe_path, "--input", f"x={x_wrong}", *h0c0, "-o", out], ["'x'", "dim 2 must be 16"]),
        (["run", qe_path, "--input", f"x={pickled}", *h0c0, "-o", out], ["obj.npy"]),
        (["run", qe_path, "--input", f"x={tmp_path / 'nope.npy'}", *h0c0, "-o", out], ["nope.npy"]),
        (["run", qe_path, "--input", "x", "-o", out], ["NAME=FILE"]),
        (["run", qe_path, *_input_args(models, "lstm"), "-o", tmp_path / "no" / "o.npz"],
         ["does not exist"]),
        (["bench", qe_path, "--threads", "0"], ["--threads"]),
        (["bench", qe_path, "--threads", "two"], ["--threads"]),
        (["bench", qe_path, "--runs", "-3"], ["--runs"]),
        (["quantize", lstm, "-o", tmp_path / "q.qe", "--mode", "fancy"], ["--mode"]),
        (["quantize", lstm, "-o", tmp_path / "q.qe", "--mode", "static"], ["--calib"]),
        (["quantize", lstm, "-o", tmp_path / "q.qe", "--mode", "static", "--calib", "c.npz"],
         ["c.npz"]),
        (["quantize", lstm, "-o", tmp_path / "q.qe", "--keep-float", "no_such_node"],
         ["no_such_node"]),
        (["quantize", lstm], ["-o"]),
        (["frobnicate"], ["frobnicate"]),
        ([], ["COMMAND"]),
    ]
    for argv, fragments in cases:
        rc, _, err = cli(capsys, *argv)
        assert_one_line_error(rc, err, *fragments)
    assert not (tmp_path / "q.qe").exists() and not out.exists()


def _subprocess(*argv):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-m", "qengine", *map(str, argv)], env=env,
                          capture_output=True, text=True, timeout=120)


def test_subprocess_exit_codes(models, tmp_path):
    r = _subprocess("run", tmp_path / "missing.qe", "--input", "x=x.npy", "-o", tmp_path / "o")
    assert_one_line_error(r.returncode, r.stderr, "missing.qe")
    assert r.stdout == ""
    r = _subprocess("bench", models["dir"] / "lstm.onnx", "--threads", "0")
    assert_one_line_error(r.returncode, r.stderr, "--threads")
    r = _subprocess("bench", models["dir"] / "mlp.onnx", "--runs", "3", "--warmup", "0",
                    "--threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["threads"] == 1
    r = _subprocess("info")
    assert r.returncode == 0 and f"active ISA" in r.stdout and qengine.active_isa() in r.stdout


# ---- demo -------------------------------------------------------------------------------------
def test_demo_numbers(tmp_path):
    from qengine.tools.demo import run_demo
    r = run_demo(tmp_path, runs=2)
    assert r["test_samples"] == 540
    # the FP32 graph qengine builds from the state_dict reproduces torch's recorded accuracy
    # (recorded to 4 decimals; one sample is 1/540 = 0.0019)
    assert abs(r["fp32"]["accuracy"] - r["torch_fp32_accuracy"]) < 1e-4
    assert abs(r["int8"]["accuracy"] - r["fp32"]["accuracy"]) <= 0.01
    assert r["int8"]["weight_bytes"] * 3 < r["fp32"]["weight_bytes"]
    assert r["int8"]["file_bytes"] * 3 < r["fp32"]["file_bytes"]
    assert {p.name for p in tmp_path.iterdir()} == {"demo_fp32.qe", "demo_int8.qe"}


def test_demo_graph_matches_torch():
    torch = pytest.importorskip("torch")
    from qengine.engine_file import read_safetensors
    from qengine.tools.demo import build_demo_graph, demo_path
    tensors, _ = read_safetensors(demo_path())
    rnn = torch.nn.LSTM(8, 128, num_layers=2, batch_first=True)
    fc = torch.nn.Linear(128, 10)
    for mod, prefix in ((rnn, "rnn."), (fc, "fc.")):
        mod.load_state_dict({k[len(prefix):]: torch.from_numpy(np.array(v))
                             for k, v in tensors.items() if k.startswith(prefix)})
    x = np.asarray(tensors["test.x_u8"][:64], np.float32) / 16
    with torch.no_grad():
        want = fc(rnn(torch.from_numpy(x))[0][:, -1]).numpy()
    got = qengine.Session(build_demo_graph(tensors)).run({"x": x})["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_demo_cli(capsys):
    rc, out, err = cli(capsys, "demo", "--runs", 2, "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["runs"] == 2 and r["isa"] == qengine.active_isa()
    assert set(r) == {"runs", "threads", "isa", "lstm", "cnn"}   # both parts nest alike
    lstm = r["lstm"]
    assert abs(lstm["int8"]["accuracy"] - lstm["fp32"]["accuracy"]) <= 0.01
    rc, out, err = cli(capsys, "demo", "--runs", 2)
    assert rc == 0, err
    assert "accuracy" in out and "engine file" in out and "INT8" in out
