"""The ``qengine`` command line. Only this module prints or writes files on the user's behalf;
the work is done by the helpers in ``qengine.tools`` (which return data).

Every expected failure (bad arguments, unreadable or malformed files, inputs that do not fit
the model) ends as one line ``qengine: error: ...`` on stderr and exit code 2.
"""
import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .errors import ConfigError, NaNWarning, QEngineError


class _HelpFormatter(argparse.HelpFormatter):
    """Show each option's default in -h, except the uninformative ones (None, False, empty)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default in (None, False, argparse.SUPPRESS)
                or (isinstance(default, (frozenset, list, tuple)) and not default)):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

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
    from .workflows.ptq import METHODS
    methods = METHODS if bias else [m for m in METHODS if m != "auto"]   # analyze: no auto
    s.add_argument("--method", choices=methods, default="minmax",
                   help="calibration method (static mode); auto: per activation, the method "
                        "whose range makes the int8 model closest to the float one")
    s.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor instead of per output channel")
    s.add_argument("--symmetric-activations", action="store_true",
                   help="activations on a symmetric grid (zero point 128)")
    if bias:
        s.add_argument("--bias-correction", action="store_true",
                       help="fold each layer's mean output error into its bias")
        s.add_argument("--rounding", choices=("nearest", "adaround"), default="nearest",
                       help="weight rounding: nearest, or learned per layer to reconstruct its "
                            "output on the calibration data (AdaRound; best for 4-bit; in "
                            "dynamic mode too, with --calib)")
        s.add_argument("--smooth-quant", type=float, metavar="ALPHA", default=None,
                       help="SmoothQuant: move activation outliers read by MatMul/Gemm into "
                            "their weights, ALPHA in (0, 1), e.g. 0.5")
        s.add_argument("--float-weights", choices=("float32", "float16"), default="float32",
                       help="storage of the weights of Conv/Gemm/MatMul left float "
                            "(--keep-float, --auto-keep-float): float16 halves them")
        s.add_argument("--equalize", action="store_true",
                       help="cross-layer equalization before calibrating (function-preserving "
                            "rescaling of Conv/Gemm pairs through ReLU) and high-bias "
                            "absorption")


def _names(text):
    return frozenset(n.strip() for n in text.split(",") if n.strip())


def _named(text, what):
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise argparse.ArgumentTypeError(f"expected NAME={what}, got {text!r}")
    return name.strip(), [v.strip() for v in rest.split(",")]


def _shape_arg(text):
    """NAME=D0,D1,... → (name, dims)."""
    name, dims = _named(text, "D0,D1,...")
    if not all(d.isdigit() for d in dims):
        raise argparse.ArgumentTypeError(f"dims must be non-negative integers, got {text!r}")
    return name, tuple(int(d) for d in dims)


def _const_arg(text):
    """NAME=VALUE or NAME=V0,V1,... → (name, a number or a list of numbers)."""
    name, values = _named(text, "VALUE")
    try:
        nums = [int(v) if v.lstrip("+-").isdigit() else _finite_float(v) for v in values]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"values must be numbers, got {text!r}") from None
    return name, nums[0] if len(nums) == 1 else nums


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


def _check_output_path(path, inputs=(), force=False):
    """Fail before the work, not after it, when the output cannot or must not be written: its
    directory is missing, it is a directory, it is one of the command's own inputs (refused even
    with --force: the command would destroy what it reads), or it exists and --force is not
    given (a typo must not silently replace a model or a result)."""
    out = Path(path)
    parent = out.resolve().parent
    if not parent.is_dir():
        raise QEngineError(f"cannot write {str(path)!r}: directory {str(parent)!r} does not "
                           f"exist")
    if out.is_dir():
        raise QEngineError(f"cannot write {str(path)!r}: it is a directory")
    if not out.exists():
        return
    for given in inputs:
        if Path(given).exists() and os.path.samefile(given, out):
            raise QEngineError(f"refusing to write {str(path)!r}: it is also an input of this "
                               f"command ({str(given)!r}); choose another output file")
    if not force:
        raise QEngineError(f"{str(path)!r} exists; pass --force to overwrite it")


def _write_outputs(path, arrays):
    """OUT.npy holds a single output as a plain .npy; anything else is an .npz archive."""
    if Path(path).suffix.lower() != ".npy":
        _write_npz(path, arrays)
        return
    if len(arrays) != 1:
        raise QEngineError(f"{str(path)!r}: a .npy file holds one array but the model has "
                           f"{len(arrays)} outputs ({', '.join(arrays)}); write an .npz")
    np.save(path, np.asarray(next(iter(arrays.values()))), allow_pickle=False)


def _print_json(obj):
    print(json.dumps(obj, indent=None, sort_keys=False))


def _json_float(v):
    """JSON has no inf/nan: SQNRs of exact layers are inf, so write them as strings."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


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
    from .tools.quantize import (ISLAND_RUNS, QuantizeRequest, quantization_report,
                                 quantize_graph, reported_weight_bytes)
    from .tools.sizes import weight_bytes
    from .tools.table import format_table, human_bytes
    _check_output_path(args.output, [args.model] + ([args.calib] if args.calib else []),
                       args.force)
    if args.onnx_out is not None:
        # checked before the work too; onnx is needed only for this option
        _check_output_path(args.onnx_out, [args.model, args.output] +
                           ([args.calib] if args.calib else []), args.force)
        if Path(args.onnx_out).resolve() == Path(args.output).resolve():
            raise QEngineError("--onnx-out and -o name the same file; give the ONNX export "
                               "its own name (e.g. OUT.onnx)")
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise QEngineError("--onnx-out needs the onnx package (pip install onnx)") from None
    budgets = (args.target_sqnr is not None) + (args.max_agreement_drop is not None)
    if args.auto_keep_float != bool(budgets) or budgets > 1:
        raise QEngineError("--auto-keep-float goes with one budget: --target-sqnr DB or "
                           "--max-agreement-drop FRACTION")
    graph = read_model(args.model)
    if args.shape or args.const:
        from .graph.passes import specialize
        graph = specialize(graph, dict(args.shape), dict(args.const))
    req = QuantizeRequest(per_row=args.per_row, weight_bits=args.weight_bits,
                          group_size=args.group_size, keep_float=args.keep_float,
                          calib=None if args.calib is None else Path(args.calib),
                          method=args.method, per_channel=not args.per_tensor,
                          symmetric_activations=args.symmetric_activations,
                          bias_correction=args.bias_correction, equalize=args.equalize,
                          rounding=args.rounding, smooth_quant=args.smooth_quant,
                          float_weights=args.float_weights,
                          target_sqnr=args.target_sqnr,
                          max_agreement_drop=args.max_agreement_drop,
                          rnn=args.rnn, activation_matmul=args.activation_matmul,
                          progress=_progress("calibrating"))
    result = quantize_graph(graph, args.mode, req)
    qgraph = result.graph
    units = _qdq_units(args.model)
    if units is not None:           # quantized by another tool: its Q/DQ decided, not ours
        left = (f"{len(units)} left float: " + ", ".join(f"{u['node']} ({u['reason']})"
                                                       for u in units[:5])
                + (" ..." if len(units) > 5 else "")) if units else "none left float"
        note = (f"the model was already quantized (QuantizeLinear / DequantizeLinear): its "
                f"node units were lowered to integer ops, {left}")
        result = dataclasses.replace(result, notes=(note,) + tuple(result.notes))
    save(qgraph, args.output)
    if args.onnx_out is not None:
        from .export import export_onnx
        export_onnx(qgraph, args.onnx_out, format=args.onnx_format)
    rows = quantization_report(result.float_graph, qgraph, result.report_ops)
    n_q = sum(r["quantized"] for r in rows)
    w_before, w_after = reported_weight_bytes(result.float_graph, qgraph, rows)
    summary = {
        "model": str(args.model), "output": str(args.output), "mode": args.mode,
        "nodes": rows, "quantized": n_q, "kept_float": len(rows) - n_q,
        "weight_bytes_before": w_before, "weight_bytes_after": w_after,
        "initializer_bytes_before": weight_bytes(result.float_graph),
        "initializer_bytes_after": weight_bytes(qgraph),
        "float_islands": [{"nodes": [{"node": n, "op": op} for n, op in i.nodes],
                           "conversions": i.conversions,
                           "conversion_nodes": list(i.conversion_nodes),
                           "converted_values": i.converted_values, "ms": i.ms,
                           "share": i.share} for i in result.islands],
        "notes": list(result.notes), "file_bytes": Path(args.output).stat().st_size,
        "onnx_output": None if args.onnx_out is None else {
            "path": str(args.onnx_out), "format": args.onnx_format,
            "bytes": Path(args.onnx_out).stat().st_size}}
    if args.mode == "static":
        summary["float_island_cost"] = {
            "what": f"median over {ISLAND_RUNS} profiled runs of the island's float nodes plus "
                    f"the DequantizeU8/QuantizeU8 at its edges, on the first calibration batch",
            "batch": result.island_batch}
    if args.json:
        _print_json(summary)
        return 0
    table = [[r["node"], r["op"] + (f" -> {r['new_op']}" if r["quantized"] else ""),
              "int8" if r["quantized"] else "float", r["bytes_before"], r["bytes_after"]]
             for r in rows]
    if table:
        print(format_table(["node", "op", "runs in", "bytes before", "bytes after"], table,
                           "lllrr"))
    bits = f", {args.weight_bits}-bit weights" + (f" in groups of {args.group_size}"
                                                  if args.group_size else "") \
        if args.weight_bits != 8 else ""
    extra = {"dynamic": bits + (", per-row activations" if args.per_row else ""),
             "static": f", {args.method} calibration{bits}, weights "
                       f"{'per tensor' if args.per_tensor else 'per channel'}"
                       f"{', bias correction' if args.bias_correction else ''}"}.get(args.mode, "")
    print(f"quantized {n_q} of {len(rows)} quantizable nodes ({args.mode} mode{extra}), "
          f"{len(rows) - n_q} kept float; their weights "
          f"{human_bytes(summary['weight_bytes_before'])} -> "
          f"{human_bytes(summary['weight_bytes_after'])}")
    print(f"all initializers {human_bytes(summary['initializer_bytes_before'])} -> "
          f"{human_bytes(summary['initializer_bytes_after'])}")
    if result.islands:
        _print_islands(result)
    for note in result.notes:
        print(note)
    size = summary["file_bytes"]
    print(f"wrote {args.output} ({size} bytes, {human_bytes(size)})")
    if args.onnx_out is not None:
        size = summary["onnx_output"]["bytes"]
        print(f"wrote {args.onnx_out} ({args.onnx_format} ONNX, {size} bytes, "
              f"{human_bytes(size)})")
    return 0


