"""qengine.qat: the trained fake-quant model is the integer engine.

The oracle of "engine = fake quant" is the QAT model's eval-mode forward, which computes the
integer arithmetic in torch (exact integer sums, float32 requantize); the engine computes it in
its compiled kernels from the converted graph. Neither is recorded output. The qparams and the
gradients are checked against NumPy references written here from docs/numerics.md and the
LSQ paper."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import qengine  # noqa: E402
import qengine.qat as qat  # noqa: E402
from qengine.errors import ConfigError  # noqa: E402
from qengine.quant import choose_qparams  # noqa: E402

torch.set_num_threads(1)


def _train(q, shape, steps=6, seed=0, lr=0.01):
    """A few SGD steps on random data: moves ranges, weights, BN statistics and scales."""
    g = torch.Generator().manual_seed(seed)
    q.train()
    opt = torch.optim.SGD(q.parameters(), lr)
    for _ in range(steps):
        x = torch.randn(shape, generator=g) * 2
        out = q(x)
        out = out if isinstance(out, torch.Tensor) else sum(o.sum() for o in out)
        loss = (out ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    q.eval()
    return q


def _engine(graph, x):
    s = graph if isinstance(graph, qengine.Session) else qengine.Session(graph)
    return s.run({s.input_names[0]: x})


def _check_exact(model, shape, config=None, steps=6, batch=5, seed=1):
    """Prepared, trained a little, converted: engine output == eval forward, bit for bit."""
    torch.manual_seed(seed)
    x0 = torch.randn((2,) + shape)
    q = qat.prepare(model, x0, config or qat.QATConfig())
    _train(q, (8,) + shape)
    x = torch.randn((batch,) + shape, generator=torch.Generator().manual_seed(seed + 7)) * 2
    with torch.no_grad():
        ref = q(x)
    g = qat.convert(q)
    out = _engine(g, x.numpy())
    refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    for name, r in zip(q.output_names, refs):
        np.testing.assert_array_equal(out[name], r.numpy())
    return q, g, x


class ConvBnRelu(nn.Module):
    def __init__(self, act=nn.ReLU, bias=True, **kw):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, bias=bias, **kw)
        self.bn = nn.BatchNorm2d(6)
        self.act = act()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Wrap(nn.Module):
    def __init__(self, fn, *mods):
        super().__init__()
        self.mods = nn.ModuleList(mods)
        self.fn = fn

    def forward(self, x):
        return self.fn(self, x)


LAYERS = {
    "conv_bn_relu": lambda: ConvBnRelu(padding=1),
    "conv_bn_relu6_stride2": lambda: ConvBnRelu(nn.ReLU6, stride=2, padding=1),
    "conv_nobias_bn_hardtanh": lambda: ConvBnRelu(lambda: nn.Hardtanh(-1.0, 2.5), bias=False),
    "conv_dilated": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, dilation=2, padding=2)),
    "conv_depthwise": lambda: nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU(),
                                            nn.Conv2d(6, 6, 3, groups=6, padding=1),
                                            nn.BatchNorm2d(6), nn.ReLU6()),
    "conv1d_bn_relu": lambda: nn.Sequential(nn.Conv1d(3, 5, 3, padding=1), nn.BatchNorm1d(5),
                                            nn.ReLU(), nn.Conv1d(5, 4, 5, stride=2)),
    "linear_relu": lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(),
                                         nn.Linear(16, 7)),
    "maxpool_relu_lut": lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2, 2),
                                              nn.ReLU()),
    "avgpool_pad": lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.AvgPool2d(3, 2, padding=1)),
    "avgpool_nopad_count": lambda: nn.Sequential(
        nn.Conv2d(3, 4, 1), nn.AvgPool2d(3, 2, padding=1, count_include_pad=False)),
    "avgpool_ceil": lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.AvgPool2d(3, 2,
                                                                           ceil_mode=True)),
    "gap_flatten": lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1),
                                         nn.Flatten(), nn.Linear(4, 3)),
    "hardswish": lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardswish()),
    "sigmoid": lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sigmoid()),
    "tanh": lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh()),
    "hardsigmoid": lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardsigmoid()),
    "leakyrelu": lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.1)),
    "add_relu": lambda: Wrap(lambda s, x: torch.relu(s.mods[0](x) + s.mods[1](x)),
                             nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 1)),
    "add_plain": lambda: Wrap(lambda s, x: s.mods[0](x) + s.mods[1](x),
                              nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 1)),
    "cat": lambda: Wrap(lambda s, x: torch.cat([s.mods[0](x), s.mods[1](x)], 1),
                        nn.Conv2d(3, 4, 3, padding=1), nn.Sequential(nn.Conv2d(3, 2, 1),
                                                                     nn.ReLU())),
    "mean_hw_view": lambda: Wrap(lambda s, x: s.mods[1](s.mods[0](x).mean((2, 3))),
                                 nn.Conv2d(3, 4, 3), nn.Linear(4, 2)),
    "view_flatten": lambda: Wrap(lambda s, x: s.mods[1](s.mods[0](x).view(x.size(0), -1)),
                                 nn.Conv2d(3, 2, 3, stride=2), nn.Linear(2 * 3 * 3, 3)),
    "dropout_identity": lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.2),
                                              nn.Identity(), nn.ReLU()),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_type_engine_equals_eval_forward(name):
    shape = (3, 16) if name.startswith("conv1d") else (3, 8, 8)
    _check_exact(LAYERS[name](), shape)


CONFIGS = {
    "int4_per_channel": qat.QATConfig(weight_bits=4),
    "int8_per_tensor": qat.QATConfig(per_channel=False),
    "symmetric_activations": qat.QATConfig(symmetric_activations=True),
    "lsq": qat.QATConfig(learn_scales=True),
    "lsq_int4_symmetric": qat.QATConfig(learn_scales=True, weight_bits=4,
                                        symmetric_activations=True),
    "bn_folded_at_prepare": qat.QATConfig(fold_bn=False),
    "frozen_after_2": qat.QATConfig(freeze_observers_after=2, freeze_bn_after=2),
}


class SmallResNet(nn.Module):
    """Stem, a residual block with a projection, a depthwise block, Hardswish, a concat,
    global pooling and a classifier: every step type of a real CNN in one model."""

    def __init__(self):
        super().__init__()
        self.stem = ConvBnRelu(stride=1, padding=1)
        self.c1 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(8)
        self.proj = nn.Conv2d(6, 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.hs = nn.Hardswish()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        y = torch.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        x = torch.relu(y + self.proj(x))
        z = self.hs(self.pw(torch.relu(self.dw(x))))
        x = self.pool(torch.cat([x, z], 1))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


# MobileNetV2 as torchvision writes it (inverted residuals with a Python-level residual switch,
# ReLU6, depthwise convs, a functional global pool, dropout + linear head), width 0.35

def cbr(i, o, k=3, s=1, g=1):
    """Conv + BatchNorm + ReLU6."""
    return nn.Sequential(nn.Conv2d(i, o, k, s, (k - 1) // 2, groups=g, bias=False), nn.BatchNorm2d(o), nn.ReLU6(inplace=True))

class InvRes(nn.Module):
    def __init__(self, i, o, s, t):
        super().__init__()
        h = i * t
        self.use_res = s == 1 and i == o
        layers = [] if t == 1 else [cbr(i, h, 1)]
        layers += [cbr(h, h, 3, s, h), nn.Conv2d(h, o, 1, bias=False), nn.BatchNorm2d(o)]
        self.conv = nn.Sequential(*layers)
    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)

class MobileNetV2(nn.Module):
    def __init__(self, width=0.35, classes=10):
        super().__init__()
        c = lambda v: max(8, int(v * width + 4) // 8 * 8)
        cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        feats = [cbr(3, c(32), 3, 2)]
        i = c(32)
        for t, ch, n, s in cfg:
            for j in range(n):
                feats.append(InvRes(i, c(ch), s if j == 0 else 1, t)); i = c(ch)
        feats.append(cbr(i, 1280, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))
    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, as written there (in-place ReLU, `out += identity`)."""

    def __init__(self, i, o, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(o)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
        self.downsample = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False),
                                        nn.BatchNorm2d(o)) if stride != 1 or i != o else None

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNetSmall(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 8, 1))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_resnet_written_as_torchvision_engine_equals_eval_forward():
    q, g, _ = _check_exact(ResNetSmall(), (3, 32, 32), batch=3)
    ops = [n.op_type for n in g.nodes]
    assert ops.count("QConvAdd") == 3 and not {"Conv", "Add", "Gemm"} & set(ops)


