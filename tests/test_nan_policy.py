"""The NaN policy (docs/numerics.md "NaN and Inf"): Session / qengine.load refuse float inputs
holding NaN unless nan="allow"; with it, an int8 graph reads NaN as 0.0 (the zero point) and a
float graph propagates it; ±Inf saturate either way. Calibration observers count the NaN they
drop and the driver, the static workflow and the sensitivity report say so, naming tensors."""
import warnings
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine.calibration import EntropyObserver, MinMaxObserver, collect_stats
from qengine.engine_file import load_graph, read_safetensors
from qengine.workflows.sensitivity import layer_sensitivity

from test_cli import assert_one_line_error, cli

DATA = Path(qengine.__file__).parent / "data"


@pytest.fixture(scope="module")
def digits():
    g = load_graph(DATA / "demo_cnn_digits.qe")
    xc = read_safetensors(DATA / "digits_calib.safetensors")[0]["calib.x_u8"][:, None]
    xc = xc.astype(np.float32) / 16
    return g, xc, qengine.quantize_static(g, {"image": xc})


def _with_nan(x, *where):
    x = x.copy()
    for w in where:
        x[w] = np.nan
    return x


def test_a_nan_input_is_refused_by_default_with_where_and_how_to_opt_out(digits):
    g, xc, q = digits
    x = _with_nan(xc[:4], (2, 0, 5, 1), (3, 0, 0, 7))
    for graph in (q, g):                              # the int8 and the float graph alike
        with pytest.raises(qengine.ShapeError) as e:
            qengine.Session(graph).run({"image": x})
        msg = str(e.value)
        for part in ("'image'", "2 NaN", "(2, 0, 5, 1)", "nan='allow'"):
            assert part in msg, msg
    with pytest.raises(qengine.ShapeError, match="1 NaN"):          # float64 is checked too
        qengine.Session(q).run({"image": _with_nan(xc[:1].astype(np.float64), (0, 0, 0, 0))})
    with pytest.raises(qengine.ShapeError, match="NaN"):
        qengine.Session(q).profile({"image": x})
    with pytest.raises(qengine.ConfigError, match="nan must be one of"):
        qengine.Session(q, nan="ignore")


def test_allow_reads_nan_as_zero_in_int8_and_propagates_it_in_float(digits):
    """The documented semantics: int8 quantization maps NaN to the zero point, i.e. the output
    equals that of the input with 0.0 in place of the NaN; the float graph gives NaN."""
    g, xc, q = digits
    x = _with_nan(xc[:4], (1, 0, 3, 3))
    got = qengine.Session(q, nan="allow").run({"image": x})["logits"]
    want = qengine.Session(q).run({"image": np.nan_to_num(x, nan=0.0)})["logits"]
    np.testing.assert_array_equal(got, want)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y = qengine.Session(g, nan="allow").run({"image": x})["logits"]
    assert np.isnan(y[1]).all() and np.isfinite(np.delete(y, 1, axis=0)).all()


def test_inf_is_accepted_and_saturates(digits):
    """±Inf pass the check and quantize like the ends of the calibrated input range."""
    g, xc, q = digits
    qu = next(n for n in q.nodes if n.op_type == "QuantizeU8")
    s, z = qu.attrs["scale"], qu.attrs["zero_point"]
    x = xc[:2].copy()
    x[0, 0, 1, 1], x[1, 0, 6, 2] = np.inf, -np.inf
    ends = x.copy()
    ends[0, 0, 1, 1], ends[1, 0, 6, 2] = s * (255 - z), s * (0 - z)
    sess = qengine.Session(q)
    np.testing.assert_array_equal(sess.run({"image": x})["logits"],
                                  sess.run({"image": ends})["logits"])


def test_load_passes_the_policy_on(digits, tmp_path):
    _, xc, q = digits
    qengine.save(q, tmp_path / "q.qe")
    x = _with_nan(xc[:2], (0, 0, 0, 0))
    with pytest.raises(qengine.ShapeError, match="NaN"):
        qengine.load(tmp_path / "q.qe").run({"image": x})
    lenient = qengine.load(tmp_path / "q.qe", nan="allow")
    assert lenient.nan == "allow"
    np.testing.assert_array_equal(lenient.run({"image": x})["logits"],
                                  qengine.Session(q, nan="allow").run({"image": x})["logits"])


def test_cli_run_refuses_nan_unless_told(digits, tmp_path, capsys):
    _, xc, q = digits
    qengine.save(q, tmp_path / "q.qe")
    np.save(tmp_path / "x.npy", _with_nan(xc[:2], (1, 0, 2, 2)))
    rc, _, err = cli(capsys, "run", tmp_path / "q.qe", "--input", f"image={tmp_path / 'x.npy'}",
                     "-o", tmp_path / "y.npz")
    assert_one_line_error(rc, err, "'image'", "1 NaN", "--nan allow")
    rc, out, _ = cli(capsys, "run", tmp_path / "q.qe", "--input",
                     f"image={tmp_path / 'x.npy'}", "-o", tmp_path / "y.npz", "--nan", "allow")
    assert rc == 0 and np.isfinite(np.load(tmp_path / "y.npz")["logits"]).all()


def test_observers_count_the_nan_they_drop():
    x = np.array([1.0, np.nan, -2.0, np.inf, np.nan], np.float32)
    for obs in (MinMaxObserver(), EntropyObserver()):
        obs.observe(x)
        obs.observe(x[:2])
        assert obs.nan == 3, type(obs).__name__
        assert obs.range() == (-2.0, 1.0)


def test_calibration_warns_naming_each_tensor_and_count(digits):
    g, xc, _ = digits
    data = _with_nan(xc[:64], (5, 0, 2, 2), (9, 0, 7, 7), (9, 0, 7, 6))
    with pytest.warns(qengine.NaNWarning) as rec:
        stats = collect_stats(g, {"image": data}, ["image"])
    assert stats["image"].nan == 3
    msg = str(rec[0].message)
    assert "'image' (3)" in msg and "1 tensor" in msg
    # through quantize_static: the input and every tensor the NaN reaches downstream are named,
    # the input first (graph order), and the graph still builds (ranges over finite values);
    # a conv's clamp output is observed, not its pre-activation (the int8 graph never has it)
    with pytest.warns(qengine.NaNWarning, match=r"'image' \(3\), '/features/features.2/Relu"):
        q = qengine.quantize_static(g, {"image": data})
    assert np.isfinite(qengine.Session(q).run({"image": xc[:8]})["logits"]).all()


def test_sensitivity_report_and_cli_summaries_say_it(digits, tmp_path, capsys):
    g, xc, _ = digits
    data = _with_nan(xc[:64], (5, 0, 2, 2))
    with pytest.warns(qengine.NaNWarning):
        report = layer_sensitivity(g, {"image": data})
    assert report.nan["image"] == 1 and len(report.nan) > 1
    assert all(r.nan == report.nan[r.output] for r in report)
    np.savez(tmp_path / "calib.npz", image=data)
    model = DATA / "demo_cnn_digits.qe"
    rc, out, err = cli(capsys, "quantize", model, "-o", tmp_path / "q.qe", "--mode", "static",
                       "--calib", tmp_path / "calib.npz")
    assert rc == 0 and "NaN values were left out of the ranges" in out and "'image' (1)" in out
    rc, out, err = cli(capsys, "analyze", model, "--calib", tmp_path / "calib.npz")
    assert rc == 0 and "NaN left out of the calibration ranges" in out and "image 1" in out
    assert "NaNWarning" not in err
