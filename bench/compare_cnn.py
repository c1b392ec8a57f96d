"""qengine static int8 CNNs vs ONNX Runtime quantize_static (QDQ) vs OpenVINO running that QDQ
model vs torch x86 static int8 vs FP32, same model and inputs, in one run.

    python bench/compare_cnn.py [--models resnet18,mobilenetv2,lenet,light_resnet50]
                                [--batch 1,8] [--threads 1,2] [--runs 20] [--no-calib-bench]

Peers: ORT quantize_static(QuantFormat.QDQ, activations QUInt8, weights QInt8 per channel,
MinMax calibration on the same calibration batches); OpenVINO compiles that same QDQ model
(skipped when openvino is not installed); torch FX static int8 with the x86 backend (skipped for
the light ONNX model, which has no torch definition). Latency is the median of --runs calls,
one engine after the other with a pause between them (an engine's thread pool keeps spinning
for a while after its last call and would slow the next one down on 2 cores); the
output SQNR of each int8 engine against FP32 is printed next to it. The last table times
entropy calibration (qengine vs ORT's Entropy calibrator) with peak memory.
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
N_CALIB = 16


def sqnr_db(y, ref):
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    noise = np.sum((y - ref) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref ** 2) / noise))


def light_model_path(name):
    import onnx
    p = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"
    return str(p) if p.exists() else None


def make_case(name, batch, tmp):
    """(fp32 onnx path, input name, input array, calibration batches, torch model or None)."""
    rng = np.random.default_rng(0)
    if name.startswith("light_"):
        import onnx
        m = onnx.load(light_model_path(name[len("light_"):]))
        # these old files list their initializers as graph inputs too (IR 3), which ONNX
        # Runtime then requires to be fed: keep only the data input
        inits = {t.name for t in m.graph.initializer}
        keep = [i for i in m.graph.input if i.name not in inits]
        del m.graph.input[:]
        m.graph.input.extend(keep)
        m.ir_version = max(m.ir_version, 4)
        # ORT's quantizer writes per-axis DequantizeLinear, which needs opset ≥ 13
        from onnx import version_converter
        m = version_converter.convert_version(m, 13)
        path = os.path.join(tmp, f"{name}.onnx")
        onnx.save(m, path)
        inp = m.graph.input[0]
        shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        if shape[0] != batch:
            return None                       # fixed batch-1 model
        x = rng.standard_normal(shape).astype(np.float32)
        calib = [rng.standard_normal(shape).astype(np.float32) for _ in range(N_CALIB)]
        return path, inp.name, x, calib, None
    from models import INPUT_SHAPES, build, export_onnx   # bench/models.py
    model = build(name)
    shape = (batch, *INPUT_SHAPES[name][1:])
    x = rng.standard_normal(shape).astype(np.float32)
    calib = [rng.standard_normal(shape).astype(np.float32) for _ in range(N_CALIB)]
    path = os.path.join(tmp, f"{name}_b{batch}.onnx")
    export_onnx(model, path, shape)
    return path, "input", x, calib, model


def ort_qdq(fp32_path, input_name, calib, tmp, method="minmax", per_channel=True):
    """ORT quantize_static of `fp32_path` (after quant_pre_process): QDQ, QUInt8 activations,
    QInt8 weights, calibrated on the list of batches `calib`; returns the output path."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{input_name: c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    pre = os.path.join(tmp, "pre.onnx")
    out = os.path.join(tmp, f"qdq_{method}_{int(per_channel)}.onnx")
    quant_pre_process(fp32_path, pre, skip_symbolic_shape=True)
    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=per_channel, calibrate_method=cm)
    return out


def openvino_fn(path, input_name, threads):
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    compiled = core.compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    return lambda x: req.infer({0: x})[compiled.output(0)]


def torch_int8(model, calib):
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    torch.backends.quantized.engine = "x86"
    example = (torch.from_numpy(calib[0]),)
    prepared = prepare_fx(model.eval(), get_default_qconfig_mapping("x86"), example)
    with torch.no_grad():
        for c in calib:
            prepared(torch.from_numpy(c))
    return convert_fx(prepared)


def qengine_session(fp32_path, input_name, calib, method="minmax"):
    g = qengine.from_onnx(fp32_path)
    q = qengine.quantize_static(g, {input_name: np.concatenate(calib)},
                                qengine.StaticQuantConfig(method=method))
    return qengine.Session(q)


