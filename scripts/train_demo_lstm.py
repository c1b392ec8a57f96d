"""Train the LSTM that `qengine demo` ships (needs torch and scikit-learn; run once, offline).

Data: scikit-learn's handwritten digits (1797 8x8 images, shipped inside the package, so no
download), read row by row as a sequence of 8 steps with 8 features. Model: 2-layer LSTM
(hidden 128) -> Linear(10) on the last step. The trained state_dict and the held-out test split
go into qengine/data/demo_lstm_digits.safetensors (a few hundred KB), which the demo reads with
qengine's own state_dict importer, no torch needed.

    python scripts/train_demo_lstm.py
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


class DigitsLSTM(torch.nn.Module):
    def __init__(self, hidden=128, layers=2):
        super().__init__()
        self.rnn = torch.nn.LSTM(8, hidden, num_layers=layers, batch_first=True)
        self.fc = torch.nn.Linear(hidden, 10)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, -1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "qengine" / "data"
                                         / "demo_lstm_digits.safetensors"))
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()
    torch.manual_seed(0)
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)           # [n, 8 rows, 8 cols] in [0, 1]
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.3, random_state=0,
                                          stratify=d.target)
    model = DigitsLSTM()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr).long()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean()
    print(f"test accuracy {acc:.4f}")
    tensors = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    tensors["test.x_u8"] = np.round(xte * 16).astype(np.uint8)   # the original 0..16 levels
    tensors["test.y"] = yte.astype(np.int64)
    save_file(tensors, args.out, metadata={
        "model": "LSTM(8, 128, num_layers=2, batch_first=True) -> Linear(128, 10) on last step",
        "data": "sklearn digits, rows as time steps, x = pixel/16, test split 30% random_state=0",
        "fp32_test_accuracy": f"{acc:.4f}"})
    print("wrote", args.out)


if __name__ == "__main__":
    main()
