"""Latency measurement for ``qengine bench``: wall-clock per `Session.run`, summarised as
percentiles, and per-node / per-op-type times from `Session.profile`."""
from __future__ import annotations

import time
from typing import Mapping

import numpy as np

from ..errors import ConfigError
from ..session import Session


def time_runs(sess: Session, feeds: Mapping[str, np.ndarray], runs: int, warmup: int) -> list:
    """Seconds per run for `runs` timed runs after `warmup` untimed ones. Each run includes
    input validation, as every caller of `Session.run` pays it."""
    if runs < 1 or warmup < 0:
        raise ConfigError(f"runs must be >= 1 and warmup >= 0, got {runs} and {warmup}")
    for _ in range(warmup):
        sess.run(feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(feeds)
        times.append(time.perf_counter() - t0)
    return times


def latency_stats(times) -> dict:
    ms = np.asarray(times, np.float64) * 1e3
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "min_ms": float(ms.min()),
            "mean_ms": float(ms.mean()), "runs": int(ms.size)}


def profile_summary(sess: Session, feeds: Mapping[str, np.ndarray], runs: int) -> dict:
    """Median time per node over `runs` profiled runs, and those medians summed per op type."""
    _, profiles = sess.profile(feeds, repeat=runs)
    per_node: dict[tuple[str, str], list] = {}
    for p in profiles:
        for name, op, t in p.nodes:
            per_node.setdefault((name, op), []).append(t)
    nodes = [{"node": name, "op": op, "median_ms": float(np.median(ts) * 1e3)}
             for (name, op), ts in per_node.items()]
    total = sum(n["median_ms"] for n in nodes) or 1.0
    by_op: dict[str, float] = {}
    for n in nodes:
        by_op[n["op"]] = by_op.get(n["op"], 0.0) + n["median_ms"]
    op_types = [{"op": op, "ms": ms, "share": ms / total}
                for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])]
    return {"nodes": nodes, "op_types": op_types}