def test_mobilenet_v2_engine_equals_eval_forward():
    q, g, _ = _check_exact(MobileNetV2(), (3, 32, 32), batch=3)
    ops = {n.op_type for n in g.nodes}
    assert {"QConv", "QConvAdd", "QGemm"} <= ops and not ops & {"Conv", "Gemm", "Add"}


@pytest.mark.parametrize("cfg", sorted(CONFIGS))
def test_whole_model_engine_equals_eval_forward(cfg):
    q, g, x = _check_exact(SmallResNet(), (3, 12, 12), CONFIGS[cfg])
    ops = {n.op_type for n in g.nodes}
    assert not ops & {"Conv", "Gemm", "Add", "Concat", "HardSwish"}, ops  # all int8


def test_int4_weights_are_4_bit_codes_and_engine_equals_eval():
    q, g, _ = _check_exact(SmallResNet(), (3, 12, 12), qat.QATConfig(weight_bits=4))
    weights = [g.initializers[v] for n in g.nodes if n.op_type in ("QConv", "QConvAdd", "QGemm")
               for v in n.inputs if v in g.initializers and g.initializers[v].ndim >= 2]
    assert len(weights) == 7
    for w in weights:
        assert w.dtype == np.int8 and np.abs(w).max() <= 7


def test_engine_file_and_qdq_onnx_round_trips_are_bit_exact(tmp_path):
    pytest.importorskip("onnx")
    q, g, x = _check_exact(SmallResNet(), (3, 12, 12))
    with torch.no_grad():
        ref = q(x).numpy()
    qengine.save(g, tmp_path / "m.qe")
    out = _engine(qengine.load(tmp_path / "m.qe"), x.numpy())
    np.testing.assert_array_equal(out[q.output_names[0]], ref)
    qat.export_onnx(q, tmp_path / "m.onnx")
    back = qengine.from_onnx(str(tmp_path / "m.onnx"))
    np.testing.assert_array_equal(_engine(back, x.numpy())[q.output_names[0]], ref)


