"""Entropy's MSE floor and method="auto" (issue 14, items 1 and 2): against NumPy float64
errors computed directly on the data, and against every single method on the same model."""
import numpy as np
import pytest

import qengine
from qengine.calibration import make_observer, observer_from_dict
from qengine.calibration.auto import CANDIDATES, format_report
from qengine.errors import ConfigError

# `digits` (the demo CNN and its data) is tests/conftest.py's fixture


def _sqerr(x, lo, hi):
    """float64 squared error of x on the uint8 grid choose_qparams makes of [lo, hi]."""
    qp = qengine.choose_qparams(lo, hi, bits=8, symmetric=False)
    s, z = np.float64(qp.scale), int(qp.zero_point)
    q = np.clip(np.rint(x / s) + z, 0, 255)
    return float(np.sum(((q - z) * s - x) ** 2))


def _relu_tail(n=200_000, seed=0):
    """ReLU of a Gaussian with a sparse heavy tail: the case where KL clips far too hard."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal(n), 0.0)
    x[rng.choice(n, n // 500, replace=False)] *= 4.0
    return x.astype(np.float32)


def test_entropy_floor_never_clips_more_than_mse_and_lowers_the_error():
    x = _relu_tail()
    kl, floor, mse = (make_observer(m, **o) for m, o in (("entropy", {"mse_floor": False}),
                                                        ("entropy", {}), ("mse", {})))
    for o in (kl, floor, mse):
        o.observe(x)
    (_, t_kl), (_, t_floor), (_, t_mse) = (o.range() for o in (kl, floor, mse))
    assert t_kl < t_mse, "the constructed case must make KL clip harder than MSE"
    assert t_floor == max(t_kl, t_mse)
    x64 = x.astype(np.float64)
    assert _sqerr(x64, 0.0, t_floor) < 0.5 * _sqerr(x64, 0.0, t_kl)


def test_entropy_floor_is_part_of_the_saved_config():
    o = make_observer("entropy", mse_floor=False)
    o.observe(_relu_tail(1000))
    back = observer_from_dict(o.to_dict())
    assert back.mse_floor is False and back.range() == o.range()
    with pytest.raises(ConfigError, match="mse_floor"):
        make_observer("entropy", mse_floor="yes")
    with pytest.raises(ConfigError, match="cannot merge"):
        make_observer("entropy").merge(back)


def _sqnr(y, ref):
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((np.asarray(y, np.float64) - ref) ** 2))


def test_auto_is_never_worse_than_a_single_method_on_its_samples(digits):
    g, xc, _, _ = digits
    xs = xc[:64]                       # auto scores on the first 64 calibration rows
    fp = qengine.Session(g).run({"image": xs})["logits"]

    def sqnr(cfg):
        q = qengine.quantize_static(g, {"image": xc}, cfg)
        return _sqnr(qengine.Session(q).run({"image": xs})["logits"], fp)

    singles = {m: sqnr(qengine.StaticQuantConfig(method=m))
               for m in ("minmax", "entropy", "percentile", "mse")}
    singles["percentile 99.999"] = sqnr(qengine.StaticQuantConfig(
        method="percentile", observer_options={"percentile": 99.999}))
    q, report = qengine.quantize_static(g, {"image": xc}, qengine.StaticQuantConfig(
        method="auto"), return_report=True)
    auto = _sqnr(qengine.Session(q).run({"image": xs})["logits"], fp)
    assert auto >= max(singles.values()) - 1e-9, (auto, singles)
    labels = {c[0] for c in CANDIDATES}
    assert report and all(c.method in labels for c in report)
    assert all(c.range[0] <= c.range[1] for c in report)
    assert report[0].value in format_report(report)


def _outlier_conv():
    """x -> Conv 1x1 (8 -> 4), where one input sample in 500 is 30x larger: min-max spends the
    whole grid on it, a clipped range serves the rest."""
    from qengine.graph import Graph, Node, ValueInfo
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    g = Graph([ValueInfo("x", "float32", ("N", 8, 4, 4))],
              [ValueInfo("y", "float32", ("N", 4, 4, 4))],
              [Node("Conv", "conv", ("x", "w"), ("y",))], {"w": w})
    x = np.abs(rng.standard_normal((500, 8, 4, 4))).astype(np.float32)
    x[rng.choice(500, 2, replace=False)] *= 30.0
    return g, x


def test_auto_clips_an_outlier_and_says_so():
    g, x = _outlier_conv()
    fp = qengine.Session(g).run({"x": x[:64]})["y"]
    res = {}
    for m in ("minmax", "auto"):
        q, rep = qengine.quantize_static(g, {"x": x}, qengine.StaticQuantConfig(
            method=m, batch_size=64), return_report=True)
        res[m] = (_sqnr(qengine.Session(q).run({"x": x[:64]})["y"], fp), rep)
    assert res["minmax"][1] == []
    (choice,) = [c for c in res["auto"][1] if c.value == "x"]
    assert choice.method != "minmax" and choice.range[1] < float(x.max())
    assert res["auto"][0] > res["minmax"][0] + 3, res


def test_auto_config_errors():
    from qengine.calibration.auto import choose_ranges
    with pytest.raises(ConfigError, match="samples"):
        choose_ranges(None, {}, [], None, samples=0)
    with pytest.raises(ConfigError, match="histograms"):
        choose_ranges(None, {"x": make_observer("minmax")}, [], None)


@pytest.mark.parametrize("method,opts", [("mse", {}), ("entropy", {}), ("percentile", {}),
                                         ("entropy", {"mse_floor": False})])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("lo,hi", [(0.5, 1.0), (-1.0, -0.5), (2.0, 2.001)])
def test_one_signed_data_away_from_zero_gets_a_valid_range(method, opts, symmetric, lo, hi):
    """The case that raised "rmin > rmax at channel 0" (MSE on a text recognizer): every
    candidate threshold below the data's smallest magnitude made an inverted range."""
    x = np.random.default_rng(0).uniform(lo, hi, 20_000).astype(np.float32)
    o = make_observer(method, **opts)
    o.observe(x)
    rmin, rmax = o.range(symmetric=symmetric)
    assert rmin <= rmax
    o.qparams(symmetric=symmetric)
    if method == "mse" and not symmetric:     # and it is no worse than min-max there
        x64 = x.astype(np.float64)
        assert _sqerr(x64, rmin, rmax) <= _sqerr(x64, float(x.min()), float(x.max())) * 1.001


def test_mse_calibrates_a_tensor_far_from_zero_end_to_end():
    from qengine.graph import Graph, Node, ValueInfo
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 8)).astype(np.float32)
    g = Graph([ValueInfo("x", "float32", ("N", 8))], [ValueInfo("y", "float32", ("N", 4))],
              [Node("Add", "shift", ("x", "two"), ("s",)),
               Node("Gemm", "fc", ("s", "w"), ("y",), {"transB": 1})],
              {"two": np.array(2.0, np.float32), "w": w})
    x = rng.uniform(0.0, 1e-3, (256, 8)).astype(np.float32)
    q = qengine.quantize_static(g, {"x": x}, qengine.StaticQuantConfig(method="mse"))
    ref = qengine.Session(g).run({"x": x})["y"]
    assert _sqnr(qengine.Session(q).run({"x": x})["y"], ref) > 30
