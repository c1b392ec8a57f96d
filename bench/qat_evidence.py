"""Evidence on real data for QAT and 4-bit weights (issue 11, item 4): FP32 / PTQ int8 / QAT int8 /
PTQ W4A8 / QAT W4A8 for a digits CNN and a character LSTM language model, each row with its
accuracy (CNN) or test loss in nats/char (LM), SQNR of the logits against the PyTorch FP32
model, engine file size, and batch-1 latency in qengine and ONNX Runtime.

    flock /tmp/qengine-bench.lock python bench/qat_evidence.py [--quick] [--out docs/x.md]

Models and data (bench/qat_models.py; all offline, nothing downloaded):
* CNN: DigitsCNN(width 4) (Conv+BN+ReLU ×2, MaxPool, a residual Conv+BN block, GAP, Linear) on
  "noisy digits": scikit-learn's digits, 1257 train images perturbed afresh each epoch (shift
  ±1 px, Gaussian noise σ 0.1), tested on 4 fixed perturbations of each of the 540 test images
  (2160 samples). Plain digits were too easy: 4-bit weights lost < 2 pt there for most widths
  and seeds (see docs/qat.md). Static PTQ calibrates on 256 clean training images.
* LM: CharLSTM (one-hot [T, B, 98] → LSTM(256) → Linear(98)) trained on random 100-char
  windows of the first 90 % of 41 CPython stdlib sources (qat_models.STDLIB_FILES), tested on
  the last 10 % as non-overlapping 100-char windows; every window starts from a zero state
  (qengine.qat's recurrent layers take no initial state). Dynamic PTQ quantizes every layer
  (cost_model=False) so all quantized rows quantize the same layers.

Rows whose API does not exist yet print "n/a" (the QAT rows need `qengine.qat`, the W4A8 rows
`weight_bits=4` in StaticQuantConfig / DynamicQuantConfig). Their hooks are the functions
`qat_cnn`, `ptq_w4_cnn`, `qat_lm`, `ptq_w4_lm` below. A "W4 emulation" line under the CNN table
is PyTorch with BN folded and weights fake-quantized per channel to [-7, 7] (float
activations): how the model was chosen, not an engine number.

Latency: median of batch-1 runs (CNN: one 1×1×8×8 image; LM: one 100-char sequence from a zero
state), at --threads threads in both engines. Training uses --train-threads torch threads.
Only this CLI writes files (--out, --cache); everything else goes to a temporary directory.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import importlib.util
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import qengine as qe

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import qat_models as qm  # noqa: E402
from _timing import measure, median_ms, ort_session  # noqa: E402

ROWS = ("FP32", "PTQ int8", "QAT int8", "PTQ W4A8", "QAT W4A8")


class Unavailable(Exception):
    """An API a row needs does not exist (yet); the row prints n/a with this reason."""


@dataclasses.dataclass
class Row:
    label: str
    metric: float | None = None       # accuracy % (CNN) or nats/char (LM)
    sqnr: float | None = None         # dB, logits vs PyTorch FP32
    size: int | None = None           # engine file bytes
    qe_ms: float | None = None
    ort_ms: float | None = None
    note: str = ""


def sqnr_db(y, ref):
    ref = np.asarray(ref, np.float64)
    err = np.sum((np.asarray(y, np.float64) - ref) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(np.sum(ref ** 2) / err))


def have_qat():
    """qengine.qat exists in *this* qengine (an editable install elsewhere would otherwise
    lend its qengine.qat to an older tree: its finder falls back to the installed path)."""
    spec = importlib.util.find_spec("qengine.qat")
    return spec is not None and any(Path(spec.origin).resolve().is_relative_to(Path(p).resolve())
                                    for p in qe.__path__)


def import_qat():
    if not have_qat():
        raise Unavailable("qengine.qat does not exist yet")
    import qengine.qat as qat
    return qat


def has_field(cls, name):
    return name in getattr(cls, "__dataclass_fields__", {})


class Ctx:
    """What the rows of one model share: the test data, the reference logits, timing input."""

    def __init__(self, args, tmp, ref, score, x_lat):
        self.args, self.tmp = args, Path(tmp)
        self.ref, self.score, self.x_lat = ref, score, x_lat

    def graph_row(self, label, graph, run_test, onnx_path=None, note=""):
        """Score, SQNR, file size and latency of an engine Graph; `run_test(sess) -> logits`."""
        path = self.tmp / f"{label.replace(' ', '_')}.qe"
        qe.save(graph, path)
        sess = qe.load(path)
        logits = self.last_logits = run_test(sess)
        feeds = {sess.inputs[0].name: self.x_lat}
        out0 = sess.output_names[0]
        qe_ms = median_ms(measure(lambda: sess.run(feeds, [out0]), runs=self.args.runs))
        ort_ms, onnx_note = None, ""
        if onnx_path is None:
            try:       # the engine's own QDQ export, so ORT runs the same quantized model
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    onnx_path = str(self.tmp / f"{label.replace(' ', '_')}.onnx")
                    qe.export_onnx(graph, onnx_path)
            except Exception as e:    # noqa: BLE001  (a row still prints without ORT)
                onnx_path, onnx_note = None, f"ORT: export failed ({type(e).__name__})"
        if onnx_path is not None:
            try:
                s = ort_session(onnx_path, self.args.threads)
                of = {s.get_inputs()[0].name: self.x_lat}
                ort_ms = median_ms(measure(lambda: s.run(None, of), runs=self.args.runs))
            except Exception as e:    # noqa: BLE001
                onnx_note = f"ORT: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
        return Row(label, self.score(logits), sqnr_db(logits, self.ref), os.path.getsize(path),
                   qe_ms, ort_ms, "; ".join(n for n in (note, onnx_note) if n))


def fidelity(engine, qat_eval):
    """Note text: how closely the engine reproduces the QAT model's eval forward."""
    d = np.abs(np.asarray(engine, np.float64) - qat_eval)
    return (f"; engine vs QAT eval forward: SQNR {sqnr_db(engine, qat_eval):.1f} dB, "
            f"max |Δ| {d.max():.2g}")


