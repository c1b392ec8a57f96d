"""The bundled demo: a 2-layer LSTM digit classifier, FP32 vs dynamic INT8.

The model file (made by scripts/train_demo_lstm.py) holds a PyTorch state_dict of
``rnn = nn.LSTM(8, 128, num_layers=2, batch_first=True)`` and ``fc = nn.Linear(128, 10)``
applied to the last time step, plus the held-out test split (``test.x_u8``: pixel levels
0..16, rows are time steps; ``test.y``: labels). Everything here needs only NumPy + qengine.
"""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import numpy as np

from ..engine_file import read_safetensors, save
from ..frontends.torch_state_dict import from_torch_state_dict
from ..graph.ir import Graph, Node, ValueInfo
from ..session import Session
from ..workflows.dynamic import DynamicQuantConfig, quantize_dynamic
from .sizes import weight_bytes

DEMO_FILE = "demo_lstm_digits.safetensors"


def demo_path() -> Path:
    return Path(str(resources.files("qengine") / "data" / DEMO_FILE))


def _const(g: Graph, name: str, value) -> str:
    g.initializers[name] = np.asarray(value)
    return name


def build_demo_graph(tensors: dict[str, np.ndarray]) -> Graph:
    """FP32 graph: the importer builds the LSTM; the head on the last step is added here with
    plain graph ops (Slice + Squeeze + MatMul + Add), which quantize_dynamic fuses into one
    int8 linear like any exported nn.Linear."""
    rnn = {k: v for k, v in tensors.items() if k.startswith("rnn.")}
    g = from_torch_state_dict(rnn, [("lstm", "rnn", {"batch_first": True})],
                              input_name="x", output_name="rnn_out")      # (batch, time, 128)
    i64 = lambda v: np.array(v, np.int64)  # noqa: E731
    last = [_const(g, "last.start", i64([-1])), _const(g, "last.end", i64([np.iinfo(np.int64).max])),
            _const(g, "last.axis", i64([1]))]
    g.nodes.append(Node("Slice", "last_step", ("rnn_out", *last), ("last_step",)))
    g.nodes.append(Node("Squeeze", "last_squeeze",
                        ("last_step", _const(g, "last.sq", i64([1]))), ("h_last",)))
    w_t = np.ascontiguousarray(np.asarray(tensors["fc.weight"], np.float32).T)
    g.nodes.append(Node("MatMul", "fc", ("h_last", _const(g, "fc.weight_t", w_t)), ("fc_mm",)))
    g.nodes.append(Node("Add", "fc_bias", ("fc_mm", _const(g, "fc.bias",
                                                           np.asarray(tensors["fc.bias"],
                                                                      np.float32))),
                        ("logits",)))
    g.outputs = [ValueInfo("logits", "float32", ("batch", 10))]
    g.inputs = [ValueInfo("x", "float32", ("batch", 8, 8))]
    g.name = "demo_lstm_digits"
    g.verify()
    return g


def load_demo():
    """(fp32 graph, x float32 [n, 8, 8], y int64 [n], metadata) from the bundled file."""
    tensors, meta = read_safetensors(demo_path())
    x = np.asarray(tensors["test.x_u8"], np.float32) / np.float32(16)
    y = np.asarray(tensors["test.y"], np.int64)
    return build_demo_graph(tensors), x, y, meta


def median_latency_ms(sess: Session, feeds: dict, runs: int) -> float:
    sess.run(feeds)                                   # warm-up (first-call allocations)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def run_demo(workdir, runs: int = 50) -> dict:
    """Evaluate FP32 vs dynamic INT8 on the bundled test split.

    `workdir` is a directory the caller owns (the CLI passes a temporary one): the two engine
    files are written there to measure their size. Returns a dict of the numbers."""
    fp32, x, y, meta = load_demo()
    int8 = quantize_dynamic(fp32, DynamicQuantConfig())
    out = {"model": meta.get("model", ""), "test_samples": int(len(y)),
           "torch_fp32_accuracy": float(meta["fp32_test_accuracy"])
           if "fp32_test_accuracy" in meta else None}
    for tag, graph in (("fp32", fp32), ("int8", int8)):
        sess = Session(graph)
        logits = sess.run({"x": x})["logits"]
        path = Path(workdir) / f"demo_{tag}.qe"
        save(graph, path)
        out[tag] = {"accuracy": float(np.mean(logits.argmax(1) == y)),
                    "weight_bytes": weight_bytes(graph),
                    "file_bytes": path.stat().st_size,
                    "latency_ms_batch1": median_latency_ms(sess, {"x": x[:1]}, runs)}
    out["runs"] = runs
    return out
