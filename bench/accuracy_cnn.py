"""Accuracy of static int8 on real data: the digits CNN (scripts/train_demo_cnn.py, trained on
scikit-learn's digits) — FP32 vs qengine INT8 for every calibration method, per-channel vs
per-tensor weights, with and without bias correction, next to ONNX Runtime's quantize_static
(QDQ, QUInt8 activations, QInt8 weights, after quant_pre_process) on the same model and calibration images.

    python bench/accuracy_cnn.py [--calib 256] [--epochs 40]

Prints a markdown table: test accuracy (540 held-out images) and output SQNR (dB, logits vs
FP32). Needs torch, onnx, onnxruntime and scikit-learn (to train and export the model).
"""
import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

import qengine

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from accuracy_models import load_trainer  # noqa: E402
from compare_cnn import ort_qdq, torch_int8  # noqa: E402
from qengine.workflows.ptq import prepare_float_graph  # noqa: E402


def sqnr(y, ref):
    ref = np.asarray(ref, np.float64)
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((np.asarray(y, np.float64) - ref) ** 2)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--study", action="store_true",
                    help="the calibration study instead: every method on every model of "
                         "bench/accuracy_models.py, next to ONNX Runtime's")
    ap.add_argument("--models", default=None, help="comma-separated subset for --study")
    ap.add_argument("--rounding", action="store_true",
                    help="with --study: W8/W4 weights with nearest rounding and AdaRound instead "
                         "of the calibration methods (the digits models: AdaRound in NumPy is "
                         "too slow for ResNet-18's 4608-wide layers)")
    ap.add_argument("--equalize", action="store_true",
                    help="with --study: CLE alone against CLE + high-bias absorption "
                         "(equalize=True), per-channel and per-tensor weights")
    args = ap.parse_args(argv)
    if args.study:
        return study(args)
    import onnxruntime as ort
    import torch
    tr = load_trainer()
    torch.manual_seed(0)
    model, xtr, xte, _, yte = tr.train(epochs=args.epochs)
    rng = np.random.default_rng(0)
    xc = xtr[rng.choice(len(xtr), args.calib, replace=False)][:, None].astype(np.float32) / 16
    x = xte[:, None].astype(np.float32) / 16
    with tempfile.TemporaryDirectory() as tmp:
        path = tr.export_onnx(model, os.path.join(tmp, "cnn.onnx"))
        ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
            None, {"image": x})[0]
        acc = lambda y: 100.0 * float((y.argmax(1) == yte).mean())  # noqa: E731
        print(f"FP32 test accuracy: {acc(ref):.2f}% ({len(yte)} images); calibration: "
              f"{args.calib} training images\n")
        print("| engine | method | weights | bias corr. | accuracy % | drop pp | SQNR dB |")
        print("|---|---|---|---|---:|---:|---:|")
        g = qengine.from_onnx(path)
        for method in ("minmax", "entropy", "percentile", "mse", "moving_average"):
            for pc in (True, False):
                for bc in (False, True):
                    cfg = qengine.StaticQuantConfig(method=method, per_channel=pc,
                                                    bias_correction=bc)
                    q = qengine.quantize_static(g, {"image": xc}, cfg)
                    y = qengine.Session(q).run({"image": x})["logits"]
                    print(f"| qengine | {method} | {'per-channel' if pc else 'per-tensor'} | "
                          f"{'yes' if bc else 'no'} | {acc(y):.2f} | {acc(ref) - acc(y):+.2f} | "
                          f"{sqnr(y, ref):.1f} |", flush=True)
        for method in ("minmax", "entropy", "percentile"):
            for pc in (True, False):
                qp = ort_qdq(path, "image", [xc[i:i + 32] for i in range(0, len(xc), 32)], tmp,
                             method, pc)
                y = ort.InferenceSession(qp, providers=["CPUExecutionProvider"]).run(
                    None, {"image": x})[0]
                print(f"| ONNX Runtime | {method} | {'per-channel' if pc else 'per-tensor'} | "
                      f"no | {acc(y):.2f} | {acc(ref) - acc(y):+.2f} | {sqnr(y, ref):.1f} |",
                      flush=True)


