"""Issue 15's four model families, exported from PyTorch here (seeded random weights, no
downloads): a keyword-spotting CNN+GRU on 40×98 MFCC-like features, a small U-Net
(ConvTranspose + bilinear Resize, 3×64×64), a 4-layer transformer encoder (d=64, 4 heads,
32 tokens) and one step of an LSTM seq2seq decoder with dot-product attention. For each: the
largest relative difference of qengine FP32 from ONNX Runtime FP32, int8 output SQNR against
FP32 (qengine dynamic and static, ONNX Runtime dynamic), and batch-1 latency medians.

    python bench/reach_models.py [--runs 200] [--threads 1]

Needs torch, onnx and onnxruntime.
"""
import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved_ms  # noqa: E402
from reach_model_defs import build_all  # noqa: E402

import qengine as qe  # noqa: E402


class _NodeByNode(qe.Session):
    """A Session without its runtime fusions (layout chains, attention core): every node of
    the graph is profiled on its own."""
    _FUSE = False


def island_costs(graph, feeds, runs=200):
    """{op type: µs per run} of the float islands of a static int8 graph: each float
    LayerNormalization / Softmax / MatMul with the DequantizeU8 that feed it and the
    QuantizeU8 that read it (per-node profile, medians over `runs`)."""
    sess = _NodeByNode(graph)
    g = sess.graph
    made_by = {o: n for n in g.nodes for o in n.outputs}
    readers = g.consumers()
    per_node = {}
    for p in sess.profile(feeds, repeat=runs)[1]:
        for name, _, t in p.nodes:
            per_node.setdefault(name, []).append(t)
    med = {k: float(np.median(v)) for k, v in per_node.items()}
    out = {}
    for n in g.nodes:
        if n.op_type not in ("LayerNormalization", "Softmax", "MatMul"):
            continue
        parts = [n] + [made_by[v] for v in n.inputs if v in made_by and
                       made_by[v].op_type == "DequantizeU8"]
        parts += [r for r in readers.get(n.outputs[0], []) if r.op_type == "QuantizeU8"]
        out[n.op_type] = out.get(n.op_type, 0.0) + 1e6 * sum(med[m.name] for m in parts)
    return out, 1e6 * sum(med.values())


def sqnr(y, ref):
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / max(np.sum((np.asarray(y, np.float64) - ref) ** 2),
                                               1e-300))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    qe.set_num_threads(args.threads)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    print(f"| model | FP32 max rel. diff vs ORT | int8 SQNR dB: qengine dynamic / static / "
          f"ORT dynamic | ms batch 1: ORT FP32 / ORT int8 / qengine FP32 / dynamic / static |")
    print("|---|---:|---:|---:|")
    attention, islands = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, calib, test in build_all(tmp):
            o32 = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            q8 = os.path.join(tmp, f"{name}.int8.onnx")
            quantize_dynamic(path, q8, weight_type=QuantType.QInt8)
            o8 = ort.InferenceSession(q8, so, providers=["CPUExecutionProvider"])
            out = o32.get_outputs()[0].name
            ref = o32.run([out], test)[0]
            g = qe.from_onnx(path)
            fp = qe.Session(g)
            diff = float(np.max(np.abs(fp.run(test)[out] - ref)) / np.max(np.abs(ref)))
            dyn = qe.Session(qe.quantize_dynamic(g, qe.DynamicQuantConfig(cost_model=False)))
            try:
                st = qe.Session(qe.quantize_static(g, calib))
                st_db = f"{sqnr(st.run(test)[out], ref):.1f}"
            except qe.QEngineError as e:
                st, st_db = None, f"({type(e).__name__})"
            ms = interleaved_ms([lambda s=s: s.run(None, test) for s in (o32, o8)] +
                            [lambda s=s: s.run(test) for s in (fp, dyn) + ((st,) if st else ())],
                            args.runs)
            print(f"| {name} | {diff:.1e} | {sqnr(dyn.run(test)[out], ref):.1f} / {st_db} / "
                  f"{sqnr(o8.run([out], test)[0], ref):.1f} | "
                  + " / ".join(f"{m:.2f}" for m in ms) + " |", flush=True)
            if name in ("encoder", "decoder"):
                attention[name] = (g, calib, test, ref, out, ms[0])
            if st is not None and name in ("encoder", "decoder", "kws"):
                islands[name] = island_costs(st.graph, test)
    print("\nAttention in int8 (MatMuls between two activations), batch 1:\n")
    print("| model | mode | SQNR dB | ms | ORT FP32 ms |")
    print("|---|---|---:|---:|---:|")
    for name, (g, calib, test, ref, out, ort_ms) in attention.items():
        variants = [("static, float attention (default)", qe.quantize_static(g, calib)),
                    ("static, activation_matmul='int8'", qe.quantize_static(
                        g, calib, qe.StaticQuantConfig(activation_matmul="int8"))),
                    ("dynamic, float attention (default)", qe.quantize_dynamic(
                        g, qe.DynamicQuantConfig(cost_model=False))),
                    ("dynamic, activation_matmul=True", qe.quantize_dynamic(
                        g, qe.DynamicQuantConfig(cost_model=False, activation_matmul=True)))]
        sessions = [qe.Session(q) for _, q in variants]
        ms = interleaved_ms([lambda s=s: s.run(test) for s in sessions], args.runs)
        for (label, _), s, m in zip(variants, sessions, ms):
            print(f"| {name} | {label} | {sqnr(s.run(test)[out], ref):.1f} | {m:.3f} | "
                  f"{ort_ms:.3f} |")
    print("\nFloat islands of the static int8 graphs (op + its DequantizeU8 / QuantizeU8), "
          "µs per run:\n")
    print("| model | LayerNormalization | Softmax | MatMul (two activations) | whole run |")
    print("|---|---:|---:|---:|---:|")
    for name, (costs, total) in islands.items():
        print(f"| {name} | " + " | ".join(f"{costs.get(k, 0.0):.0f}" for k in (
            "LayerNormalization", "Softmax", "MatMul")) + f" | {total:.0f} |")


if __name__ == "__main__":
    main()
