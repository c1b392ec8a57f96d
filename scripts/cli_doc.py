"""Write docs/cli.md: the commands and flags from the CLI's own parser, exit codes, and the
`--json` keys of every command. tests/test_cli_doc.py checks that the file is current and that
each command's real JSON output has exactly the keys documented here.

    python scripts/cli_doc.py            # rewrite docs/cli.md
    python scripts/cli_doc.py --check    # exit 1 if docs/cli.md is stale
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "cli.md"

#: top-level keys of each command's --json object, with what they hold
#: commands without --json, and why
NO_JSON = {"serve": "a long-running server: its state is GET /health and GET /metrics"}

JSON_KEYS = {
    "info": {
        "qengine": "version", "numpy": "NumPy version",
        "cpu_features": "CPU features the CPU and OS support (list)",
        "compiled_isas": "ISAs built in (list)", "runnable_isas": "ISAs this CPU runs (list)",
        "active_isa": "the ISA every kernel uses", "forced_by_env": "QENGINE_ISA set (bool)",
        "kernels": "{op: microkernel name}", "openmp": "built with OpenMP (bool)",
        "openmp_wait": "{OMP_WAIT_POLICY / GOMP_SPINCOUNT: value} in effect (the user's, or "
                       "qengine's GOMP_SPINCOUNT default)",
        "threads": "kernel threads", "fork_fallback": "null, or why a forked child runs on "
                                                        "1 thread",
    },
    "quantize": {
        "model": "input path", "output": "engine file written", "mode": "dynamic | static",
        "nodes": "[{node, op, quantized, new_op, bytes_before, bytes_after}] per quantizable "
                 "node",
        "quantized": "nodes quantized", "kept_float": "quantizable nodes left float",
        "weight_bytes_before": "weights of the quantizable nodes, FP32",
        "weight_bytes_after": "the same after quantization",
        "initializer_bytes_before": "all initializers, FP32 model",
        "initializer_bytes_after": "all initializers, quantized model",
        "notes": "what the workflow wants you to know (list of str)",
        "file_bytes": "size of the engine file",
        "float_islands": "[{nodes: [{node, op}], conversions, conversion_nodes, "
                         "converted_values, ms, share}]: groups of float nodes between int8 ones "
                         "(empty in dynamic mode)",
        "float_island_cost": "static mode: {what, batch}: how the islands' ms and share were "
                             "measured",
        "onnx_output": "null, or with --onnx-out {path, format, bytes} of the ONNX export",
    },
    "analyze": {
        "model": "input path", "method": "calibration method",
        "per_channel": "weights per output channel (bool)",
        "int8_sqnr_db": "output SQNR of the whole int8 model vs FP32 (dB)",
        "float_metric": "FP32 top-1 accuracy with --labels, else null",
        "int8_metric": "int8 top-1 accuracy with --labels, else null",
        "nan": "{value: NaN count calibration left out}",
        "layers": "[{name, op_type, output, sqnr_db, metric, observed_min, observed_max, "
                  "range_min, range_max, scale, zero_point, saturation, layer_sqnr_db, rank, "
                  "nan}] in graph order ('inf' for an exact layer's SQNR)",
        "rnn_layers": "[{node, op, h_sqnr_db: {dynamic, int16, int8}, c_sqnr_db (LSTM), "
                      "cell_saturated, int8_collapses}] per LSTM / GRU (static schemes vs FP32)",
        "plots": "paths written with --plots, else null",
    },
    "run": {
        "model": "input path", "output": "file written",
        "outputs": "{name: {dtype, shape}} (plus nan, inf counts when an output holds them)",
    },
    "bench": {
        "model": "input path", "median_ms": "median latency", "p90_ms": "90th percentile",
        "p99_ms": "99th percentile", "min_ms": "fastest run", "mean_ms": "mean",
        "runs": "timed runs", "warmup": "untimed runs first", "threads": "kernel threads",
        "isa": "active ISA", "inputs": "{name: {dtype, shape}}",
        "generated_inputs": "inputs were random (no --input)",
        "profile": "with --profile: {nodes: [{node, op, median_ms}], op_types: [{op, ms, "
                   "share}]}",
    },
    "inspect": {
        "name": "graph name", "opset": "{domain: version}",
        "inputs": "[{name, dtype, shape}]", "outputs": "[{name, dtype, shape}]",
        "nodes": "[{name, op, inputs, outputs, weight_dtypes, weight_bytes}]",
        "qparams": "[{node, weight, dtype, shape, scales, scale_min, scale_max}] of int8 "
                   "weights",
        "initializers": "[{name, dtype, shape, bytes}]", "total_bytes": "all initializers",
        "unsupported": "[{domain, op, node, reason}]: ops qengine cannot import yet (the graph "
                       "is then read straight from the ONNX file); empty when it imports",
        "float_units": "[{node, op, reason}]: node units of a quantized (QDQ) ONNX file that "
                       "the lowering left in float, and why; empty otherwise",
    },
    "demo": {
        "runs": "timed runs per model", "lstm": "the LSTM part (absent with --only cnn): "
                                               "{model, test_samples, torch_fp32_accuracy, "
                                               "fp32, int8, runs}",
        "cnn": "the CNN part (absent with --only lstm): {model, test_samples, "
               "calibration_samples, runs, fp32, int8, int8_bias_corrected}",
        "threads": "kernel threads", "isa": "active ISA",
    },
}
OPTIONAL_KEYS = {"bench": {"profile"}, "demo": {"lstm", "cnn"}, "quantize": {"float_island_cost"}}

HEADER = """\
# The `qengine` command line

