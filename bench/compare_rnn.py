"""qengine dynamic-int8 LSTM/GRU/Linear vs torch quantize_dynamic vs ONNX Runtime quantize_dynamic
vs FP32, same weights and inputs, threads 1 and 2, in one run.

    python bench/compare_rnn.py [--runs 30] [--rounds 5] [--threads 1,2] [--only lstm|gru|linear]
                                [--config lstm:256,512,2,16,100 ...] [--json PATH]
                                [--w4 row,32,128] [--static int16,int8]

Every row prints the median latency of each engine, qengine's ratio to each peer, and the output
error of each int8 engine relative to the FP32 torch output (||y − y_fp32|| / ||y_fp32||).
ORT's model goes through quant_pre_process first, or ORT silently keeps LSTM in FP32.
The engines are timed round-robin: `--rounds` rounds of runs/rounds calls each, every engine in
every round, so a change of load on the (shared) machine hits them alike. The load average is
printed before every row.
--static adds qengine's integer LSTM / GRU (quantize_static with StaticQuantConfig(rnn=...),
calibrated on 8 random batches of the input's shape) the same way, one line each with its ratio
to the same run's qengine dynamic int8 median.
--w4 adds qengine with 4-bit weights (DynamicQuantConfig(weight_bits=4, group_size=...); "row" =
one scale per output row) as further engines of the same round robin, one line each below the
int8 row, with its ratio to the same run's ORT int8 median. --json PATH also writes every figure with the date, the git commit,
the machine configuration and the load before/after, so that runs can be compared across commits.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_ms, rel_err, ort_session  # noqa: E402

import qengine  # noqa: E402

warnings.filterwarnings("ignore")

RNN_CONFIGS = [  # kind, input, hidden, layers, batch, seq
    ("lstm", 256, 512, 2, 1, 100),
    ("lstm", 128, 256, 1, 1, 50),
    ("lstm", 512, 1024, 1, 1, 50),
    ("lstm", 256, 512, 2, 16, 100),
    ("gru", 256, 512, 2, 1, 100),
]
LINEAR_CONFIGS = [(1024, 1024, b) for b in (1, 16, 256)] + [(1024, 4096, b) for b in (1, 16, 256)]


def _torch():
    import torch
    return torch


class _Wrap:
    """torch's quantize_dynamic swaps children only: a bare nn.LSTM would silently stay FP32."""

    @staticmethod
    def make(core):
        torch = _torch()

        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.core = core

            def forward(self, x):
                y = self.core(x)
                return y[0] if isinstance(y, tuple) else y
        return M().eval()


def build_model(kind, cfg, seed=0):
    torch = _torch()
    torch.manual_seed(seed)
    if kind == "linear":
        k, n, b = cfg
        core = torch.nn.Linear(k, n)
        x = torch.randn(b, k)
    else:
        i, h, layers, b, t = cfg
        cls = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
        core = cls(i, h, num_layers=layers)
        x = torch.randn(t, b, i)
    return _Wrap.make(core), x


def export_onnx(model, x, path):
    torch = _torch()
    torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"], output_names=["y"],
                      opset_version=17)


def ort_quantized(fp32_path, tmp):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    pre = os.path.join(tmp, "pre.onnx")
    out = os.path.join(tmp, "ort_int8.onnx")
    quant_pre_process(fp32_path, pre, skip_symbolic_shape=True)
    quantize_dynamic(pre, out, weight_type=QuantType.QInt8)
    return out


def qengine_session(fp32_path, config=None):
    from qengine.frontends.onnx import from_onnx
    g = qengine.quantize_dynamic(from_onnx(fp32_path), config or qengine.DynamicQuantConfig())
    return qengine.Session(g)


def _w4_config(group):
    return qengine.DynamicQuantConfig(weight_bits=4, group_size=None if group == "row" else
                                      int(group))