def _print_islands(result):
    from .tools.quantize import ISLAND_RUNS
    from .tools.table import format_table
    islands = result.islands
    n = len(islands)
    print(f"{n} float island{'s' if n > 1 else ''} (float nodes between int8 ones): "
          f"{100 * sum(i.share for i in islands):.1f}% of the run time; cost = the island's "
          f"float nodes + the DequantizeU8/QuantizeU8 at its edges, median of {ISLAND_RUNS} "
          f"profiled runs on a calibration batch of {result.island_batch}")

    def names(i):
        shown = [f"{op} {name}" for name, op in i.nodes[:3]]
        return ", ".join(shown) + (f" +{len(i.nodes) - 3} more" if len(i.nodes) > 3 else "")
    print(format_table(["float nodes", "conversions", "values converted", "ms", "share"],
                       [[names(i), i.conversions, i.converted_values, f"{i.ms:.3f}",
                         f"{100 * i.share:.1f}%"] for i in islands], "lrrrr"))


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
    labels = None
    if args.labels is not None:
        from .workflows.sensitivity import class_labels
        try:                                    # checked before the work, not after it
            labels = class_labels(load_array(Path(args.labels), "--labels"))
        except ConfigError as e:
            raise ConfigError(f"--labels {args.labels}: {e}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NaNWarning)     # the report says it, below the table
        report = analyze(graph, calib, method=args.method, per_channel=not args.per_tensor,
                         symmetric_activations=args.symmetric_activations, eval_data=evald,
                         labels=labels, progress=_progress("calibrating"))
    from .workflows.static_rnn import COLLAPSE_DB, rnn_report
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NaNWarning)
        rnns = rnn_report(graph, calib, evald, warn=False)
    paths = None
    if args.plots is not None:
        from .tools.plots import plot_sensitivity
        paths = plot_sensitivity(report, args.plots, progress=_progress("plotting"))
    if args.json:
        _print_json({"model": str(args.model), "method": report.method,
                     "per_channel": not args.per_tensor,
                     "int8_sqnr_db": _json_float(report.int8_sqnr_db),
                     "float_metric": report.float_metric, "int8_metric": report.int8_metric,
                     "nan": dict(report.nan),
                     "layers": [{f.name: _json_float(getattr(r, f.name))
                                 for f in dataclasses.fields(r) if f.name != "histogram"}
                                for r in report],
                     "rnn_layers": [{"node": r.name, "op": r.op,
                                     "h_sqnr_db": {k: _json_float(v) for k, v in r.h_sqnr.items()},
                                     "c_sqnr_db": {k: _json_float(v) for k, v in r.c_sqnr.items()},
                                     "cell_saturated": r.cell_saturated,
                                     "int8_collapses": r.collapsed} for r in rnns],
                     "plots": None if paths is None else [str(p) for p in paths]})
        return 0
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
    if rnns:
        print("\nrecurrent layers (StaticQuantConfig(rnn=...)): SQNR vs FP32 of every step's h "
              "and of the final cell state; cell saturated: values outside the int16 cell grid")
        rows = [[r.name, r.op, *(f"{r.h_sqnr[k]:.1f}" for k in ("dynamic", "int16", "int8")),
                 *((f"{r.c_sqnr[k]:.1f}" for k in ("int16", "int8")) if r.c_sqnr else ("-", "-")),
                 f"{100 * r.cell_saturated:.2f}%"] for r in rnns]
        print(format_table(["node", "op", "h dynamic", "h int16", "h int8", "c int16",
                            "c int8", "cell saturated"], rows, "llrrrrrr"))
        for r in rnns:
            if r.collapsed:
                print(f"WARNING: {r.op} {r.name!r}: the 8-bit scheme collapses (h SQNR "
                      f"{r.h_sqnr['int8']:.1f} dB < {COLLAPSE_DB:g} dB, int16 "
                      f"{r.h_sqnr['int16']:.1f} dB): quantize with --rnn int16 (the default)")
    if report.nan:
        print("NaN left out of the calibration ranges (an int8 model reads NaN as 0.0): " +
              ", ".join(f"{k} {n}" for k, n in report.nan.items()))
    if paths is not None:
        print(f"wrote {len(paths)} plots to {args.plots}")
    return 0


