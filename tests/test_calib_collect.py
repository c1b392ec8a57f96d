"""collect_stats: observed intermediates equal the same values computed in NumPy; batching for
fixed and dynamic batch dims; iterables; progress; merging runs; errors."""
import json
import warnings

import numpy as np
import pytest

import qengine
from qengine import Graph, Node, Session, ValueInfo
from qengine.calibration import MinMaxObserver, collect_stats, observer_from_dict

RNG = np.random.default_rng(7)
W1 = RNG.standard_normal((6, 5)).astype(np.float32)
W2 = RNG.standard_normal((5, 3)).astype(np.float32)


def mlp(batch="batch"):
    nodes = [Node("MatMul", "mm1", ("x", "w1"), ("h",)),
             Node("Relu", "relu", ("h",), ("r",)),
             Node("MatMul", "mm2", ("r", "w2"), ("y",)),
             Node("Shape", "shape", ("y",), ("ys",))]
    return Graph([ValueInfo("x", "float32", (batch, 6))], [ValueInfo("y"), ValueInfo("ys")],
                 nodes, {"w1": W1, "w2": W2})


def numpy_values(x):
    h = x.astype(np.float32) @ W1
    r = np.maximum(h, 0)
    return {"x": x, "h": h, "r": r, "y": r @ W2}


def test_minmax_of_intermediates_matches_numpy_dynamic_batch():
    x = RNG.standard_normal((70, 6)).astype(np.float32)
    calls = []
    stats = collect_stats(mlp(), {"x": x}, ["x", "h", "r", "y"], "minmax",
                          progress=lambda i, n: calls.append((i, n)), batch_size=16)
    ref = numpy_values(x)
    for name, obs in stats.items():
        lo, hi = obs.range()
        assert lo == pytest.approx(float(ref[name].min()), rel=1e-5, abs=1e-6)
        assert hi == pytest.approx(float(ref[name].max()), rel=1e-5, abs=1e-6)
        assert obs.count == ref[name].size
    assert calls == [(i, 5) for i in range(1, 6)]         # 70 samples in batches of 16


def test_fixed_batch_is_split_and_remainder_dropped_with_warning():
    x = RNG.standard_normal((10, 6)).astype(np.float32)
    with pytest.warns(UserWarning, match="last 2 samples"):
        stats = collect_stats(Session(mlp(batch=4)), {"x": x}, ["h"], "histogram")
    ref = numpy_values(x[:8])["h"]
    assert stats["h"].histogram.count == ref.size
    with pytest.raises(qengine.ConfigError, match="fixed"):
        collect_stats(mlp(batch=4), {"x": x[:8]}, ["h"], batch_size=2)
    with pytest.raises(qengine.ShapeError, match="fewer"):
        collect_stats(mlp(batch=4), {"x": x[:3]}, ["h"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        collect_stats(mlp(batch=1), {"x": x}, ["h"])         # batch 1 always divides


def test_iterable_of_feeds_default_names_and_merge_across_runs():
    xs = [RNG.standard_normal((3, 6)).astype(np.float32) for _ in range(6)]
    gen = ({"x": x} for x in xs)                              # no len(): total is None
    seen = []
    stats = collect_stats(mlp(), gen, None, "entropy", progress=lambda i, n: seen.append(n))
    assert set(stats) == {"x", "h", "r", "y"}                 # int64 Shape output skipped
    assert seen == [None] * 6
    # Two runs over halves, merged through JSON, equal one run over everything.
    a = collect_stats(mlp(), [{"x": x} for x in xs[:2]], ["r"], "entropy")
    b = collect_stats(mlp(), [{"x": x} for x in xs[2:]], ["r"], "entropy")
    a_loaded = {k: observer_from_dict(json.loads(json.dumps(v.to_dict()))) for k, v in a.items()}
    a_loaded["r"].merge(b["r"])
    assert a_loaded["r"].to_dict() == stats["r"].to_dict()
    # Continuing existing observers is the same as merging.
    c = collect_stats(mlp(), [{"x": x} for x in xs[2:]], ["r"], "entropy", observers=a)
    assert c["r"].to_dict() == stats["r"].to_dict()


def test_collect_errors():
    x = RNG.standard_normal((4, 6)).astype(np.float32)
    with pytest.raises(qengine.ConfigError, match="not an input or node output"):
        collect_stats(mlp(), {"x": x}, ["nope"])
    with pytest.raises(qengine.ConfigError, match="constant"):
        collect_stats(mlp(), {"x": x}, ["w1"])
    with pytest.raises(qengine.ShapeError, match="not floating point"):
        collect_stats(mlp(), {"x": x}, ["ys"])
    with pytest.raises(qengine.ConfigError, match="unknown calibration method"):
        collect_stats(mlp(), {"x": x}, ["h"], method="kl")
    with pytest.raises(qengine.ShapeError, match="disagree"):
        g = mlp()
        collect_stats(g, {"x": x, "z": x[:2]}, ["h"])
    with pytest.raises(qengine.ShapeError, match="missing"):
        collect_stats(mlp(), {"z": x}, ["h"])
    with pytest.raises(qengine.ConfigError, match="Session or Graph"):
        collect_stats("model.onnx", {"x": x}, ["h"])
    with pytest.raises(qengine.ConfigError, match="dict"):
        collect_stats(mlp(), x, ["h"])
    with pytest.raises(qengine.ConfigError, match="no batches"):
        collect_stats(mlp(), [], ["h"])


def test_observing_does_not_keep_activations_alive():
    """The executor still frees intermediates: only observers' fixed state survives a run."""
    import tracemalloc
    x = RNG.standard_normal((4000, 6)).astype(np.float32)
    feeds = [{"x": x}] * 50          # h and r are 80 KB per batch: 8 MB if they were kept
    collect_stats(mlp(), feeds[:2], ["h", "r"], "histogram")   # warm up imports/caches
    tracemalloc.start()
    try:
        stats = collect_stats(mlp(), feeds, ["h", "r"], "histogram")
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats["h"].histogram.count == 50 * 4000 * 5
    assert peak < 1_000_000, peak
    assert isinstance(stats["r"], qengine.calibration.HistogramObserver)
    assert not isinstance(stats["r"], MinMaxObserver)
