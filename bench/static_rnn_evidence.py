"""Evidence for the integer LSTM / GRU (issue 12 item 4): accuracy / loss and batch-1 latency of
FP32, dynamic int8, static int16 and static int8, beside torch's and ONNX Runtime's dynamic
int8 where they exist, on three models (the RNN twin of bench/accuracy_cnn.py; the digits
models also print the logits' SQNR against torch's FP32 output):

* the demo LSTM (`qengine demo`: 2-layer LSTM(8, 128) digit classifier, rows as time steps),
  accuracy on its bundled 540-image test split;
* a GRU trained here the same way (2-layer GRU(8, 128), scikit-learn digits, 70/30 split,
  seed 0) — ONNX Runtime's quantize_dynamic leaves GRU float (ort#9796), so it has no int8 row;
* a character-level LSTM language model on CPython standard-library sources
  (bench/qat_models.py: CharLSTM(V=98, hidden 256, 1 layer), nats/char on held-out text).

Calibration: the models' training data (digits train split; 32 windows of training text);
static modes are quantize_static(..., StaticQuantConfig(rnn=...)). Latency: median of --runs
batch-1 calls (one image / one 100-character window), 1 thread, engines one after the other.

    python bench/static_rnn_evidence.py [--runs 50] [--lm-steps 600] [--cache DIR] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import qat_models as qm  # noqa: E402
from _timing import measure, median_ms, ort_session  # noqa: E402

import qengine as qe  # noqa: E402

MODES = ("FP32", "dynamic int8", "static int16", "static int8")


def engines(g32, calib):
    """{mode: Graph} for the four qengine modes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"FP32": g32,
               "dynamic int8": qe.quantize_dynamic(g32, qe.DynamicQuantConfig(cost_model=False))}
        for rnn in ("int16", "int8"):
            out[f"static {rnn}"] = qe.quantize_static(g32, calib, qe.StaticQuantConfig(rnn=rnn))
    return out


def latency(fn, runs):
    time.sleep(0.2)
    return median_ms(measure(fn, runs=runs, warmup=3))


def ort_dynamic(onnx_path, tmp):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    pre, out = os.path.join(tmp, "pre.onnx"), os.path.join(tmp, "ort_int8.onnx")
    quant_pre_process(str(onnx_path), pre, skip_symbolic_shape=True)
    quantize_dynamic(pre, out, weight_type=QuantType.QInt8)
    return out


def torch_dynamic(model):
    import torch
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.LSTM, torch.nn.GRU,
                                                         torch.nn.Linear}, dtype=torch.qint8)


# ---------------------------------------------------------------------------------------------
# digits: the demo LSTM and a GRU trained here
class DigitsRNN:
    def __new__(cls, kind, hidden=128, layers=2):
        import torch

        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                rnn = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
                self.rnn = rnn(8, hidden, num_layers=layers, batch_first=True)
                self.fc = torch.nn.Linear(hidden, 10)

            def forward(self, x):
                y, _ = self.rnn(x)
                return self.fc(y[:, -1])
        return M()


def digits_data():
    xtr, xte, ytr, yte = qm.digits_split()
    return xtr[:, 0], xte[:, 0], ytr, yte          # [N, 8 rows, 8 columns]


def demo_model():
    """The demo LSTM as a torch module (the bundled state_dict) and its test split."""
    import torch
    from qengine.engine_file import read_safetensors
    from qengine.tools.demo import demo_path
    tensors, _ = read_safetensors(demo_path())
    m = DigitsRNN("lstm")
    m.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()
                       if k.startswith(("rnn.", "fc."))})
    x = np.asarray(tensors["test.x_u8"], np.float32) / np.float32(16)
    return m.eval(), x, np.asarray(tensors["test.y"], np.int64)


def train_gru(xtr, ytr, seed=0, epochs=60):
    import torch
    torch.manual_seed(seed)
    m = DigitsRNN("gru")
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x[idx]), y[idx]).backward()
            opt.step()
    return m.eval()


def export(model, x, path):
    import torch
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), str(path), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "b"}}, dynamo=False,
                      opset_version=17)


def digits_table(name, model, x, y, calib_x, args, tmp):
    import torch
    torch.set_num_threads(args.threads)
    qe.set_num_threads(args.threads)
    path = Path(tmp) / f"{name}.onnx"
    export(model, x, path)
    g32 = qe.from_onnx(path)
    graphs = engines(g32, {"x": calib_x})
    rows = []
    x1 = x[:1]
    with torch.no_grad():                   # the reference of every row's SQNR
        ref = model(torch.from_numpy(x)).numpy().astype(np.float64)

    def sqnr(logits):
        noise = np.sum((logits.astype(np.float64) - ref) ** 2)
        return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref ** 2) / noise))
    for mode, g in graphs.items():
        s = qe.Session(g)
        logits = s.run({"x": x})["y"]
        rows.append({"model": name, "engine": f"qengine {mode}",
                     "metric": 100 * float((logits.argmax(1) == y).mean()),
                     "sqnr": sqnr(logits), "ms": latency(lambda: s.run({"x": x1}), args.runs)})
    with torch.no_grad():
        for label, m in (("torch FP32", model), ("torch dynamic int8", torch_dynamic(model))):
            logits = m(torch.from_numpy(x)).numpy()
            xt = torch.from_numpy(x1)
            rows.append({"model": name, "engine": label,
                         "metric": 100 * float((logits.argmax(1) == y).mean()),
                         "sqnr": sqnr(logits), "ms": latency(lambda: m(xt), args.runs)})
    ort_path = ort_dynamic(path, tmp)
    import onnx
    has_int8 = any(n.op_type == "DynamicQuantizeLSTM" for n in onnx.load(ort_path).graph.node)
    s = ort_session(ort_path, args.threads)
    logits = s.run(None, {"x": x})[0]
    rows.append({"model": name, "engine": "ORT dynamic int8" + ("" if has_int8 else
                                                                " (RNN left FP32 by ORT)"),
                 "metric": 100 * float((logits.argmax(1) == y).mean()),
                 "sqnr": sqnr(logits), "ms": latency(lambda: s.run(None, {"x": x1}), args.runs)})
    return rows


