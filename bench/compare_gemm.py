"""qengine int8 GEMM vs NumPy FP32 vs ONNX Runtime MatMulInteger, in one process.

    python bench/compare_gemm.py [--reps 7] [--threads 1 2]

For each (M, N, K) and thread count: median time of `--reps` timed batches (each batch runs
long enough to be measured), as int8 GOPS (2·M·N·K / s) for qengine (active ISA and the exact
AVX2 path) and ORT (u8 × s8, weights as an initializer so ORT prepacks them), GFLOP/s for
NumPy FP32 (BLAS threads limited with threadpoolctl), and qengine / ORT ratios.
"""
import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a source checkout
from qengine import _runtime  # noqa: E402
from qengine import functional as F  # noqa: E402

SHAPES = [(1, 1024, 1024), (1, 4096, 1024), (16, 1024, 1024), (256, 1024, 1024),
          (1024, 1024, 1024), (3136, 64, 576)]


def median_time(fn, reps, min_batch_s=0.05):
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    batch = max(1, int(min_batch_s / once))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        ts.append((time.perf_counter() - t0) / batch)
    return float(np.median(ts))


def ort_session(w_kn, threads):
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    k, n = w_kn.shape
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "W", "za"], ["Y"])], "g",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, ["M", n])],
        [helper.make_tensor("W", TensorProto.INT8, [k, n], w_kn.tobytes(), raw=True),
         helper.make_tensor("za", TensorProto.UINT8, [], [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits
    cfg = _runtime.config()
    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "not installed"
    print(f"machine: {platform.machine()} {platform.processor() or ''} | cpu features: "
          f"{' '.join(cfg['cpu_features'])}")
    print(f"qengine {cfg['qengine']} isa={cfg['active_isa']} kernel={cfg['kernels'].get('gemm_u8s8')}"
          f" openmp={cfg['openmp']} | numpy {np.__version__} | onnxruntime {ort_version}")
    has_avx2 = "avx2" in _runtime.available_isas()
    hdr = (f"{'M':>5} {'N':>5} {'K':>5} {'thr':>3} | {'qengine':>8} {'avx2-exact':>10} {'ORT':>8}"
           f" {'np-fp32':>8} | {'qe/ORT':>6} {'qe/np':>6} | {'qe us':>9} {'ORT us':>9}")
    print("GOPS (int8) / GFLOP/s (fp32), medians of", args.reps)
    print(hdr)
    print("-" * len(hdr))
    rng = np.random.default_rng(0)
    for (m, n, k) in SHAPES:
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        wp = F.pack_weights(w)
        wp2 = F.pack_weights(w, isa="avx2") if has_avx2 else None
        af, wf = a.astype(np.float32), np.ascontiguousarray(w.T.astype(np.float32))
        ops = 2.0 * m * n * k
        for t in args.threads:
            _runtime.set_num_threads(t)
            tq = median_time(lambda: F.matmul_int32(a, 3, wp), args.reps)
            t2 = median_time(lambda: F.matmul_int32(a, 3, wp2), args.reps) if wp2 else float("nan")
            sess = ort_session(np.ascontiguousarray(w.T), t)
            to = median_time(lambda: sess.run(None, {"A": a}), args.reps) if sess else float("nan")
            with threadpool_limits(limits=t):
                tn = median_time(lambda: af @ wf, args.reps)
            g = lambda s: ops / s / 1e9  # noqa: E731
            print(f"{m:5d} {n:5d} {k:5d} {t:3d} | {g(tq):8.1f} {g(t2):10.1f} {g(to):8.1f} "
                  f"{g(tn):8.1f} | {to / tq:6.2f} {tn / tq:6.2f} | {tq * 1e6:9.1f} {to * 1e6:9.1f}")


if __name__ == "__main__":
    main()
