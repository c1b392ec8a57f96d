"""A real streaming model: Silero VAD (16 kHz, sequence export: Conv1d front end + LSTM 128) through
qengine dynamic int8 vs ONNX Runtime FP32 and ORT quantize_dynamic, same chunks, in one run.

    python bench/compare_vad.py [--model PATH] [--chunks 90] [--threads 1,2] [--runs 30]
                                [--rounds 5] [--json PATH]

The model file is not part of the repository (default: /work/models/silero/
silero_vad_16k_sequence.onnx). Input: `chunks` chunks of 576 samples (512 new + 64 context) of a
deterministic noisy tone, h = c = 0. Engines are timed round-robin as in compare_rnn.py; the
qengine row also gives the time of its LSTM node (Session.profile), the part the dynamic
recurrent kernels own. err = max |p − p_ORT_FP32| over the speech probabilities.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_ms, ort_session  # noqa: E402
from compare_rnn import _cpu_model, _git_commit, round_robin  # noqa: E402

import qengine  # noqa: E402

DEFAULT_MODEL = "/work/models/silero/silero_vad_16k_sequence.onnx"


def feeds(chunks):
    t = np.arange(chunks * 512 + 64, dtype=np.float64) / 16000.0
    rng = np.random.default_rng(0)
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
             + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
    x = np.stack([audio[i * 512:i * 512 + 576] for i in range(chunks)])
    z = np.zeros((1, 1, 128), np.float32)
    return {"input": x, "h": z, "c": z.copy()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--chunks", type=int, default=90)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", metavar="PATH", help="also write every figure, machine and load")
    args = ap.parse_args(argv)
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from qengine.frontends.onnx import from_onnx

    f = feeds(args.chunks)
    sess = qengine.Session(qengine.quantize_dynamic(from_onnx(args.model),
                                                    qengine.DynamicQuantConfig()))
    record = {"script": "bench/compare_vad.py", "argv": sys.argv[1:] if argv is None else argv,
              "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "commit": _git_commit(),
              "cpu": _cpu_model(), "machine": qengine._runtime.config(), "model": args.model,
              "chunks": args.chunks, "load_before": os.getloadavg(), "rows": []}
    print(f"# {Path(args.model).name}, {args.chunks} chunks; medians in ms of {args.runs} calls; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'thr':>4}{'qengine i8':>12}{'(LSTM)':>9}{'ORT fp32':>10}{'ORT i8':>10}"
          f"{'qe/ORTfp32':>12}{'qe/ORTi8':>10}{'err qe':>9}{'err ORTi8':>10}  load")
    with tempfile.TemporaryDirectory() as tmp:
        ort_i8 = os.path.join(tmp, "i8.onnx")
        quantize_dynamic(args.model, ort_i8, weight_type=QuantType.QInt8)
        for threads in [int(t) for t in args.threads.split(",")]:
            qengine.set_num_threads(threads)
            fp, i8 = ort_session(args.model, threads), ort_session(ort_i8, threads)
            p_fp = fp.run(None, f)[0]
            err_qe = float(np.abs(sess.run(f)["speech_probs"] - p_fp).max())
            err_i8 = float(np.abs(i8.run(None, f)[0] - p_fp).max())
            load = os.getloadavg()
            t = round_robin({"qe": lambda: sess.run(f), "fp": lambda: fp.run(None, f),
                             "i8": lambda: i8.run(None, f)}, args.runs, args.rounds)
            _, profs = sess.profile(f, repeat=max(5, args.runs // 3))
            lstm = 1e3 * statistics.median(
                sum(s for _, op, s in p.nodes if "LSTM" in op) for p in profs)
            r = {"threads": threads, "qengine_ms": median_ms(t["qe"]), "qengine_lstm_ms": lstm,
                 "ort_fp32_ms": median_ms(t["fp"]), "ort_int8_ms": median_ms(t["i8"]),
                 "err_qengine": err_qe, "err_ort_int8": err_i8, "load_before": load,
                 "load_after": os.getloadavg()}
            r["vs_ort_fp32"] = r["qengine_ms"] / r["ort_fp32_ms"]
            r["vs_ort_int8"] = r["qengine_ms"] / r["ort_int8_ms"]
            record["rows"].append(r)
            print(f"{threads:>4}{r['qengine_ms']:>12.3f}{lstm:>9.3f}{r['ort_fp32_ms']:>10.3f}"
                  f"{r['ort_int8_ms']:>10.3f}{r['vs_ort_fp32']:>12.2f}{r['vs_ort_int8']:>10.2f}"
                  f"{err_qe:>9.1e}{err_i8:>10.1e}  {load[0]:.2f}", flush=True)
    if args.json:
        record["load_after"] = os.getloadavg()
        Path(args.json).write_text(json.dumps(record, indent=1, default=float))
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