def round_robin(fns, runs, rounds, warmup=3):
    """Time every fn of `fns` (name -> callable) in `rounds` rounds of ceil(runs/rounds) calls,
    the engines interleaved; returns name -> list of seconds."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    per = max(1, -(-runs // rounds))
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            for _ in range(per):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    return times


def _static_session(fp32_path, x, scheme):
    rng = np.random.default_rng(1)
    calib = [{"x": rng.standard_normal(x.shape).astype(np.float32)} for _ in range(8)]
    g = qengine.quantize_static(qengine.from_onnx(fp32_path), calib,
                                qengine.StaticQuantConfig(rnn=scheme))
    return qengine.Session(g)


def run_case(kind, cfg, threads_list, runs, rounds, w4=(), static=()):
    torch = _torch()
    model, x = build_model(kind, cfg)
    qmodel = torch.ao.quantization.quantize_dynamic(
        model, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8)
    assert type(qmodel.core) is not type(model.core), "torch left the model in FP32"
    xn = x.numpy()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = os.path.join(tmp, "fp32.onnx")
        export_onnx(model, x, fp32_path)
        ort_path = ort_quantized(fp32_path, tmp)
        qe = qengine_session(fp32_path)
        qe4 = {grp: qengine_session(fp32_path, _w4_config(grp)) for grp in w4}
        qes = ({sc: _static_session(fp32_path, xn, sc) for sc in static}
               if kind != "linear" else {})
        with torch.no_grad():
            y_fp = model(x).numpy()
            y_tq = qmodel(x).numpy()
        for threads in threads_list:
            torch.set_num_threads(threads)
            qengine.set_num_threads(threads)
            ort_s = ort_session(ort_path, threads)
            y_ort = ort_s.run(None, {"x": xn})[0]
            y_qe = qe.run({"x": xn})["y"]
            load = os.getloadavg()
            fns = {"qe": lambda: qe.run({"x": xn}), "ort": lambda: ort_s.run(None, {"x": xn}),
                   "tq": lambda: qmodel(x), "fp": lambda: model(x)}
            for grp, sess in qe4.items():
                fns[f"w4:{grp}"] = (lambda s_: lambda: s_.run({"x": xn}))(sess)
            for sc, sess in qes.items():
                fns[f"static:{sc}"] = (lambda s_: lambda: s_.run({"x": xn}))(sess)
            with torch.no_grad():
                t = round_robin(fns, runs, rounds)
            r = {"kind": kind, "config": list(cfg), "threads": threads,
                 "isa": qengine.active_isa(),
                 "qengine_ms": median_ms(t["qe"]), "ort_int8_ms": median_ms(t["ort"]),
                 "torch_int8_ms": median_ms(t["tq"]), "torch_fp32_ms": median_ms(t["fp"]),
                 "err_qengine": rel_err(y_qe, y_fp), "err_ort": rel_err(y_ort, y_fp),
                 "err_torch": rel_err(y_tq, y_fp), "load_before": load,
                 "load_after": os.getloadavg(), "calls": len(t["qe"])}
            r["vs_ort"] = r["qengine_ms"] / r["ort_int8_ms"]
            r["vs_torch"] = r["qengine_ms"] / r["torch_int8_ms"]
            r["w4"] = [{"group_size": grp, "qengine_ms": median_ms(t[f"w4:{grp}"]),
                        "vs_ort": median_ms(t[f"w4:{grp}"]) / r["ort_int8_ms"],
                        "vs_qengine_int8": median_ms(t[f"w4:{grp}"]) / r["qengine_ms"],
                        "err_qengine": rel_err(sess.run({"x": xn})["y"], y_fp)}
                       for grp, sess in qe4.items()]
            r["static"] = [{"scheme": sc, "qengine_ms": median_ms(t[f"static:{sc}"]),
                            "vs_qengine_dynamic": median_ms(t[f"static:{sc}"]) / r["qengine_ms"],
                            "vs_ort": median_ms(t[f"static:{sc}"]) / r["ort_int8_ms"],
                            "err_qengine": rel_err(sess.run({"x": xn})["y"], y_fp)}
                           for sc, sess in qes.items()]
            rows.append(r)
    return rows


def _git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).resolve().parent,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _parse_config(text):
    kind, _, nums = text.partition(":")
    if kind not in ("lstm", "gru", "linear") or not nums:
        raise argparse.ArgumentTypeError(f"expected KIND:N,N,... (KIND lstm|gru|linear), got {text!r}")
    return kind, tuple(int(v) for v in nums.split(","))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5,
                    help="round-robin rounds the runs are split into (engines interleaved)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--only", choices=["lstm", "gru", "linear"])
    ap.add_argument("--config", type=_parse_config, action="append", metavar="KIND:DIMS",
                    help="run only these configs, e.g. lstm:256,512,2,16,100 (input, hidden, "
                         "layers, batch, seq) or linear:1024,1024,16 (K, N, batch); repeatable")
    ap.add_argument("--json", metavar="PATH",
                    help="also write every figure, the machine and the load to PATH (JSON), so "
                         "runs can be compared across commits")
    ap.add_argument("--w4", default="", metavar="GROUPS",
                    help="also time qengine with 4-bit weights, per group size: comma list of "
                         "row (one scale per row), 32, 64, 128")
    ap.add_argument("--static", default="", metavar="SCHEMES",
                    help="also time qengine's integer LSTM / GRU: comma list of int16, int8")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    cases = args.config or ([(k, c[1:]) for c in RNN_CONFIGS for k in [c[0]]] +
                            [("linear", c) for c in LINEAR_CONFIGS])
    if args.only:
        cases = [c for c in cases if c[0] == args.only]
    record = {"script": "bench/compare_rnn.py", "argv": sys.argv[1:] if argv is None else argv,
              "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "commit": _git_commit(),
              "cpu": _cpu_model(), "cpus": os.cpu_count(), "machine": qengine._runtime.config(),
              "load_before": os.getloadavg(), "rows": []}
    hdr = (f"{'model':<8}{'config':<26}{'thr':>4}{'qengine':>10}{'ORT i8':>10}{'torch i8':>10}"
           f"{'fp32':>10}{'/ORT':>7}{'/torch':>7}{'err qe':>9}{'err ORT':>9}{'err tq':>9}  load")
    print(f"# isa={qengine.active_isa()}  times are medians in ms of {args.runs} calls "
          f"({args.rounds} round-robin rounds); err = relative L2 vs FP32; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(hdr)
    for kind, cfg in cases:
        w4 = [g for g in args.w4.split(",") if g]
        static = [sc for sc in args.static.split(",") if sc]
        for r in run_case(kind, cfg, threads, args.runs, args.rounds, w4, static):
            record["rows"].append(r)
            print(f"{kind:<8}{str(tuple(cfg)):<26}{r['threads']:>4}{r['qengine_ms']:>10.3f}"
                  f"{r['ort_int8_ms']:>10.3f}{r['torch_int8_ms']:>10.3f}"
                  f"{r['torch_fp32_ms']:>10.3f}{r['vs_ort']:>7.2f}{r['vs_torch']:>7.2f}"
                  f"{r['err_qengine']:>9.2e}{r['err_ort']:>9.2e}{r['err_torch']:>9.2e}"
                  f"  {r['load_before'][0]:.2f}", flush=True)
            for v in r["w4"]:
                print(f"{'  W4':<8}{'group ' + v['group_size']:<26}{r['threads']:>4}"
                      f"{v['qengine_ms']:>10.3f}{'':>30}{v['vs_ort']:>7.2f}{'':>7}"
                      f"{v['err_qengine']:>9.2e}   (W4/int8 qengine {v['vs_qengine_int8']:.2f})",
                      flush=True)
            for v in r["static"]:
                print(f"{'  static':<8}{' ' + v['scheme']:<26}{r['threads']:>4}"
                      f"{v['qengine_ms']:>10.3f}{'':>30}{v['vs_ort']:>7.2f}{'':>7}"
                      f"{v['err_qengine']:>9.2e}   (static/dynamic qengine "
                      f"{v['vs_qengine_dynamic']:.2f})", flush=True)
    if args.json:
        record["load_after"] = os.getloadavg()
        Path(args.json).write_text(json.dumps(record, indent=1, default=float))
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