# ---- run --------------------------------------------------------------------------------------
def _cmd_run(args):
    from .tools.modelio import load_inputs, load_session, parse_input_specs
    _check_output_path(args.output, [args.model, *parse_input_specs(args.input).values()],
                       args.force)
    _set_threads(args)
    sess = load_session(args.model, nan=args.nan)
    outputs = sess.run(load_inputs(args.input))
    _write_outputs(args.output, outputs)
    # NaN/Inf in the outputs (a NaN let in by --nan allow, an Inf input, a float overflow) are
    # written as they are, and said: a script must not take them for results
    bad = {k: (int(np.isnan(v).sum()), int(np.isinf(v).sum())) for k, v in outputs.items()
           if v.dtype.kind in "fc" and not np.isfinite(v).all()}
    if args.json:
        info = {k: {"dtype": v.dtype.name, "shape": list(v.shape)} for k, v in outputs.items()}
        for k, (n_nan, n_inf) in bad.items():
            info[k].update(nan=n_nan, inf=n_inf)
        _print_json({"model": str(args.model), "output": str(args.output), "outputs": info})
        return 0
    for name, arr in outputs.items():
        print(f"{name}: {arr.dtype} {list(arr.shape)}")
    for name, (n_nan, n_inf) in bad.items():
        print(f"note: output {name!r} holds {n_nan} NaN and {n_inf} Inf values (of "
              f"{outputs[name].size})")
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


