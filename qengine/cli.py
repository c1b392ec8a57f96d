"""The ``qengine`` command line. Only this module prints or writes files on the user's behalf;
the work is done by the helpers in ``qengine.tools`` (which return data).

Every expected failure (bad arguments, unreadable or malformed files, inputs that do not fit
the model) ends as one line ``qengine: error: ...`` on stderr and exit code 2.
"""
import argparse
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import QEngineError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, exit code 2, no usage dump: scripts parse this.
        print(f"qengine: error: {message}", file=sys.stderr)
        sys.exit(2)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _static_options(s, bias=True):
    from .workflows.static import METHODS
    s.add_argument("--method", choices=METHODS, default="minmax",
                   help="calibration method (static mode, default minmax)")
    s.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor instead of per output channel")
    s.add_argument("--symmetric-activations", action="store_true",
                   help="activations on a symmetric grid (zero point 128)")
    if bias:
        s.add_argument("--bias-correction", action="store_true",
                       help="fold each layer's mean output error into its bias")


def _names(text):
    return frozenset(n.strip() for n in text.split(",") if n.strip())


def _set_threads(args):
    if getattr(args, "threads", None) is not None:
        from ._runtime import set_num_threads
        set_num_threads(args.threads)


def _write_npz(path, arrays):
    """Like np.savez, but any output name is a valid key (np.savez(**kw) reserves `file` and
    `allow_pickle`) and object arrays are refused instead of pickled."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(arr), allow_pickle=False)


def _check_output_path(path):
    """Fail before the work, not after it, when the output cannot be written there."""
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise QEngineError(f"cannot write {str(path)!r}: directory {str(parent)!r} does not "
                           f"exist")
    if Path(path).is_dir():
        raise QEngineError(f"cannot write {str(path)!r}: it is a directory")


def _print_json(obj):
    print(json.dumps(obj, indent=None, sort_keys=False))


# ---- info -------------------------------------------------------------------------------------
def _cmd_info(args):
    from ._runtime import config, show_config
    if args.json:
        _print_json(config())
    else:
        show_config()
    return 0


# ---- quantize ---------------------------------------------------------------------------------
def _progress(label):
    """A one-line text progress bar on stderr, or None when stderr is not a terminal (logs and
    pipes get no carriage-return noise)."""
    if not sys.stderr.isatty():
        return None

    def report(done, total):
        if total:
            filled = int(30 * done / total)
            bar = "#" * filled + "." * (30 - filled)
            sys.stderr.write(f"\r{label} [{bar}] {done}/{total}")
        else:
            sys.stderr.write(f"\r{label} {done} batches")
        if total and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return report


def _cmd_quantize(args):
    from .engine_file import save
    from .tools.modelio import read_model
    from .tools.quantize import QuantizeRequest, quantization_report, quantize_graph
    from .tools.sizes import weight_bytes
    from .tools.table import format_table, human_bytes
    _check_output_path(args.output)
    if args.auto_keep_float != (args.target_sqnr is not None):
        raise QEngineError("--auto-keep-float and --target-sqnr DB go together")
    graph = read_model(args.model)
    req = QuantizeRequest(per_row=args.per_row, keep_float=args.keep_float,
                          calib=None if args.calib is None else Path(args.calib),
                          method=args.method, per_channel=not args.per_tensor,
                          symmetric_activations=args.symmetric_activations,
                          bias_correction=args.bias_correction, target_sqnr=args.target_sqnr,
                          progress=_progress("calibrating"))
    result = quantize_graph(graph, args.mode, req)
    qgraph = result.graph
    save(qgraph, args.output)
    rows = quantization_report(result.float_graph, qgraph, result.report_ops)
    table = [[r["node"], r["op"] + (f" -> {r['new_op']}" if r["quantized"] else ""),
              "int8" if r["quantized"] else "float", r["bytes_before"], r["bytes_after"]]
             for r in rows]
    if table:
        print(format_table(["node", "op", "runs in", "bytes before", "bytes after"], table,
                           "lllrr"))
    n_q = sum(r["quantized"] for r in rows)
    before = sum(r["bytes_before"] for r in rows)
    after = sum(r["bytes_after"] for r in rows)
    extra = {"dynamic": ", per-row activations" if args.per_row else "",
             "static": f", {args.method} calibration, weights "
                       f"{'per tensor' if args.per_tensor else 'per channel'}"
                       f"{', bias correction' if args.bias_correction else ''}"}.get(args.mode, "")
    print(f"quantized {n_q} of {len(rows)} quantizable nodes ({args.mode} mode{extra}), "
          f"{len(rows) - n_q} kept float; their weights {human_bytes(before)} -> "
          f"{human_bytes(after)}")
    print(f"all initializers {human_bytes(weight_bytes(result.float_graph))} -> "
          f"{human_bytes(weight_bytes(qgraph))}")
    for note in result.notes:
        print(note)
    size = Path(args.output).stat().st_size
    print(f"wrote {args.output} ({size} bytes, {human_bytes(size)})")
    return 0


# ---- analyze ----------------------------------------------------------------------------------
def _cmd_analyze(args):
    from .tools.analyze import analyze, report_rows
    from .tools.calibdata import load_calibration
    from .tools.modelio import load_array, read_model
    from .tools.table import format_table
    if args.plots is not None:
        from .tools.plots import require_matplotlib
        require_matplotlib()                          # fail before the work, not after it
        if Path(args.plots).exists() and not Path(args.plots).is_dir():
            raise QEngineError(f"--plots {args.plots!r} exists and is not a directory")
    graph = read_model(args.model)
    calib = load_calibration(args.calib, graph)
    evald = None if args.eval is None else load_calibration(args.eval, graph)
    labels = None if args.labels is None else load_array(Path(args.labels), "--labels")
    report = analyze(graph, calib, method=args.method, per_channel=not args.per_tensor,
                     symmetric_activations=args.symmetric_activations, eval_data=evald,
                     labels=labels, progress=_progress("calibrating"))
    headers, rows, align = report_rows(report)
    print(f"per-layer quantization analysis ({report.method} calibration, weights "
          f"{'per tensor' if args.per_tensor else 'per channel'}); rank 1 = most sensitive")
    print(format_table(headers, rows, align))
    print(f"full int8 model: output SQNR {report.int8_sqnr_db:.2f} dB vs FP32"
          + ("" if report.float_metric is None else
             f"; accuracy FP32 {100 * report.float_metric:.2f}% -> int8 "
             f"{100 * report.int8_metric:.2f}%"))
    print("sqnr alone: model output with only that layer in int8; in model: the layer's output "
          "inside the full int8 model; saturated: calibration values clipped (more than half a "
          "step outside the int8 range)")
    if args.plots is not None:
        from .tools.plots import write_plots
        paths = write_plots(report, args.plots)
        print(f"wrote {len(paths)} plots to {args.plots}")
    return 0


# ---- run --------------------------------------------------------------------------------------
def _cmd_run(args):
    from .tools.modelio import load_inputs, load_session
    _check_output_path(args.output)
    _set_threads(args)
    sess = load_session(args.model)
    outputs = sess.run(load_inputs(args.input))
    _write_npz(args.output, outputs)
    for name, arr in outputs.items():
        print(f"{name}: {arr.dtype} {list(arr.shape)}")
    print(f"wrote {args.output}")
    return 0


# ---- bench ------------------------------------------------------------------------------------
def _cmd_bench(args):
    from ._runtime import active_isa, get_num_threads
    from .tools.bench import latency_stats, profile_summary, time_runs
    from .tools.modelio import load_inputs, load_session, random_inputs
    from .tools.table import format_table
    _set_threads(args)
    sess = load_session(args.model)
    feeds = load_inputs(args.input) if args.input else random_inputs(sess.inputs)
    result = {"model": str(args.model), **latency_stats(time_runs(sess, feeds, args.runs,
                                                                   args.warmup)),
              "warmup": args.warmup, "threads": get_num_threads(), "isa": active_isa(),
              "inputs": {k: {"dtype": v.dtype.name, "shape": list(v.shape)}
                         for k, v in feeds.items()},
              "generated_inputs": not args.input}
    if args.profile:
        result["profile"] = profile_summary(sess, feeds, args.runs)
    if args.json:
        _print_json(result)
        return 0
    shapes = ", ".join(f"{k} {v['dtype']}{v['shape']}" for k, v in result["inputs"].items())
    print(f"model    {args.model}")
    print(f"inputs   {shapes}{' (random)' if result['generated_inputs'] else ''}")
    print(f"isa      {result['isa']}   threads {result['threads']}   runs {result['runs']} "
          f"(+{args.warmup} warm-up)")
    print(f"latency  median {result['median_ms']:.3f} ms   p90 {result['p90_ms']:.3f} ms   "
          f"p99 {result['p99_ms']:.3f} ms")
    if args.profile:
        prof = result["profile"]
        print("\ntime per node (median over runs)")
        print(format_table(["node", "op", "ms"],
                           [[n["node"], n["op"], n["median_ms"]] for n in prof["nodes"]]))
        print("\ntime per op type")
        print(format_table(["op", "ms", "share"],
                           [[o["op"], o["ms"], f"{100 * o['share']:.1f}%"]
                            for o in prof["op_types"]], "lrr"))
    return 0


# ---- inspect ----------------------------------------------------------------------------------
def _fmt_shape(shape):
    return "?" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


def _fmt_scale(value):
    return "-" if value is None else f"{value:.3e}"   # None: an empty scale tensor


def _cmd_inspect(args):
    from .tools.describe import describe
    from .tools.modelio import read_model
    from .tools.table import format_table, human_bytes
    d = describe(read_model(args.model))
    if args.json:
        _print_json(d)
        return 0
    print(f"graph {d['name']!r}  opset {d['opset']}")
    for kind in ("inputs", "outputs"):
        for v in d[kind]:
            print(f"  {kind[:-1]:<6} {v['name']}: {v['dtype']} {_fmt_shape(v['shape'])}")
    print(f"\nnodes ({len(d['nodes'])})")
    print(format_table(["name", "op", "inputs", "outputs", "weights"],
                       [[n["name"], n["op"], ", ".join(i or "-" for i in n["inputs"]),
                         ", ".join(n["outputs"]),
                         (f"{'/'.join(n['weight_dtypes'])} {n['weight_bytes']} B"
                          if n["weight_dtypes"] else "")] for n in d["nodes"]], "lllll"))
    if d["qparams"]:
        print("\nquantized weights (symmetric, one scale per output row)")
        print(format_table(["node", "weight", "dtype", "shape", "scales", "scale min",
                            "scale max"],
                           [[q["node"], q["weight"], q["dtype"], _fmt_shape(q["shape"]),
                             q["scales"], _fmt_scale(q["scale_min"]),
                             _fmt_scale(q["scale_max"])]
                            for q in d["qparams"]], "lllrrrr"))
    print(f"\ninitializers ({len(d['initializers'])})")
    print(format_table(["name", "dtype", "shape", "bytes"],
                       [[i["name"], i["dtype"], _fmt_shape(i["shape"]), i["bytes"]]
                        for i in d["initializers"]], "lllr"))
    print(f"\ntotal initializer size {d['total_bytes']} bytes ({human_bytes(d['total_bytes'])})")
    return 0


# ---- demo -------------------------------------------------------------------------------------
def _cmd_demo(args):
    from ._runtime import active_isa, get_num_threads
    from .tools.demo import run_demo
    from .tools.demo_cnn import run_cnn_demo
    _set_threads(args)
    with tempfile.TemporaryDirectory(prefix="qengine-demo-") as workdir:
        # LSTM numbers stay at the top level of the JSON (as before the CNN part existed)
        r = run_demo(workdir, runs=args.runs) if args.only != "cnn" else {"runs": args.runs}
        if args.only != "lstm":
            r["cnn"] = run_cnn_demo(workdir, runs=args.runs)
    r.update(threads=get_num_threads(), isa=active_isa())
    if args.json:
        _print_json(r)
        return 0
    if args.only != "cnn":
        _print_lstm_demo(r)
    if args.only != "lstm":
        if args.only != "cnn":
            print()
        _print_cnn_demo(r["cnn"])
    print(f"\nisa {r['isa']}, threads {r['threads']}, latency = median of {r['runs']} runs")
    return 0


def _print_lstm_demo(r):
    from .tools.table import format_table, human_bytes
    f, q = r["fp32"], r["int8"]
    print(f"qengine demo: {r['model']}")
    print(f"test split: {r['test_samples']} sequences of handwritten digits (8 rows x 8 pixels)\n")
    rows = [["accuracy", f"{100 * f['accuracy']:.2f}%", f"{100 * q['accuracy']:.2f}%",
             f"{100 * (q['accuracy'] - f['accuracy']):+.2f} pt"],
            ["weights", human_bytes(f["weight_bytes"]), human_bytes(q["weight_bytes"]),
             f"{f['weight_bytes'] / q['weight_bytes']:.2f}x smaller"],
            ["engine file", human_bytes(f["file_bytes"]), human_bytes(q["file_bytes"]),
             f"{f['file_bytes'] / q['file_bytes']:.2f}x smaller"],
            ["latency batch 1 (median)", f"{f['latency_ms_batch1']:.3f} ms",
             f"{q['latency_ms_batch1']:.3f} ms",
             f"{f['latency_ms_batch1'] / q['latency_ms_batch1']:.2f}x faster"]]
    print(format_table(["", "FP32", "INT8 (dynamic)", "INT8 vs FP32"], rows, "lrrr"))
    if r["torch_fp32_accuracy"] is not None:
        print(f"\nPyTorch FP32 accuracy recorded at training: {100 * r['torch_fp32_accuracy']:.2f}%")


def _print_cnn_demo(c):
    from .tools.table import format_table, human_bytes
    tags = ("fp32", "int8", "int8_bias_corrected")
    print(f"qengine demo: {c['model']}")
    print(f"test split: the same {c['test_samples']} digits as 1x8x8 images; static INT8 "
          f"calibrated on {c['calibration_samples']} other images\n")
    rows = [["accuracy"] + [f"{100 * c[t]['accuracy']:.2f}%" for t in tags],
            ["logits SQNR vs FP32"] + ["-"] + [f"{c[t]['sqnr_db']:.1f} dB" for t in tags[1:]],
            ["weights"] + [human_bytes(c[t]["weight_bytes"]) for t in tags],
            ["engine file"] + [human_bytes(c[t]["file_bytes"]) for t in tags],
            ["latency batch 1 (median)"] + [f"{c[t]['latency_ms_batch1']:.3f} ms"
                                             for t in tags]]
    print(format_table(["", "FP32", "INT8 (static)", "INT8 + bias corr."], rows, "lrrr"))


# ---- parser -----------------------------------------------------------------------------------
def build_parser():
    from .tools.quantize import MODES
    p = _Parser(prog="qengine", description="int8 inference and quantization engine")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("info", help="CPU features, ISAs, active kernels, OpenMP, threads")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("quantize", help="quantize an ONNX model into an engine file (.qe)")
    s.add_argument("model", help="MODEL.onnx (or an FP32 engine file)")
    s.add_argument("-o", "--output", required=True, help="engine file to write (OUT.qe)")
    s.add_argument("--mode", choices=sorted(MODES), default="dynamic")
    s.add_argument("--per-row", action="store_true",
                   help="quantize activations per row instead of per tensor (dynamic mode)")
    s.add_argument("--keep-float", type=_names, default=frozenset(), metavar="NODE,...",
                   help="node names to leave in float")
    s.add_argument("--calib", metavar="DATA.npz",
                   help="calibration inputs (static mode): one array per model input, samples "
                        "along the first axis")
    _static_options(s)
    s.add_argument("--auto-keep-float", action="store_true",
                   help="keep the most sensitive layers float until --target-sqnr is met")
    s.add_argument("--target-sqnr", type=_finite_float, metavar="DB",
                   help="output SQNR target (dB, on the calibration data) for --auto-keep-float")
    s.set_defaults(func=_cmd_quantize)

    s = sub.add_parser("analyze", help="per-layer quantization error, ranges, saturation and "
                                       "sensitivity (static PTQ)")
    s.add_argument("model", help="MODEL.onnx (or an FP32 engine file)")
    s.add_argument("--calib", required=True, metavar="DATA.npz", help="calibration inputs")
    s.add_argument("--eval", metavar="DATA.npz",
                   help="evaluation inputs (default: the calibration inputs)")
    s.add_argument("--labels", metavar="LABELS.npy",
                   help="one label per evaluated sample: adds top-1 accuracy")
    s.add_argument("--plots", metavar="DIR", help="write PNG histograms and an SQNR chart here")
    _static_options(s, bias=False)
    s.set_defaults(func=_cmd_analyze)

    input_help = "an input array: NAME=FILE.npy (repeat for each input)"
    s = sub.add_parser("run", help="run a model on .npy inputs, save the outputs as .npz")
    s.add_argument("model", help="MODEL.qe or MODEL.onnx")
    s.add_argument("--input", action="append", default=[], metavar="NAME=FILE", help=input_help)
    s.add_argument("-o", "--output", required=True, help="OUT.npz (keys: graph output names)")
    s.add_argument("--threads", type=_positive_int, help="OpenMP threads for the kernels")
    s.set_defaults(func=_cmd_run)

    s = sub.add_parser("bench", help="latency percentiles (and per-node profile) of a model")
    s.add_argument("model", help="MODEL.qe or MODEL.onnx")
    s.add_argument("--input", action="append", default=[], metavar="NAME=FILE",
                   help=input_help + "; omitted: random inputs from the declared static shapes")
    s.add_argument("--threads", type=_positive_int, help="OpenMP threads for the kernels")
    s.add_argument("--runs", type=_positive_int, default=100, help="timed runs (default 100)")
    s.add_argument("--warmup", type=_non_negative_int, default=10,
                   help="untimed runs first (default 10)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--profile", action="store_true", help="time per node and per op type")
    s.set_defaults(func=_cmd_bench)

    s = sub.add_parser("inspect", help="nodes, dtypes, qparams and sizes of a model")
    s.add_argument("model", help="MODEL.qe or MODEL.onnx")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_cmd_inspect)

    s = sub.add_parser("demo", help="FP32 vs INT8 on the bundled digit classifiers (LSTM: "
                                    "dynamic, CNN: static)")
    s.add_argument("--only", choices=("cnn", "lstm"), help="run one of the two demos")
    s.add_argument("--runs", type=_positive_int, default=50,
                   help="timed batch-1 runs per model (default 50)")
    s.add_argument("--threads", type=_positive_int, help="OpenMP threads for the kernels")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_cmd_demo)
    return p


#: failures that are the user's input, not a qengine bug: report them in one line.
_USER_ERRORS = (QEngineError, OSError, ValueError, EOFError, zipfile.BadZipFile)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except _USER_ERRORS as e:
        msg = " ".join(str(e).split()) or type(e).__name__  # one line, whatever the message
        print(f"qengine: error: {msg}", file=sys.stderr)
        return 2
