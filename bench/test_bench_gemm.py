"""pytest-benchmark suite for the integer GEMM: `python -m pytest bench/test_bench_gemm.py`.
Every compiled-and-runnable ISA; the benchmark's extra_info records GOPS, ISA and threads."""
import numpy as np
import pytest

from qengine import _runtime
from qengine import functional as F

SHAPES = [(1, 1024, 1024), (16, 1024, 1024), (256, 1024, 1024), (1024, 1024, 1024),
          (3136, 64, 576)]
ISAS = _runtime.available_isas()


@pytest.fixture(params=[1, 2], ids=lambda t: f"{t}thr")
def threads(request):
    old = _runtime.get_num_threads()
    _runtime.set_num_threads(request.param)
    yield request.param
    _runtime.set_num_threads(old)


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "scalar"])
@pytest.mark.parametrize("m,n,k", SHAPES, ids=lambda v: str(v))
def test_matmul_int32(benchmark, isa, m, n, k, threads):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    wp = F.pack_weights(rng.integers(-128, 128, (n, k), dtype=np.int8), isa=isa)
    benchmark(F.matmul_int32, a, 3, wp)
    benchmark.extra_info.update(isa=isa, threads=threads,
                                gops=2.0 * m * n * k / benchmark.stats.stats.median / 1e9)


@pytest.mark.parametrize("m", [1, 16, 256])
def test_linear_dynamic(benchmark, m, threads):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(m, 1024)).astype(np.float32)
    wp = F.pack_weights(rng.integers(-127, 128, (1024, 1024), dtype=np.int8))
    sw = np.full(1024, 0.01, np.float32)
    benchmark(F.linear_dynamic, x, wp, sw)
    benchmark.extra_info.update(isa=wp.isa, threads=threads)
