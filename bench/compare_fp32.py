"""qengine FP32 vs ONNX Runtime FP32 on the same ONNX file, input and thread count, in one run.

    python bench/compare_fp32.py [--models resnet18,mobilenet_v2,ocr_rec] [--threads 1,2]
                                 [--runs 20] [--profile] [--calib] [--json FILE]

qengine runs the graph `from_onnx` + `optimize(fuse_activations=True)` makes (BatchNorm folded,
Relu/Clip fused into the convolutions, as ONNX Runtime's default graph optimizations do for
it); ONNX Runtime runs the original file with its default optimizations (ORT_ENABLE_ALL, its
NCHWc layout transformer included). Latency: median of --runs calls after warm-up, one engine
after the other with a pause between them (a thread pool keeps spinning after its last call).
`ocr_rec` is the real PP-OCRv4 text recognizer shipped with rapidocr (bench/real_models.py's
`ppocr_rec`; `python bench/real_models.py --fetch` downloads it; input x [1, 3, 48, 320]),
skipped when absent.

--profile prints qengine's time per op type (Session.profile, median of 10 runs per node);
--calib times entropy calibration of ResNet-18 on 16 images against ORT's Entropy calibrator,
each in a fresh process (bench/compare_cnn.py's calib_bench). Every run prints the load average,
the ISA and NumPy's BLAS thread count (NumPy's own BLAS serves qengine's FP32 Gemm/MatMul).
"""
import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import measure, median_ms, ort_session  # noqa: E402

import qengine  # noqa: E402

warnings.filterwarnings("ignore")


def make_case(name, tmp):
    """(onnx path, input name, input array) or None when the model is not available."""
    rng = np.random.default_rng(0)
    if name == "ocr_rec":
        from real_models import find          # the cache `python bench/real_models.py --fetch` fills
        path = find("ppocr_rec")
        if path is None:
            return None
        return str(path), "x", rng.standard_normal((1, 3, 48, 320)).astype(np.float32)
    from models import INPUT_SHAPES, build, export_onnx   # bench/models.py
    path = os.path.join(tmp, f"{name}.onnx")
    export_onnx(build(name), path, INPUT_SHAPES[name])
    return path, "input", rng.standard_normal(INPUT_SHAPES[name]).astype(np.float32)


def qengine_fp32_session(path):
    from qengine.graph.passes import optimize
    return qengine.Session(optimize(qengine.from_onnx(path), fuse_activations=True))


def profile_by_op(sess, feeds, repeat=10):
    _, profs = sess.profile(feeds, repeat=repeat)
    per_node = {}
    for p in profs:
        for name, op, t in p.nodes:
            per_node.setdefault((name, op), []).append(t)
    by_op = {}
    for (_, op), ts in per_node.items():
        by_op[op] = by_op.get(op, 0.0) + 1e3 * float(np.median(ts))
    return dict(sorted(by_op.items(), key=lambda kv: -kv[1]))


def blas_threads():
    try:
        from threadpoolctl import threadpool_info
        return [(i.get("internal_api"), i.get("num_threads")) for i in threadpool_info()
                if i.get("user_api") == "blas"]
    except ImportError:
        return "threadpoolctl not installed"


def bench_model(name, threads, runs, profile, tmp):
    case = make_case(name, tmp)
    if case is None:
        print(f"# {name}: model file not found, skipped")
        return []
    path, iname, x = case
    sess = qengine_fp32_session(path)
    rows = []
    for th in threads:
        qengine.set_num_threads(th)
        ort = ort_session(path, th)
        ref = ort.run(None, {iname: x})[0]
        got = sess.run({iname: x})[sess.output_names[0]]
        err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))
        time.sleep(0.3)
        tq = median_ms(measure(lambda: sess.run({iname: x}), runs=runs, warmup=3))
        time.sleep(0.3)
        to = median_ms(measure(lambda: ort.run(None, {iname: x}), runs=runs, warmup=3))
        r = {"model": name, "threads": th, "qengine_ms": tq, "ort_ms": to, "ratio": tq / to,
             "max_rel_err_vs_ort": err, "load": os.getloadavg()[0]}
        if profile:
            r["profile_ms"] = profile_by_op(sess, {iname: x})
        rows.append(r)
        print(f"{name:<14}{th:>4}{tq:>12.2f}{to:>12.2f}{tq / to:>8.2f}{err:>11.1e}"
              f"{r['load']:>7.2f}", flush=True)
        if profile:
            print("    qengine by op type (ms): " + ", ".join(
                f"{k} {v:.2f}" for k, v in list(r["profile_ms"].items())[:10]), flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenet_v2,ocr_rec")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--calib", action="store_true")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; isa={qengine.active_isa()}; "
          f"NumPy BLAS threads: {blas_threads()}; medians in ms")
    print(f"{'model':<14}{'thr':>4}{'qengine':>12}{'ORT fp32':>12}{'ratio':>8}{'rel err':>11}"
          f"{'load':>7}")
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "isa": qengine.active_isa(),
           "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            out["rows"] += bench_model(name, threads, args.runs, args.profile, tmp)
        if args.calib:
            from compare_cnn import calib_bench
            res = calib_bench(tmp)
            out["calib"] = {k: {"s": t, "peak_mib": m} for k, (t, m) in res.items()}
            print("\n# entropy calibration of ResNet-18 (16 images), fresh process each: time s, "
                  "peak RSS MiB")
            for who, (t, mem) in res.items():
                print(f"{who:<10}{t:>10.2f} s{mem:>10.1f} MiB")
            print(f"ratio qengine/ORT time: {res['qengine'][0] / res['ort'][0]:.3f}  "
                  f"(load {os.getloadavg()[0]:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
