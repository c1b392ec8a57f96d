"""Static PTQ with 4-bit weights: what holding them two per byte in memory costs and saves.

    python bench/static_w4.py [--models resnet18,mobilenet_v2] [--threads 1] [--runs 20]
                              [--rounds 5] [--json PATH]

For each model (bench/models.py, random weights with BN statistics, 16 random calibration
batches) and batch 1, one process, engines timed round-robin (`--rounds` rounds of runs/rounds
calls each, so a change of load hits them alike):
  W8          StaticQuantConfig() (int8 weights, int8 kernels);
  W4 int4     StaticQuantConfig(weight_bits=4): Conv/Gemm weights held as int4 in memory
              (qe_conv_w4.h);
  W4 int8     the same graph with every QConv/QGemm node's weight_bits attribute set to 8: the
              same codes on the int8 kernels (the output bytes are checked equal to W4 int4's);
  ORT FP32    for scale.
Printed: median ms, ratio to W8, the bytes of packed Conv/Gemm weights the kernels stream, the
engine-file size, and the output SQNR against FP32 ONNX Runtime.
"""
import argparse
import copy
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_ms, ort_session  # noqa: E402
from compare_cnn import N_CALIB, sqnr_db  # noqa: E402
from compare_rnn import round_robin  # noqa: E402

import qengine  # noqa: E402


def packed_weight_bytes(sess):
    total = 0
    for op in sess._executor.ops:
        layer = getattr(op, "layer", None)
        layer = getattr(layer, "conv", layer)          # QConvAdd2d
        if layer is None or not hasattr(layer, "weight_bits"):
            continue
        if hasattr(layer, "_packs"):
            total += sum(p[0].nbytes for p in layer._packs)
        if hasattr(layer, "_wdw"):
            total += layer._wdw.nbytes
        if getattr(layer, "_w", None) is not None and hasattr(layer._w, "data"):
            total += layer._w.data.nbytes
    return total


def bench(name, threads, runs, rounds, tmp):
    from models import INPUT_SHAPES, build, export_onnx
    rng = np.random.default_rng(0)
    shape = INPUT_SHAPES[name]
    x = rng.standard_normal(shape).astype(np.float32)
    calib = np.concatenate([rng.standard_normal(shape).astype(np.float32)
                            for _ in range(N_CALIB)])
    path = os.path.join(tmp, f"{name}.onnx")
    export_onnx(build(name), path, shape)
    g = qengine.from_onnx(path)
    q8 = qengine.quantize_static(g, {"input": calib}, qengine.StaticQuantConfig())
    q4 = qengine.quantize_static(g, {"input": calib}, qengine.StaticQuantConfig(weight_bits=4))
    q4i8 = copy.deepcopy(q4)
    for n in q4i8.nodes:
        if n.op_type in ("QConv", "QConvAdd", "QGemm"):
            n.attrs["weight_bits"] = 8
    qengine.set_num_threads(threads)
    sess = {"W8": qengine.Session(q8), "W4 int4": qengine.Session(q4),
            "W4 int8": qengine.Session(q4i8)}
    ort = ort_session(path, threads)
    ref = ort.run(None, {"input": x})[0]
    outs = {k: s.run({"input": x})["output"] for k, s in sess.items()}
    assert np.array_equal(outs["W4 int4"], outs["W4 int8"]), "int4 and int8 kernels disagree"
    files = {}
    for k, q in (("W8", q8), ("W4 int4", q4), ("W4 int8", q4i8)):
        p = os.path.join(tmp, f"{name}_{k.replace(' ', '_')}.qe")
        qengine.save(q, p)
        files[k] = os.path.getsize(p)
    fns = {k: (lambda s_: lambda: s_.run({"input": x}))(s) for k, s in sess.items()}
    fns["ORT FP32"] = lambda: ort.run(None, {"input": x})
    t = round_robin(fns, runs, rounds)
    ms = {k: median_ms(v) for k, v in t.items()}
    rows = []
    for k in fns:
        r = {"model": name, "engine": k, "threads": threads, "ms": ms[k],
             "vs_W8": ms[k] / ms["W8"]}
        if k in sess:
            r.update(packed_bytes=packed_weight_bytes(sess[k]), file_bytes=files[k],
                     sqnr_db=sqnr_db(outs[k], ref))
        rows.append(r)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenet_v2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    print(f"isa {qengine.active_isa()}, {args.threads} thread(s), load "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'model':<14}{'engine':<10}{'ms':>9}{'/ W8':>7}{'packed MiB':>12}{'file MiB':>10}"
          f"{'SQNR dB':>9}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for r in bench(name, args.threads, args.runs, args.rounds, tmp):
                rows.append(r)
                extra = (f"{r['packed_bytes'] / 2**20:>12.2f}{r['file_bytes'] / 2**20:>10.2f}"
                         f"{r['sqnr_db']:>9.2f}" if "packed_bytes" in r else "")
                print(f"{r['model']:<14}{r['engine']:<10}{r['ms']:>9.2f}{r['vs_W8']:>7.2f}"
                      + extra)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
