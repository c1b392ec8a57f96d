"""pytest-benchmark suite for the dynamic-int8 recurrent layers and Linear, through a Session
like a server would use them: `python -m pytest bench/test_bench_rnn.py`.
The peers (torch, ONNX Runtime) are compared side by side in bench/compare_rnn.py."""
import numpy as np
import pytest

import qengine
from qengine.graph import Graph, Node, ValueInfo

CONFIGS = [  # kind, input, hidden, layers, batch, seq (issue #3)
    ("lstm", 256, 512, 2, 1, 100), ("lstm", 128, 256, 1, 1, 50), ("lstm", 512, 1024, 1, 1, 50),
    ("lstm", 256, 512, 2, 16, 100), ("gru", 256, 512, 2, 1, 100)]


def rnn_graph(kind, i, h, layers, seed=0):
    """An ONNX-style float graph of `layers` stacked unidirectional LSTM/GRU layers."""
    rng = np.random.default_rng(seed)
    G = 4 if kind == "lstm" else 3
    op = kind.upper()
    nodes, inits, x = [], {}, "x"
    for li in range(layers):
        k = i if li == 0 else h
        inits[f"W{li}"] = (rng.standard_normal((1, G * h, k)) / np.sqrt(k)).astype(np.float32)
        inits[f"R{li}"] = (rng.standard_normal((1, G * h, h)) / np.sqrt(h)).astype(np.float32)
        inits[f"B{li}"] = (rng.standard_normal((1, 2 * G * h)) * 0.1).astype(np.float32)
        attrs = {"hidden_size": h, **({"linear_before_reset": 1} if kind == "gru" else {})}
        nodes.append(Node(op, f"{kind}{li}", (x, f"W{li}", f"R{li}", f"B{li}"), (f"Y{li}",),
                          attrs))
        nodes.append(Node("Squeeze", f"sq{li}", (f"Y{li}", "axis1"), (f"x{li + 1}",)))
        x = f"x{li + 1}"
    inits["axis1"] = np.array([1], np.int64)
    return Graph([ValueInfo("x", "float32", ("T", "B", i))], [ValueInfo(x, "float32", None)],
                 nodes, inits)


@pytest.fixture(params=[1, 2], ids=lambda t: f"{t}thr")
def threads(request):
    old = qengine.get_num_threads()
    qengine.set_num_threads(request.param)
    yield request.param
    qengine.set_num_threads(old)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "{}-{}x{}x{}-b{}-t{}".format(*c))
def test_rnn(benchmark, cfg, threads):
    kind, i, h, layers, b, t = cfg
    sess = qengine.Session(qengine.quantize_dynamic(rnn_graph(kind, i, h, layers)))
    x = np.random.default_rng(1).standard_normal((t, b, i)).astype(np.float32)
    benchmark(sess.run, {"x": x})
    benchmark.extra_info.update(isa=qengine.active_isa(), threads=threads)


@pytest.mark.parametrize("n", [1024, 4096])
@pytest.mark.parametrize("batch", [1, 16, 256])
def test_linear(benchmark, n, batch, threads):
    rng = np.random.default_rng(0)
    g = Graph([ValueInfo("x", "float32", ("B", 1024))], [ValueInfo("y", "float32", None)],
              [Node("MatMul", "fc", ("x", "W"), ("y",))],
              {"W": (rng.standard_normal((1024, n)) / 32).astype(np.float32)})
    sess = qengine.Session(qengine.quantize_dynamic(g))
    x = rng.standard_normal((batch, 1024)).astype(np.float32)
    benchmark(sess.run, {"x": x})
    benchmark.extra_info.update(isa=qengine.active_isa(), threads=threads)
