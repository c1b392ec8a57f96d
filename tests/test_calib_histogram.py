"""The calibration histogram: counts vs np.histogram on the same edges, growth by exact
re-binning, NaN/Inf handling, identical results for every ISA and thread count, merge ==
single pass, JSON state, and constant memory."""
import json
import math
import tracemalloc

import numpy as np
import pytest

import qengine
from qengine.calibration import Histogram, HistogramObserver
from qengine.calibration.histogram import canonical_grid


def finite(*arrays):
    x = np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in arrays])
    return x[np.isfinite(x)]


def check_against_numpy(h, *arrays):
    """Counts equal np.histogram on the histogram's own edges; nothing falls outside them."""
    x = finite(*arrays)
    edges = h.edges()
    assert edges[0] <= x.min() and x.max() < edges[-1]       # half-open grid covers the data
    ref, _ = np.histogram(x, bins=edges)
    np.testing.assert_array_equal(h.counts, ref)
    assert h.count == x.size == h.counts.sum()
    assert h.min == float(x.min()) and h.max == float(x.max())


def test_single_batch_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(100_000).astype(np.float32)
    h = Histogram(2048)
    h.add(x)
    check_against_numpy(h, x)
    # The data spans between half and all of the bins (power-of-two width).
    used = (x.max() - x.min()) / h.width
    assert 1024 - 2 <= used <= 2048


def test_growing_ranges_rebin_exactly():
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal(5000).astype(np.float32) * s + o
               for s, o in ((1e-3, 0), (1, 0), (0.1, 5), (50, -20), (1e4, 3), (1, 0))]
    h = Histogram(512)
    for i, b in enumerate(batches):
        h.add(b)
        check_against_numpy(h, *batches[:i + 1])


def test_nan_inf_ignored_and_counted():
    x = np.array([1.0, np.nan, -2.0, np.inf, np.nan, -np.inf, 3.0, np.inf], np.float32)
    h = Histogram(64)
    h.add(x)
    assert (h.nan, h.pinf, h.ninf, h.count) == (2, 2, 1, 3)
    check_against_numpy(h, x)
    only_bad = Histogram(64)
    only_bad.add(np.array([np.nan, np.inf], np.float32))
    assert only_bad.count == 0 and only_bad.exp is None
    obs = HistogramObserver(64)
    obs.observe(np.array([np.nan], np.float32))
    with pytest.raises(qengine.ConfigError, match="no finite values"):
        obs.range()


def test_float64_and_float16_are_observed_as_float32():
    x64 = np.array([0.1, 1 / 3, 1e-9, 7.5])
    h = Histogram(128)
    h.add(x64)
    check_against_numpy(h, x64.astype(np.float32))
    h16 = Histogram(128)
    h16.add(x64.astype(np.float16))
    check_against_numpy(h16, x64.astype(np.float16).astype(np.float32))


def test_edge_values_and_extremes():
    fmax = np.finfo(np.float32).max
    tiny = np.finfo(np.float32).smallest_subnormal
    cases = [np.zeros(10, np.float32), np.full(7, -3.25, np.float32),
             np.array([fmax, -fmax, 0.0], np.float32), np.array([tiny, -tiny, 0.0], np.float32),
             np.array([1e-30, 1e30], np.float32), np.array([-0.0, 0.0], np.float32)]
    for x in cases:
        h = Histogram(256)
        h.add(x)
        check_against_numpy(h, x)
    # Values exactly on bin edges (multiples of the power-of-two width) go to the upper bin.
    h = Histogram(256)
    h.add(np.array([-1.0, 1.0], np.float32))
    x = (np.arange(-256, 256) * h.width).astype(np.float32)
    x = x[(x >= -1) & (x <= 1)]
    h.add(x)
    check_against_numpy(h, [-1.0, 1.0], x)


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
def test_every_isa_and_thread_count_gives_identical_histograms(threads):
    rng = np.random.default_rng(2)
    x = rng.standard_t(3, size=300_001).astype(np.float32)
    x[rng.integers(0, x.size, 500)] = np.nan
    x[rng.integers(0, x.size, 50)] = np.inf
    x[rng.integers(0, x.size, 50)] = -np.inf
    grow = (x * 10).astype(np.float32)
    states = []
    for isa in qengine.available_isas():
        h = Histogram(2048)
        h.add(x[:1000], isa=isa, threads=threads)   # small first batch, then growth
        h.add(x, isa=isa, threads=threads)
        h.add(grow, isa=isa, threads=threads)
        states.append(h.state())
        check_against_numpy(h, x[:1000], x, grow)
    assert all(s == states[0] for s in states), qengine.available_isas()


def test_merge_equals_single_pass():
    rng = np.random.default_rng(3)
    parts = [rng.laplace(size=20_000).astype(np.float32) * s for s in (0.01, 1, 30, 0.5)]
    parts.append(np.array([np.nan, np.inf], np.float32))
    one = HistogramObserver(1024)
    for p in parts:
        one.observe(p)
    # Any split into runs, each merged: same state as one pass over everything.
    for split in ([0, 1], [2], [3, 4]), ([3], [0, 2, 4], [1]), ([4], [], [0, 1, 2, 3]):
        runs = []
        for idx in split:
            o = HistogramObserver(1024)
            for i in idx:
                o.observe(parts[i])
            runs.append(o)
        merged = runs[0]
        for o in runs[1:]:
            merged.merge(o)
        assert merged.to_dict() == one.to_dict()
    check_against_numpy(one.histogram, *parts)


