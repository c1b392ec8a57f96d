"""qengine dynamic int8 vs qengine FP32 vs ONNX Runtime FP32 on the bench suite's CNNs and on real
pretrained models, same ONNX file and inputs, one process.

    python bench/compare_dynamic.py [--models resnet18,mobilenet_v2,lenet,ppocr_rec,
                                     silero_vad_sequence,silero_vad_openvino]
                                    [--threads 1,2] [--runs 20] [--profile] [--json]

The rule being checked (issue 9): quantize_dynamic's model is faster than our own FP32 and than
ONNX Runtime FP32, batch 1, on 1 and 2 threads. Workloads: the CNNs at batch 1 (random weights,
bench/models.py); ppocr_rec on one 48×320 line image; silero_vad_sequence on 90 chunks of 36 ms
in one call; silero_vad_openvino on the same 90 chunks as 90 streaming calls carrying the state
(the figure is the whole stream). Real models come from bench/real_models.py (skipped when
absent; `python bench/real_models.py --fetch` downloads them).

Latency: median of --runs calls after warm-up, one engine after the other with a pause between
engines (a spinning ORT pool slows the next engine on 2 cores). Threads: ORT's intra-op pool,
and threadpoolctl for qengine's kernels and NumPy's BLAS (which our FP32 convs call). err = relative L2 distance of
each qengine output to ORT FP32's first output. --ort-dynamic adds ONNX Runtime's own
quantize_dynamic of the same file as a reference line (not a rule of the issue). `kept float` lists the nodes quantize_dynamic
left in float and why (its notes). --profile adds Session.profile of the int8 model: time per
op type and the slowest nodes (median of --runs profiled calls).
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
from _timing import measure, median_ms, ort_session, rel_err  # noqa: E402
import real_models  # noqa: E402

import qengine  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

warnings.filterwarnings("ignore")
SUITE = ("resnet18", "mobilenet_v2", "lenet")
REAL = tuple(real_models.MODELS)
CHUNKS = 90


def _audio_chunks(n=CHUNKS, seed=0):
    """n windows of 576 samples at 16 kHz (64 samples of context + 512 new): noise with
    tone bursts, so the VAD sees both quiet and loud stretches."""
    rng = np.random.default_rng(seed)
    t = np.arange(n * 512 + 64) / 16000.0
    env = (np.sin(2 * np.pi * 0.7 * t) > 0.2).astype(np.float32)
    sig = 0.02 * rng.standard_normal(t.size) + 0.4 * env * np.sin(2 * np.pi * 220 * t)
    sig = sig.astype(np.float32)
    return np.stack([sig[i * 512:i * 512 + 576] for i in range(n)])


class Workload:
    """One model: its ONNX path, a runner per engine, and the output compared for err."""

    def __init__(self, name, tmp):
        self.name = name
        if name in SUITE:
            from models import INPUT_SHAPES, build, export_onnx
            self.path = os.path.join(tmp, f"{name}.onnx")
            export_onnx(build(name), self.path, INPUT_SHAPES[name])
            x = np.random.default_rng(0).standard_normal(INPUT_SHAPES[name]).astype(np.float32)
            self.feeds, self.stream = {"input": x}, None
            self.what = f"batch 1, {tuple(x.shape)}"
            return
        p = real_models.find(name)
        if p is None:
            raise FileNotFoundError(name)
        self.path = str(p)
        if name == "ppocr_rec":
            x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 48, 320)).astype(np.float32)
            self.feeds, self.stream = {"x": x}, None
            self.what = "1×3×48×320 line image"
        elif name == "silero_vad_sequence":
            z = np.zeros((1, 1, 128), np.float32)
            self.feeds, self.stream = {"input": _audio_chunks(), "h": z, "c": z}, None
            self.what = f"{CHUNKS} chunks in one call"
        else:
            self.feeds = None
            self.stream = _audio_chunks()
            self.what = f"{CHUNKS} streaming calls"

    def runner(self, run_one, state_key_out):
        """fn() running the whole workload through run_one(feeds) -> dict of outputs."""
        if self.stream is None:
            return lambda: run_one(self.feeds)

        def stream():
            state = np.zeros((2, 1, 128), np.float32)
            outs = []
            for chunk in self.stream:
                o = run_one({"input": chunk[None], "state": state})
                state = o[state_key_out]
                outs.append(o["output"])
            return {"output": np.concatenate(outs)}
        return stream


def _qe_runner(w, sess):
    return w.runner(lambda f: sess.run(f), "stateN")


def _ort_runner(w, sess):
    names = [o.name for o in sess.get_outputs()]
    return w.runner(lambda f: dict(zip(names, sess.run(None, f))), "stateN")


def _first(out, ort_sess):
    return np.asarray(out[ort_sess.get_outputs()[0].name])


def profile_int8(w, sess, runs):
    """Median per node over `runs` profiled calls (one streaming chunk for the streaming model)."""
    feeds = w.feeds if w.stream is None else {"input": w.stream[:1],
                                              "state": np.zeros((2, 1, 128), np.float32)}
    _, profs = sess.profile(feeds, repeat=runs)
    per = {}
    for p in profs:
        for name, op, t in p.nodes:
            per.setdefault((name, op), []).append(t)
    nodes = sorted(((float(np.median(ts)) * 1e3, name, op) for (name, op), ts in per.items()),
                   reverse=True)
    by_op = {}
    for ms, _, op in nodes:
        by_op[op] = by_op.get(op, 0.0) + ms
    return {"total_ms": sum(ms for ms, _, _ in nodes),
            "by_op": sorted(by_op.items(), key=lambda kv: -kv[1]), "top": nodes[:8]}


def bench(name, threads_list, runs, tmp, profile, with_ort_dynamic=False):
    w = Workload(name, tmp)
    g = qengine.from_onnx(real_models.load_for_qengine(name) if name in REAL else w.path)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", qengine.QuantizationWarning)
        q = qengine.quantize_dynamic(g)
    notes = [str(x.message) for x in seen if issubclass(x.category, qengine.QuantizationWarning)]
    s_fp32, s_int8 = qengine.Session(g), qengine.Session(q)
    ref_sess = ort_session(w.path, 1)
    ref = _first(_ort_runner(w, ref_sess)(), ref_sess)
    ort_dyn = ort_dynamic(w.path, tmp) if with_ort_dynamic else None
    rows = []
    for th in threads_list:
        with threadpool_limits(limits=th):      # qengine's kernels and NumPy's BLAS alike
            rows.append(_bench_threads(w, name, th, runs, s_fp32, s_int8, ref_sess, ref,
                                       notes, profile, ort_dyn))
    return rows


def _bench_threads(w, name, th, runs, s_fp32, s_int8, ref_sess, ref, notes, profile, ort_dyn):
    ort_f = ort_session(w.path, th)
    fns = {"ort_fp32": _ort_runner(w, ort_f), "qe_fp32": _qe_runner(w, s_fp32),
           "qe_int8": _qe_runner(w, s_int8)}
    if ort_dyn is not None:
        od = ort_session(ort_dyn, th)
        fns["ort_int8"] = _ort_runner(w, od)
    r = {"model": name, "workload": w.what, "threads": th, "isa": qengine.active_isa(),
         "load_before": os.getloadavg()[0]}
    for k, fn in fns.items():
        time.sleep(0.3)              # let the previous engine's spinning threads park
        r[f"{k}_ms"] = median_ms(measure(fn, runs=runs, warmup=2))
    r["load_after"] = os.getloadavg()[0]
    r["err_fp32"] = rel_err(_first(fns["qe_fp32"](), ref_sess), ref)
    r["err_int8"] = rel_err(_first(fns["qe_int8"](), ref_sess), ref)
    if ort_dyn is not None:
        r["err_ort_int8"] = rel_err(_first(fns["ort_int8"](), ref_sess), ref)
    r["int8_vs_ort_fp32"] = r["qe_int8_ms"] / r["ort_fp32_ms"]
    r["int8_vs_qe_fp32"] = r["qe_int8_ms"] / r["qe_fp32_ms"]
    r["kept_float"] = notes
    if profile:
        r["profile_int8"] = profile_int8(w, s_int8, runs)
    return r


def ort_dynamic(path, tmp):
    """ONNX Runtime's own quantize_dynamic of the model (QUInt8 activations, QInt8 weights,
    Conv -> ConvInteger, MatMul -> MatMulInteger, LSTM -> DynamicQuantizeLSTM), or None."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    out = os.path.join(tmp, Path(path).stem + ".ort_dyn.onnx")
    try:
        quantize_dynamic(path, out, weight_type=QuantType.QInt8)
    except Exception as e:          # the quantizer refuses some graphs; say so, go on
        print(f"# ORT quantize_dynamic failed on {Path(path).name}: {type(e).__name__}: {e}",
              file=sys.stderr)
        return None
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(SUITE + REAL))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--ort-dynamic", action="store_true",
                    help="also time ONNX Runtime's quantize_dynamic of the model (a reference)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    out = []
    if not args.json:
        print(f"# isa={qengine.active_isa()} load={os.getloadavg()} medians in ms; "
              f"err = rel. L2 vs ORT FP32")
        print(f"{'model':<21}{'thr':>4}{'ORT fp32':>10}{'qe fp32':>10}{'qe int8':>10}"
              f"{'/ORT':>7}{'/fp32':>7}{'err fp32':>10}{'err int8':>10}{'load':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            try:
                rows = bench(name, threads, args.runs, tmp, args.profile, args.ort_dynamic)
            except FileNotFoundError:
                print(f"# {name}: not found (python bench/real_models.py --fetch)", file=sys.stderr)
                continue
            out += rows
            if args.json:
                continue
            for r in rows:
                print(f"{name:<21}{r['threads']:>4}{r['ort_fp32_ms']:>10.3f}{r['qe_fp32_ms']:>10.3f}"
                      f"{r['qe_int8_ms']:>10.3f}{r['int8_vs_ort_fp32']:>7.2f}"
                      f"{r['int8_vs_qe_fp32']:>7.2f}{r['err_fp32']:>10.2e}{r['err_int8']:>10.2e}"
                      f"{r['load_before']:>5.2f}/{r['load_after']:<5.2f}", flush=True)
                if "ort_int8_ms" in r:
                    print(f"    ORT quantize_dynamic: {r['ort_int8_ms']:.3f} ms, err "
                          f"{r['err_ort_int8']:.2e}")
                if "profile_int8" in r:
                    p = r["profile_int8"]
                    ops = ", ".join(f"{op} {ms:.3f}" for op, ms in p["by_op"][:10])
                    print(f"    profile (sum of node medians {p['total_ms']:.3f} ms): {ops}")
                    for ms, node, op in p["top"]:
                        print(f"      {ms:8.3f}  {op:<20} {node}")
            if rows and rows[0]["kept_float"]:
                for note in rows[0]["kept_float"]:
                    print(f"    kept float: {note}")
    if args.json:
        print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
