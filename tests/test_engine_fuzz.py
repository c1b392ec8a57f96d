"""Engine-file fuzzing: a slice of the structure-aware fuzzer (tests/engine_fuzz.py; the full
10 000+ case run is scripts/fuzz_engine.py), and the bugs it found, each as a plain test."""
import json

import numpy as np
import pytest

import qengine
from qengine import ModelError
from qengine.cli import main
from qengine.graph import Graph, Node, ValueInfo
from qengine.ops import Op, register_op, unregister_op
from qengine.workflows.dynamic import quantize_dynamic

import engine_fuzz

SEED = 20240607
SLICE = 1000         # cases in the default suite (~12 s); the CLI runs in-process on every 3rd


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return engine_fuzz.build_corpus(tmp_path_factory.mktemp("fuzz_corpus"))


def test_corpus_loads_and_runs(corpus):
    for base in corpus:
        feeds = {k: np.load(v) for k, v in base.inputs.items()}
        path = base.inputs[next(iter(base.inputs))].with_name(f"{base.name}.qe")
        out = qengine.load(path).run(feeds)
        assert all(np.isfinite(v).all() for v in out.values() if v.dtype.kind == "f"), base.name


def test_cases_are_reproducible(corpus):
    for i in (0, 7, 123):
        a, b = engine_fuzz.make_case(corpus, SEED, i), engine_fuzz.make_case(corpus, SEED, i)
        assert a[1] == b[1] and a[2] == b[2]
    for seed in (1, 2, 3):          # mutators stacked on junk must decline, not raise
        for i in range(1000):
            engine_fuzz.make_case(corpus, seed, i)


def test_harness_notices_crashes_and_hangs(corpus, tmp_path):
    """A fuzzer that cannot fail proves nothing: a worker that aborts or stops answering is
    reported as such."""
    worker = engine_fuzz._Worker(tmp_path, 1, engine_fuzz.worker_env())
    base = corpus[0]
    req = {"case": 0, "path": str(tmp_path / "none.qe"), "base": base.name,
           "inputs": {k: str(v) for k, v in base.inputs.items()}}
    assert worker.ask(req, 60)["outcome"] == "rejected"     # alive and answering
    assert worker.ask({**req, "selftest": "crash"}, 60) is None
    assert worker.proc.returncode == -6                     # SIGABRT
    worker.close()
    worker = engine_fuzz._Worker(tmp_path, 1, engine_fuzz.worker_env())
    assert worker.ask({**req, "selftest": "hang"}, 2) is None
    assert worker.proc.returncode == -9                     # killed after the time bound
    worker.close()