# ---------------------------------------------------------------------------------------------
# the character LM
def lm_table(args, tmp):
    import torch
    torch.set_num_threads(args.threads)
    qe.set_num_threads(args.threads)
    text, desc = qm.text_corpus()
    codes = qm.encode(text)
    train, test = qm.char_split(codes)
    windows = qm.lm_windows(test, 100)
    if args.quick:
        windows = windows[:, :100]
    targets = windows[1:]
    torch.manual_seed(0)
    model = qm.CharLSTM(qm.V, 256, 1)
    cache = None if args.cache is None else Path(args.cache) / f"charlstm-h256-s{args.lm_steps}.pt"
    if cache is not None and cache.exists():
        model.load_state_dict(torch.load(cache, weights_only=True))
    else:
        qm.train_lm(model, train, steps=args.lm_steps, bptt=100, lr=5e-3, seed=0)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), cache)
    model.eval()
    onnx32 = qm.export_lm_onnx(model, Path(tmp) / "lm.onnx")
    g32 = qe.from_onnx(onnx32)
    rng = np.random.default_rng(1)
    starts = rng.integers(0, len(train) - 101, 32)
    calib = [{g32.inputs[0].name: qm.one_hot(np.stack([train[s:s + 100] for s in starts], 1))}]
    graphs = engines(g32, calib)
    x_lat = qm.one_hot(rng.integers(0, qm.V - 1, size=(100, 1)))
    iname = g32.inputs[0].name
    rows = []
    for mode, g in graphs.items():
        s = qe.Session(g)
        o = s.output_names[0]
        logits = qm.lm_logits(lambda x: s.run({iname: x}, [o])[o], windows)
        rows.append({"model": "char LM", "engine": f"qengine {mode}",
                     "metric": float(qm.nats_per_char(logits, targets)),
                     "ms": latency(lambda: s.run({iname: x_lat}), args.runs)})
    xt = torch.from_numpy(x_lat)
    for label, m in (("torch FP32", model), ("torch dynamic int8", torch_dynamic(model))):
        logits = qm.lm_logits(qm.torch_run(m), windows)
        with torch.no_grad():
            rows.append({"model": "char LM", "engine": label,
                         "metric": float(qm.nats_per_char(logits, targets)),
                         "ms": latency(lambda: m(xt), args.runs)})
    s = ort_session(ort_dynamic(onnx32, tmp), args.threads)
    i0 = s.get_inputs()[0].name
    logits = qm.lm_logits(lambda x: s.run(None, {i0: x})[0], windows)
    rows.append({"model": "char LM", "engine": "ORT dynamic int8",
                 "metric": float(qm.nats_per_char(logits, targets)),
                 "ms": latency(lambda: s.run(None, {i0: x_lat}), args.runs)})
    return rows, desc, targets.shape[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lm-steps", type=int, default=600)
    ap.add_argument("--cache", help="directory to keep the trained LM between runs")
    ap.add_argument("--quick", action="store_true", help="fewer LM test windows")
    ap.add_argument("--models", default="demo,gru,lm")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    print(f"qengine {qe.__version__}, isa {qe.active_isa()}, {args.threads} thread(s), load "
          f"{os.getloadavg()[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        xtr, _, ytr, _ = digits_data()
        if "demo" in args.models:
            m, x, y = demo_model()
            rows += digits_table("demo LSTM", m, x, y, xtr, args, tmp)
        if "gru" in args.models:
            _, xte, _, yte = digits_data()
            rows += digits_table("digits GRU", train_gru(xtr, ytr), xte, yte, xtr, args, tmp)
        if "lm" in args.models:
            lm_rows, desc, nwin = lm_table(args, tmp)
            rows += lm_rows
            print(f"char LM corpus: {desc}; test: {nwin} windows of 100 characters")
    print(f"{'model':<12}{'engine':<44}{'metric':>10}{'SQNR dB':>9}{'ms':>9}")
    for r in rows:
        unit = "%" if r["model"] != "char LM" else " nats/char"
        db = f"{r['sqnr']:>9.1f}" if "sqnr" in r else f"{'':>9}"
        print(f"{r['model']:<12}{r['engine']:<44}{r['metric']:>10.4f}{db}{r['ms']:>9.3f}  {unit}")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
