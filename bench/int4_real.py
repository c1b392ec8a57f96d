"""4-bit dynamic weights on a real pretrained model: ddddocr's captcha recognizer (bench/real_models.py).

Its float model (CNN, a bidirectional LSTM, an 8210-class linear head) is quantized with
quantize_dynamic at 8 bits and at 4 bits (per row, groups of 128, groups of 32). On text lines
rendered with PIL (random letters and digits, the default bitmap font scaled to the model's
64-pixel height), each is compared with the float model: SQNR of the CTC logits, and the share
of frames whose greedy CTC label (argmax) equals FP32's. Also the engine file size and, with
--latency, batch-1 latency (medians; run it under `flock /tmp/qengine-bench.lock`).

    python bench/int4_real.py [--images 64] [--latency]
"""
from __future__ import annotations

import argparse
import string
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402

import qengine as qe  # noqa: E402


def text_lines(n, seed=0, height=64):
    """n grayscale text lines [1, 1, 64, W] in [0, 1]: 4–8 random characters each."""
    from PIL import Image, ImageDraw, ImageFont
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default()
    chars = string.ascii_letters + string.digits
    out = []
    for _ in range(n):
        s = "".join(rng.choice(list(chars), int(rng.integers(4, 9))))
        img = Image.new("L", (8 * len(s) + 8, 16), 255)
        ImageDraw.Draw(img).text((4, 2), s, fill=0, font=font)
        w = int(round(img.width * height / img.height))
        img = img.resize((w, height), Image.BILINEAR)
        out.append(np.asarray(img, np.float32)[None, None] / 255.0)
    return out


def logits_agreement(session, name, xs, refs):
    """(SQNR in dB of `session`'s first output against `refs` over the inputs `xs` — inf when
    equal —, % of frames whose argmax equals the reference's)."""
    num = den = 0.0
    same = frames = 0
    for x, r in zip(xs, refs):
        y = next(iter(session.run({name: x}).values()))
        num += float(np.sum(r.astype(np.float64) ** 2))
        den += float(np.sum((y.astype(np.float64) - r) ** 2))
        same += int(np.sum(y.argmax(-1) == r.argmax(-1)))
        frames += r.argmax(-1).size
    return (float("inf") if den == 0 else 10 * np.log10(num / den)), 100 * same / frames


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args(argv)
    path = real_models.find("ddddocr_float") or real_models.fetch("ddddocr_float")
    fp32 = qe.from_onnx(str(path))
    name = fp32.input_names[0]
    configs = {"FP32": None,
               "int8": qe.DynamicQuantConfig(cost_model=False),
               "W4 per row": qe.DynamicQuantConfig(weight_bits=4, cost_model=False),
               "W4 group 128": qe.DynamicQuantConfig(weight_bits=4, group_size=128,
                                                     cost_model=False),
               "W4 group 32": qe.DynamicQuantConfig(weight_bits=4, group_size=32,
                                                    cost_model=False)}
    xs = text_lines(a.images)
    ref_sess = qe.Session(fp32)
    refs = [next(iter(ref_sess.run({name: x}).values())) for x in xs]
    from qengine._runtime import active_isa
    print(f"ddddocr {path.name}, {len(xs)} rendered text lines; qengine isa {active_isa()}, "
          f"threads {qe.get_num_threads()}\n")
    print("| weights | logits SQNR dB | frames = FP32 argmax | engine file | ms (batch 1) |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, cfg in configs.items():
            g = fp32 if cfg is None else qe.quantize_dynamic(fp32, cfg)
            f = Path(tmp) / "m.qe"
            qe.save(g, f)
            s = qe.load(f)
            db, pct = logits_agreement(s, name, xs, refs)
            sqnr = "inf" if np.isinf(db) else f"{db:.1f}"
            ms = ""
            if a.latency:
                x = xs[0]
                for _ in range(3):
                    s.run({name: x})
                t = []
                for _ in range(a.runs):
                    t0 = time.perf_counter()
                    s.run({name: x})
                    t.append(time.perf_counter() - t0)
                ms = f"{1e3 * float(np.median(t)):.2f}"
            print(f"| {label} | {sqnr} | {pct:.1f} % | "
                  f"{f.stat().st_size / 1024:.0f} KiB | {ms} |", flush=True)


if __name__ == "__main__":
    main()
