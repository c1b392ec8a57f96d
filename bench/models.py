"""Reference CNNs in plain torch.nn (no torchvision) for tests and benchmarks, and their ONNX
export. Needs torch; the qengine runtime never imports this module.

* `resnet18(num_classes=1000)`: He et al. 2015, BasicBlock [2, 2, 2, 2], as torchvision's.
* `mobilenet_v2(num_classes=1000, width_mult=1.0)`: Sandler et al. 2018, inverted residuals
  with ReLU6, as torchvision's (channels rounded to multiples of 8).
* `lenet(num_classes=10)`: LeNet-5 size, 1×28×28 input, Conv/MaxPool/ReLU/Linear.
* `build(name, seed=0)`: one of the above by name, randomly initialised with a fixed seed,
  in eval mode, with non-trivial BatchNorm running statistics (so BN folding is exercised).
* `export_onnx(model, path, input_shape, dynamo=False, opset=None, keep_batchnorm=True)`: write
  an ONNX file with one input "input" and one output "output"; `dynamo=True` uses torch.onnx's
  dynamo exporter (which folds BatchNormalization itself).
* `INPUT_SHAPES`: the input shape each model expects (batch 1).
"""
from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPES = {"resnet18": (1, 3, 224, 224), "mobilenet_v2": (1, 3, 224, 224),
                "lenet": (1, 1, 28, 28)}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + idt)


class ResNet18(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _make_divisible(v, divisor=8):
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn_relu6(cin, cout, k, stride, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers = [] if expand == 1 else [_conv_bn_relu6(cin, hidden, 1, 1)]
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]  # (expand t, channels c, repeats n, stride s)

    def __init__(self, num_classes=1000, width_mult=1.0):
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        feats = [_conv_bn_relu6(3, cin, 3, 2)]
        for t, c, n, s in self.SETTINGS:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                feats.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        feats.append(_conv_bn_relu6(cin, last, 1, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class LeNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
                                        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def resnet18(num_classes=1000):
    return ResNet18(num_classes)


def mobilenet_v2(num_classes=1000, width_mult=1.0):
    return MobileNetV2(num_classes, width_mult)


def lenet(num_classes=10):
    return LeNet(num_classes)


_BUILDERS = {"resnet18": resnet18, "mobilenet_v2": mobilenet_v2, "lenet": lenet}


def build(name: str, seed: int = 0) -> nn.Module:
    """A model by name with seeded random weights and random BN statistics, in eval mode."""
    torch.manual_seed(seed)
    model = _BUILDERS[name]()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def export_onnx(model: nn.Module, path, input_shape, *, dynamo: bool = False,
                opset: int | None = None, keep_batchnorm: bool = True):
    """Export `model` to `path` (input "input", output "output", static shapes).

    Default opset: 17 for the TorchScript exporter, 18 for dynamo (its native opset; asking
    it for less runs a version converter that fails on ReduceMean's axes input).
    `keep_batchnorm` (TorchScript exporter only) turns off its constant folding, which would
    fold BatchNormalization into the convolutions itself; the dynamo exporter always folds."""
    opset = opset or (18 if dynamo else 17)
    x = torch.zeros(input_shape)
    kwargs = dict(input_names=["input"], output_names=["output"], opset_version=opset,
                  dynamo=dynamo)
    if not dynamo:
        kwargs["do_constant_folding"] = not keep_batchnorm
    torch.onnx.export(model, (x,), str(path), **kwargs)
    return path
