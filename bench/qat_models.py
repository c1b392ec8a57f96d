"""Models and offline data for the QAT evidence table (bench/qat_evidence.py, issue 11 item 4).
Needs torch and scikit-learn; the qengine runtime never imports this module.

Data (everything ships with the packages or the interpreter: no download):

* `digits_split()`: scikit-learn's handwritten digits (1797 images, 8×8, levels 0..16, inside
  the scikit-learn wheel), the stratified 70/30 split of scripts/train_demo_cnn.py
  (random_state=0): 1257 train / 540 test images, x = level/16 as 1×8×8 float32.
* `text_corpus()`: a character corpus made of a fixed list of CPython standard-library sources
  (`STDLIB_FILES`, read from the running interpreter's `sysconfig` stdlib directory), joined in
  that order. Characters map to `VOCAB` (printable ASCII, tab and newline; anything else to one
  "unknown" symbol), so V = 98 and the untrained model's loss is ln 98 ≈ 4.585 nats/char. The
  first 90 % is the training text, the last 10 % the test text. The files differ between Python
  versions, so the evidence table prints the corpus size and SHA-256 next to its numbers.

Models:

* `DigitsCNN(width)`: Conv3×3(w)+BN+ReLU → Conv3×3(2w)+BN+ReLU → MaxPool2 → a residual block
  (Conv3×3(2w)+BN+ReLU, Conv3×3(2w)+BN, add, ReLU) → AdaptiveAvgPool(1) → Flatten → Linear(10).
  Narrow widths lose more accuracy to 4-bit weights (fewer weights per output channel share a
  scale, and each carries more of the signal).
* `CharLSTM(V, hidden, layers)`: one-hot [T, B, V] float input → nn.LSTM → nn.Linear(V) logits
  [T, B, V]. No nn.Embedding: the engine runs LSTM + Linear in int8, an embedding would be a
  float Gather (and the one-hot product is what the first LSTM layer's W_ih does anyway).

`fake_quant_weights(model, bits)` is a torch emulation of weight-only PTQ as the engine deploys
it (BatchNorm folded into the conv first, then symmetric per-output-channel weights in the
narrow range [-(2^(b-1)-1), 2^(b-1)-1], round half to even). It chose the CNN width before the
engine had 4-bit weights; the table's W4 columns come from the engine itself.
"""
from __future__ import annotations

import copy
import hashlib
import math
import sysconfig
from pathlib import Path

import numpy as np
import torch
from torch import nn

# ---------------------------------------------------------------------------------------------
# digits

