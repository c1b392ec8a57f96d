"""pytest-benchmark suite for the static-int8 convolutions (NHWC u8 → u8, requant epilogue):
`python -m pytest bench/test_bench_conv.py`. ResNet-like 3×3 (56×56×64→64), a 1×1 and a
MobileNet-like depthwise 3×3; extra_info records GOPS (2·MACs / median), ISA, kernel, threads."""
import numpy as np
import pytest

from qengine import _runtime
from qengine.quantized.conv import QConv2d

ISAS = [i for i in _runtime.available_isas() if i != "scalar"]
# name: (n, h, w, cin, cout, k, stride, pad, groups)
CONVS = {
    "resnet3x3_56x56x64": (1, 56, 56, 64, 64, 3, 1, 1, 1),
    "resnet3x3_s2_56x56x64to128": (1, 56, 56, 64, 128, 3, 2, 1, 1),
    "resnet3x3_7x7x512": (1, 7, 7, 512, 512, 3, 1, 1, 1),
    "conv1x1_56x56x64to256": (1, 56, 56, 64, 256, 1, 1, 0, 1),
    "dw3x3_112x112x32": (1, 112, 112, 32, 32, 3, 1, 1, 32),
    "dw3x3_56x56x144": (1, 56, 56, 144, 144, 3, 1, 1, 144),
}


@pytest.fixture(params=[1, 2], ids=lambda t: f"{t}thr")
def threads(request):
    return request.param


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", list(CONVS))
def test_qconv2d(benchmark, isa, name, threads):
    n, h, w, cin, cout, k, s, p, g = CONVS[name]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, h, w, cin), dtype=np.uint8)
    wt = rng.integers(-127, 128, (cout, cin // g, k, k), dtype=np.int8)
    L = QConv2d(wt, rng.integers(-1000, 1000, cout).astype(np.int32), input_scale=0.02,
                input_zero_point=3, output_scale=0.5, output_zero_point=100,
                weight_scale=np.full(cout, 0.01, np.float32), stride=s, padding=p, groups=g,
                activation="relu", isa=isa)
    y = benchmark(L, x, nthreads=threads)
    macs = y.size * (cin // g) * k * k
    benchmark.extra_info.update(isa=isa, threads=threads, algorithm=L.algorithm, kernel=L.kernel,
                                gops=2.0 * macs / benchmark.stats.stats.median / 1e9)
