"""The models of the calibration study (bench/accuracy_cnn.py --study), each as an ONNX file
with its calibration and test batches. Needs torch and scikit-learn.

* digits: the demo CNN (scripts/train_demo_cnn.py), trained on scikit-learn's digits.
* digits_outlier: the same trained model with its first BatchNorm's output channels multiplied
  by factors from 1/16 to 16 and the next conv's input channels divided by them (ReLU is
  positively homogeneous, so the function is unchanged): one per-tensor activation then has
  channels with very unequal ranges, the case cross-layer equalization exists for.
* digits_dw: a depthwise-separable CNN (MobileNet blocks with ReLU6) trained on the digits;
  digits_dw_relu the same with ReLU (MobileNetV1-style), whose depthwise -> ReLU -> 1x1 pairs
  high-bias absorption can work on (not in the default list: --models or --equalize).
* resnet18 / mobilenet_v2: bench/models.py with seeded random weights and BN statistics, on
  3×64×64 Gaussian images (no labels: SQNR only).
Every model's batch dimension is fixed to BATCH; `labels` is None where there is no task.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCH = 16


@dataclass
class Case:
    name: str
    path: str
    input_name: str
    calib: list          # batches (BATCH, ...) float32
    test: list
    labels: np.ndarray | None
    torch_model: object = None


def load_trainer():
    spec = importlib.util.spec_from_file_location("train_demo_cnn",
                                                  ROOT / "scripts" / "train_demo_cnn.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_demo_cnn"] = mod
    spec.loader.exec_module(mod)
    return mod


def _dw_model(act="relu6"):
    from torch import nn

    def block(cin, cout, k, groups=1):
        return [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout), nn.ReLU6() if act == "relu6" else nn.ReLU()]

    class DigitsDW(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                *block(1, 16, 3), *block(16, 16, 3, 16), *block(16, 32, 1), nn.MaxPool2d(2),
                *block(32, 32, 3, 32), *block(32, 64, 1),
                nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(self.features(x))
    return DigitsDW()


def _batches(x):
    n = len(x) // BATCH * BATCH
    return [np.ascontiguousarray(x[i:i + BATCH]) for i in range(0, n, BATCH)]


def _export(model, path, shape, names=("input", "output")):
    import torch
    torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False,
                      input_names=[names[0]], output_names=[names[1]], opset_version=17)
    return str(path)


def rescale_channels(model, factors):
    """digits_outlier's transform, in place: BN1 output channel k × f_k, conv2 input k / f_k."""
    import torch
    bn, conv = model.features[1], model.features[3]
    f = torch.as_tensor(factors, dtype=torch.float32)
    with torch.no_grad():
        bn.weight.mul_(f)
        bn.bias.mul_(f)
        conv.weight.div_(f[None, :, None, None])
    return model


def cases(tmp, names=("digits", "digits_outlier", "digits_dw", "resnet18", "mobilenet_v2"),
          epochs=40, calib=256):
    import copy

    import torch
    tr = load_trainer()
    xtr, xte, ytr, yte = tr.digits_split()
    rng = np.random.default_rng(0)
    xc = xtr[rng.choice(len(xtr), calib, replace=False)][:, None].astype(np.float32) / 16
    xt = xte[:, None].astype(np.float32) / 16
    n_test = len(xt) // BATCH * BATCH
    digits = None
    for name in names:
        if name in ("digits", "digits_outlier"):
            if digits is None:
                digits, *_ = tr.train(epochs=epochs)
            model = digits
            if name == "digits_outlier":
                f = np.exp2(np.linspace(-4, 4, 16))[np.random.default_rng(1).permutation(16)]
                model = rescale_channels(copy.deepcopy(digits), f)
        elif name in ("digits_dw", "digits_dw_relu"):
            torch.manual_seed(0)
            model, *_ = tr.train(epochs=epochs, model=_dw_model(
                "relu" if name == "digits_dw_relu" else "relu6"))
        else:
            sys.path.insert(0, str(ROOT / "bench"))
            from models import build
            model = build(name)
            g = np.random.default_rng(2)
            imgs = g.standard_normal((calib // 2 + 64, 3, 64, 64)).astype(np.float32)
            path = _export(model, os.path.join(tmp, f"{name}.onnx"), (BATCH, 3, 64, 64))
            yield Case(name, path, "input", _batches(imgs[:calib // 2]),
                       _batches(imgs[calib // 2:]), None, model)
            continue
        path = _export(model, os.path.join(tmp, f"{name}.onnx"), (BATCH, 1, 8, 8))
        yield Case(name, path, "input", _batches(xc), _batches(xt), yte[:n_test], model)
