"""Shared timing helpers for the comparison scripts: median/p90 of wall time, thread control."""
import statistics
import time

import numpy as np


def measure(fn, *, runs=50, warmup=5, min_time=0.0):
    """Call fn() warmup times, then at least `runs` times (and for at least min_time seconds);
    return the list of per-call seconds."""
    for _ in range(warmup):
        fn()
    times = []
    t_end = time.perf_counter() + min_time
    while len(times) < runs or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def interleaved_ms(fns, runs):
    """Median ms of each function, the functions called in turn within each round: on a
    shared, noisy machine a slow spell then slows every engine alike."""
    for fn in fns:
        fn()
    t = [[] for _ in fns]
    for _ in range(runs):
        for ts, fn in zip(t, fns):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [median_ms(ts) for ts in t]


def median_ms(times):
    return 1e3 * statistics.median(times)


def p90_ms(times):
    return 1e3 * float(np.percentile(times, 90))


def rel_err(y, ref):
    y = np.asarray(y, np.float64)
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-30))


def ort_session(path, threads):
    """An ONNX Runtime CPU session on `threads` intra-op threads, run sequentially."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
