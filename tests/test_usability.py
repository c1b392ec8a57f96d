"""What a new user meets: a discoverable API (public names, short reprs) and a CLI that says what
it does (--version, defaults in -h, --json everywhere, quiet on a closed pipe). CLI cases run the
real `qengine` entry point in a subprocess, as a user's shell would."""
import json
import os
import pydoc
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine.engine_file import read_safetensors

DATA = Path(qengine.__file__).parent / "data"
MODEL = DATA / "demo_cnn_digits.qe"
ROOT = Path(__file__).resolve().parent.parent


def qe(*args, stdout=subprocess.PIPE, check_rc=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "qengine", *map(str, args)], stdout=stdout,
                       stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    if check_rc is not None:
        assert p.returncode == check_rc, p.stderr
    return p


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("usability")
    calib = read_safetensors(DATA / "digits_calib.safetensors")[0]["calib.x_u8"]
    x = calib[:, None].astype(np.float32) / 16
    np.savez(d / "calib.npz", image=x)
    np.save(d / "x.npy", x[:3])
    return d


# ---- the Python API ------------------------------------------------------------------------
def test_public_names_are_listed_and_documented():
    assert qengine.__all__, "qengine must declare its public API"
    for name in qengine.__all__:
        assert hasattr(qengine, name), name
    text = pydoc.plain(pydoc.render_doc(qengine))
    sections = {line.strip() for line in text.splitlines()}
    assert {"FUNCTIONS", "CLASSES"} <= sections
    for name in ("load", "quantize_static", "quantize_dynamic", "from_onnx", "load_graph",
                 "plot_sensitivity", "layer_sensitivity"):
        assert f"{name}(" in text, name


def test_reprs_are_summaries_not_weight_dumps():
    g = qengine.load_graph(MODEL)                     # load_graph is a top-level name
    r = repr(g)
    assert r.startswith("<Graph ") and "Conv×3" in r and "image: float32[batch, 1, 8, 8]" in r
    assert ".summary()" in r and "array(" not in r and len(r) < 400
    s = repr(qengine.Session(g))
    assert s.startswith("<Session ") and "logits: float32[batch, 10]" in s and len(s) < 300


def test_plot_sensitivity_reports_progress(data, tmp_path):
    pytest.importorskip("matplotlib")
    xc = np.load(data / "calib.npz")["image"][:64]
    report = qengine.layer_sensitivity(qengine.load_graph(MODEL), [{"image": xc}])
    calls = []
    paths = qengine.plot_sensitivity(report, tmp_path / "plots",
                                     progress=lambda done, total: calls.append((done, total)))
    assert len(paths) == len(calls) and calls[-1] == (len(paths), len(paths))
    assert all(p.stat().st_size > 1000 for p in paths)


# ---- the CLI ---------------------------------------------------------------------------------
def test_version():
    p = qe("--version", check_rc=0)
    assert p.stdout.strip() == f"qengine {qengine.__version__}"


def test_help_shows_defaults():
    out = qe("quantize", "-h", check_rc=0).stdout
    assert "(default: dynamic)" in " ".join(out.split())
    out = " ".join(qe("bench", "-h", check_rc=0).stdout.split())
    assert "(default: 100)" in out and "(default: 10)" in out
    assert "(default: None)" not in out and "(default: False)" not in out


def test_json_on_quantize_analyze_run(data, tmp_path):
    q = tmp_path / "q.qe"
    r = json.loads(qe("quantize", MODEL, "-o", q, "--mode", "static", "--calib",
                      data / "calib.npz", "--json", check_rc=0).stdout)
    assert r["mode"] == "static" and r["quantized"] == len(r["nodes"]) > 0
    assert r["file_bytes"] == q.stat().st_size and r["weight_bytes_after"] < r["weight_bytes_before"]
    a = json.loads(qe("analyze", MODEL, "--calib", data / "calib.npz", "--json",
                      check_rc=0).stdout)
    assert a["method"] == "minmax" and 0 < len(a["layers"]) <= r["quantized"]
    assert {"name", "sqnr_db", "scale", "zero_point", "rank"} <= set(a["layers"][0])
    o = tmp_path / "o.npz"
    j = json.loads(qe("run", q, "--input", f"image={data / 'x.npy'}", "-o", o, "--json",
                      check_rc=0).stdout)
    assert j["outputs"] == {"logits": {"dtype": "float32", "shape": [3, 10]}}
    assert np.load(o)["logits"].shape == (3, 10)


