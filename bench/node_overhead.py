"""Per-node overhead of the executor (issue 9: "a small model costs <= 2 us per node").

    python bench/node_overhead.py [--runs 3000]

1. Chains of 1 and 101 nodes of one op on a [1, 8] float tensor: (t101 - t1) / 100 is what one
   more node costs — Identity is the executor's own dispatch (slot reads/writes, one vectorcall),
   Relu/Sigmoid add a NumPy ufunc call. t1 is the fixed cost of Session.run.
2. The static-int8 LeNet of bench/models.py at batch 1 against ONNX Runtime running its QDQ model
   in the same process: total per call and per node.
Best of 5 batches of --runs calls (the minimum: this measures overhead, not a noisy average).
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import qengine  # noqa: E402


def best_us(fn, runs):
    for _ in range(min(runs, 200)):
        fn()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(runs):
            fn()
        best = min(best, (time.perf_counter() - t0) / runs)
    return best * 1e6


def chain_model(op, n):
    from onnx import TensorProto, helper
    nodes = [helper.make_node(op, [f"v{i}"], [f"v{i + 1}"]) for i in range(n)]
    g = helper.make_graph(nodes, "chain",
                          [helper.make_tensor_value_info("v0", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info(f"v{n}", TensorProto.FLOAT, [1, 8])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3000)
    args = ap.parse_args(argv)
    qengine.set_num_threads(1)
    x = np.ones((1, 8), np.float32)
    print(f"# qengine {qengine.__version__} isa={qengine.active_isa()} 1 thread; best of 5 "
          f"batches of {args.runs} calls, µs")
    for op in ("Identity", "Relu", "Sigmoid"):
        t = []
        for n in (1, 101):
            # optimize=False: the graph passes would remove the Identity chain
            s = qengine.Session(qengine.from_onnx(chain_model(op, n), optimize=False))
            t.append(best_us(lambda: s.run({"v0": x}), args.runs))
        print(f"{op:9s} Session.run of 1 node {t[0]:6.2f}   each further node "
              f"{(t[1] - t[0]) / 100:6.3f}")

    import compare_cnn as c
    from _timing import ort_session
    tmp = tempfile.mkdtemp()
    path, iname, xi, calib, _ = c.make_case("lenet", 1, tmp)
    s = c.qengine_session(path, iname, calib)
    ort = ort_session(c.ort_qdq(path, iname, calib, tmp), 1)
    qe = best_us(lambda: s.run({iname: xi}), args.runs)
    ot = best_us(lambda: ort.run(None, {iname: xi}), args.runs)
    n = len(s.graph.nodes)
    print(f"LeNet static int8 batch 1: qengine {qe:.1f} ({n} nodes, {qe / n:.2f} per node, "
          f"kernels included), ONNX Runtime QDQ {ot:.1f}, ratio {qe / ot:.2f}")


if __name__ == "__main__":
    main()
