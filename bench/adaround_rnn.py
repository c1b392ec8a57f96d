"""AdaRound for dynamic quantization (issue 14, item 4): the bundled digits LSTM (two LSTM
layers, hidden 128, and a Linear head) with W8 / W4 / W4 group-32 weights, nearest rounding
against AdaRound learned on the first 128 test sequences; logits SQNR against FP32 and
accuracy on the other 412.

    python bench/adaround_rnn.py
"""
import time

import numpy as np

import qengine as qe
from qengine.tools.demo import load_demo


def main():
    g, x, y, _ = load_demo()
    calib, xt, yt = {"x": x[:128]}, x[128:], y[128:]
    ref = qe.Session(g).run({"x": xt})["logits"].astype(np.float64)
    print(f"FP32 accuracy {100 * np.mean(ref.argmax(1) == yt):.2f} % on {len(yt)} sequences")
    print("| weights | rounding | logits SQNR dB | accuracy % | quantize s |")
    print("|---|---|---:|---:|---:|")
    for label, kw in (("W8", {}), ("W4", {"weight_bits": 4}),
                      ("W4 group 32", {"weight_bits": 4, "group_size": 32})):
        for r in ("nearest", "adaround"):
            cfg = qe.DynamicQuantConfig(cost_model=False, rounding=r, **kw)
            t = time.perf_counter()
            q = qe.quantize_dynamic(g, cfg, calib if r == "adaround" else None)
            took = time.perf_counter() - t
            y_q = qe.Session(q).run({"x": xt})["logits"]
            db = 10 * np.log10(np.sum(ref ** 2) / np.sum((y_q - ref) ** 2))
            print(f"| {label} | {r} | {db:.2f} | {100 * np.mean(y_q.argmax(1) == yt):.2f} | "
                  f"{took:.1f} |", flush=True)


if __name__ == "__main__":
    main()
