"""The integer LSTM on a real pretrained model: ddddocr's captcha recognizer (bench/real_models.py:
CNN, a bidirectional LSTM, an 8210-class head), quantized with quantize_static and each
StaticQuantConfig(rnn=...) — float, dynamic, int16, int8 — calibrated on 24 rendered text lines
(bench/int4_real.py's text_lines, seed 1) and compared with the float model on 32 others
(seed 0): SQNR of the CTC logits and the share of frames whose greedy label equals FP32's.

    python bench/static_rnn_real.py
"""
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402
from int4_real import logits_agreement, text_lines  # noqa: E402

import qengine as qe  # noqa: E402


def main():
    warnings.simplefilter("ignore")
    path = real_models.find("ddddocr_float") or real_models.fetch("ddddocr_float")
    fp32 = qe.from_onnx(str(path))
    name = fp32.input_names[0]
    calib = [{name: x} for x in text_lines(24, seed=1)]
    xs = text_lines(32, seed=0)
    ref = qe.Session(fp32)
    refs = [next(iter(ref.run({name: x}).values())) for x in xs]
    print(f"ddddocr {path.name}; isa {qe.active_isa()}")
    print("| static graph | logits SQNR dB | frames = FP32 argmax | recurrent op |")
    print("|---|---:|---:|---|")
    for rnn in ("float", "dynamic", "int16", "int8"):
        q = qe.quantize_static(fp32, calib, qe.StaticQuantConfig(rnn=rnn))
        db, pct = logits_agreement(qe.Session(q), name, xs, refs)
        ops = sorted({n.op_type for n in q.nodes if "LSTM" in n.op_type})
        print(f"| rnn={rnn} | {db:.1f} | {pct:.1f} % | "
              f"{', '.join(ops)} |", flush=True)


if __name__ == "__main__":
    main()