Generated by `python scripts/cli_doc.py` from the CLI's own parser (tests/test_cli_doc.py fails
when this file is stale). `qengine COMMAND -h` prints the same, with defaults.

## Exit codes and messages
| code | meaning |
|---|---|
| 0 | success (also when the reader of stdout goes away, e.g. `qengine inspect m.qe \\| head -1`) |
| 2 | a usage or input error: bad arguments, a missing, unreadable or malformed file, inputs that do not fit the model, a bad `QENGINE_ISA`, an output that exists (without `--force`) or is one of the inputs. One line `qengine: error: ...` on stderr |
| other | a bug in qengine (a traceback): please report it |

Outputs are never written over an input, and an existing output only with `--force`.
Progress bars go to stderr, and only when it is a terminal. `--json` prints exactly one JSON
object on stdout and nothing else; infinite SQNRs are written as the string `"inf"`.
"""


def _parser():
    sys.path.insert(0, str(ROOT))
    from qengine.cli import build_parser
    return build_parser()


def _subcommands(parser):
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    return [(name, helps.get(name, ""), p) for name, p in sub.choices.items()]


def _default(action):
    d = action.default
    if d in (None, False, argparse.SUPPRESS) or (isinstance(d, (frozenset, list)) and not d):
        return ""
    return f"`{d}`"


def _cell(text):
    return " ".join(str(text or "").split()).replace("|", "\\|")


def render():
    parser = _parser()
    out = [HEADER, "## Commands\n"]
    top = [a for a in parser._actions if a.option_strings and a.dest not in ("help",)]
    out.append("Global options: " + ", ".join(f"`{'`, `'.join(a.option_strings)}` "
                                                f"({_cell(a.help)})" for a in top) + ".\n")
    for name, help_text, sub in _subcommands(parser):
        out.append(f"### `qengine {name}`\n\n{_cell(help_text)}.\n")
        out.append("    " + " ".join(sub.format_usage().split()) + "\n")
        out.append("| argument | default | meaning |\n|---|---|---|")
        for a in sub._actions:
            if a.dest == "help":
                continue
            flag = ", ".join(a.option_strings) or a.dest
            if a.choices:
                flag += " {" + ",".join(map(str, a.choices)) + "}"
            elif a.metavar:
                flag += f" {a.metavar}"
            out.append(f"| `{flag}` | {_default(a)} | {_cell(a.help)} |")
        out.append("")
    out.append("## `--json` output\n")
    out.append("Top-level keys of each command's JSON object (the test runs every command and "
               "compares its keys with these).\n")
    for name, keys in JSON_KEYS.items():
        out.append(f"### `qengine {name} --json`\n\n| key | value |\n|---|---|")
        opt = OPTIONAL_KEYS.get(name, set())
        for k, v in keys.items():
            out.append(f"| `{k}`{' (optional)' if k in opt else ''} | {_cell(v)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text(encoding="utf-8") != text:
            print("docs/cli.md is stale: run python scripts/cli_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