def digits_split():
    """(x_train, x_test, y_train, y_test): float32 [N, 1, 8, 8] in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    xtr, xte, ytr, yte = train_test_split(d.images.astype(np.uint8), d.target, test_size=0.3,
                                          random_state=0, stratify=d.target)
    f = lambda x: np.ascontiguousarray(x[:, None].astype(np.float32) / 16)  # noqa: E731
    return f(xtr), f(xte), ytr.astype(np.int64), yte.astype(np.int64)


def perturb(x, rng, shift=1, noise=0.1):
    """Each image shifted by an integer (dy, dx) in [-shift, shift]² (zero fill) plus Gaussian
    noise of std `noise`, clipped to [0, 1]: the "noisy digits" variant."""
    n, c, h, w = x.shape
    pad = np.pad(x, ((0, 0), (0, 0), (shift, shift), (shift, shift)))
    d = rng.integers(0, 2 * shift + 1, size=(n, 2))
    out = np.empty_like(x)
    for i, (dy, dx) in enumerate(d):
        out[i] = pad[i, :, dy:dy + h, dx:dx + w]
    out += rng.standard_normal(out.shape).astype(np.float32) * np.float32(noise)
    return np.clip(out, 0, 1, out=out)


def noisy_digits(copies=4, shift=1, noise=0.1, seed=1234):
    """digits_split() with the test images perturbed: `copies` fixed perturbations of each of
    the 540 test images (x_test [540·copies, 1, 8, 8]); the training images are returned clean
    and `train_cnn(..., augment=(shift, noise))` perturbs them afresh every epoch."""
    xtr, xte, ytr, yte = digits_split()
    rng = np.random.default_rng(seed)
    xt = np.concatenate([perturb(xte, rng, shift, noise) for _ in range(copies)])
    return xtr, xt, ytr, np.tile(yte, copies)


def calib_subset(x, n=256, seed=0):
    """n training images chosen with a fixed seed (calibration for static PTQ)."""
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(x[np.sort(rng.choice(len(x), min(n, len(x)), replace=False))])


class ConvBN(nn.Sequential):
    def __init__(self, cin, cout, relu=True):
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
        super().__init__(*layers, *([nn.ReLU()] if relu else []))


class DigitsCNN(nn.Module):
    def __init__(self, width=4, num_classes=10):
        super().__init__()
        w = width
        self.stem = nn.Sequential(ConvBN(1, w), ConvBN(w, 2 * w), nn.MaxPool2d(2))
        self.res1 = ConvBN(2 * w, 2 * w)
        self.res2 = ConvBN(2 * w, 2 * w, relu=False)
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * w, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.relu(x + self.res2(self.res1(x)))
        return self.fc(self.head(x))


def train_cnn(model, x, y, *, epochs=60, lr=3e-3, batch=64, seed=0, augment=None, log=None):
    """Adam + cosine decay, fixed seed; `augment=(shift, noise)` perturbs the training images
    afresh each epoch (see perturb). Returns the model in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(len(xt) / batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for ep in range(epochs):
        model.train()
        if augment:
            xt = torch.from_numpy(perturb(x, rng, *augment))
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
            sched.step()
        if log:
            log(f"epoch {ep + 1}/{epochs}")
    return model.eval()


@torch.no_grad()
def torch_logits(model, x, batch=1024):
    model.eval()
    return np.concatenate([model(torch.from_numpy(x[i:i + batch])).numpy()
                           for i in range(0, len(x), batch)])


def accuracy(logits, y):
    return 100.0 * float(np.mean(np.asarray(logits).argmax(-1) == y))


def export_cnn_onnx(model, path, input_name="image", output_name="logits"):
    """ONNX with a dynamic batch (legacy exporter: plain Conv/BatchNormalization/Relu nodes)."""
    torch.onnx.export(model.eval(), (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False,
                      input_names=[input_name], output_names=[output_name], opset_version=17,
                      dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
    return str(path)


# ---------------------------------------------------------------------------------------------
# 4-bit weight emulation (to choose the model; not the engine's numbers)

def fake_quant_(w, bits, axis=0):
    """Symmetric per-channel (along `axis`) fake quantization in place, narrow range."""
    qmax = 2 ** (bits - 1) - 1
    dims = [d for d in range(w.ndim) if d != axis]
    amax = w.abs().amax(dim=dims, keepdim=True) if dims else w.abs()
    s = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    w.copy_(torch.clamp(torch.round(w / s), -qmax, qmax) * s)
    return w


@torch.no_grad()
def fold_bn(model):
    """A copy of `model` with every Conv2d → BatchNorm2d pair folded (BN becomes Identity)."""
    m = copy.deepcopy(model).eval()
    for parent in m.modules():
        kids = list(parent.named_children())
        for (n1, c), (n2, bn) in zip(kids, kids[1:]):
            if isinstance(c, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                c.weight.mul_(g.reshape(-1, 1, 1, 1))
                b = c.bias if c.bias is not None else torch.zeros_like(bn.bias)
                c.bias = nn.Parameter(bn.bias + (b - bn.running_mean) * g)
                setattr(parent, n2, nn.Identity())
    return m


@torch.no_grad()
def fake_quant_weights(model, bits=4):
    """BN folded, then every Conv/Linear weight and LSTM W_ih/W_hh fake-quantized per output
    channel (per gate row for the LSTM), symmetric narrow range. Activations stay float."""
    m = fold_bn(model)
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            fake_quant_(mod.weight, bits)
        elif isinstance(mod, nn.LSTM):
            for name, p in mod.named_parameters():
                if name.startswith("weight_"):
                    fake_quant_(p, bits)
    return m


# ---------------------------------------------------------------------------------------------
# character language model

# A fixed list of long-lived standard-library modules (present in CPython 3.8 .. 3.13), ~1.4 MB
STDLIB_FILES = (
    "argparse.py", "ast.py", "calendar.py", "collections/__init__.py", "configparser.py",
    "dataclasses.py", "datetime.py", "decimal.py", "difflib.py", "doctest.py", "email/message.py",
    "enum.py", "fractions.py", "ftplib.py", "functools.py", "gettext.py", "glob.py", "gzip.py",
    "heapq.py", "imaplib.py", "inspect.py", "ipaddress.py", "logging/__init__.py", "mailbox.py",
    "pathlib.py", "pdb.py", "pickle.py", "pydoc.py", "random.py", "shutil.py", "smtplib.py",
    "statistics.py", "subprocess.py", "tarfile.py", "tempfile.py", "textwrap.py", "threading.py",
    "typing.py", "unittest/case.py", "urllib/request.py", "zipfile.py",
)
VOCAB = "\t\n" + "".join(chr(c) for c in range(32, 127)) + "\x00"   # last: unknown
V = len(VOCAB)   # 98


def stdlib_dir():
    return Path(sysconfig.get_paths()["stdlib"])


def text_corpus(files=STDLIB_FILES, root=None):
    """(text, description): the files joined in order, read as UTF-8."""
    root = Path(root) if root is not None else stdlib_dir()
    parts = []
    for f in files:
        p = root / f
        if p.exists():            # zipfile.py became a package in 3.12: zipfile/__init__.py
            parts.append(p.read_text("utf-8"))
        elif (root / f.replace(".py", "/__init__.py")).exists():
            parts.append((root / f.replace(".py", "/__init__.py")).read_text("utf-8"))
        else:
            raise FileNotFoundError(f"{p} (part of the char-LM corpus) is missing")
    text = "".join(parts)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text, f"{len(files)} CPython stdlib sources from {root}, {len(text)} chars, " \
                 f"sha256 {sha[:16]}"


def encode(text):
    """int64 codes in [0, V): index in VOCAB, V-1 for characters outside it."""
    lut = np.full(0x110000 if max(map(ord, text), default=0) > 255 else 256, V - 1, np.int64)
    for i, ch in enumerate(VOCAB[:-1]):
        lut[ord(ch)] = i
    return lut[np.frombuffer(text.encode("utf-32-le"), np.uint32)]


def char_split(codes, test_fraction=0.1):
    n = int(len(codes) * (1 - test_fraction))
    return codes[:n], codes[n:]


class CharLSTM(nn.Module):
    """forward(x [T, B, V]) -> logits [T, B, V], from a zero state: training (FP32 and QAT
    alike) and evaluation all read windows of text from a zero state (written when qengine.qat's
    recurrent layers took no initial state; they do now)."""

    def __init__(self, vocab=V, hidden=256, layers=1):
        super().__init__()
        self.rnn = nn.LSTM(vocab, hidden, layers)
        self.fc = nn.Linear(hidden, vocab)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y)


def train_lm(model, codes, *, steps=600, bptt=100, batch=32, lr=5e-3, seed=0, vocab=V, log=None):
    """Each step: `batch` windows of bptt+1 characters at random offsets of the training text
    (numpy Generator(seed)), zero initial state, next-character cross entropy; Adam with cosine
    decay, gradient norm clipped to 1. `model(x [T, B, V]) -> logits` (a CharLSTM or its
    QAT-prepared form). Returns the model in eval mode."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    eye = torch.eye(vocab)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for step in range(1, steps + 1):
        start = rng.integers(0, len(codes) - bptt - 1, size=batch)
        win = torch.from_numpy(codes[start[None, :] + np.arange(bptt + 1)[:, None]])
        out = model(eye[win[:-1]])
        loss = nn.functional.cross_entropy(out.reshape(-1, vocab), win[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log and (step % 100 == 0 or step == steps):
            log(f"step {step}/{steps} train loss {loss.item():.3f}")
    return model.eval()


def lm_windows(codes, bptt=100):
    """The text cut into non-overlapping windows: int64 [bptt + 1, N] (time-major); window i
    is codes[i·bptt : i·bptt + bptt + 1] (inputs are rows :-1, targets rows 1:)."""
    n = (len(codes) - 1) // bptt
    idx = np.arange(n)[None, :] * bptt + np.arange(bptt + 1)[:, None]
    return np.ascontiguousarray(codes[idx])


def one_hot(idx, v=V):
    """float32 one-hot of an int array: shape idx.shape + (v,)."""
    out = np.zeros(idx.shape + (v,), np.float32)
    np.put_along_axis(out, idx[..., None], 1.0, axis=-1)
    return out


def nats_per_char(logits, targets):
    """Mean cross entropy (natural log) of logits [..., V] against integer targets [...]."""
    z = np.asarray(logits, np.float64).reshape(-1, logits.shape[-1])
    t = np.asarray(targets).reshape(-1)
    m = z.max(1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(z - m).sum(1)))
    return float(np.mean(lse - z[np.arange(len(t)), t]))


def lm_logits(run, windows, chunk=256):
    """Logits [T, N, V] of `run(one-hot [T, n, V]) -> logits` over windows [T + 1, N], fed
    `chunk` windows at a time."""
    return np.concatenate([run(one_hot(windows[:-1, i:i + chunk]))
                           for i in range(0, windows.shape[1], chunk)], axis=1)


def torch_run(model):
    """A `run` for lm_logits from a torch module."""
    @torch.no_grad()
    def run(x):
        model.eval()
        return model(torch.from_numpy(x)).numpy()
    return run


def export_lm_onnx(model, path):
    """ONNX of a CharLSTM, input "input" [time, batch, V] -> "output", both axes dynamic."""
    import warnings
    x = torch.zeros(5, 1, model.fc.out_features)
    with warnings.catch_warnings():    # the batch-size warning: the state here is implicit
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "time", 1: "batch"},
                                        "output": {0: "time", 1: "batch"}})
    return str(path)


def lm_state_dict_layers(model):
    """The layer spec for qengine.from_torch_state_dict of a CharLSTM (time-major)."""
    return [("lstm", "rnn", {"batch_first": False}), ("linear", "fc", {})]