def bench_model(name, batch, threads_list, runs, tmp):
    import onnxruntime  # noqa: F401
    case = make_case(name, batch, tmp)
    if case is None:
        return []
    path, iname, x, calib, tmodel = case
    qdq = ort_qdq(path, iname, calib, tmp)
    qe = qengine_session(path, iname, calib)
    ref = ort_session(path, 1).run(None, {iname: x})[0]
    tq = torch_int8(tmodel, calib) if tmodel is not None else None
    rows = []
    for th in threads_list:
        qengine.set_num_threads(th)
        r = {"model": name, "batch": batch, "threads": th, "isa": qengine.active_isa()}
        fns = {"qengine": lambda: qe.run({iname: x})}
        ort_q = ort_session(qdq, th)
        fns["ort_int8"] = lambda: ort_q.run(None, {iname: x})
        ov = openvino_fn(qdq, iname, th)
        if ov is not None:
            fns["openvino_int8"] = lambda: ov(x)
        ort_f = ort_session(path, th)
        fns["ort_fp32"] = lambda: ort_f.run(None, {iname: x})
        if tq is not None:
            import torch
            torch.set_num_threads(th)
            xt = torch.from_numpy(x)

            def run_torch():
                with torch.no_grad():
                    return tq(xt)
            fns["torch_int8"] = run_torch
        outs = {"qengine": qe.run({iname: x})[qe.output_names[0]],
                "ort_int8": ort_q.run(None, {iname: x})[0]}
        if ov is not None:
            outs["openvino_int8"] = ov(x)
        if tq is not None:
            outs["torch_int8"] = fns["torch_int8"]().numpy()
        for k, fn in fns.items():
            time.sleep(0.3)          # let the previous engine's spinning worker threads park
            r[f"{k}_ms"] = median_ms(measure(fn, runs=runs, warmup=3))
        for k, y in outs.items():
            r[f"{k}_sqnr"] = sqnr_db(y, ref)
        peers = [r[k] for k in ("ort_int8_ms", "openvino_int8_ms") if k in r]
        r["vs_best_peer"] = r["qengine_ms"] / min(peers)
        rows.append(r)
    return rows


def calibrate_only(who, path, calib, tmp):
    """Entropy calibration alone (statistics + thresholds for every activation), no rewrite."""
    if who == "qengine":
        from qengine.workflows.ptq import (StaticQuantConfig, calibrate,
                                              prepare_float_graph)
        g = prepare_float_graph(path)
        stats = calibrate(g, [{"input": c} for c in calib], StaticQuantConfig(method="entropy"))
        return {k: o.range() for k, o in stats.items()}
    from onnxruntime.quantization.calibrate import CalibrationDataReader, create_calibrator
    from onnxruntime.quantization.calibrate import CalibrationMethod

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    cal = create_calibrator(path, calibrate_method=CalibrationMethod.Entropy,
                            augmented_model_path=os.path.join(tmp, "augmented.onnx"))
    cal.collect_data(Reader())
    return cal.compute_data()


def calib_bench(tmp):
    """Entropy calibration of ResNet-18's activations: qengine vs ORT, time and peak memory,
    each in a fresh process (VmHWM: its own peak resident memory, native allocations too)."""
    path, iname, x, calib, _ = make_case("resnet18", 1, tmp)
    np.save(os.path.join(tmp, "calib.npy"), np.stack(calib))
    out = {}
    for who in ("qengine", "ort"):
        code = (f"import sys, time; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                f"import numpy as np, compare_cnn as c; "
                f"calib = list(np.load({tmp!r} + '/calib.npy')); t0 = time.perf_counter(); "
                f"c.calibrate_only({who!r}, sys.argv[1], calib, sys.argv[2]); "
                f"t = time.perf_counter() - t0; "
                f"hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
                f"print(t, int(hwm.split()[1]) / 1024)")
        import subprocess
        r = subprocess.run([sys.executable, "-c", code, path, tmp], capture_output=True,
                           text=True, timeout=1800)
        t, mem = (float(v) for v in r.stdout.split()[-2:])
        out[who] = (t, mem)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenet_v2,lenet,light_resnet50")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-calib-bench", action="store_true")
    ap.add_argument("--json", metavar="PATH",
                    help="also write every figure, the machine and the load to PATH (JSON), so "
                         "runs can be compared across commits")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    cols = ["qengine", "ort_int8", "openvino_int8", "torch_int8", "ort_fp32"]
    record = {"script": "bench/compare_cnn.py", "argv": sys.argv[1:] if argv is None else argv,
              "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": qengine._runtime.config(),
              "load_before": os.getloadavg(), "rows": [], "calibration": None}
    print(f"# isa={qengine.active_isa()}; medians in ms; SQNR in dB vs FP32 (ORT FP32 output); "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'model':<16}{'b':>3}{'thr':>4}" + "".join(f"{c:>15}" for c in cols)
          + f"{'qe/best':>9}  SQNR qe/ort/ov/torch")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for b in [int(v) for v in args.batch.split(",")]:
                for r in bench_model(name, b, threads, args.runs, tmp):
                    record["rows"].append({"model": name, "batch": b, **r})
                    cells = "".join(f"{r.get(c + '_ms', float('nan')):>15.3f}" for c in cols)
                    sq = "/".join(f"{r.get(c + '_sqnr', float('nan')):.1f}"
                                  for c in ("qengine", "ort_int8", "openvino_int8", "torch_int8"))
                    print(f"{name:<16}{b:>3}{r['threads']:>4}{cells}{r['vs_best_peer']:>9.2f}  {sq}",
                          flush=True)
        if not args.no_calib_bench:
            res = calib_bench(tmp)
            print("\n# entropy calibration alone (statistics + thresholds of every activation), "
                  "ResNet-18, 16 calibration images: time s, peak RSS MiB of a fresh process")
            for who, (t, mem) in res.items():
                print(f"{who:<10}{t:>10.2f} s{mem:>10.1f} MiB")
            print(f"ratio qengine/ORT time: {res['qengine'][0] / res['ort'][0]:.3f}")
            record["calibration"] = {who: {"seconds": t, "peak_rss_mib": mem}
                                     for who, (t, mem) in res.items()}
    if args.json:
        record["load_after"] = os.getloadavg()
        Path(args.json).write_text(json.dumps(record, indent=1, default=float))
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