def test_exported_qdq_runs_in_onnxruntime_within_a_step(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    q, g, x = _check_exact(SmallResNet(), (3, 12, 12))
    qat.export_onnx(q, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = q(x).numpy()
    step = q.quantizer_of(q.output_names[0]).qparams()[0]
    # ORT's int8 kernels round their requantize differently (and saturate in vpmaddubsw on
    # AVX2): a few output steps apart, not more
    assert np.abs(got - ref).max() <= 4 * step + 1e-6


def test_4bit_weights_export_as_onnx_int4_and_come_back_exact(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    q, g, x = _check_exact(SmallResNet(), (3, 12, 12), qat.QATConfig(weight_bits=4))
    with torch.no_grad():
        ref = q(x).numpy()
    m = qat.export_onnx(q, tmp_path / "w4.onnx")
    assert m.opset_import[0].version >= 21
    int4 = [i for i in m.graph.initializer if i.data_type == onnx.TensorProto.INT4]
    assert len(int4) == 2 * 7                          # 7 weight tensors and their zero points
    back = qengine.from_onnx(str(tmp_path / "w4.onnx"))
    np.testing.assert_array_equal(_engine(back, x.numpy())[q.output_names[0]], ref)
    sess = ort.InferenceSession(str(tmp_path / "w4.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    assert np.abs(got - ref).max() <= 4 * q.quantizer_of(q.output_names[0]).qparams()[0] + 1e-6
    q8, _, _ = _check_exact(SmallResNet(), (3, 12, 12))
    m8 = qat.export_onnx(q8, tmp_path / "w8.onnx")      # 8-bit codes stay INT8 (opset < 21)
    assert m8.opset_import[0].version < 21
    assert not any(i.data_type == onnx.TensorProto.INT4 for i in m8.graph.initializer)


def test_engine_equals_eval_forward_on_every_isa(tmp_path):
    from isa_children import first_output_bytes_per_isa
    q, g, x = _check_exact(SmallResNet(), (3, 12, 12))
    with torch.no_grad():
        ref = q(x).numpy()
    for isa, got in first_output_bytes_per_isa(g, x.numpy(), tmp_path).items():
        assert got == ref.tobytes(), isa


# ------------------------------------------------------------------ qparams and gradients
def test_activation_qparams_are_choose_qparams_of_the_moving_average_range():
    from qengine.qat.quantizers import ActQuant
    aq = ActQuant(averaging=0.25)
    aq.train()
    rng = np.random.default_rng(0)
    lo = hi = None
    for i in range(4):
        x = rng.standard_normal(100).astype(np.float32) * (i + 1) + 0.5
        aq(torch.from_numpy(x))
        bmin, bmax = np.float32(x.min()), np.float32(x.max())
        if lo is None:
            lo, hi = bmin, bmax
        else:
            lo = np.float32(lo + np.float32(0.25) * np.float32(bmin - lo))
            hi = np.float32(hi + np.float32(0.25) * np.float32(bmax - hi))
    p = choose_qparams(float(lo), float(hi), bits=8, signed=False)
    assert aq.qparams() == (float(p.scale), int(p.zero_point))


@pytest.mark.parametrize("bits", [8, 4])
def test_weight_scales_and_codes_are_those_of_choose_qparams(bits):
    from qengine.qat.quantizers import WeightQuant
    rng = np.random.default_rng(bits)
    w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    w[2] = 0.0                                         # degenerate channel: scale 1.0
    wq = WeightQuant(bits=bits, channels=6, reduction=27)
    q, s = wq.quantize(torch.from_numpy(w))
    flat = w.reshape(6, -1)
    p = choose_qparams(flat.min(1), flat.max(1), bits=bits, symmetric=True, axis=0)
    np.testing.assert_array_equal(s.numpy().reshape(-1), np.asarray(p.scale, np.float32))
    np.testing.assert_array_equal(q.numpy().reshape(6, -1), p.quantize(flat).data)
    assert np.abs(q.numpy()).max() <= 2 ** (bits - 1) - 1


def test_ste_and_lsq_gradients_match_their_definitions():
    from qengine.qat.quantizers import fake_quant
    x = torch.tensor([-3.0, -0.26, 0.1, 0.74, 1.3, 9.0], dtype=torch.float32,
                     requires_grad=True)
    s = torch.tensor(0.5, requires_grad=True)
    z = torch.tensor(2.0, requires_grad=True)
    y = fake_quant(x, s, z, 0, 7, grad_scale=0.5)
    up = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    (y * up).sum().backward()
    xv, sv, zv = x.detach().numpy().astype(np.float64), 0.5, 2.0
    v = xv / sv
    q = np.rint(v) + zv
    lo, hi = q < 0, q > 7
    inside = ~(lo | hi)
    np.testing.assert_array_equal(y.detach().numpy(),
                                  ((np.clip(q, 0, 7) - zv) * sv).astype(np.float32))
    np.testing.assert_array_equal(x.grad.numpy(), (up.numpy() * inside).astype(np.float32))
    ds = np.where(lo, 0 - zv, np.where(hi, 7 - zv, np.rint(v) - v))
    np.testing.assert_allclose(s.grad.item(), 0.5 * (up.numpy() * ds).sum(), rtol=1e-6)
    np.testing.assert_allclose(z.grad.item(), 0.5 * (up.numpy() * np.where(inside, 0, -sv)).sum(),
                               rtol=1e-6)


def test_lsq_scales_learn_and_the_engine_uses_the_learned_values():
    q, g, _ = _check_exact(SmallResNet(), (3, 12, 12), qat.QATConfig(learn_scales=True))
    step = q.steps["c1"]
    assert step.wq.scale.grad is not None and step.out.scale.grad is not None
    mm = step.wq.minmax_scales(step.folded()[0]).reshape(-1)
    assert not torch.equal(step.wq.scale.detach(), mm)   # it moved off the min/max init
    node = next(n for n in g.nodes if n.name == "c1")
    np.testing.assert_array_equal(g.initializers[node.inputs[2]],
                                  step.wq.scale.detach().numpy())


def test_freezing_stops_ranges_and_batchnorm_statistics():
    q = qat.prepare(SmallResNet(), torch.randn(2, 3, 12, 12),
                    qat.QATConfig(freeze_observers_after=2, freeze_bn_after=3))
    q.train()
    seen = []
    for i in range(6):
        q(torch.randn(4, 3, 12, 12) * (i + 1))
        step = q.steps["c1"]
        seen.append((step.out.max_val.item(), step.bn.running_var.clone()))
    assert seen[0][0] != seen[1][0] and seen[2][0] == seen[3][0] == seen[5][0]
    assert not torch.equal(seen[1][1], seen[2][1]) and torch.equal(seen[3][1], seen[5][1])


def test_batchnorm_trains_with_batch_statistics_before_freezing():
    torch.manual_seed(0)
    m = ConvBnRelu(padding=1)
    q = qat.prepare(m, torch.randn(2, 3, 8, 8))
    q.train()
    before = m.bn.running_mean.clone()
    x = torch.randn(16, 3, 8, 8) * 3 + 1
    y = q(x)
    assert not torch.equal(before, m.bn.running_mean)
    # batch-normalized pre-activations: the output mean is that of relu(N(0, 1))·γ + β
    ref = torch.relu(nn.functional.batch_norm(m.conv(x), None, None, m.bn.weight, m.bn.bias,
                                              training=True, eps=m.bn.eps))
    assert (y - ref).abs().max() < 0.1


# ------------------------------------------------------------------ keep_float and errors
def test_keep_float_leaves_that_step_float_and_reports_its_names():
    q = qat.prepare(SmallResNet(), torch.randn(2, 3, 12, 12),
                    qat.QATConfig(keep_float={"pw", "fc"}))
    assert {"pw", "fc", "add"} <= set(q.step_names())
    _train(q, (8, 3, 12, 12))
    x = torch.randn(4, 3, 12, 12)
    with torch.no_grad():
        ref = q(x).numpy()
    g = qat.convert(q)
    ops = [n.op_type for n in g.nodes]
    assert "Conv" in ops and "Gemm" in ops           # the two kept float
    out = _engine(g, x.numpy())[q.output_names[0]]
    # float layers differ from torch's in the last bits; the int8 steps after them may round
    # the other way: within two steps of the final requantize
    assert np.abs(out - ref).max() < 2 * np.abs(ref).max() / 100 + 1e-6


def test_unknown_keep_float_name_is_rejected():
    with pytest.raises(ConfigError, match="keep_float names steps that are not in the model"):
        qat.prepare(SmallResNet(), torch.randn(2, 3, 12, 12), qat.QATConfig(keep_float={"zz"}))


def test_untraceable_and_unsupported_models_are_rejected_by_name():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.c(x) if x.sum() > 0 else x

    with pytest.raises(ConfigError, match="could not trace Branchy"):
        qat.prepare(Branchy(), torch.randn(1, 3, 4, 4))

    class Softmaxed(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return torch.softmax(self.c(x), 1)

    with pytest.raises(ConfigError, match="softmax.*has no int8 engine step"):
        qat.prepare(Softmaxed(), torch.randn(1, 3, 4, 4))


@pytest.mark.parametrize("kw, match", [({"weight_bits": 3}, "weight_bits"),
                                       ({"freeze_bn_after": -1}, "freeze_bn_after"),
                                       ({"averaging": 0.0}, "averaging"),
                                       ({"keep_float": "fc"}, "keep_float")])
def test_bad_config_is_rejected(kw, match):
    with pytest.raises(ConfigError, match=match):
        qat.QATConfig(**kw)


def test_convert_before_any_training_step_says_what_to_do():
    q = qat.prepare(SmallResNet(), torch.randn(2, 3, 12, 12))
    with pytest.raises(RuntimeError, match="not been observed"):
        qat.convert(q)


def test_runtime_never_imports_torch(tmp_path):
    """Loading and running a converted QAT model needs NumPy and qengine only."""
    q, g, x = _check_exact(SmallResNet(), (3, 12, 12))
    qengine.save(g, tmp_path / "m.qe")
    np.save(tmp_path / "x.npy", x.numpy())
    code = ("import sys, numpy as np, qengine; s = qengine.load(sys.argv[1]); "
            "s.run({'x': np.load(sys.argv[2])}); "
            "bad = [m for m in ('torch', 'qengine.qat', 'onnx') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.qe"),
                        str(tmp_path / "x.npy")], capture_output=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(Path(qengine.__file__).parents[1])))
    assert r.returncode == 0, r.stderr.decode()[-500:]
