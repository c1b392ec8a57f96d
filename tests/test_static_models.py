"""Static int8 quantization of real CNN graphs: the nine light ONNX models shipped inside the
onnx package (as shipped, and with random weights so the outputs mean something), and the
repo's ResNet-18 / MobileNetV2 / LeNet (bench/models.py, exported from torch)."""
import sys
from pathlib import Path

import numpy as np
import pytest

import qengine

onnx = pytest.importorskip("onnx")
from test_cnn_light_models import (MODELS, _data_input, _load,  # noqa: E402
                                   _random_weights)

pytestmark = pytest.mark.slow


def _sqnr(y, ref):
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((np.asarray(y, np.float64) - ref) ** 2))


def _int8_fraction(q):
    """Share of the compute nodes (Conv/Gemm/MatMul) that run in int8."""
    ops = [n.op_type for n in q.nodes]
    i8 = sum(ops.count(o) for o in ("QConv", "QGemm"))
    return i8 / max(1, i8 + sum(ops.count(o) for o in ("Conv", "Gemm", "MatMul")))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_light_model_quantizes_statically(name):
    m = _load(name)
    x = _data_input(m)
    shape = [d.dim_value for d in x.type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    if name in ("vgg19", "zfnet512"):            # 550 / 240 MB of random weights: as shipped
        g = qengine.from_onnx(m)
    else:
        m = _random_weights(m, rng)
        g = qengine.from_onnx(m)
    calib = rng.standard_normal((4, *shape[1:])).astype(np.float32)
    q = qengine.quantize_static(g, {x.name: calib})
    assert _int8_fraction(q) == 1.0, [n.op_type for n in q.nodes]
    data = rng.standard_normal(shape).astype(np.float32)
    want = qengine.Session(g).run({x.name: data})
    got = qengine.Session(q).run({x.name: data})
    for k, w in want.items():
        assert got[k].shape == w.shape and np.all(np.isfinite(got[k]))
        if np.std(w) > 1e-3 * np.max(np.abs(w)):      # random weights: a meaningful output
            assert _sqnr(got[k], w) > 15, (name, _sqnr(got[k], w))


torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "lenet"])
def test_repo_models_quantize_statically(name, tmp_path):
    from models import INPUT_SHAPES, build, export_onnx
    shape = INPUT_SHAPES[name]
    export_onnx(build(name), tmp_path / "m.onnx", shape)
    g = qengine.from_onnx(str(tmp_path / "m.onnx"))
    rng = np.random.default_rng(1)
    calib = rng.standard_normal((8, *shape[1:])).astype(np.float32)
    q = qengine.quantize_static(g, {"input": calib})
    ops = [n.op_type for n in q.nodes]
    assert _int8_fraction(q) == 1.0 and ops.count("QuantizeU8") == 1
    x = rng.standard_normal(shape).astype(np.float32)
    ort = pytest.importorskip("onnxruntime")
    ref = ort.InferenceSession(str(tmp_path / "m.onnx"),
                               providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert _sqnr(qengine.Session(q).run({"input": x})["output"], ref) > 30
