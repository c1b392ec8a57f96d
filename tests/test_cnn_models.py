"""Whole CNNs from bench/models.py (plain torch.nn), exported to ONNX, imported, optimized
(BatchNorm folded, activations fused) and run, against onnxruntime on the same file."""
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import models  # noqa: E402

from qengine import Session  # noqa: E402
from qengine.frontends.onnx import from_onnx  # noqa: E402
from qengine.graph import Graph, ValueInfo, optimize  # noqa: E402

RTOL = 1e-4  # relative to the largest |output|: FP32 sums in a different order than ORT


def _export(tmp_path, name, dynamo=False):
    path = tmp_path / f"{name}_{'dynamo' if dynamo else 'ts'}.onnx"
    try:
        models.export_onnx(models.build(name), path, models.INPUT_SHAPES[name], dynamo=dynamo)
    except Exception as e:  # the dynamo exporter depends on onnxscript and friends
        if dynamo:
            pytest.skip(f"dynamo export failed: {type(e).__name__}: {e}")
        raise
    return path


def _ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _close(got, want):
    err = np.max(np.abs(got - want)) / np.max(np.abs(want))
    assert got.shape == want.shape and err < RTOL, err


def _input(name, seed=0):
    return np.random.default_rng(seed).standard_normal(models.INPUT_SHAPES[name]) \
        .astype(np.float32)


def _fused(path):
    """Import + optimize; every BN is folded and every activation that follows a Conv/Gemm
    is fused (what is left follows a residual Add)."""
    g = optimize(from_onnx(path), fuse_activations=True)
    producers = g.producers()
    for n in g.nodes:
        assert n.op_type not in ("BatchNormalization", "Identity"), n
        if n.op_type in ("Relu", "Clip"):
            assert producers[n.inputs[0]].op_type == "Add", n
    return g


def _act(n):
    return n.attrs.get("fused_activation", "")


@pytest.mark.parametrize("dynamo", [False, True])
def test_lenet(tmp_path, dynamo):
    path = _export(tmp_path, "lenet", dynamo)
    x = np.random.default_rng(1).standard_normal((1, 1, 28, 28)).astype(np.float32)
    want = _ort(path, x)
    for g in (from_onnx(path, optimize=False), _fused(path)):
        _close(Session(g).run({"input": x})["output"], want)
    fused = _fused(path)
    acts = [_act(n) for n in fused.nodes if n.op_type in ("Conv", "Gemm")]
    assert acts == ["Relu", "Relu", "Relu", "Relu", ""]


@pytest.mark.slow
def test_resnet18_bn_folded_matches_onnxruntime(tmp_path):
    path = _export(tmp_path, "resnet18")
    raw = from_onnx(path, optimize=False)
    assert sum(n.op_type == "BatchNormalization" for n in raw.nodes) == 20
    x = _input("resnet18")
    want = _ort(path, x)
    g = _fused(path)
    sess = Session(g)
    _close(sess.run({"input": x})["output"], want)
    # per-node profile covers every node; Conv dominates
    _, profiles = sess.profile({"input": x})
    p = profiles[0]
    assert [n for n, _, _ in p.nodes] == [n.name for n in g.nodes]
    assert next(iter(p.by_op_type)) == "Conv" and p.total > 0
    # static shapes are known for every value, and they are the run-time shapes
    everything = Graph(g.inputs, [ValueInfo(o) for n in g.nodes for o in n.outputs], g.nodes,
                       g.initializers, g.opset, g.name, g.value_info)
    out = Session(everything).run({"input": x})
    for name, arr in out.items():
        assert g.value_info[name].shape == arr.shape, name


@pytest.mark.slow
def test_resnet18_steady_state_memory(tmp_path):
    """A run holds only live activations (+ im2col scratch), not every intermediate: keeping
    them all would need at least their sum (~17 MB here; the measured peak is ~11 MB, the first
    conv's 7 MB im2col buffer plus its 3 MB output)."""
    g = _fused(_export(tmp_path, "resnet18"))
    sess = Session(g)
    x = _input("resnet18")
    sess.run({"input": x})
    all_acts = sum(int(np.prod(v.shape)) * 4 for k, v in g.value_info.items()
                   if k not in g.initializers)
    tracemalloc.start()
    sess.run({"input": x})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < all_acts, (peak, all_acts)


@pytest.mark.slow
def test_mobilenet_v2_matches_onnxruntime(tmp_path):
    path = _export(tmp_path, "mobilenet_v2")
    x = _input("mobilenet_v2")
    want = _ort(path, x)
    g = _fused(path)
    convs = [n for n in g.nodes if n.op_type == "Conv"]
    assert sum(_act(n) == "Clip" for n in convs) == 35
    assert all(n.attrs["fused_activation_params"] == [0.0, 6.0] for n in convs
               if _act(n) == "Clip")
    assert sum(n.attrs["group"] > 1 for n in convs) == 17  # depthwise path
    _close(Session(g).run({"input": x})["output"], want)
    _close(Session(from_onnx(path, optimize=False)).run({"input": x})["output"], want)


@pytest.mark.slow
def test_resnet18_dynamo_export(tmp_path):
    path = _export(tmp_path, "resnet18", dynamo=True)
    x = _input("resnet18", seed=2)
    _close(Session(_fused(path)).run({"input": x})["output"], _ort(path, x))
