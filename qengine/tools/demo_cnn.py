"""The bundled CNN demo: the digits CNN (made by scripts/train_demo_cnn.py), FP32 vs static INT8.

Model ``demo_cnn_digits.qe`` (FP32: Conv+BN+ReLU ×2, MaxPool, Conv+ReLU6, GlobalAveragePool,
Gemm; input "image" [batch, 1, 8, 8] = pixel level / 16), calibrated on the 256 images of
``digits_calib.safetensors`` and evaluated on the test split stored with the LSTM demo (the
same 540 held-out digits, read as images instead of row sequences). NumPy + qengine only.
"""
from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np

from ..engine_file import load_graph, read_safetensors, save
from ..session import Session
from ..workflows.ptq import StaticQuantConfig, quantize_static
from .demo import DEMO_FILE, median_latency_ms
from .sizes import weight_bytes

CNN_FILE = "demo_cnn_digits.qe"
CALIB_FILE = "digits_calib.safetensors"


def _data(name: str) -> Path:
    return Path(str(resources.files("qengine") / "data" / name))


def load_cnn_demo():
    """(fp32 graph, calibration images, test images, test labels); images float32 [n,1,8,8]."""
    g = load_graph(_data(CNN_FILE))
    calib = read_safetensors(_data(CALIB_FILE))[0]["calib.x_u8"]
    test = read_safetensors(_data(DEMO_FILE))[0]
    as_image = lambda u8: np.asarray(u8, np.float32)[:, None] / np.float32(16)  # noqa: E731
    return g, as_image(calib), as_image(test["test.x_u8"]), np.asarray(test["test.y"], np.int64)


def run_cnn_demo(workdir, runs: int = 50) -> dict:
    """FP32 vs static INT8 (per-channel min-max; and with bias correction) on the test split.
    Engine files are written into `workdir` (the caller's) to measure their size."""
    fp32, calib, x, y = load_cnn_demo()
    cfg = StaticQuantConfig(method="minmax", per_channel=True)
    variants = {"fp32": fp32,
                "int8": quantize_static(fp32, {"image": calib}, cfg),
                "int8_bias_corrected": quantize_static(fp32, {"image": calib},
                                                       replace(cfg, bias_correction=True))}
    out = {"model": "digits CNN (Conv+BN+ReLU x2, MaxPool, Conv+ReLU6, GAP, Gemm)",
           "test_samples": int(len(y)), "calibration_samples": int(len(calib)), "runs": runs}
    ref = None
    for tag, graph in variants.items():
        sess = Session(graph)
        logits = sess.run({"image": x})["logits"]
        ref = logits if ref is None else ref
        path = Path(workdir) / f"demo_cnn_{tag}.qe"
        save(graph, path)
        err = np.sum((logits.astype(np.float64) - ref) ** 2)
        out[tag] = {"accuracy": float(np.mean(logits.argmax(1) == y)),
                    "sqnr_db": None if err == 0 else
                    float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / err)),
                    "weight_bytes": weight_bytes(graph),
                    "file_bytes": path.stat().st_size,
                    "latency_ms_batch1": median_latency_ms(sess, {"image": x[:1]}, runs)}
    return out
