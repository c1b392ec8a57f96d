"""Quantized files from other tools, run by qengine next to ONNX Runtime and OpenVINO (issue 10).

For the digits CNN, ResNet-18 and MobileNetV2 (bench/models.py), each producer's file — ORT QDQ
U8S8 and S8S8, ORT QOperator, NNCF QDQ, PyTorch-exported QDQ (FX QAT route), and qengine's own
static PTQ exported as QDQ — is imported by qengine (lowered; float islands counted), and
qengine, ORT and OpenVINO run the same file: SQNR vs the FP32 model (and digits accuracy), then
median latency at batch 1 on 1 and 2 threads.

    python bench/qdq_table.py [--runs 20] [--size 224] [--models digits,resnet18,mobilenetv2,ppocr_rec]

ppocr_rec is the real pretrained PP-OCRv4 text recognizer (bench/real_models.py), calibrated and
tested on rendered text lines; its accuracy column is the share of lines whose greedy CTC
decoding equals FP32's.
"""
import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT / "scripts")]

import qengine as qe  # noqa: E402
import qdq_producers as P  # noqa: E402  (tests/qdq_producers.py)


def sqnr(y, ref):
    return float(10 * np.log10((ref ** 2).sum() / max(((y - ref) ** 2).sum(), 1e-30)))


def batch1(fn, x):
    """Sample by sample: some producers' files have a static batch of 1."""
    return np.concatenate([fn(x[i:i + 1]) for i in range(len(x))])


def median_ms(fn, x, runs):
    fn(x)
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(x)
        t.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(t))


def text_lines(n, seed):
    """n rendered text lines as PP-OCR wants them: [n, 3, 48, 320], (x/255 − 0.5)/0.5."""
    from PIL import Image, ImageDraw, ImageFont
    rng = np.random.default_rng(seed)
    words = ["quantize", "engine", "int8", "QDQ", "lowering", "2026", "ONNX", "runtime",
             "calibration", "kernel", "NumPy", "tensor", "scale", "zero", "point", "42"]
    font = ImageFont.load_default(size=26)
    out = []
    for _ in range(n):
        text = " ".join(rng.choice(words, 3))
        img = Image.new("RGB", (320, 48), (255, 255, 255))
        ImageDraw.Draw(img).text((6, 8), text, fill=(0, 0, 0), font=font)
        out.append((np.asarray(img, np.float32) / 255 - 0.5) / 0.5)
    return np.ascontiguousarray(np.stack(out).transpose(0, 3, 1, 2))


def ctc_strings(probs):
    """Greedy CTC: per line, the argmax path with repeats and blanks (0) removed."""
    out = []
    for row in probs.argmax(-1):
        keep = [int(c) for i, c in enumerate(row) if c != 0 and (i == 0 or c != row[i - 1])]
        out.append(tuple(keep))
    return out


def make_models(names, size, tmp):
    import torch
    import models as M
    out = {}
    rng = np.random.default_rng(0)
    for name in names:
        if name == "ppocr_rec":
            import real_models
            path = str(real_models.fetch("ppocr_rec"))
            out[name] = (None, path, "x", text_lines(16, 0), text_lines(8, 1), None)
            continue
        if name == "digits":
            import train_demo_cnn as tr
            m, xtr, xte, _, yte = tr.train(epochs=15)
            path = tr.export_onnx(m, os.path.join(tmp, "digits.onnx"))
            calib = xtr[:64, None].astype(np.float32) / 16
            out[name] = (m, path, "image", calib, xte[:, None].astype(np.float32) / 16, yte)
            continue
        torch.manual_seed(0)
        m = (M.resnet18 if name == "resnet18" else M.mobilenet_v2)(num_classes=1000).eval()
        path = os.path.join(tmp, f"{name}.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, torch.randn(1, 3, size, size), path, dynamo=False,
                              input_names=["input"], output_names=["output"], opset_version=17,
                              dynamic_axes={"input": {0: "n"}, "output": {0: "n"}})
        calib = rng.standard_normal((16, 3, size, size)).astype(np.float32)
        test = rng.standard_normal((8, 3, size, size)).astype(np.float32)
        out[name] = (m, path, "input", calib, test, None)
    return out


def _no_module():
    raise P.ProducerUnavailable("an ONNX-only model (no PyTorch module to quantize)")


