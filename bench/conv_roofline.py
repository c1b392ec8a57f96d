"""Where each static-int8 convolution of a bench CNN sits against the VNNI peak.

    python bench/conv_roofline.py [--models resnet18,mobilenet_v2] [--batch 1] [--threads 1]
                                  [--runs 30] [--peak 465]

Per QConv / QConvAdd / QGemm node: its GEMM shape (M = output pixels, N = output channels
per group, K = input channels per group × taps), the best time over --runs profiled calls
(Session.profile), GOPS = 2·MACs / time, and that as a fraction of --peak: the 12×32 VNNI
microkernel's own rate on L2-resident data, per thread (465 GOPS on the reference Zen 4 VM,
BENCHMARKS.md "GEMM"). A depthwise conv's "useful" MACs are counted (its kernel computes 4× as
many on padding lanes). The last lines give each op type's share of the whole run.
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_cnn as c  # noqa: E402

import qengine  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenet_v2")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--peak", type=float, default=465.0, help="GOPS per thread")
    args = ap.parse_args(argv)
    qengine.set_num_threads(args.threads)
    peak = args.peak * args.threads
    for name in args.models.split(","):
        tmp = tempfile.mkdtemp()
        path, iname, x, calib, _ = c.make_case(name, args.batch, tmp)
        s = c.qengine_session(path, iname, calib)
        shapes = {}
        for op in s._executor.ops:           # record each conv's input shape on first use
            if op.node.op_type in ("QConv", "QConvAdd", "QGemm"):
                def spy(*a, _op=op, _run=op.run, **kw):
                    shapes.setdefault(_op.name, a[0].shape)
                    return _run(*a, **kw)
                op.run = spy
        s.run({iname: x})
        _, profs = s.profile({iname: x}, repeat=args.runs)
        best = {}
        for p in profs:
            for node, op_type, t in p.nodes:
                best[(node, op_type)] = min(best.get((node, op_type), np.inf), t)
        total = sum(best.values())
        print(f"# {name} batch {args.batch}, {args.threads} thread(s), isa "
              f"{qengine.active_isa()}; best of {args.runs}; peak {peak:.0f} GOPS")
        print(f"{'node':48s} {'M':>7s} {'N':>5s} {'K':>5s} {'us':>8s} {'GOPS':>6s} {'peak':>5s}")
        by_type = {}
        for op in s._executor.ops:
            t = best[(op.name, op.node.op_type)]
            by_type[op.node.op_type] = by_type.get(op.node.op_type, 0.0) + t
            if op.name not in shapes:
                continue
            # QConvAdd (a conv with the residual add fused in) reads (x, skip, W, ...)
            w = s.graph.initializers[op.node.inputs[2 if op.node.op_type == "QConvAdd" else 1]]
            xs = shapes[op.name]
            if op.node.op_type in ("QConv", "QConvAdd"):
                conv = getattr(op.layer, "conv", op.layer)      # QConvAdd2d wraps a QConv2d
                m = int(np.prod(conv.output_shape(xs)[:3]))
                n_g, k = w.shape[0] // conv.groups, int(np.prod(w.shape[1:]))
                macs = m * w.shape[0] * k
            else:
                m, n_g, k = int(np.prod(xs[:-1])), w.shape[0], w.shape[1]
                macs = m * n_g * k
            gops = 2 * macs / t / 1e9
            print(f"{op.name[-48:]:48s} {m:7d} {n_g:5d} {k:5d} {t * 1e6:8.1f} {gops:6.0f} "
                  f"{gops / peak:5.0%}")
        print(f"# total {total * 1e3:.3f} ms; share by op type: " + ", ".join(
            f"{k} {v / total:.0%}" for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
