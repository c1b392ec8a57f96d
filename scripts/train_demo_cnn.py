"""Train the small CNN that `qengine demo` and bench/accuracy_cnn.py use (needs torch, onnx and
scikit-learn; run once, offline).

Data: scikit-learn's handwritten digits (8x8, 0..16 levels, shipped inside the package), the
same stratified 70/30 split as scripts/train_demo_lstm.py (random_state=0), x = level/16 as a
1×8×8 image. Model: Conv3x3(16)+BN+ReLU → Conv3x3(32)+BN+ReLU → MaxPool2 → Conv3x3(64)+ReLU6 →
GlobalAvgPool → Linear(10): BatchNorm to fold, ReLU/ReLU6 to fuse, a pool, a Gemm.

Writes qengine/data/demo_cnn_digits.qe (the FP32 graph as a qengine engine file, so the demo
needs no onnx) and qengine/data/digits_calib.safetensors (256 training images for
calibration, uint8 levels). The test split is the one inside demo_lstm_digits.safetensors.

    python scripts/train_demo_cnn.py
"""
import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DATA = Path(__file__).resolve().parents[1] / "qengine" / "data"


class DigitsCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU6(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.features(x))


def digits_split():
    d = load_digits()
    return train_test_split(d.images.astype(np.uint8), d.target, test_size=0.3, random_state=0,
                            stratify=d.target)


def train(seed=0, epochs=40, model=None):
    """Return (eval-mode model, x_train_u8, x_test_u8, y_train, y_test); `model` (default a new
    DigitsCNN) is any module taking (N, 1, 8, 8) images to 10 logits."""
    torch.manual_seed(seed)
    xtr, xte, ytr, yte = digits_split()
    model = DigitsCNN() if model is None else model
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt = torch.from_numpy(xtr[:, None].astype(np.float32) / 16)
    yt = torch.from_numpy(ytr).long()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval(), xtr, xte, ytr, yte


def export_onnx(model, path, batch=None):
    """ONNX with a dynamic batch dimension (legacy exporter: plain Conv/BN/Relu/Clip nodes)."""
    x = torch.zeros(batch or 1, 1, 8, 8)
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["image"],
                      output_names=["logits"], opset_version=17,
                      dynamic_axes=None if batch else {"image": {0: "batch"},
                                                       "logits": {0: "batch"}})
    return str(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()
    import qengine
    model, xtr, xte, ytr, yte = train(epochs=args.epochs)
    with torch.no_grad():
        acc = (model(torch.from_numpy(xte[:, None].astype(np.float32) / 16)).argmax(1).numpy()
               == yte).mean()
    print(f"FP32 test accuracy {acc:.4f}")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, os.path.join(tmp, "cnn.onnx"))
        qengine.save(qengine.from_onnx(onnx_path), DATA / "demo_cnn_digits.qe")
    rng = np.random.default_rng(0)
    calib = xtr[rng.choice(len(xtr), 256, replace=False)]
    save_file({"calib.x_u8": np.ascontiguousarray(calib)}, str(DATA / "digits_calib.safetensors"),
              metadata={"data": "256 sklearn digits training images (levels 0..16), x = level/16",
                        "fp32_test_accuracy_of_demo_cnn": f"{acc:.4f}"})
    print("wrote", DATA / "demo_cnn_digits.qe", "and", DATA / "digits_calib.safetensors")


if __name__ == "__main__":
    main()