def producers(model, path, inp, calib, tmp, name):
    """{producer: file path or the reason it could not write one}."""
    files = {}
    jobs = {
        "ORT QDQ U8S8": lambda o: P.ort_qdq(path, o, {inp: calib}, "uint8"),
        "ORT QDQ S8S8": lambda o: P.ort_qdq(path, o, {inp: calib}, "int8"),
        "ORT QOperator": lambda o: P.ort_qoperator(path, o, {inp: calib}, "uint8"),
        "NNCF QDQ": lambda o: P.nncf_qdq(path, o, {inp: calib}),
        "PyTorch QDQ (FX QAT)": lambda o: P.torch_qdq(model, o, {inp: calib}, "fx_qat")
        if model is not None else _no_module(),
        "qengine QDQ export": lambda o: qe.export_onnx(
            qe.quantize_static(path, {inp: calib}), o, format="qdq"),
    }
    for label, job in jobs.items():
        out = os.path.join(tmp, f"{name}-{label.replace(' ', '_').replace('(', '').replace(')', '')}.onnx")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                job(out)
            files[label] = out
        except P.ProducerUnavailable as e:
            files[label] = f"unavailable: {e.reason[:80]}"
        except Exception as e:  # noqa: BLE001 — the table says what failed
            files[label] = f"failed: {type(e).__name__}: {str(e)[:80]}"
    return files


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--size", type=int, default=224, help="ResNet/MobileNet input size")
    ap.add_argument("--models", default="digits,resnet18,mobilenetv2,ppocr_rec")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--rounds", type=int, default=3,
                    help="latency rounds per file, engines alternating; the median is shown")
    args = ap.parse_args(argv)
    import onnxruntime as ort
    try:
        import openvino as ov
    except ImportError:
        ov = None
    from qengine import _runtime
    print(f"qengine {qe.__version__} (ISA {_runtime.active_isa()}), "
          f"onnxruntime {ort.__version__}" + (f", openvino {ov.__version__}" if ov else ""))
    print("| model | file | imported | float islands | SQNR qengine dB | SQNR ORT dB | "
          "acc qengine / ORT % | ms qengine 1t/2t | ms ORT 1t/2t | ms OpenVINO 1t/2t |")
    print("|---|---|---|---:|---:|---:|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, path, inp, calib, test, labels) in \
                make_models(args.models.split(","), args.size, tmp).items():
            fp32 = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            ref = batch1(lambda x: fp32.run(None, {inp: x})[0], test)
            for label, f in producers(model, path, inp, calib, tmp, name).items():
                if not os.path.exists(str(f)):
                    print(f"| {name} | {label} | {f} | | | | | | | |", flush=True)
                    continue
                feed_name = ort.InferenceSession(f, providers=["CPUExecutionProvider"]) \
                    .get_inputs()[0].name
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        g = qe.from_onnx(f)
                        _, rep = qe.qdq.lower(qe.qdq.canonicalize(qe.from_onnx(f, lower=False)),
                                              report=True)
                    sess = qe.Session(g)
                    out_name = sess.output_names[0]
                    y = batch1(lambda x: sess.run({feed_name: x})[out_name], test)
                    imported = "yes"
                except Exception as e:  # noqa: BLE001
                    print(f"| {name} | {label} | no: {type(e).__name__}: {str(e)[:70]} | | | | "
                          f"| | | |", flush=True)
                    continue
                o = ort.InferenceSession(f, providers=["CPUExecutionProvider"])
                yo = batch1(lambda x: o.run(None, {feed_name: x})[0], test)
                acc = ""
                if name == "ppocr_rec":         # decoded lines identical to FP32's
                    same = lambda yy: 100 * np.mean([a == b for a, b in  # noqa: E731
                                                      zip(ctc_strings(yy), ctc_strings(ref))])
                    acc = f"{same(y):.0f} / {same(yo):.0f} (lines = FP32)"
                if labels is not None:
                    a = lambda yy: 100 * float((yy.argmax(1) == labels).mean())  # noqa: E731
                    acc = f"{a(y):.1f} / {a(yo):.1f}"
                lat = ["", "", ""]
                if not args.no_latency:
                    x1 = test[:1]
                    rounds = []
                    for _ in range(args.rounds):     # engines alternate: drift hits all alike
                        rounds.append(latencies(g, f, feed_name, x1, args.runs, ort, ov))
                    cols = np.median(np.array(rounds), axis=0).tolist()
                    lat = [f"{cols[0][i]:.2f} / {cols[1][i]:.2f}" if i < len(cols[0]) and
                           np.isfinite(cols[0][i]) else "cannot read" if i < len(cols[0]) else "-"
                           for i in range(3)]
                print(f"| {name} | {label} | {imported} | {len(rep)} | {sqnr(y, ref):.1f} | "
                      f"{sqnr(yo, ref):.1f} | {acc} | {lat[0]} | {lat[1]} | {lat[2]} |",
                      flush=True)


def latencies(g, f, feed_name, x1, runs, ort, ov):
    """[[qengine, ORT, OpenVINO] ms at 1 thread, the same at 2 threads] (nan: cannot read)."""
    cols = []
    for th in (1, 2):
        qe.set_num_threads(th)
        s = qe.Session(g)
        so = ort.SessionOptions()
        so.intra_op_num_threads = th
        so.inter_op_num_threads = 1
        oo = ort.InferenceSession(f, so, providers=["CPUExecutionProvider"])
        row = [median_ms(lambda x: s.run({feed_name: x}), x1, runs),
               median_ms(lambda x: oo.run(None, {feed_name: x}), x1, runs)]
        if ov is not None:
            try:
                req = ov.Core().compile_model(f, "CPU", {"INFERENCE_NUM_THREADS": th}) \
                    .create_infer_request()
                row.append(median_ms(lambda x: req.infer({0: x}), x1, runs))
            except Exception:  # noqa: BLE001 — it cannot read the file
                row.append(float("nan"))
        cols.append(row)
    return cols


if __name__ == "__main__":
    main()
