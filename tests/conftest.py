"""Fixtures shared by test modules."""
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine.engine_file import load_graph, read_safetensors

DATA = Path(qengine.__file__).parent / "data"


@pytest.fixture(scope="module")
def digits():
    """The demo CNN (float graph), its calibration images, test images and labels: the digits
    model trained on real data that ships with qengine."""
    g = load_graph(DATA / "demo_cnn_digits.qe")
    calib = read_safetensors(DATA / "digits_calib.safetensors")[0]["calib.x_u8"]
    test = read_safetensors(DATA / "demo_lstm_digits.safetensors")[0]
    x = test["test.x_u8"][:, None].astype(np.float32) / 16
    return g, calib[:, None].astype(np.float32) / 16, x, test["test.y"]
