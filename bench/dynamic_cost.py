"""Measure float vs dynamic-int8 node times and (re)fit the cost model of quantize_dynamic's
keep-float rule (qengine/workflows/dynamic_cost.py).

    python bench/dynamic_cost.py [--fit] [--quick]

Every case is a one-node graph (a Conv, Gemm or MatMul with constant weights) at a static input
shape, run through Session.run in float and after quantize_dynamic (with the rule off, so the
int8 op is really used); the figure is the minimum over repeated calls on 1 thread (the least
noisy statistic on a shared machine; the model predicts the undisturbed time). Cases: a grid of
corner shapes (1 or few output channels, K of 1..4, tiny and large images, depthwise at several
widths, 1-D convolutions) plus every convolution of the bench CNNs. Prints measured and
predicted times and whether the model's decision (float or int8) matches the measurement; with
--fit, least squares on relative error gives new constants to paste into dynamic_cost.py.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import qengine  # noqa: E402
from qengine.graph import Graph, Node, ValueInfo  # noqa: E402
from qengine.workflows import dynamic_cost as C  # noqa: E402


def conv_case(x_shape, w_shape, group=1, stride=1, pad=0):
    nsp = len(w_shape) - 2
    rng = np.random.default_rng(sum(w_shape))
    W = rng.standard_normal(w_shape).astype(np.float32) * 0.1
    attrs = {"group": group, "strides": [stride] * nsp, "pads": [pad] * (2 * nsp),
             "kernel_shape": list(w_shape[2:])}
    g = Graph([ValueInfo("x", "float32", tuple(x_shape))], [ValueInfo("y")],
              [Node("Conv", "conv", ("x", "w", "b"), ("y",), attrs)],
              {"w": W, "b": rng.standard_normal(w_shape[0]).astype(np.float32)})
    return ("conv", x_shape, w_shape, group, stride, pad), g, rng.standard_normal(x_shape).astype(np.float32)


def linear_case(m, k, n):
    rng = np.random.default_rng(m + k + n)
    g = Graph([ValueInfo("x", "float32", (m, k))], [ValueInfo("y")],
              [Node("Gemm", "fc", ("x", "w", "b"), ("y",), {"transB": 1})],
              {"w": rng.standard_normal((n, k)).astype(np.float32),
               "b": rng.standard_normal(n).astype(np.float32)})
    return ("linear", m, k, n), g, rng.standard_normal((m, k)).astype(np.float32)


def cases(quick):
    out = []
    for hw in ((1, 1), (14, 14), (56, 56)) if not quick else ((14, 14),):
        for cin in (1, 4, 16, 64, 256):
            for cout in (1, 8, 64, 256):
                out.append(conv_case((1, cin, *hw), (cout, cin, 1, 1)))
    for hw in ((7, 7), (28, 28), (56, 56), (112, 112)):
        for c in (8, 32, 96, 240):
            for k in (3, 5):
                out.append(conv_case((1, c, *hw), (c, 1, k, k), group=c, pad=k // 2))
    for cin, cout, hw in ((3, 16, 112), (3, 64, 56), (16, 1, 56), (64, 64, 28), (64, 1, 28),
                          (128, 128, 14), (256, 256, 7)):
        out.append(conv_case((1, cin, hw, hw), (cout, cin, 3, 3), pad=1))
    for shape, w, s in (((90, 1, 832), (258, 1, 256), 128), ((90, 129, 4), (128, 129, 3), 1),
                        ((1, 128, 90), (1, 128, 1), 1), ((1, 1, 640), (258, 1, 256), 128)):
        out.append(conv_case(shape, w, stride=s, pad=(w[2] // 2 if w[2] == 3 else 0)))
    for m, k, n in ((1, 64, 10), (1, 512, 1000), (16, 120, 84), (40, 480, 120), (1, 16, 1),
                    (256, 256, 256), (18, 48, 6), (1000, 48, 6), (1000, 64, 4), (1000, 256, 64),
                    (256, 64, 512), (64, 256, 6625), (3, 20, 64), (3, 64, 4), (16, 1024, 1024)):
        out.append(linear_case(m, k, n))
    return out


def bench_models_convs():
    """The bench CNNs' convolutions at their real shapes (from shape inference)."""
    import tempfile
    from models import INPUT_SHAPES, build, export_onnx
    from qengine.graph import optimize
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("resnet18", "mobilenet_v2", "lenet"):
            p = f"{tmp}/{name}.onnx"
            export_onnx(build(name), p, INPUT_SHAPES[name])
            g = optimize(qengine.from_onnx(p))
            seen = set()
            for n in g.nodes:
                if n.op_type != "Conv":
                    continue
                x = g.value_info.get(n.inputs[0]) or next(v for v in g.inputs if v.name == n.inputs[0])
                w = g.initializers[n.inputs[1]].shape
                key = (tuple(x.shape), w, n.attrs.get("group", 1), tuple(n.attrs.get("strides") or ()))
                if key in seen:
                    continue
                seen.add(key)
                st = (n.attrs.get("strides") or [1])[0]
                pad = (n.attrs.get("pads") or [0])[0]
                out.append(conv_case(tuple(x.shape), w, n.attrs.get("group", 1), st, pad))
    return out


