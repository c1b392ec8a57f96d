"""The nine "light" CNNs shipped in the onnx package (onnx/backend/test/data/light).

1. As shipped, against the outputs stored beside them, with the backend tests' input
   (arange / n) and tolerances (rtol 1e-3, 2e-3 for densenet121; atol 1e-7). Their weights are
   ConstantOfShape(0.02), so these outputs are nearly uniform: a weak oracle on its own.
2. So each model is also run with random weights (every ConstantOfShape replaced by a random
   initializer of its shape) and its pre-softmax logits compared with onnxruntime, both as
   imported and after BN folding + activation fusion.
"""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

from qengine import Session  # noqa: E402
from qengine.frontends.onnx import from_onnx  # noqa: E402
from qengine.graph import optimize  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
MODELS = {"bvlc_alexnet": 1e-3, "densenet121": 2e-3, "inception_v1": 1e-3,
          "inception_v2": 1e-3, "resnet50": 1e-3, "shufflenet": 1e-3, "squeezenet": 1e-3,
          "vgg19": 1e-3, "zfnet512": 1e-3}

pytestmark = pytest.mark.slow


def _load(name):
    path = os.path.join(LIGHT, f"light_{name}.onnx")
    if not os.path.exists(path):
        pytest.skip(f"{path} is not shipped with this onnx version")
    return onnx.load(path)


def _data_input(m):
    inits = {t.name for t in m.graph.initializer}
    return next(i for i in m.graph.input if i.name not in inits)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_light_model_stored_output(name):
    m = _load(name)
    x = _data_input(m)
    shape = [d.dim_value for d in x.type.tensor_type.shape.dim]
    n = int(np.prod(shape))
    data = (np.arange(n).reshape(shape) / n).astype(np.float32)  # the backend tests' input
    t = onnx.TensorProto()
    with open(os.path.join(LIGHT, f"light_{name}_output_0.pb"), "rb") as f:
        t.ParseFromString(f.read())
    want = numpy_helper.to_array(t)
    for g in (from_onnx(m), optimize(from_onnx(m), fuse_activations=True)):
        got = Session(g).run({x.name: data})[m.graph.output[0].name]
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=MODELS[name], atol=1e-7)


def _random_weights(m, rng):
    """The model with each ConstantOfShape weight replaced by random values (1-D: uniform in
    [0.5, 1.5], so BN variances stay positive; else He-scaled normal) and the final Softmax
    removed, so the logits are compared."""
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    g = m2.graph
    shapes = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    keep = []
    for node in g.node:
        if node.op_type == "ConstantOfShape":
            shape = tuple(int(d) for d in shapes[node.input[0]])
            if len(shape) == 1:
                arr = rng.uniform(0.5, 1.5, shape)
            else:
                arr = rng.standard_normal(shape, dtype=np.float32)
                arr *= np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
            g.initializer.append(numpy_helper.from_array(arr.astype(np.float32),
                                                         node.output[0]))
        else:
            keep.append(node)
    last = keep[-1]
    if last.op_type == "Softmax":
        keep = keep[:-1]
        out = g.output[0]
        out.name = last.input[0]
        out.type.tensor_type.ClearField("shape")
    del g.node[:]
    g.node.extend(keep)
    return m2


# vgg19 (550 MB of random weights) and zfnet512 (alexnet's ops again, 240 MB) are left out
RANDOM = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
          "shufflenet", "squeezenet"]


@pytest.mark.parametrize("name", RANDOM)
def test_light_model_random_weights_vs_onnxruntime(name):
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(7)
    m = _random_weights(_load(name), rng)
    x = _data_input(m)
    shape = [d.dim_value for d in x.type.tensor_type.shape.dim]
    data = rng.standard_normal(shape).astype(np.float32)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {x.name: data})[0]
    assert np.std(want) > 1e-3 * np.max(np.abs(want))  # a non-degenerate oracle
    raw = from_onnx(m)
    fused = optimize(raw, fuse_activations=True)
    assert not any(n.op_type == "Identity" for n in fused.nodes)
    for g in (raw, fused):
        got = Session(g).run({x.name: data})[g.output_names[0]]
        err = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert got.shape == want.shape and err < 1e-4, err
