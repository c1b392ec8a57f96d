"""How GNU OpenMP's wait policy changes qengine's latency, alone and on a shared machine.

    python bench/wait_policy.py [--workloads mobilenet_v2,resnet18,lstm1,lstm16,silero]
                                [--threads 2] [--rounds 3] [--runs 15] [--hogs 0,1]

libgomp reads OMP_WAIT_POLICY / GOMP_SPINCOUNT once, when it is loaded, so every figure comes
from a fresh process (`--worker`) started with one setting; settings and workloads alternate
round-robin so drifting machine load hits them alike. A thread that finds no work spins
GOMP_SPINCOUNT times (one `pause` each: ~37 ns on the reference Zen 4 VM, so libgomp's default
300000 is ~11 ms) before it sleeps in the kernel. `--hogs N` starts N busy-looping processes for
the whole run: the situation of a server running other work, where a spinning thread holds a
CPU its own partner thread needs. Figures: median over rounds of each process's median latency.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SETTINGS = {"default": {}, "spin1k": {"GOMP_SPINCOUNT": "1000"},
            "spin3k": {"GOMP_SPINCOUNT": "3000"},
            "spin10k": {"GOMP_SPINCOUNT": "10000"}, "spin30k": {"GOMP_SPINCOUNT": "30000"},
            "passive": {"OMP_WAIT_POLICY": "passive"}}


def build(kind):
    """fn() running one call of the workload."""
    sys.path.insert(0, str(HERE))
    import qengine
    if kind in ("mobilenet_v2", "resnet18"):
        import compare_cnn as c
        tmp = tempfile.mkdtemp()
        path, iname, x, calib, _ = c.make_case(kind, 1, tmp)
        s = c.qengine_session(path, iname, calib)
        return lambda: s.run({iname: x})
    if kind.startswith("lstm"):               # compare_rnn's (256, 512, 2, batch, 100)
        from qengine.quantized.rnn import DynamicRNN
        rng = np.random.default_rng(0)
        layers = [DynamicRNN.from_float(
            "lstm", rng.standard_normal((1, 2048, i)).astype(np.float32) * .05,
            rng.standard_normal((1, 2048, 512)).astype(np.float32) * .05) for i in (256, 512)]
        X = rng.standard_normal((100, int(kind[4:]), 256)).astype(np.float32)

        def run():
            y = X
            for layer in layers:
                y = layer(y)[0][:, 0]
        return run
    if kind == "silero":                      # 90 streaming chunks of the real VAD
        import compare_dynamic as cd
        import real_models
        g = qengine.from_onnx(real_models.load_for_qengine("silero_vad_openvino"))
        s = qengine.Session(qengine.quantize_dynamic(g))
        chunks = cd._audio_chunks()

        def stream():
            st = np.zeros((2, 1, 128), np.float32)
            for ch in chunks:
                st = s.run({"input": ch[None], "state": st})["stateN"]
        return stream
    raise SystemExit(f"unknown workload {kind!r}")


def worker(kind, threads, runs):
    import warnings
    warnings.filterwarnings("ignore")
    import qengine
    qengine.set_num_threads(threads)
    fn = build(kind)
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"ms": 1e3 * statistics.median(times)}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="mobilenet_v2,resnet18,lstm1,lstm16,silero")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--hogs", default="0,1")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.threads, args.runs)
    kinds, names = args.workloads.split(","), args.settings.split(",")
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    print(f"# {args.threads} threads, {args.rounds} rounds x {args.runs} calls; ms (median of "
          f"per-process medians); load average at start {os.getloadavg()[0]:.2f}")
    for nhog in (int(h) for h in args.hogs.split(",")):
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(nhog)]
        res = {}
        try:
            for _ in range(args.rounds):
                for kind in kinds:
                    for name in names:
                        out = subprocess.run(
                            [sys.executable, __file__, "--worker", kind, "--threads",
                             str(args.threads), "--runs", str(args.runs)],
                            env={**base, **SETTINGS[name]}, capture_output=True, text=True,
                            check=True)
                        ms = json.loads(out.stdout.strip().splitlines()[-1])["ms"]
                        res.setdefault((kind, name), []).append(ms)
        finally:
            for h in hogs:
                h.kill()
        print(f"## {nhog} busy process(es) beside it")
        print(f"{'workload':14s}" + "".join(f"{n:>10s}" for n in names))
        for kind in kinds:
            print(f"{kind:14s}" + "".join(f"{statistics.median(res[(kind, n)]):10.2f}"
                                          for n in names))


if __name__ == "__main__":
    main()