def test_fuzz_slice(corpus, tmp_path):
    """Every mutant loads and runs, or raises a QEngineError; the CLI answers exit code 0 or
    one error line with exit code 2; no crash, no hang."""
    report = engine_fuzz.run_fuzz(corpus, SEED, range(SLICE), tmp_path, timeout=60,
                                  cli_every=3, cli_subprocess_every=SLICE // 2)
    assert report.ok(), "\n".join(report.lines())
    # the slice reaches every stage: rejected at load, built and run, failing at run time
    assert report.outcomes["rejected"] > SLICE // 2, report.lines()
    assert report.outcomes["ran"] > SLICE // 20, report.lines()
    assert report.cli["ok"] and report.cli["error"] and report.cli_subprocess["error"] + \
        report.cli_subprocess["ok"] == 4, report.lines()


# ---- what the fuzzer found --------------------------------------------------------------------
def _save(tmp_path, graph, name="m.qe"):
    path = tmp_path / name
    qengine.save(graph, path)
    return path


def _cli(capsys, *argv):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(rc, err, fragment):
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("qengine: error: "), err
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("op, inputs", [("Relu", [""]), ("Concat", ["x", ""]),
                                        ("Add", ["x", ""])])
def test_omitted_required_input_is_rejected_at_load(op, inputs, tmp_path):
    """An empty input name where the op needs a value used to reach op.run as None
    (AttributeError: 'NoneType' object has no attribute 'dtype')."""
    attrs = {"axis": 0} if op == "Concat" else {}
    g = Graph([ValueInfo("x", "float32", (2,))], [ValueInfo("y")],
              [Node(op, "n", tuple(inputs), ("y",), attrs)])
    with pytest.raises(ModelError, match="input 1 is required but omitted|input 0 is required"):
        g.verify()
    g.nodes = [Node("Relu", "n", ("x",), ("y",))]
    path = _save(tmp_path, g)
    graph = json.loads(qengine.engine_file.read_safetensors(path)[1]["graph"])
    graph["nodes"][0].update(op_type=op, inputs=inputs, attrs=attrs)
    meta = {**qengine.engine_file.read_safetensors(path)[1], "graph": json.dumps(graph)}
    qengine.engine_file.write_safetensors(path, {}, meta)
    with pytest.raises(ModelError, match="required but omitted"):
        qengine.load(path)


@pytest.mark.parametrize("op", ["QMaxPool", "QAveragePool"])
def test_int8_pool_without_kernel_shape_is_a_model_error(op):
    """It used to fail building the layer with TypeError: 'NoneType' object is not iterable."""
    g = Graph([ValueInfo("x", "uint8", (1, 4, 4, 1))], [ValueInfo("y")],
              [Node(op, "p", ("x",), ("y",))])
    with pytest.raises(ModelError, match="required attribute 'kernel_shape'"):
        g.verify()


def _dynamic_linear_graph():
    rng = np.random.default_rng(0)
    g = Graph([ValueInfo("x", "float32", (2, 4))], [ValueInfo("y")],
              [Node("MatMul", "fc", ("x", "w"), ("y",))],
              {"w": rng.standard_normal((4, 3)).astype(np.float32)})
    # too small for int8 to pay off: the cost model would keep it float
    q = quantize_dynamic(g, qengine.DynamicQuantConfig(cost_model=False))
    assert [n.op_type for n in q.nodes] == ["DynamicQuantLinear"]
    return q


def test_inspect_shows_an_empty_scale_tensor(tmp_path, capsys):
    """`qengine inspect` printed a traceback (formatting None) for a quantized weight whose
    scale tensor is empty; inspect shows the file, `run` then says what is wrong."""
    q = _dynamic_linear_graph()
    ws = q.nodes[0].inputs[2]
    q.initializers[ws] = np.zeros(0, np.float32)
    path = _save(tmp_path, q)
    rc, out, err = _cli(capsys, "inspect", path)
    assert rc == 0 and err == "", err
    assert " 0  " in out and "  -  " in out
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    rc, out, err = _cli(capsys, "run", path, "--input", f"x={tmp_path / 'x.npy'}", "-o",
                        tmp_path / "o.npz")
    _one_line_error(rc, err, "weight scales")


def test_cli_run_reports_an_op_that_fails_to_build_in_one_line(tmp_path, capsys):
    """`qengine run` / `bench` built the Session without the engine-file loader's guard, so an
    op constructor's TypeError (the QAveragePool case above) escaped as a traceback."""
    @register_op
    class BrokenOnBuild(Op):
        op_type = "TestBrokenOnBuild"

        def prepare(self, initializers):
            raise TypeError("'NoneType' object is not iterable")
    try:
        path = _save(tmp_path, Graph([ValueInfo("x", "float32", (2,))], [ValueInfo("y")],
                                     [Node("TestBrokenOnBuild", "b", ("x",), ("y",))]))
        np.save(tmp_path / "x.npy", np.ones(2, np.float32))
        for argv in (["run", path, "--input", f"x={tmp_path / 'x.npy'}", "-o",
                      tmp_path / "o.npz"], ["bench", path, "--runs", "1"]):
            rc, _, err = _cli(capsys, *argv)
            _one_line_error(rc, err, "building the ops failed: TypeError")
        with pytest.raises(ModelError, match="building the ops failed"):
            qengine.load(path)
    finally:
        unregister_op("TestBrokenOnBuild")
