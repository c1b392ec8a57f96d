"""Issue 15's four model families, exported from PyTorch here (seeded random weights, no
downloads): a keyword-spotting CNN+GRU on 40×98 MFCC-like features, a small U-Net
(ConvTranspose + bilinear Resize, 3×64×64), a 4-layer transformer encoder (d=64, 4 heads,
32 tokens) and one step of an LSTM seq2seq decoder with dot-product attention. For each: the
largest relative difference of qengine FP32 from ONNX Runtime FP32, int8 output SQNR against
FP32 (qengine dynamic and static, ONNX Runtime dynamic), and batch-1 latency medians.

    python bench/reach_models.py [--runs 200] [--threads 1]

Needs torch, onnx and onnxruntime.
"""
import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reach_model_defs import build_all  # noqa: E402

import qengine as qe  # noqa: E402


def median_ms(fn, runs):
    fn()
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return 1000 * float(np.median(t))


def sqnr(y, ref):
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / max(np.sum((np.asarray(y, np.float64) - ref) ** 2),
                                               1e-300))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    qe.set_num_threads(args.threads)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    print(f"| model | FP32 max rel. diff vs ORT | int8 SQNR dB: qengine dynamic / static / "
          f"ORT dynamic | ms batch 1: ORT FP32 / ORT int8 / qengine FP32 / dynamic / static |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, calib, test in build_all(tmp):
            o32 = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            q8 = os.path.join(tmp, f"{name}.int8.onnx")
            quantize_dynamic(path, q8, weight_type=QuantType.QInt8)
            o8 = ort.InferenceSession(q8, so, providers=["CPUExecutionProvider"])
            out = o32.get_outputs()[0].name
            ref = o32.run([out], test)[0]
            g = qe.from_onnx(path)
            fp = qe.Session(g)
            diff = float(np.max(np.abs(fp.run(test)[out] - ref)) / np.max(np.abs(ref)))
            dyn = qe.Session(qe.quantize_dynamic(g, qe.DynamicQuantConfig(cost_model=False)))
            try:
                st = qe.Session(qe.quantize_static(g, calib))
                st_db = f"{sqnr(st.run(test)[out], ref):.1f}"
            except qe.QEngineError as e:
                st, st_db = None, f"({type(e).__name__})"
            ms = [median_ms(lambda s=s: s.run(None, test), args.runs) for s in (o32, o8)]
            ms += [median_ms(lambda s=s: s.run(test), args.runs)
                   for s in (fp, dyn) + ((st,) if st else ())]
            print(f"| {name} | {diff:.1e} | {sqnr(dyn.run(test)[out], ref):.1f} / {st_db} / "
                  f"{sqnr(o8.run([out], test)[0], ref):.1f} | "
                  + " / ".join(f"{m:.2f}" for m in ms) + " |", flush=True)


if __name__ == "__main__":
    main()