def guarded(label, fn):
    try:
        return fn()
    except Unavailable as e:
        return Row(label, note=f"n/a: {e}")


# ---------------------------------------------------------------------------------------------
# CNN

def cnn_fp32(args, log):
    import torch
    xtr, xte, ytr, yte = qm.noisy_digits(copies=args.test_copies, noise=args.noise)
    key = f"cnn-v2-w{args.width}-e{args.epochs}-n{args.noise}-s{args.seed}"
    torch.manual_seed(args.seed)             # the initial weights too
    model = qm.DigitsCNN(args.width)
    if not _load_cached(args, key, model):
        t0 = time.perf_counter()
        qm.train_cnn(model, xtr, ytr, epochs=args.epochs, seed=args.seed,
                     augment=(1, args.noise))
        log(f"CNN: trained FP32 in {time.perf_counter() - t0:.1f} s")
        _save_cached(args, key, model)
    return model.eval(), (xtr, xte, ytr, yte)


def qat_cnn(args, model, data, weight_bits, log):
    """HOOK (QAT int8 / QAT W4A8 of the CNN): static-mode QAT fine-tuned from the FP32 weights
    (BN folded as deployed, BN statistics and activation ranges frozen for the last third of the
    steps, Krishnamoorthi 2018's recipe), converted to an integer engine graph.
    Returns (qmodel, graph, onnx_path or None, note)."""
    qat = import_qat()
    import torch
    xtr, _, ytr, _ = data
    steps = args.qat_epochs * -(-len(xtr) // 64)
    freeze = (2 * steps) // 3
    cfg = qat.QATConfig(weight_bits=weight_bits, per_channel=True,
                        learn_scales=args.learn_scales, fold_bn=True,
                        freeze_observers_after=freeze, freeze_bn_after=freeze)
    qmodel = qat.prepare(copy.deepcopy(model), (torch.from_numpy(xtr[:2]),), cfg)
    t0 = time.perf_counter()
    qm.train_cnn(qmodel, xtr, ytr, epochs=args.qat_epochs, lr=args.qat_lr, seed=args.seed + 1,
                 augment=(1, args.noise))
    log(f"CNN: QAT W{weight_bits} fine-tuned in {time.perf_counter() - t0:.1f} s")
    qmodel.eval()
    return (qmodel, qat.convert(qmodel), _qat_onnx(qat, qmodel, args, f"cnn_w{weight_bits}"),
            f"QAT {args.qat_epochs} epochs, lr {args.qat_lr}, freeze after {freeze} steps"
            f"{', LSQ' if args.learn_scales else ''}")


def _qat_onnx(qat, qmodel, args, name):
    """qat.export_onnx of the model for the ORT column, or None when the export fails."""
    path = str(Path(args.tmp) / f"qat_{name}.onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qat.export_onnx(qmodel, path)
        return path
    except Exception:   # noqa: BLE001  (the row still prints, without ORT)
        return None


def ptq_w4_cnn(g32, calib):
    """HOOK (PTQ W4A8 of the CNN): static PTQ with 4-bit per-channel weights."""
    if not has_field(qe.StaticQuantConfig, "weight_bits"):
        raise Unavailable("StaticQuantConfig has no weight_bits yet")
    return qe.quantize_static(g32, {"image": calib}, qe.StaticQuantConfig(weight_bits=4))


def cnn_table(args, tmp, log):
    import torch
    model, data = cnn_fp32(args, log)
    xtr, xte, ytr, yte = data
    ref = qm.torch_logits(model, xte)
    fp32_acc = qm.accuracy(ref, yte)
    emu = qm.accuracy(qm.torch_logits(qm.fake_quant_weights(model, 4), xte), yte)
    onnx32 = qm.export_cnn_onnx(model, Path(tmp) / "cnn_fp32.onnx")
    g32 = qe.from_onnx(onnx32)
    calib = qm.calib_subset(xtr, 256, seed=args.seed)
    ctx = Ctx(args, tmp, ref, lambda y: qm.accuracy(y, yte), xte[:1])
    run = lambda sess: sess.run({sess.inputs[0].name: xte})[sess.output_names[0]]  # noqa: E731
    rows = [ctx.graph_row("FP32", g32, run, onnx32, note="PyTorch FP32: %.2f%%" % fp32_acc)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g8 = qe.quantize_static(g32, {"image": calib}, qe.StaticQuantConfig())
    rows.append(ctx.graph_row("PTQ int8", g8, run, note="static, minmax, per-channel"))

    def qat_row(label, bits):
        qmodel, g, path, note = qat_cnn(args, model, data, bits, log)
        row = ctx.graph_row(label, g, run, path, note=note)
        row.note += fidelity(ctx.last_logits, qm.torch_logits(qmodel, xte))
        return row

    rows.append(guarded("QAT int8", lambda: qat_row("QAT int8", 8)))
    rows.append(guarded("PTQ W4A8", lambda: ctx.graph_row("PTQ W4A8", ptq_w4_cnn(g32, calib),
                                                          run, note="static, per-channel")))
    rows.append(guarded("QAT W4A8", lambda: qat_row("QAT W4A8", 4)))
    control = None
    if rows[2].metric is not None:   # the same extra training without quantization
        ft = copy.deepcopy(model)
        qm.train_cnn(ft, xtr, ytr, epochs=args.qat_epochs, lr=args.qat_lr, seed=args.seed + 1,
                     augment=(1, args.noise))
        control = qm.accuracy(qm.torch_logits(ft, xte), yte)
    nparams = sum(p.numel() for p in model.parameters())
    title = (f"CNN: DigitsCNN(width={args.width}), {nparams} parameters; noisy digits "
             f"(shift ±1, σ {args.noise}), {len(yte)} test samples; accuracy %")
    extra = [f"W4 emulation (PyTorch, BN folded, weights per channel in [-7, 7], float "
             f"activations): {emu:.2f}% ({emu - fp32_acc:+.2f} pt vs FP32)"]
    if control is not None:
        extra.append(f"control: the FP32 model fine-tuned as QAT is ({args.qat_epochs} epochs, "
                     f"lr {args.qat_lr}, same seed) without quantization: {control:.2f}% "
                     f"({control - fp32_acc:+.2f} pt)")
    return title, "accuracy %", rows, extra


# ---------------------------------------------------------------------------------------------
# char LM

def lm_data(args):
    text, desc = qm.text_corpus()
    codes = qm.encode(text)
    train, test = qm.char_split(codes)
    windows = qm.lm_windows(test, args.bptt)
    if args.quick:
        windows = windows[:, :200]
    return train, windows, desc


def lm_fp32(args, train, log):
    import torch
    torch.manual_seed(args.seed)             # the initial weights too
    model = qm.CharLSTM(qm.V, args.hidden, args.layers)
    key = (f"lm-v2-h{args.hidden}-l{args.layers}-t{args.bptt}-s{args.lm_steps}-lr{args.lm_lr}"
           f"-s{args.seed}")
    if not _load_cached(args, key, model):
        t0 = time.perf_counter()
        qm.train_lm(model, train, steps=args.lm_steps, bptt=args.bptt, lr=args.lm_lr,
                    seed=args.seed, log=log)
        log(f"LM: trained FP32 in {time.perf_counter() - t0:.1f} s")
        _save_cached(args, key, model)
    return model.eval()


def lm_graph(model):
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return qe.from_torch_state_dict(sd, qm.lm_state_dict_layers(model))


def qat_lm(args, model, train, weight_bits, log):
    """HOOK (QAT int8 / QAT W4A8 of the LM): dynamic-mode QAT (weights fake-quantized per
    channel, activations per call/step as the dynamic kernels quantize them), fine-tuned from
    the FP32 weights, converted to an engine graph.
    Returns (qmodel, graph, onnx_path or None, note)."""
    qat = import_qat()
    import torch
    if weight_bits == 4 and args.group_size and not has_field(qat.QATConfig, "group_size"):
        raise Unavailable("QATConfig has no group_size yet")
    kw = {"group_size": args.group_size} if args.group_size else {}
    cfg = qat.QATConfig(weight_bits=weight_bits, per_channel=True,
                        learn_scales=args.learn_scales, mode="dynamic", **kw)
    qmodel = qat.prepare(copy.deepcopy(model), (torch.zeros(args.bptt, 2, qm.V),), cfg)
    t0 = time.perf_counter()
    qm.train_lm(qmodel, train, steps=args.qat_lm_steps, bptt=args.bptt, lr=args.qat_lm_lr,
                seed=args.seed + 1, log=log)
    log(f"LM: QAT W{weight_bits} fine-tuned in {time.perf_counter() - t0:.1f} s")
    qmodel.eval()
    # ORT runs qe.export_onnx of the time-major graph (qat.export_onnx fixes the batch too)
    return (qmodel, time_major(qat.convert(qmodel)), None,
            f"dynamic-mode QAT, {args.qat_lm_steps} steps, lr {args.qat_lm_lr}"
            f"{', LSQ' if args.learn_scales else ''}")


def time_major(g):
    """WORKAROUND: qat.convert makes only dim 0 of each value symbolic ("N") and fixes the rest
    to the example's sizes; for a time-major [T, B, V] LSTM that fixes the batch. Declare the
    graph's input/output as [time, batch, V] (and drop the inferred intermediate shapes) so that
    the converted model runs on any batch, as the FP32 and PTQ graphs do."""
    from qengine.graph.ir import ValueInfo
    io = lambda vs: [ValueInfo(v.name, v.dtype, ("time", "batch", qm.V)) for v in vs]  # noqa
    return dataclasses.replace(g, inputs=io(g.inputs), outputs=io(g.outputs), value_info={})


def ptq_w4_lm(args, g32):
    """HOOK (PTQ W4A8 of the LM): dynamic quantization with 4-bit weights."""
    if not has_field(qe.DynamicQuantConfig, "weight_bits"):
        raise Unavailable("DynamicQuantConfig has no weight_bits yet")
    kw = {"group_size": args.group_size} if args.group_size else {}
    return qe.quantize_dynamic(g32, qe.DynamicQuantConfig(weight_bits=4, cost_model=False, **kw))


def lm_table(args, tmp, log):
    train, windows, desc = lm_data(args)
    model = lm_fp32(args, train, log)
    targets = windows[1:]
    ref = qm.lm_logits(qm.torch_run(model), windows)
    fp32_loss = qm.nats_per_char(ref, targets)
    g32 = lm_graph(model)
    onnx32 = qm.export_lm_onnx(model, Path(tmp) / "lm_fp32.onnx")
    rng = np.random.default_rng(args.seed)
    x_lat = qm.one_hot(rng.integers(0, qm.V - 1, size=(args.bptt, 1)))
    ctx = Ctx(args, tmp, ref, lambda y: qm.nats_per_char(y, targets), x_lat)

    def run(sess):
        i, o = sess.inputs[0].name, sess.output_names[0]
        return qm.lm_logits(lambda x: sess.run({i: x}, [o])[o], windows)

    rows = [ctx.graph_row("FP32", g32, run, onnx32, note="PyTorch FP32: %.4f" % fp32_loss)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g8 = qe.quantize_dynamic(g32, qe.DynamicQuantConfig(cost_model=False))
    rows.append(ctx.graph_row("PTQ int8", g8, run, note="dynamic, per-channel weights"))

    def qat_row(label, bits):
        qmodel, g, path, note = qat_lm(args, model, train, bits, log)
        row = ctx.graph_row(label, g, run, path, note=note)
        row.note += fidelity(ctx.last_logits, qm.lm_logits(qm.torch_run(qmodel), windows))
        return row

    rows.append(guarded("QAT int8", lambda: qat_row("QAT int8", 8)))
    rows.append(guarded("PTQ W4A8", lambda: ctx.graph_row(
        "PTQ W4A8", ptq_w4_lm(args, g32), run,
        note=f"dynamic, {f'group size {args.group_size}' if args.group_size else 'per channel'}")))
    rows.append(guarded("QAT W4A8", lambda: qat_row("QAT W4A8", 4)))
    control = None
    if rows[2].metric is not None:   # the same extra training without quantization
        ft = copy.deepcopy(model)
        qm.train_lm(ft, train, steps=args.qat_lm_steps, bptt=args.bptt, lr=args.qat_lm_lr,
                    seed=args.seed + 1)
        control = qm.nats_per_char(qm.lm_logits(qm.torch_run(ft), windows), targets)
    title = (f"char LM: CharLSTM(V={qm.V}, hidden={args.hidden}, layers={args.layers}), "
             f"{args.lm_steps} training steps of 32×{args.bptt} chars; test: "
             f"{targets.shape[1]} windows of {args.bptt} chars from a zero state; loss nats/char")
    emu = qm.nats_per_char(qm.lm_logits(qm.torch_run(qm.fake_quant_weights(model, 4)), windows),
                           targets)
    extra = [f"corpus: {desc}; train = first 90 %, test = last 10 %",
             f"an untrained model scores ln {qm.V} = {np.log(qm.V):.4f} nats/char",
             f"W4 emulation (PyTorch, weights per channel in [-7, 7], float activations): "
             f"{emu:.4f} nats/char ({emu - fp32_loss:+.4f} vs FP32)"]
    if control is not None:
        extra.append(f"control: the FP32 model fine-tuned as QAT is ({args.qat_lm_steps} steps, "
                     f"lr {args.qat_lm_lr}, same seed) without quantization: {control:.4f} "
                     f"({control - fp32_loss:+.4f})")
    return title, "loss nats/char", rows, extra


# ---------------------------------------------------------------------------------------------
# cache of trained FP32 weights (only with --cache)

def _cache_path(args, key):
    if not args.cache:
        return None
    h = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(args.cache) / f"qat_evidence_{h}.pt"


def _load_cached(args, key, model):
    p = _cache_path(args, key)
    if p is None or not p.exists():
        return False
    import torch
    model.load_state_dict(torch.load(p, weights_only=True))
    return True


def _save_cached(args, key, model):
    p = _cache_path(args, key)
    if p is not None:
        import torch
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), p)


# ---------------------------------------------------------------------------------------------
# output

def fmt_table(title, metric_name, rows, extra):
    ref = rows[0]
    lines = [f"**{title}**", "",
             f"| | {metric_name} | Δ vs FP32 | logits SQNR dB | engine file | "
             f"qengine ms | ORT ms | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        na = "n/a"
        m = na if r.metric is None else (f"{r.metric:.2f}" if "acc" in metric_name
                                        else f"{r.metric:.4f}")
        d = na if r.metric is None or r is ref else (
            f"{r.metric - ref.metric:+.2f} pt" if "acc" in metric_name
            else f"{r.metric - ref.metric:+.4f}")
        if r is ref:
            d = "-"
        s = na if r.sqnr is None else f"{r.sqnr:.1f}"
        z = na if r.size is None else f"{r.size / 1024:.1f} KiB"
        q = na if r.qe_ms is None else f"{r.qe_ms:.3f}"
        o = na if r.ort_ms is None else f"{r.ort_ms:.3f}"
        lines.append(f"| {r.label} | {m} | {d} | {s} | {z} | {q} | {o} | {r.note} |")
    lines += [""] + [f"- {e}" for e in extra] + [""]
    return "\n".join(lines)


def environment(args):
    import onnxruntime
    import torch
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"qengine {qe.__version__} (isa {qe.active_isa()}, threads {qe.get_num_threads()}), "
            f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
            f"numpy {np.__version__}, Python {platform.python_version()}; {cpu}; "
            f"qengine.qat {'present' if have_qat() else 'absent'}; latency = median of "
            f"{args.runs} batch-1 runs at {args.threads} thread(s); seed {args.seed}"
            f"{'; --quick' if args.quick else ''}")


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run (~2 minutes): short "
                    "training, a test subset for the LM, fewer timing runs")
    ap.add_argument("--out", help="also write the Markdown tables to this file")
    ap.add_argument("--cache", help="directory to keep trained FP32 weights between runs")
    ap.add_argument("--train-only", action="store_true", help="train the FP32 models into "
                    "--cache and stop (so that a later timed run under flock trains no FP32)")
    ap.add_argument("--models", default="cnn,lm", help="comma-separated: cnn, lm")
    ap.add_argument("--threads", type=int, default=1, help="engine threads for latency")
    ap.add_argument("--train-threads", type=int, default=1, help="torch threads for training")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--test-copies", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--qat-epochs", type=int, default=None)
    ap.add_argument("--qat-lr", type=float, default=1e-3)
    ap.add_argument("--learn-scales", action="store_true", help="QAT with LSQ scales")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--bptt", type=int, default=100)
    ap.add_argument("--lm-steps", type=int, default=None)
    ap.add_argument("--lm-lr", type=float, default=5e-3)
    ap.add_argument("--qat-lm-steps", type=int, default=None)
    ap.add_argument("--qat-lm-lr", type=float, default=1e-3)
    ap.add_argument("--group-size", type=int, default=None,
                    help="group size along K for the LM's 4-bit weights (default per channel)")
    args = ap.parse_args(argv)
    q = args.quick
    defaults = dict(runs=(30 if q else 200), epochs=(8 if q else 60), qat_epochs=(2 if q else 15),
                    lm_steps=(40 if q else 1000), qat_lm_steps=(10 if q else 200))
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.train_only and not args.cache:
        ap.error("--train-only needs --cache")
    return args


def main(argv=None):
    args = parse(argv)
    import torch
    torch.set_num_threads(args.train_threads)
    qe.set_num_threads(args.threads)
    log = lambda s: print(f"  [{time.strftime('%H:%M:%S')}] {s}", file=sys.stderr,  # noqa: E731
                          flush=True)
    if args.train_only:
        for name in args.models.split(","):
            if name.strip() == "cnn":
                cnn_fp32(args, log)
            else:
                lm_fp32(args, lm_data(args)[0], log)
        return
    out = [environment(args), ""]
    print(out[0] + "\n", flush=True)
    builders = {"cnn": cnn_table, "lm": lm_table}
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        for name in args.models.split(","):
            t0 = time.perf_counter()
            text = fmt_table(*builders[name.strip()](args, tmp, log))
            log(f"{name}: {time.perf_counter() - t0:.1f} s")
            print(text, flush=True)
            out.append(text)
    if args.out:
        Path(args.out).write_text("\n".join(out))


if __name__ == "__main__":
    main()