def test_closed_pipe_exits_quietly():
    # `qengine inspect m.qe | head -1`: the reader is gone before we write (a pipe whose read
    # end is closed makes the very first write fail, deterministically).
    r, w = os.pipe()
    os.close(r)
    try:
        p = qe("inspect", MODEL, stdout=w)
    finally:
        os.close(w)
    assert p.returncode == 0 and p.stderr == "", p.stderr


# ---- no lost files -----------------------------------------------------------------------------
def test_outputs_never_replace_inputs_or_existing_files(data, tmp_path):
    model = tmp_path / "m.qe"
    model.write_bytes(MODEL.read_bytes())
    before = model.read_bytes()
    p = qe("quantize", model, "-o", model, check_rc=2)                  # its own input
    assert "is also an input" in p.stderr and model.read_bytes() == before
    p = qe("quantize", model, "-o", model, "--force", check_rc=2)       # not even with --force
    assert "is also an input" in p.stderr and model.read_bytes() == before
    x = tmp_path / "x.npy"
    x.write_bytes((data / "x.npy").read_bytes())
    xb = x.read_bytes()
    p = qe("run", model, "--input", f"image={x}", "-o", x, "--force", check_rc=2)
    assert "is also an input" in p.stderr and x.read_bytes() == xb
    out = tmp_path / "o.npz"
    out.write_bytes(b"precious")
    p = qe("run", model, "--input", f"image={x}", "-o", out, check_rc=2)  # exists: needs --force
    assert "--force" in p.stderr and out.read_bytes() == b"precious"
    qe("run", model, "--input", f"image={x}", "-o", out, "--force", check_rc=0)
    assert np.load(out)["logits"].shape == (3, 10)


def test_run_writes_npy_for_npy(data, tmp_path):
    out = tmp_path / "logits.npy"
    qe("run", MODEL, "--input", f"image={data / 'x.npy'}", "-o", out, check_rc=0)
    want = qengine.load(MODEL).run({"image": np.load(data / "x.npy")})["logits"]
    np.testing.assert_array_equal(np.load(out, allow_pickle=False), want)   # a real .npy


def test_engine_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        qengine.save(qengine.load_graph(MODEL), tmp_path / "a.qe")
        os.umask(0o077)
        qengine.save(qengine.load_graph(MODEL), tmp_path / "b.qe")
    finally:
        os.umask(old)
    assert (tmp_path / "a.qe").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.qe").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.qe", "b.qe"]   # no temp left over


def test_bad_qengine_isa_is_one_line_and_help_still_works():
    env = dict(os.environ, PYTHONPATH=str(ROOT), QENGINE_ISA="foo")
    run = lambda *a: subprocess.run([sys.executable, "-m", "qengine", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    p = run("--help")
    assert p.returncode == 0 and "usage: qengine" in p.stdout and p.stderr == ""
    p = run("info")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        "qengine: error: QENGINE_ISA='foo' is not an ISA qengine knows; expected one of "
        "scalar, avx2, avx512vnni, neondot"]
    code = ("import qengine\n"
            "try:\n    qengine.load(%r)\nexcept qengine.ConfigError as e:\n    print('refused:', e)\n"
            % str(MODEL))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("refused: QENGINE_ISA='foo'"), p.stderr


def test_empty_model_file_says_it_is_empty(tmp_path):
    for name in ("m.onnx", "m.qe"):
        (tmp_path / name).write_bytes(b"")
        p = qe("inspect", tmp_path / name, check_rc=2)
        assert "is empty (0 bytes)" in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
        with pytest.raises(qengine.ModelError, match="empty"):
            qengine.load(tmp_path / name)
