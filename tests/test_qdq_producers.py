"""The QDQ producers of tests/qdq_producers.py write what they claim: each file passes
onnx.checker, runs in ONNX Runtime (the oracle) with outputs close to the float model's, and has
the form its tool is known for (QDQ, QOperator, IntegerOps; uint8 or symmetric int8
activations; per-channel weights). A producer that wrote garbage would be useless as input for
qengine's importer tests. Skips per producer when its tool is missing (see qdq_producers)."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import qdq_producers as P  # noqa: E402

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
nn = torch.nn

SHAPE = (1, 3, 16, 16)
# Output SQNR against the float model. Garbage (wrong scales, a swapped layout) scores ~0 dB
# or less, a file that skipped quantization ~140 dB. On this small random net with 16
# calibration samples ORT's U8S8/S8S8 QDQ score ~18-19 dB; symmetric int8 activations (the
# TensorRT form) ~12 dB, since after a ReLU half their range is unused (≈ −6 dB).
MIN_SQNR_DB = 10.0


class TinyCNN(nn.Module):
    """The CNN op kinds the importer must handle: Conv+BN+ReLU, depthwise conv, a residual
    Add, MaxPool, global average pool, Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.ReLU(),
                                nn.Conv2d(8, 8, 1))
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Conv2d(8, 16, 3, 1, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.pool(torch.relu(x + self.dw(x)))
        x = torch.relu(self.head(x)).mean(dim=(2, 3))
        return self.fc(x)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    module = TinyCNN().eval()
    with torch.no_grad():   # non-trivial BN statistics, so BN folding matters
        bn = module.stem[1]
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("qdq") / "tiny.onnx"
    torch.onnx.export(module, (torch.zeros(SHAPE),), str(path), input_names=["input"],
                      output_names=["output"], opset_version=17, dynamo=False)
    rng = np.random.default_rng(0)
    calib = {"input": rng.normal(size=(16,) + SHAPE[1:]).astype(np.float32)}
    x = rng.normal(size=(4,) + SHAPE[1:]).astype(np.float32)
    return module, path, calib, x


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def _sqnr_db(ref, y):
    return 10 * np.log10(np.sum(ref.astype(np.float64) ** 2)
                         / max(np.sum((ref.astype(np.float64) - y) ** 2), 1e-30))


def _produce(fn, src, out, calib, **kw):
    try:
        return fn(src, out, calib, **kw)
    except P.ProducerUnavailable as e:
        pytest.skip(e.reason)


def _check_file(path, model, x):
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    ref = _run(model[1], x)
    y = _run(path, x)
    assert y.shape == ref.shape
    sqnr = _sqnr_db(ref, y)
    assert MIN_SQNR_DB < sqnr < 100, f"{path.name}: SQNR {sqnr:.1f} dB vs the float model"
    return proto


def _ops(proto):
    return {n.op_type for n in proto.graph.node}


def _inits(proto):
    return {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}


def _const(proto, name):
    """An initializer, or the value of a Constant node (torch's exporter writes both)."""
    inits = _inits(proto)
    if name in inits:
        return inits[name]
    for n in proto.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return onnx.numpy_helper.to_array(n.attribute[0].t)
    return None


def _quantize_zero_points(proto):
    """Zero points (arrays) of every QuantizeLinear: the activation quantizers."""
    zps = [_const(proto, n.input[2]) for n in proto.graph.node
           if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    return [z for z in zps if z is not None]


def _weight_dequantizers(proto):
    """(scale, zero point, axis) of each DequantizeLinear whose input is a constant
    int8 weight of rank >= 2 (a Conv/Gemm weight, not a bias or an activation)."""
    out = []
    for n in proto.graph.node:
        if n.op_type != "DequantizeLinear":
            continue
        w = _const(proto, n.input[0])
        if w is None or w.ndim < 2:
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        zp = _const(proto, n.input[2]) if len(n.input) > 2 else np.zeros(1, w.dtype)
        out.append((w, _const(proto, n.input[1]), zp, axis))
    return out


# ---- ONNX Runtime ------------------------------------------------------------------------------
@pytest.mark.parametrize("activation, dtype", [("uint8", np.uint8), ("int8", np.int8)])
@pytest.mark.parametrize("per_channel", [True, False])
def test_ort_qdq(model, tmp_path, activation, dtype, per_channel):
    out = _produce(P.ort_qdq, model[1], tmp_path / "q.onnx", model[2], activation=activation,
                   per_channel=per_channel)
    proto = _check_file(out, model, model[3])
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= _ops(proto)
    assert not any(op.startswith("QLinear") for op in _ops(proto))
    assert all(z.dtype == dtype for z in _quantize_zero_points(proto))
    weights = _weight_dequantizers(proto)
    assert weights and all(w.dtype == np.int8 and not np.any(z) for w, _, z, _ in weights)
    assert any(np.size(s) > 1 for _, s, _, _ in weights) == per_channel


def test_ort_qoperator(model, tmp_path):
    out = _produce(P.ort_qoperator, model[1], tmp_path / "q.onnx", model[2])
    proto = _check_file(out, model, model[3])
    assert "QLinearConv" in _ops(proto) and "Conv" not in _ops(proto)


def test_ort_dynamic(model, tmp_path):
    out = _produce(P.ort_dynamic, model[1], tmp_path / "q.onnx", model[2])
    proto = _check_file(out, model, model[3])
    assert {"DynamicQuantizeLinear", "ConvInteger"} <= _ops(proto)


def test_tensorrt_style_qdq(model, tmp_path):
    out = _produce(P.tensorrt_style_qdq, model[1], tmp_path / "q.onnx", model[2])
    proto = _check_file(out, model, model[3])
    zps = _quantize_zero_points(proto)
    assert zps and all(z.dtype == np.int8 and not np.any(z) for z in zps)
    weights = _weight_dequantizers(proto)
    assert weights and all(w.dtype == np.int8 and not np.any(z) for w, _, z, _ in weights)
    # per output channel on every conv weight
    convs = [(s, w) for w, s, _, _ in weights if w.ndim == 4]
    assert convs and all(np.size(s) == w.shape[0] for s, w in convs)
    # the bias stays float: no int32 tensor is dequantized
    assert not any(t.dtype == np.int32 for t in _inits(proto).values())


# ---- NNCF --------------------------------------------------------------------------------------
def test_nncf_qdq(model, tmp_path):
    out = _produce(P.nncf_qdq, model[1], tmp_path / "q.onnx", model[2])
    proto = _check_file(out, model, model[3])
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= _ops(proto)
    weights = _weight_dequantizers(proto)
    assert weights and all(w.dtype == np.int8 and not np.any(z) for w, _, z, _ in weights)


# ---- PyTorch -----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fx_qat", "fx_convert", "pt2e"])
def test_torch_qdq(model, tmp_path, method):
    out = _produce(P.torch_qdq, model[0], tmp_path / "q.onnx", model[2], method=method)
    proto = _check_file(out, model, model[3])
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= _ops(proto)


@pytest.mark.parametrize("method, exporter", [("fx_qat", "dynamo"), ("fx_convert", "dynamo"),
                                              ("pt2e", "torchscript")])
def test_torch_exporters_that_cannot_export_say_why(model, tmp_path, method, exporter):
    # today's torch cannot export these; when it learns to, the file must still be sound
    try:
        out = P.torch_qdq(model[0], tmp_path / "q.onnx", model[2], method=method,
                          exporter=exporter)
    except P.ProducerUnavailable as e:
        if "not installed" in e.reason or "could not import" in e.reason:
            pytest.skip(e.reason)
        assert exporter in e.reason and ": " in e.reason
        return
    _check_file(out, model, model[3])


def test_unavailable_tool_is_reported_not_raised(monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)   # makes `import nncf` fail
    with pytest.raises(P.ProducerUnavailable, match="could not import 'nncf'"):
        P.nncf_qdq("unused.onnx", "unused-out.onnx", {"input": np.zeros((1, 3))})