def time_min(sess, feeds, budget=0.03, min_runs=7):
    for _ in range(2):
        sess.run(feeds)
    best, n, t_end = float("inf"), 0, time.perf_counter() + budget
    while n < min_runs or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        sess.run(feeds)
        best = min(best, time.perf_counter() - t0)
        n += 1
    return best * 1e6


def predict(key, g):
    if key[0] == "linear":
        _, m, k, n = key
        return C.linear_cost(n, k, m)
    _, x_shape, w_shape, group, stride, pad = key
    y_shape = qengine.Session(g).run({"x": np.zeros(x_shape, np.float32)})["y"].shape
    return C.conv_cost(w_shape, group, [stride] * (len(w_shape) - 2),
                       [pad] * (2 * (len(w_shape) - 2)), x_shape, y_shape)


def features(key, g):
    """Rows of the fit: int8 features, float features (the terms of dynamic_cost.py)."""
    if key[0] == "linear":
        _, m, k, n = key
        return ("lin", [1, m * k, m * n, m * C._pad(n, 32) * C._pad(k, 4)], [1, m * n * k])
    _, x_shape, w_shape, group, stride, pad = key
    cout, cin_g = w_shape[:2]
    taps = int(np.prod(w_shape[2:]))
    y_shape = qengine.Session(g).run({"x": np.zeros(x_shape, np.float32)})["y"].shape
    p = int(np.prod(y_shape)) // cout
    e_in, e_out, k = int(np.prod(x_shape)), int(np.prod(y_shape)), cin_g * taps
    dw = group > 1 and cin_g == 1 and cout == cin_g * group
    pointwise = taps == 1 and stride == 1
    gather = not (dw or pointwise) and cin_g % 4 != 0
    i8 = [1, e_in, e_out, 0 if dw else group * p * C._pad(cout // group, 32) * C._pad(k, 4),
          0 if dw else group * p * C._pad(k, 4), group * p * C._pad(k, 4) if gather else 0,
          p * C._pad(cout, 64) * taps if dw else 0]
    f = [1, e_in if pad else 0, 0 if (dw or pointwise) else p * k * group,
         0 if dw else p * cout * k, taps * e_out if dw else 0, e_out]
    return ("conv", i8, f)


def fit(rows, names):
    """Non-negative least squares on relative error."""
    from scipy.optimize import nnls
    a = np.array([r[0] for r in rows], np.float64)
    t = np.array([r[1] for r in rows], np.float64)
    coef, _ = nnls(a / t[:, None], np.ones_like(t))
    return dict(zip(names, coef))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1)                 # qengine's kernels and NumPy's BLAS
    off = qengine.DynamicQuantConfig(cost_model=False)
    all_cases = cases(args.quick) + ([] if args.quick else bench_models_convs())
    rows, agree = [], 0
    print(f"{'case':<62}{'float us':>10}{'int8 us':>10}{'pred f':>10}{'pred i8':>10}  ok")
    for key, g, x in all_cases:
        tf = time_min(qengine.Session(g), {"x": x})
        ti = time_min(qengine.Session(qengine.quantize_dynamic(g, off)), {"x": x})
        pc = predict(key, g)
        ok = pc.keep_float == (ti > C.MARGIN * tf) or abs(ti / tf - 1) < C.MARGIN - 1
        agree += ok
        rows.append((key, g, tf, ti))
        print(f"{str(key[:3] + key[3:]):<62}{tf:>10.1f}{ti:>10.1f}{pc.float_us:>10.1f}"
              f"{pc.int8_us:>10.1f}  {'yes' if ok else 'NO'}", flush=True)
    print(f"# decisions agree with the measurement on {agree} of {len(rows)} cases (a case where "
          f"int8 and float are within the margin counts as agreeing either way)")
    errs = [abs(np.log(predict(k, g).int8_us / ti)) for k, g, _, ti in rows] + \
           [abs(np.log(predict(k, g).float_us / tf)) for k, g, tf, _ in rows]
    print(f"# median |prediction / measurement - 1|: {np.expm1(np.median(errs)):.0%}")
    if args.fit:
        conv_i8, conv_f, lin_i8, lin_f = [], [], [], []
        for key, g, tf, ti in rows:
            kind, fi, ff = features(key, g)
            (lin_i8 if kind == "lin" else conv_i8).append((fi, ti))
            (lin_f if kind == "lin" else conv_f).append((ff, tf))
        print("conv int8", fit(conv_i8, ["call", "quant_in", "out", "gemm_mac", "pack", "gather",
                                            "dw_lane"]))
        print("conv float", fit(conv_f, ["call", "pad_in", "im2col", "gemm_mac", "dw_tap", "out"]))
        print("linear int8", fit(lin_i8, ["lin_call", "lin_quant", "lin_out", "lin_mac"]))
        print("linear float", fit(lin_f, ["lin_call", "lin_mac"]))


if __name__ == "__main__":
    main()
