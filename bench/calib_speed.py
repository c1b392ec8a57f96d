"""Entropy calibration speed and memory: qengine's EntropyObserver vs ONNX Runtime's
HistogramCollector("entropy") on the same arrays, in one process.

    python bench/calib_speed.py [--batches 100] [--tensors 2] [--shape 8 64 56 56]

Each tensor gets `batches` activations of `shape` (a few distinct random arrays, Laplacian and
ReLU'd Gaussian, reused with different scales so data generation does not dominate). Reports
collect time (all batches), threshold time (KL search), tracemalloc peak above the inputs, the
thresholds chosen, the ISA and thread count.
"""
import argparse
import contextlib
import io
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's in-place build
import qengine  # noqa: E402
from qengine.calibration import EntropyObserver  # noqa: E402


def make_pool(shape, seed=0):
    rng = np.random.default_rng(seed)
    lap = rng.laplace(size=shape).astype(np.float32)
    relu = np.maximum(rng.standard_normal(shape).astype(np.float32), 0)
    return [lap, relu]


def batch_for(pool, t, i):
    # tensor t alternates distribution; the scale drifts so the histogram range keeps growing
    return pool[t % 2], np.float32(1.0 + 0.01 * i)


def run_qengine(pool, tensors, batches, bins):
    obs = [EntropyObserver(bins=bins) for _ in range(tensors)]
    tracemalloc.start()
    t0 = time.perf_counter()
    for i in range(batches):
        for t, o in enumerate(obs):
            x, s = batch_for(pool, t, i)
            o.observe(x * s if s != 1 else x)
    t1 = time.perf_counter()
    th = [o.range(symmetric=True)[1] for o in obs]
    t2 = time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return t1 - t0, t2 - t1, peak, th


def run_ort(pool, tensors, batches, bins):
    from onnxruntime.quantization.calibrate import HistogramCollector
    c = HistogramCollector("entropy", True, bins, 128, 99.99, "same")
    tracemalloc.start()
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        for i in range(batches):
            feed = {}
            for t in range(tensors):
                x, s = batch_for(pool, t, i)
                feed[f"t{t}"] = x * s if s != 1 else x
            c.collect(feed)
        t1 = time.perf_counter()
        res = c.compute_collection_result()
        t2 = time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return t1 - t0, t2 - t1, peak, [float(res[f"t{t}"][1]) for t in range(tensors)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--tensors", type=int, default=2)
    ap.add_argument("--shape", type=int, nargs="+", default=[8, 64, 56, 56])
    ap.add_argument("--bins", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=None, help="qengine OpenMP threads")
    ap.add_argument("--skip-ort", action="store_true")
    a = ap.parse_args()
    if a.threads:
        qengine.set_num_threads(a.threads)
    pool = make_pool(tuple(a.shape))
    n = int(np.prod(a.shape))
    print(f"{a.tensors} tensors x {a.batches} batches of {a.shape} ({n * 4 / 2**20:.1f} MiB "
          f"float32 each), bins={a.bins}; ISA {qengine.active_isa()}, "
          f"{qengine.get_num_threads()} threads")
    rows = [("qengine", run_qengine(pool, a.tensors, a.batches, a.bins))]
    if not a.skip_ort:
        try:
            rows.append(("onnxruntime", run_ort(pool, a.tensors, a.batches, a.bins)))
        except ImportError:
            print("onnxruntime not installed: skipped")
    print(f"{'':<12} {'collect s':>10} {'threshold s':>12} {'peak MiB':>9}  thresholds")
    for name, (tc, tt, peak, th) in rows:
        print(f"{name:<12} {tc:>10.2f} {tt:>12.3f} {peak / 2**20:>9.1f}  "
              + " ".join(f"{v:.4g}" for v in th))
    if len(rows) == 2:
        (_, q), (_, o) = rows
        print(f"speedup collect x{o[0] / q[0]:.1f}, threshold x{o[1] / q[1]:.0f}; "
              f"peak memory ratio x{o[2] / max(q[2], 1):.1f}")


if __name__ == "__main__":
    main()
