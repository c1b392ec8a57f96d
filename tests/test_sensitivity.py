"""Mixed precision (workflows/sensitivity.py) on the shipped digits CNN: sensitivity ranks against
a layer made deliberately hard to quantize, statistics against values tapped from the float
model, single-layer SQNR against quantize_static with a hand-written keep_float set, and
auto_keep_float against quantize_static with the names it returns."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine.calibration.tap import TapSession
from qengine.engine_file import load_graph, read_safetensors
from qengine.workflows.sensitivity import auto_keep_float, layer_sensitivity
from qengine.workflows.ptq import prepare_float_graph

DATA = Path(qengine.__file__).parent / "data"
CONV1, CONV2, CONV3 = ("/features/features.0/Conv", "/features/features.3/Conv",
                       "/features/features.7/Conv")
GAP, FC = "/features/features.9/GlobalAveragePool", "/fc/Gemm"
PER_TENSOR = qengine.StaticQuantConfig(per_channel=False)


@pytest.fixture(scope="module")
def digits():
    g = load_graph(DATA / "demo_cnn_digits.qe")
    calib = read_safetensors(DATA / "digits_calib.safetensors")[0]["calib.x_u8"]
    test = read_safetensors(DATA / "demo_lstm_digits.safetensors")[0]
    x = test["test.x_u8"][:, None].astype(np.float32) / 16
    return g, {"image": calib[:, None].astype(np.float32) / 16}, x, test["test.y"]


def _outlier_model(g):
    """conv1's output channel 0 made dead (zero weights, negative bias: ReLU gives 0), and one
    conv2 weight reading that channel made 100x the largest weight. The float model ignores
    the outlier (it multiplies zeros), but one scale per tensor for conv2's weights now rounds
    all its other weights to 0: conv2 becomes by far the hardest layer to quantize."""
    g = g.copy()
    g.initializers = dict(g.initializers)
    c1 = next(n for n in g.nodes if n.name == CONV1)
    c2 = next(n for n in g.nodes if n.name == CONV2)
    w1, b1 = g.initializers[c1.inputs[1]].copy(), g.initializers[c1.inputs[2]].copy()
    w1[0], b1[0] = 0.0, -1.0
    w2 = g.initializers[c2.inputs[1]].copy()
    w2[5, 0, 1, 1] = 100 * np.abs(w2).max()
    g.initializers.update({c1.inputs[1]: w1, c1.inputs[2]: b1, c2.inputs[1]: w2})
    return g


def _sqnr(y, ref):
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((np.asarray(y, np.float64) - ref) ** 2))


def test_outlier_layer_is_most_sensitive(digits):
    g, calib, _, _ = digits
    plain = {r.name: r for r in layer_sensitivity(g, calib, PER_TENSOR)}
    assert plain[CONV2].sqnr_db > 25 and plain[CONV2].rank != 1     # the test can fail
    report = layer_sensitivity(_outlier_model(g), calib, PER_TENSOR)
    assert [r.name for r in report] == [CONV1, CONV2, CONV3, GAP, FC]   # graph order
    assert sorted(r.rank for r in report) == [1, 2, 3, 4, 5]
    by = {r.name: r for r in report}
    assert by[CONV2].rank == 1
    assert by[CONV2].sqnr_db < 10
    assert min(r.sqnr_db for r in report if r.name != CONV2) > 25
    # per channel only the outlier's own output channel suffers
    pc = {r.name: r for r in layer_sensitivity(_outlier_model(g), calib)}
    assert pc[CONV2].sqnr_db > by[CONV2].sqnr_db + 10


def test_statistics_match_tapped_float_values(digits):
    g, calib, _, _ = digits
    cfg = qengine.StaticQuantConfig(method="percentile",
                                    observer_options={"percentile": 99.9})
    report = layer_sensitivity(g, calib, cfg)
    f = prepare_float_graph(g)
    seen = {}
    tap = TapSession(f, [r.output for r in report])
    tap.run_tapped(calib, lambda name, v: seen.setdefault(name, []).append(v.ravel()))
    for r in report:
        v = np.concatenate(seen[r.output]).astype(np.float64)
        assert (r.observed_min, r.observed_max) == (v.min(), v.max())
        assert r.range_min == pytest.approx(r.scale * (0 - r.zero_point))
        assert r.range_max == pytest.approx(r.scale * (255 - r.zero_point))
        clipped = np.mean((v < r.range_min - r.scale / 2) | (v > r.range_max + r.scale / 2))
        # the report counts from a 2048-bin histogram: exact up to one bin at each bound
        assert abs(r.saturation - clipped) < 2e-3, (r.name, r.saturation, clipped)
    # a 99.9th-percentile range clips conv2's long ReLU tail; the ReLU6 output is bounded
    by = {r.name: r for r in report}
    assert by[CONV2].saturation > 0 and by[CONV2].range_max < by[CONV2].observed_max
    assert by[CONV3].observed_max == 6.0


def test_single_layer_sqnr_and_layer_sqnr_against_quantize_static(digits):
    g, calib, x, y = digits
    ev = {"image": x}
    report = layer_sensitivity(g, calib, eval_data=ev, labels=y)
    by = {r.name: r for r in report}
    fp = qengine.Session(g).run(ev)["logits"]
    # conv1 (+ its ReLU) alone in int8: everything after it listed by hand
    others = {CONV2, "/features/features.5/Relu", "/features/features.6/MaxPool", CONV3,
              "/features/features.8/Clip", GAP, "/features/features.10/Flatten", FC}
    q = qengine.quantize_static(g, calib, qengine.StaticQuantConfig(keep_float=others))
    assert {n.op_type for n in q.nodes} >= {"QConv", "Conv", "Gemm"}
    got = qengine.Session(q).run(ev)["logits"]
    assert by[CONV1].sqnr_db == pytest.approx(_sqnr(got, fp), abs=1e-6)
    assert by[CONV1].metric == pytest.approx(np.mean(got.argmax(1) == y))
    # the whole model, and the last layer's output inside it (it is the model output)
    q = qengine.quantize_static(g, calib)
    full = qengine.Session(q).run(ev)["logits"]
    assert report.int8_sqnr_db == pytest.approx(_sqnr(full, fp), abs=1e-6)
    assert report.int8_metric == pytest.approx(np.mean(full.argmax(1) == y))
    assert report.float_metric == pytest.approx(np.mean(fp.argmax(1) == y))
    assert by[FC].layer_sqnr_db == pytest.approx(report.int8_sqnr_db, abs=1e-3)
    # NHWC uint8 compared in NCHW: a layout mix-up would give ~0 dB, not this
    assert all(r.layer_sqnr_db > 25 for r in report), [r.layer_sqnr_db for r in report]


def test_auto_keep_float_reaches_target_full_int8_misses(digits):
    g, calib, _, _ = digits
    g = _outlier_model(g)
    fp = qengine.Session(g).run(calib)["logits"]
    full = qengine.Session(qengine.quantize_static(g, calib, PER_TENSOR)).run(calib)["logits"]
    target = 30.0
    assert _sqnr(full, fp) < target                  # full int8 misses the target
    q, kept, achieved = auto_keep_float(g, calib, target, PER_TENSOR)
    assert achieved >= target
    assert CONV2 in kept
    assert not {CONV1, CONV3, FC} <= kept            # not everything: the fewest layers
    assert "QConv" in {n.op_type for n in q.nodes}
    got = qengine.Session(q).run(calib)["logits"]
    assert achieved == pytest.approx(_sqnr(got, fp), abs=1e-6)
    # the names returned rebuild the same graph with quantize_static
    again = qengine.quantize_static(g, calib, replace(PER_TENSOR, keep_float=kept))
    np.testing.assert_array_equal(qengine.Session(again).run(calib)["logits"], got)


def test_auto_keep_float_unreachable_target_ends_all_float(digits):
    g, calib, _, _ = digits
    with pytest.warns(qengine.QuantizationWarning, match="only met with every layer float"):
        q, kept, achieved = auto_keep_float(g, calib, 500.0)
    assert {CONV1, CONV2, CONV3, GAP, FC} <= kept
    assert not [n.op_type for n in q.nodes if n.op_type.startswith(("Q", "Dequantize"))]
    assert achieved == np.inf          # every layer float: the float model itself


def test_errors(digits):
    g, calib, _, y = digits
    with pytest.raises(qengine.ConfigError, match="target_sqnr_db"):
        auto_keep_float(g, calib, float("nan"))
    with pytest.raises(qengine.ConfigError, match="not in the graph"):
        layer_sensitivity(g, calib, qengine.StaticQuantConfig(keep_float={"nope"}))
    with pytest.raises(qengine.ConfigError, match="labels"):
        layer_sensitivity(g, calib, labels=y)          # 540 labels, 256 calibration samples


def test_one_shot_generators_give_the_same_report_as_lists(digits):
    """layer_sensitivity and auto_keep_float run the data many times: one-shot generators (of
    calibration and of evaluation batches) are materialized once and give the same results."""
    g, calib, _, _ = digits
    batches = [{"image": calib["image"][i:i + 64]} for i in range(0, 192, 64)]
    ev = [{"image": calib["image"][i:i + 32]} for i in range(192, 256, 32)]
    want = layer_sensitivity(g, batches, eval_data=ev)
    got = layer_sensitivity(g, iter(batches), eval_data=(b for b in ev))
    assert list(got) == list(want)
    assert got.int8_sqnr_db == want.int8_sqnr_db
    with pytest.warns(qengine.QuantizationWarning, match="only met with every layer float"):
        q1, kept1, s1 = auto_keep_float(g, batches, 60.0)       # walks the whole search
    with pytest.warns(qengine.QuantizationWarning, match="only met with every layer float"):
        q2, kept2, s2 = auto_keep_float(g, (b for b in batches), 60.0)
    assert (kept2, s2) == (kept1, s1)


def _agreement(y, ref):
    return float(np.mean(np.argmax(y, 1) == np.argmax(ref, 1)))


def test_auto_keep_float_on_a_task_metric_budget(digits):
    """max_metric_drop: by default the share of argmaxes equal to FP32's; with labels, the
    accuracy. Both checked against the graphs run here."""
    g, calib, x, y = digits
    g = _outlier_model(g)
    fp = qengine.Session(g).run(calib)["logits"]
    full = qengine.Session(qengine.quantize_static(g, calib, PER_TENSOR)).run(calib)["logits"]
    assert _agreement(full, fp) < 0.9                 # all-int8 misses the budget
    q, kept, achieved, rep = auto_keep_float(g, calib, config=PER_TENSOR, max_metric_drop=0.01,
                                             return_report=True)
    got = qengine.Session(q).run(calib)["logits"]
    assert _agreement(got, fp) >= 0.99
    assert rep.metric == pytest.approx(_agreement(got, fp))
    assert rep.int8_metric == pytest.approx(_agreement(full, fp))
    assert rep.float_metric == 1.0 and achieved == pytest.approx(_sqnr(got, fp), abs=1e-6)
    assert CONV2 in kept and not {CONV1, CONV2, CONV3, FC} <= kept
    # minimal: giving any one kept layer back to int8 breaks the budget
    for name in kept & {CONV1, CONV2, CONV3, GAP, FC}:
        q1 = qengine.quantize_static(g, calib, replace(PER_TENSOR, keep_float=kept - {name}))
        assert _agreement(qengine.Session(q1).run(calib)["logits"], fp) < 0.99, name
    # real labels on held-out data: at most half a point below FP32's accuracy
    acc_fp = np.mean(qengine.Session(g).run({"image": x})["logits"].argmax(1) == y)
    q, kept, _ = auto_keep_float(g, calib, config=PER_TENSOR, eval_data={"image": x},
                                 labels=y, max_metric_drop=0.005)
    acc = np.mean(qengine.Session(q).run({"image": x})["logits"].argmax(1) == y)
    assert acc >= acc_fp - 0.005 and CONV2 in kept


def test_auto_keep_float_chooses_float16_or_float32_per_layer(digits, tmp_path):
    """With float16 allowed, layers leaving int8 store float16 weights, except conv2 whose
    weights are made tiny (1e-6 times, compensated in conv3: the float function is unchanged),
    where float16 would lose them; a near-lossless target moves layers to float32."""
    g, calib, _, _ = digits
    g = _outlier_model(g)
    g.initializers = dict(g.initializers)
    c2, c3 = (next(n for n in g.nodes if n.name == k) for k in (CONV2, CONV3))
    for v in c2.inputs[1:]:
        g.initializers[v] = g.initializers[v] * np.float32(1e-6)
    g.initializers[c3.inputs[1]] = g.initializers[c3.inputs[1]] * np.float32(1e6)
    cfg = replace(PER_TENSOR, float_weights="float16")
    fp = qengine.Session(g).run(calib)["logits"]
    q, kept, achieved, rep = auto_keep_float(g, calib, 30.0, cfg, return_report=True)
    assert achieved >= 30.0 and achieved == pytest.approx(
        _sqnr(qengine.Session(q).run(calib)["logits"], fp), abs=1e-6)
    by = {c.name: c for c in rep.layers}
    assert CONV2 in kept and by[CONV2].precision == "float32"
    assert q.initializers[c2.inputs[1]].dtype == np.float32
    for c in rep.layers:
        node = next(n for n in q.nodes if n.name == c.name)
        if c.precision == "int8":
            assert node.op_type.startswith("Q")
        elif c.op_type in ("Conv", "Gemm"):
            assert q.initializers[node.inputs[1]].dtype.name == c.precision
    qengine.save(q, tmp_path / "q.qe")
    assert rep.engine_bytes["chosen"] == (tmp_path / "q.qe").stat().st_size
    assert rep.engine_bytes["int8"] < rep.engine_bytes["chosen"] < rep.engine_bytes["float32"]
    assert all(v > 0 for v in rep.latency_ms.values())
    again = qengine.quantize_static(g, calib, replace(cfg, keep_float=kept))
    np.testing.assert_array_equal(qengine.Session(again).run(calib)["logits"],
                                  qengine.Session(q).run(calib)["logits"])
    # 65 dB: float16 everywhere is not enough (its rounding alone costs more): float32 where needed
    g0 = digits[0]
    fp0 = qengine.Session(g0).run(calib)["logits"]
    with pytest.warns(qengine.QuantizationWarning, match="every layer float"):
        q, kept, achieved, rep = auto_keep_float(g0, calib, 65.0, qengine.StaticQuantConfig(
            float_weights="float16"), return_report=True)
    assert achieved >= 65.0 and achieved == pytest.approx(
        _sqnr(qengine.Session(q).run(calib)["logits"], fp0), abs=1e-6)
    weighted = [c.precision for c in rep.layers if c.op_type in ("Conv", "Gemm")]
    assert "float32" in weighted and "float16" in weighted
    assert "float16" in str(rep) and "MB" in str(rep)


def test_auto_keep_float_budget_errors(digits):
    g, calib, _, y = digits
    with pytest.raises(qengine.ConfigError, match="one budget"):
        auto_keep_float(g, calib)
    with pytest.raises(qengine.ConfigError, match="one budget"):
        auto_keep_float(g, calib, 30.0, max_metric_drop=0.01)
    with pytest.raises(qengine.ConfigError, match="max_metric_drop must be a finite"):
        auto_keep_float(g, calib, max_metric_drop=float("inf"))
    with pytest.raises(qengine.ConfigError, match="metric and labels"):
        auto_keep_float(g, calib, 30.0, metric=_agreement)
    with pytest.raises(qengine.ConfigError, match="precisions"):
        auto_keep_float(g, calib, 30.0, precisions=("float16",))


def test_multiply_adds_that_order_the_give_back(digits):
    """auto_keep_float gives the heaviest float layers back to int8 first: their
    multiply-adds per sample against the shapes a float run produces."""
    from qengine.workflows.ptq import observe_shapes
    from qengine.workflows.sensitivity import _macs
    g, calib, _, _ = digits
    g = prepare_float_graph(g)
    observe_shapes(g, calib)
    seen = {}
    TapSession(g, None).run_tapped({"image": calib["image"][:2]},
                                   lambda v, a: seen.__setitem__(v, a.shape))
    for n in g.nodes:
        w = g.initializers.get(n.inputs[1]) if len(n.inputs) > 1 else None
        if n.op_type == "Conv":
            assert _macs(g, n) == np.prod(seen[n.outputs[0]][1:]) * np.prod(w.shape[1:])
        elif n.op_type == "Gemm":
            k = w.shape[1] if n.attrs.get("transB", 0) else w.shape[0]
            assert _macs(g, n) == seen[n.outputs[0]][1] * k
        else:
            assert _macs(g, n) == 0