def _qdq_units(path):
    """None for a model that is not a quantized (QDQ) ONNX file, else the node units the
    lowering leaves in float: [{node, op, reason}]."""
    from .model_files import sniff
    if sniff(path) != "onnx":
        return None
    import warnings
    from .frontends.onnx import from_onnx
    from .qdq import canonicalize, has_qdq, lower
    g = from_onnx(path, lower=False)
    if not has_qdq(g):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, report = lower(canonicalize(g), report=True)
    return [{"node": f.node, "op": f.op_type, "reason": f.reason} for f in report]


def _float_units(path) -> list:
    """The node units of a QDQ ONNX file that the lowering leaves in float, with the reason."""
    return _qdq_units(path) or []


def _cmd_inspect(args):
    from .errors import UnsupportedOpsError
    from .tools.describe import describe
    from .tools.modelio import read_model
    from .tools.table import format_table, human_bytes
    try:
        d = describe(read_model(args.model))
        d["float_units"] = _float_units(args.model)
    except UnsupportedOpsError as e:
        # show what the model is even though qengine cannot run it: that is what inspect is for
        from .frontends.onnx import onnx_summary
        d = onnx_summary(args.model, e.ops)
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
    if d["float_units"]:
        print(f"\nQDQ units left in float ({len(d['float_units'])})")
        print(format_table(["node", "op", "reason"],
                           [[f["node"], f["op"], f["reason"]] for f in d["float_units"]], "lll"))
    print(f"\ninitializers ({len(d['initializers'])})")
    print(format_table(["name", "dtype", "shape", "bytes"],
                       [[i["name"], i["dtype"], _fmt_shape(i["shape"]), i["bytes"]]
                        for i in d["initializers"]], "lllr"))
    print(f"\ntotal initializer size {d['total_bytes']} bytes ({human_bytes(d['total_bytes'])})")
    if d["unsupported"]:
        print(f"\nunsupported ops ({len(d['unsupported'])} nodes): qengine cannot import, run or "
              f"quantize this model yet (docs/supported_ops.md)")
        print(format_table(["node", "op", "domain", "why"],
                           [[u["node"], u["op"], u["domain"], u["reason"] or "op not implemented"]
                            for u in d["unsupported"]], "llll"))
    return 0


