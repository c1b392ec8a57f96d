"""The four model families of issue 15 as PyTorch modules, with their export and data
(bench/reach_models.py, tests/test_reach_models.py). Seeded random weights."""
import os
import warnings

import numpy as np
import torch
from torch import nn


class KWS(nn.Module):       # keyword spotting: Conv1d front end on 40 MFCCs, GRU, classifier
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(40, 64, 5, padding=2), nn.BatchNorm1d(64), nn.ReLU(),
                                  nn.MaxPool1d(2), nn.Conv1d(64, 64, 3, padding=1), nn.BatchNorm1d(64), nn.ReLU())
        self.gru = nn.GRU(64, 64, batch_first=True)
        self.norm = nn.LayerNorm(64)
        self.fc = nn.Linear(64, 12)
    def forward(self, x):                   # x [N, 40, T]
        h = self.conv(x).transpose(1, 2)    # [N, T/2, 64]
        y, _ = self.gru(h)
        return self.fc(self.norm(y[:, -1]))

class UNet(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        blk = lambda i, o: nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.Conv2d(o, o, 3, padding=1), nn.ReLU())
        self.e1, self.e2, self.e3 = blk(3, c), blk(c, 2*c), blk(2*c, 4*c)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.ConvTranspose2d(4*c, 2*c, 2, stride=2)
        self.d2 = blk(4*c, 2*c)
        self.d1 = blk(3*c, c)
        self.out = nn.Conv2d(c, 2, 1)
    def forward(self, x):
        e1 = self.e1(x); e2 = self.e2(self.pool(e1)); e3 = self.e3(self.pool(e2))
        d2 = self.d2(torch.cat([self.up2(e3), e2], 1))
        up1 = nn.functional.interpolate(d2, scale_factor=2, mode="bilinear", align_corners=False)
        d1 = self.d1(torch.cat([up1, e1], 1))
        return self.out(d1)

class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True, activation="gelu")
        self.enc = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
        self.head = nn.Linear(64, 10)
    def forward(self, x):                   # [N, T, 64]
        return self.head(self.enc(x))

class Decoder(nn.Module):                   # one step of an LSTM seq2seq decoder with attention
    def __init__(self, v=100, d=64):
        super().__init__()
        self.emb = nn.Embedding(v, d); self.cell = nn.LSTM(2 * d, d, batch_first=True)
        self.out = nn.Linear(2 * d, v)
    def forward(self, tok, h, c, mem):      # tok [N,1] int64, h/c [1,N,d], mem [N,S,d]
        e = self.emb(tok)                                   # [N,1,d]
        score = torch.softmax(torch.bmm(h.transpose(0, 1), mem.transpose(1, 2)), -1)  # [N,1,S]
        ctx = torch.bmm(score, mem)                          # [N,1,d]
        y, (h2, c2) = self.cell(torch.cat([e, ctx], -1), (h, c))
        return self.out(torch.cat([y, ctx], -1)), h2, c2

def export(m, args, names, path):
    m.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, args, path, input_names=names, opset_version=17, dynamo=False)
    return path


def _decoder_feeds(rng, n):
    return [{"tok": rng.integers(0, 100, (1, 1)).astype(np.int64),
             "h": rng.standard_normal((1, 1, 64)).astype(np.float32) * 0.5,
             "c": rng.standard_normal((1, 1, 64)).astype(np.float32) * 0.5,
             "mem": rng.standard_normal((1, 20, 64)).astype(np.float32)} for _ in range(n)]


def build_all(tmp, names=("kws", "unet", "encoder", "decoder")):
    """[(name, onnx path, calibration feeds (a list of batch-1 dicts), one test feed)]."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    out = []
    for name in names:
        if name == "kws":
            m, shape, names_ = KWS(), (1, 40, 98), ["x"]
        elif name == "unet":
            m, shape, names_ = UNet(), (1, 3, 64, 64), ["x"]
        elif name == "encoder":
            m, shape, names_ = Encoder(), (1, 32, 64), ["x"]
        else:
            feeds = _decoder_feeds(rng, 17)
            args = tuple(torch.from_numpy(feeds[0][k]) for k in ("tok", "h", "c", "mem"))
            path = export(Decoder(), args, ["tok", "h", "c", "mem"],
                          os.path.join(tmp, "decoder.onnx"))
            out.append((name, path, feeds[1:], feeds[0]))
            continue
        path = export(m, (torch.randn(*shape),), names_, os.path.join(tmp, f"{name}.onnx"))
        feeds = [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(17)]
        out.append((name, path, feeds[1:], feeds[0]))
    return out
