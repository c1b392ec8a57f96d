"""What a Session's runtime fusions (layout chains, attention core: qengine/graph/layout.py,
qengine/graph/attention.py) are worth on the issue-15 encoder and decoder step: ONNX Runtime
FP32 and qengine FP32 / dynamic int8 without and with them, timed in turn within each round;
the outputs with and without are checked first (equal to float rounding: the attention core's
compiled kernel sums in its own order).

    python bench/runtime_fusions.py [--runs 400] [--passes 2] [--threads 1]

Needs torch, onnx and onnxruntime.
"""
import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved_ms, ort_session  # noqa: E402
from reach_model_defs import build_all  # noqa: E402

import qengine as qe  # noqa: E402


class _Unfused(qe.Session):
    _FUSE = False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    qe.set_num_threads(args.threads)
    print("| model | ORT FP32 | qengine FP32 without / with | qengine dynamic without / with |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, _, test in build_all(tmp, names=("encoder", "decoder")):
            o = ort_session(path, args.threads)
            g = qe.from_onnx(path)
            d = qe.quantize_dynamic(g, qe.DynamicQuantConfig(cost_model=False))
            sessions = [_Unfused(g), qe.Session(g), _Unfused(d), qe.Session(d)]
            out = g.output_names[0]
            for a, b in (sessions[:2], sessions[2:]):
                want = b.run(test)[out]
                np.testing.assert_allclose(a.run(test)[out], want, rtol=1e-5,
                                           atol=1e-6 * float(np.abs(want).max()))
            for _ in range(args.passes):
                ms = interleaved_ms([lambda: o.run(None, test)] +
                                    [lambda s=s: s.run(test) for s in sessions], args.runs)
                print(f"| {name} | {ms[0]:.3f} | {ms[1]:.3f} / {ms[2]:.3f} | "
                      f"{ms[3]:.3f} / {ms[4]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
