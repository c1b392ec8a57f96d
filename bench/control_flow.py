"""A real exporter's If: the Silero VAD ONNX model (silero-vad 6.2.3's silero_vad.onnx), whose
whole graph is an If on `sr == 16000` with nested Ifs on shapes inside each branch.

    python bench/control_flow.py [--runs 500] [--threads 1] [--fetch]

One 32 ms chunk (512 samples at 16 kHz) per call, batch 1, the LSTM state fed back, medians:
ONNX Runtime FP32 and its dynamic int8 (quantize_dynamic of the same file) against qengine
running the If at run time (FP32), and after `qengine.specialize(g, shapes, {"sr": 16000})`
folded every If away (FP32 and dynamic int8). Speech probability: the largest difference from
ONNX Runtime's FP32 over 50 chunks of a seeded random signal.
"""
import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import measure, median_ms, ort_session  # noqa: E402
from real_models import fetch, find  # noqa: E402

import qengine  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fetch", action="store_true", help="download the wheel if not cached")
    a = ap.parse_args()
    path = find("silero_vad") or (fetch("silero_vad") if a.fetch else None)
    if path is None:
        sys.exit("silero_vad.onnx not found: run with --fetch (pip download silero-vad==6.2.3)")
    qengine.set_num_threads(a.threads)
    warnings.simplefilter("ignore")
    g = qengine.from_onnx(path)
    sp = qengine.specialize(g, {"input": (1, 512), "state": (2, 1, 128)}, {"sr": 16000})
    from onnxruntime.quantization import QuantType, quantize_dynamic
    with tempfile.TemporaryDirectory() as d:
        ort_q = str(Path(d) / "int8.onnx")
        quantize_dynamic(str(path), ort_q, weight_type=QuantType.QInt8)
        runs = {"ORT FP32": ort_session(str(path), a.threads),
                "ORT dynamic int8": ort_session(ort_q, a.threads),
                "qengine FP32, If at run time": qengine.Session(g),
                "qengine FP32, specialized": qengine.Session(sp),
                "qengine dynamic int8, specialized": qengine.Session(qengine.quantize_dynamic(sp))}
        rng = np.random.default_rng(0)
        chunks = [rng.standard_normal((1, 512)).astype(np.float32) * 0.1 for _ in range(50)]
        sr = np.array(16000, np.int64)

        def call(name, x, state):
            s = runs[name]
            if name.startswith("ORT"):
                return s.run(None, {"input": x, "state": state, "sr": sr})
            feeds = {"input": x, "state": state}
            if "run time" in name:
                feeds["sr"] = sr
            out = s.run(feeds)
            return out["output"], out["stateN"]

        ref, states, state = [], [], np.zeros((2, 1, 128), np.float32)
        for x in chunks:                   # ORT FP32's probabilities and states: the reference
            p, nxt = call("ORT FP32", x, state)
            ref.append(p)
            states.append(state)
            state = nxt
        print(f"# Silero VAD (If on sr), 512-sample chunks, batch 1, {a.threads} thread(s), "
              f"median of {a.runs}")
        print(f"{'engine':<36} {'ms':>7} {'max |p - p_ORT|':>16}")
        for name in runs:
            diff = max(float(np.abs(call(name, x, st)[0] - p).max())
                       for x, st, p in zip(chunks, states, ref))
            ms = median_ms(measure(lambda: call(name, chunks[0], states[5]), runs=a.runs,
                                   warmup=20))
            print(f"{name:<36} {ms:7.3f} {diff:16.2e}", flush=True)


if __name__ == "__main__":
    main()