# ---- demo -------------------------------------------------------------------------------------
def _cmd_demo(args):
    from ._runtime import active_isa, get_num_threads
    from .tools.demo import run_demo
    from .tools.demo_cnn import run_cnn_demo
    _set_threads(args)
    # Both parts nest alike: {"lstm": {...}, "cnn": {...}} (a part left out by --only is
    # absent), with the run settings at the top level.
    r = {"runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="qengine-demo-") as workdir:
        if args.only != "cnn":
            r["lstm"] = run_demo(workdir, runs=args.runs)
        if args.only != "lstm":
            r["cnn"] = run_cnn_demo(workdir, runs=args.runs)
    r.update(threads=get_num_threads(), isa=active_isa())
    if args.json:
        _print_json(r)
        return 0
    if args.only != "cnn":
        _print_lstm_demo(r["lstm"])
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


# ---- serve ------------------------------------------------------------------------------------
def _state_map(text):
    out = {}
    for item in filter(None, text.split(",")):
        name, sep, nxt = item.partition("=")
        if not sep or not name or not nxt:
            raise argparse.ArgumentTypeError(f"expected INPUT=OUTPUT[,...], got {item!r}")
        out[name] = nxt
    return out


def _cmd_serve(args):
    from .serving.server import serve
    serve(args.model, host=args.host, port=args.port, threads=args.threads, state=args.state,
          max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
          max_streams=args.max_streams, max_inflight=args.max_inflight,
          idle_timeout=args.idle_timeout or None)
    return 0


# ---- parser -----------------------------------------------------------------------------------
def build_parser():
    from .tools.quantize import MODES
    from . import __version__
    p = _Parser(prog="qengine", description="int8 inference and quantization engine",
                epilog="exit codes: 0 success, 2 a usage or input error (one line on stderr); "
                       "see docs/cli.md")
    p.add_argument("--version", action="version", version=f"qengine {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("info", help="CPU features, ISAs, active kernels, OpenMP, threads")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("quantize", help="quantize an ONNX model into an engine file (.qe)")
    s.add_argument("model", help="MODEL.onnx (or an FP32 engine file)")
    s.add_argument("-o", "--output", required=True, help="engine file to write (OUT.qe)")
    s.add_argument("--mode", choices=sorted(MODES), default="dynamic",
                   help="dynamic: int8 weights, activations quantized per call (no calibration); "
                        "static: calibrated int8 activations (needs --calib)")
    s.add_argument("--per-row", action="store_true",
                   help="quantize activations per row instead of per tensor (dynamic mode)")
    s.add_argument("--weight-bits", type=int, choices=(8, 4), default=8,
                   help="weight precision: 8, or 4 (symmetric [-7, 7], two per byte in the "
                        "file and in memory; static depthwise convs keep int8)")
    s.add_argument("--group-size", type=int, choices=(32, 64, 128), default=None,
                   help="with --weight-bits 4 in dynamic mode: one weight scale per group of "
                        "this many weights along K (default: one per output row)")
    s.add_argument("--keep-float", type=_names, default=frozenset(), metavar="NODE,...",
                   help="node names to leave in float")
    s.add_argument("--shape", type=_shape_arg, action="append", default=[],
                   metavar="NAME=D0,D1,...",
                   help="fix an input's shape before quantizing (repeat per input): shape "
                        "computations that depended on it fold, and so do If nodes on them")
    s.add_argument("--const", type=_const_arg, action="append", default=[],
                   metavar="NAME=VALUE",
                   help="make an input a constant (e.g. sr=16000; repeat per input): an If on "
                        "it is replaced by the branch it takes")
    s.add_argument("--rnn", choices=("int16", "int8", "dynamic", "float"), default="int16",
                   help="static mode: LSTM / GRU become integer with 16-bit (int16) or 8-bit "
                        "(int8) activations and an int16 cell, dynamic int8 layers, or stay "
                        "float")
    s.add_argument("--activation-matmul", choices=("float", "int8"), default="float",
                   help="a MatMul between two activations (attention) stays float (the "
                        "default: faster at attention's sizes) or runs in int8: static mode "
                        "per tensor (integer-only graphs), dynamic mode A per row and B per "
                        "column")
    s.add_argument("--calib", metavar="DATA.npz",
                   help="calibration inputs (static mode): one array per model input, samples "
                        "along the first axis")
    _static_options(s)
    s.add_argument("--auto-keep-float", action="store_true",
                   help="keep the most sensitive layers float until --target-sqnr or "
                        "--max-agreement-drop is met")
    s.add_argument("--target-sqnr", type=_finite_float, metavar="DB",
                   help="output SQNR target (dB, on the calibration data) for --auto-keep-float")
    s.add_argument("--max-agreement-drop", type=_finite_float, metavar="FRACTION",
                   help="or this budget for --auto-keep-float: the share of calibration "
                        "samples whose output argmax differs from FP32's (0.01: 99 %% agree); "
                        "with --float-weights float16, float layers choose float16 or float32")
    s.add_argument("--onnx-out", metavar="PATH",
                   help="also export the quantized model as ONNX to PATH (needs the onnx "
                        "package; ONNX Runtime and OpenVINO run it)")
    s.add_argument("--onnx-format", choices=("qdq", "qoperator"), default="qdq",
                   help="with --onnx-out: qdq (QuantizeLinear/DequantizeLinear around float "
                        "ops) or qoperator (QLinearConv, QLinearMatMul, com.microsoft QLinear*)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--force", action="store_true",
                   help="overwrite OUTPUT (and --onnx-out) if it exists (never allowed for one "
                        "of the inputs)")
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
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_cmd_analyze)

    input_help = "an input array: NAME=FILE.npy (repeat for each input)"
    s = sub.add_parser("run", help="run a model on .npy inputs, save the outputs as .npz")
    s.add_argument("model", help="MODEL.qe or MODEL.onnx")
    s.add_argument("--input", action="append", default=[], metavar="NAME=FILE", help=input_help)
    s.add_argument("-o", "--output", required=True,
                   help="OUT.npz (keys: graph output names), or OUT.npy for a one-output model")
    s.add_argument("--threads", type=_positive_int, help="OpenMP threads for the kernels")
    s.add_argument("--nan", choices=("error", "allow"), default="error",
                   help="float inputs holding NaN: refuse them or let them in (int8 ops read "
                        "NaN as 0.0)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--force", action="store_true",
                   help="overwrite OUTPUT if it exists (never allowed for one of the inputs)")
    s.set_defaults(func=_cmd_run)

    s = sub.add_parser("bench", help="latency percentiles (and per-node profile) of a model")
    s.add_argument("model", help="MODEL.qe or MODEL.onnx")
    s.add_argument("--input", action="append", default=[], metavar="NAME=FILE",
                   help=input_help + "; omitted: random inputs from the declared static shapes")
    s.add_argument("--threads", type=_positive_int, help="OpenMP threads for the kernels")
    s.add_argument("--runs", type=_positive_int, default=100, help="timed runs")
    s.add_argument("--warmup", type=_non_negative_int, default=10,
                   help="untimed runs first")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--profile", action="store_true", help="time per node and per op type")
    s.set_defaults(func=_cmd_bench)

    s = sub.add_parser("inspect", help="nodes, dtypes, qparams and sizes of a model")
    s.add_argument("model", help="MODEL.qe or MODEL.onnx")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_cmd_inspect)

    s = sub.add_parser("serve", help="serve an engine file over HTTP and WebSocket (one-shot "
                                     "runs; streams with dynamic batching); needs the serve "
                                     "extra")
    s.add_argument("model", help="MODEL.qe")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=_non_negative_int, default=8000, help="TCP port")
    s.add_argument("--threads", type=_positive_int, help="OpenMP threads for the kernels")
    s.add_argument("--state", type=_state_map, default=None, metavar="INPUT=OUTPUT,...",
                   help="state inputs and the outputs that carry them (default: found by name, "
                        "<p>.h0=<p>.h_n and c0 likewise)")
    s.add_argument("--max-batch", type=_positive_int, default=32,
                   help="streams per batch at most")
    s.add_argument("--max-wait-ms", type=_finite_float, default=5.0,
                   help="how long the oldest waiting chunk waits for company")
    s.add_argument("--max-queue", type=_positive_int, default=1024,
                   help="chunks waiting at most; more are answered 'overloaded'")
    s.add_argument("--max-streams", type=_positive_int, default=1024, help="open streams at most")
    s.add_argument("--max-inflight", type=_positive_int, default=64,
                   help="one-shot requests running at once at most; more are answered "
                        "'overloaded' (503)")
    s.add_argument("--idle-timeout", type=_finite_float, default=600.0,
                   help="close streams idle this many seconds (0: never)")
    s.set_defaults(func=_cmd_serve)

    s = sub.add_parser("demo", help="FP32 vs INT8 on the bundled digit classifiers (LSTM: "
                                    "dynamic, CNN: static)")
    s.add_argument("--only", choices=("cnn", "lstm"), help="run one of the two demos")
    s.add_argument("--runs", type=_positive_int, default=50,
                   help="timed batch-1 runs per model")
    s.add_argument("--threads", type=_positive_int, help="OpenMP threads for the kernels")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_cmd_demo)
    return p


#: failures that are the user's input, not a qengine bug: report them in one line.
_USER_ERRORS = (QEngineError, OSError, ValueError, EOFError, zipfile.BadZipFile)


def _warning_printer():
    """warnings.showwarning for the CLI: each warning once, as one line without the library's
    file and line (a user cannot act on `static.py:557`; the message says what happened)."""
    shown = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if text not in shown:
            shown.add(text)
            print(f"qengine: warning: {text}", file=sys.stderr)
    return show


def main(argv=None):
    with warnings.catch_warnings():             # restores showwarning for in-process callers
        warnings.showwarning = _warning_printer()
        return _main(argv)


def _main(argv):
    try:
        args = build_parser().parse_args(argv)
        from ._runtime import active_isa
        active_isa()                    # a bad QENGINE_ISA: one line, before any work
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`qengine inspect m.qe | head -1`): it has what it wanted, so
        # exit quietly with 0. Point stdout at /dev/null so the interpreter's final flush does
        # not fail on the closed pipe once more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except _USER_ERRORS as e:
        msg = " ".join(str(e).split()) or type(e).__name__  # one line, whatever the message
        print(f"qengine: error: {msg}", file=sys.stderr)
        return 2