#: (label, StaticQuantConfig options) of the study's qengine rows (weights per channel unless
#: the label says per-tensor)
STUDY_METHODS = (("minmax", {}), ("entropy", {"method": "entropy"}),
                 ("entropy, pure KL", {"method": "entropy",
                                       "observer_options": {"mse_floor": False}}),
                 ("percentile", {"method": "percentile"}), ("mse", {"method": "mse"}),
                 ("auto", {"method": "auto"}),
                 ("minmax + equalize", {"equalize": True}),
                 ("minmax, per-tensor weights", {"per_channel": False}),
                 ("minmax + equalize, per-tensor weights", {"per_channel": False,
                                                            "equalize": True}))


#: the --rounding rows
ROUNDING_ROWS = tuple((f"W{b}{', per-tensor' if not pc else ''}, {r}",
                       {"weight_bits": b, "per_channel": pc, "rounding": r})
                      for b in (8, 4) for pc in (True, False) for r in ("nearest", "adaround"))


#: the --equalize rows: (label, options, the graph equalized by hand first — CLE without the
#: high-bias absorption that equalize=True adds)
EQUALIZE_ROWS = tuple(row for pc in (True, False) for row in (
    (f"minmax{'' if pc else ', per-tensor weights'}", {"per_channel": pc}, False),
    (f"CLE only{'' if pc else ', per-tensor weights'}", {"per_channel": pc}, True),
    (f"CLE + high-bias absorption{'' if pc else ', per-tensor weights'}",
     {"per_channel": pc, "equalize": True}, False)))


def study(args):
    import onnxruntime as ort
    from accuracy_models import cases
    names = tuple(args.models.split(",")) if args.models else None
    if args.rounding and names is None:
        names = ("digits", "digits_outlier", "digits_dw")
    if args.equalize and names is None:
        names = ("digits", "digits_outlier", "digits_dw_relu")
    print("| model | engine | method | SQNR dB | accuracy % |")
    print("|---|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases(tmp, **({"names": names} if names else {}), epochs=args.epochs,
                          calib=args.calib):
            def run_ort(path, optimize=True):
                so = ort.SessionOptions()
                if not optimize:     # QDQ run as Dequantize -> float op -> Quantize
                    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                return np.concatenate([s.run(None, {case.input_name: x})[0]
                                       for x in case.test])

            ref = run_ort(case.path)

            def row(engine, label, y):
                acc = "" if case.labels is None else \
                    f"{100.0 * float((y.argmax(1) == case.labels).mean()):.2f}"
                print(f"| {case.name} | {engine} | {label} | {sqnr(y, ref):.2f} | {acc} |",
                      flush=True)
            row("FP32", "", ref)
            g = qengine.from_onnx(case.path)
            feeds = [{case.input_name: x} for x in case.calib]
            rows = EQUALIZE_ROWS if args.equalize else \
                [(label, opts, False) for label, opts in
                 (ROUNDING_ROWS if args.rounding else STUDY_METHODS)]
            for label, opts, by_hand in rows:
                cfg = qengine.StaticQuantConfig(**opts)
                gq = qengine.equalize(prepare_float_graph(g))[0] if by_hand else g
                s = qengine.Session(qengine.quantize_static(gq, feeds, cfg))
                out = s.output_names[0]
                row("qengine", label, np.concatenate([s.run({case.input_name: x})[out]
                                                      for x in case.test]))
            if not (args.rounding or args.equalize):   # torch.ao's FX int8 (x86, default qconfig)
                import torch
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.simplefilter("ignore")
                    tm = torch_int8(case.torch_model, case.calib)
                    row("torch.ao", "x86 default qconfig (histogram)", np.concatenate(
                        [tm(torch.from_numpy(x)).numpy() for x in case.test]))
            for method in () if args.rounding or args.equalize else ("minmax", "entropy"):
                qdq = ort_qdq(case.path, case.input_name, case.calib, tmp, method, True)
                row("ONNX Runtime", f"{method} (its int8 kernels)", run_ort(qdq))
                row("ONNX Runtime", f"{method} (its QDQ model run in float)",
                    run_ort(qdq, optimize=False))


if __name__ == "__main__":
    main()