def test_order_independence():
    rng = np.random.default_rng(4)
    parts = [rng.standard_normal(3000).astype(np.float32) * 10.0 ** k for k in range(-3, 4)]
    a, b = Histogram(300), Histogram(300)
    for p in parts:
        a.add(p)
    for p in reversed(parts):
        b.add(p)
    assert a.state() == b.state()


def test_state_round_trips_through_json_and_is_validated():
    rng = np.random.default_rng(5)
    o = HistogramObserver(2048)
    o.observe(rng.standard_normal(10_000).astype(np.float32))
    d = json.loads(json.dumps(o.to_dict()))
    back = HistogramObserver.from_dict(d)
    assert back.to_dict() == o.to_dict()
    np.testing.assert_array_equal(back.histogram.counts, o.histogram.counts)
    extra = rng.standard_normal(1000).astype(np.float32) * 100
    back.observe(extra)          # a loaded state keeps growing exactly like the original
    o.observe(extra)
    assert back.to_dict() == o.to_dict()
    bad = json.loads(json.dumps(o.to_dict()))
    bad["state"]["counts"][0] += 1
    with pytest.raises(qengine.ConfigError, match="sum"):
        HistogramObserver.from_dict(bad)
    bad = json.loads(json.dumps(o.to_dict()))
    bad["state"]["exp"] += 1
    with pytest.raises(qengine.ConfigError, match="canonical"):
        HistogramObserver.from_dict(bad)
    bad = json.loads(json.dumps(o.to_dict()))
    bad["version"] = 99
    with pytest.raises(qengine.ConfigError, match="version"):
        HistogramObserver.from_dict(bad)


def test_canonical_grid_is_minimal():
    rng = np.random.default_rng(6)
    for _ in range(200):
        lo, hi = sorted(float(np.float32(v)) for v in rng.standard_normal(2) * 10.0 **
                        rng.integers(-5, 6))
        bins = int(rng.integers(2, 4096))
        e, m = canonical_grid(lo, hi, bins)
        w = math.ldexp(1.0, e)
        assert m * w <= lo and (m + bins) * w > hi
        # one power of two finer does not cover (unless held up by the resolution floor)
        w2 = w / 2
        m2 = math.floor(lo / w2)
        floor_held = e == max(-160, math.frexp(max(abs(lo), abs(hi)))[1] - 40)
        assert floor_held or (m2 + bins) * w2 <= hi


def test_memory_does_not_grow_with_samples():
    rng = np.random.default_rng(7)
    batch = rng.standard_normal(50_000).astype(np.float32)
    o = HistogramObserver(2048)
    o.observe(batch)
    size0 = len(json.dumps(o.to_dict()))
    scaled = [batch * (1.0 + k) for k in range(7)]
    tracemalloc.start()
    try:
        for i in range(200):
            o.observe(scaled[i % 7])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert o.histogram.counts.shape == (2048,)
    assert len(json.dumps(o.to_dict())) <= size0 + 2048 * 8  # bounded: at most bins numbers
    # Peak covers per-call scratch only (thread-local histograms, re-binning): far below one
    # batch (200 KB), and independent of the 200 batches seen.
    assert peak < 200_000, peak
    assert o.histogram.count == 201 * batch.size


def test_bad_inputs():
    with pytest.raises(qengine.ConfigError):
        Histogram(1)
    with pytest.raises(qengine.ConfigError):
        Histogram(2.5)
    h = Histogram(16)
    with pytest.raises(qengine.ShapeError, match="floating-point"):
        h.add(np.arange(4))
    with pytest.raises(qengine.ConfigError, match="ISA"):
        h.add(np.zeros(4, np.float32), isa="sse9")
    with pytest.raises(qengine.ConfigError, match="bins"):
        HistogramObserver(16).merge(HistogramObserver(32))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_kernel_spills_exactly_the_values_outside_the_grid(threads):
    """The first pass hands back the finite values its grid could not hold (so growth needs no
    second pass over the data) -- on every ISA, or None when there are too many."""
    from qengine._ext import _calib
    from qengine._runtime import isa_index
    rng = np.random.default_rng(8)
    x = rng.standard_normal(100_003).astype(np.float32)
    x[::997] = np.nan
    w, m, bins = 2.0 ** -8, -512, 1024               # grid [-2, 2)
    out = np.sort(x[np.isfinite(x) & ((x < -2) | (x >= 2))])
    ref, _ = np.histogram(x[np.isfinite(x)], bins=(m + np.arange(bins + 1)) * w)
    for isa in qengine.available_isas():
        h = np.zeros(bins, np.int64)
        st = _calib.histogram(x, w, m, h, 0.0, 0.0, isa_index(isa), threads, 100_000)
        np.testing.assert_array_equal(np.sort(st["spill"]), out)
        np.testing.assert_array_equal(h, ref)
        st = _calib.histogram(x, w, m, np.zeros(bins, np.int64), 0.0, 0.0, isa_index(isa),
                              threads, 10)
        assert st["spill"] is None and st["outside"] == out.size
