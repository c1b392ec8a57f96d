"""One process-wide thread count (include/qengine/qe_threads.h): set_num_threads, OMP_NUM_THREADS
and threadpoolctl limit every kernel, whichever Python thread calls it. Checked by counting: every
parallel region records its team size and _cpu.max_team() reports the largest since a reset.
Fork keeps the count when the parent never started an OpenMP pool and falls back to 1 (reported
by show_config) when it did."""
import ast
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine import ConfigError, functional as F
from qengine._ext import _calib, _cpu
from qengine.graph import Graph, Node, ValueInfo

ROOT = Path(__file__).resolve().parents[1]
PY_THREADS, RUNS = 8, 200


@pytest.fixture(autouse=True)
def _restore_threads():
    n = qengine.get_num_threads()
    yield
    qengine.set_num_threads(n)


def _cnn_session(rng):
    """Conv 3×3 16→32 on 32×32 (4.7 M MACs: threaded above 1 thread) + depthwise 3×3 (294 k
    taps: threaded too), static int8."""
    inits = {"w1": (rng.standard_normal((32, 16, 3, 3)) * 0.1).astype(np.float32),
             "b1": (rng.standard_normal(32) * 0.1).astype(np.float32),
             "w2": (rng.standard_normal((32, 1, 3, 3)) * 0.3).astype(np.float32)}
    nodes = [Node("Conv", "c1", ("x", "w1", "b1"), ("c1",), {"pads": [1, 1, 1, 1]}),
             Node("Relu", "r1", ("c1",), ("r1",)),
             Node("Conv", "dw", ("r1", "w2"), ("y",), {"pads": [1, 1, 1, 1], "group": 32})]
    g = Graph([ValueInfo("x", "float32", ("N", 16, 32, 32))], [ValueInfo("y", "float32", None)],
              nodes, inits)
    calib = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)
    sess = qengine.Session(qengine.quantize_static(g, {"x": calib}))
    return lambda x: sess.run({"x": x})["y"], rng.standard_normal((1, 16, 32, 32)).astype(np.float32)


def _lstm_session(rng):
    """Dynamic int8 LSTM, hidden 256: the recurrent step runs threaded above 1 thread."""
    H, I = 256, 64
    sd = {"rnn.weight_ih_l0": rng.standard_normal((4 * H, I)) * 0.1,
          "rnn.weight_hh_l0": rng.standard_normal((4 * H, H)) * 0.05,
          "rnn.bias_ih_l0": rng.standard_normal(4 * H) * 0.1,
          "rnn.bias_hh_l0": rng.standard_normal(4 * H) * 0.1}
    sd = {k: v.astype(np.float32) for k, v in sd.items()}
    g = qengine.from_torch_state_dict(sd, [("lstm", "rnn", {"batch_first": True})])
    sess = qengine.Session(qengine.quantize_dynamic(g))
    return lambda x: sess.run({"input": x})["output"], rng.standard_normal((1, 4, I)).astype(np.float32)


def _gemm(rng):
    """Dynamic linear 64×256×256 (4.2 M MACs)."""
    w = F.pack_weights(rng.integers(-127, 128, (256, 256), dtype=np.int8))
    scale = np.full(256, 0.01, np.float32)
    return lambda x: F.linear_dynamic(x, w, scale), rng.standard_normal((64, 256)).astype(np.float32)


def _quantize(rng):
    """Per-tensor quantize of 512 k floats (above the quantizer's PARALLEL_MIN)."""
    return lambda x: qengine.quantize(x, 0.05, 3).data, rng.standard_normal(1 << 19).astype(np.float32)


def _histogram(rng):
    """The calibration histogram pass over 256 k values (above its PARALLEL_MIN)."""
    def run(x):
        h = np.zeros(64, np.int64)
        _calib.histogram(x, 0.1, -32, h, 0.0, 0.0, 0)
        return h
    return run, rng.standard_normal(1 << 18).astype(np.float32)


WORKLOADS = {"cnn": _cnn_session, "lstm": _lstm_session, "gemm": _gemm, "quantize": _quantize,
             "histogram": _histogram}


@pytest.fixture(scope="module")
def workloads():
    rng = np.random.default_rng(0)
    return {name: make(rng) for name, make in WORKLOADS.items()}


@pytest.mark.skipif(not _cpu.openmp_enabled(), reason="serial build: every kernel runs on 1 thread")
@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_extension_takes_its_team_size_from_the_setting(workloads, name):
    """Each workload exercises another extension module: all of them read the one setting
    (an extension that kept its own copy would ignore set_num_threads)."""
    run, x = workloads[name]
    want = run(x)
    for n in (2, 1):
        qengine.set_num_threads(n)
        _cpu.max_team(reset=True)
        np.testing.assert_array_equal(run(x), want)
        team = _cpu.max_team()
        assert team == n if n > 1 else team <= 1, (name, n, team)


def _hammer(workloads, names):
    """PY_THREADS Python threads × RUNS runs of every named workload; returns (largest kernel
    team seen, mismatches against the serial results, exceptions)."""
    serial = {k: workloads[k][0](workloads[k][1]) for k in names}
    bad, errors = [], []
    start = threading.Barrier(PY_THREADS)

    def work():
        try:
            start.wait()
            for _ in range(RUNS):
                for k in names:
                    run, x = workloads[k]
                    if not np.array_equal(run(x), serial[k]):
                        bad.append(k)
        except BaseException as e:      # surfaced by the assertion below
            errors.append(e)

    _cpu.max_team(reset=True)
    threads = [threading.Thread(target=work) for _ in range(PY_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return _cpu.max_team(), bad, errors


SERVING = ("cnn", "lstm", "gemm")


def test_set_num_threads_limits_the_kernels_of_every_python_thread(workloads):
    qengine.set_num_threads(1)      # the README's server recipe: one kernel thread per request
    team, bad, errors = _hammer(workloads, SERVING)
    assert not errors, errors[:3]
    assert not bad, f"{len(bad)} results differ from serial runs: {sorted(set(bad))}"
    assert team <= 1, f"a kernel ran a team of {team} threads under set_num_threads(1)"


def test_threadpool_limits_limit_the_kernels_of_every_python_thread(workloads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    qengine.set_num_threads(2)
    info = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "qengine"]
    assert len(info) == 1 and info[0]["num_threads"] == 2, threadpoolctl.threadpool_info()
    assert info[0]["user_api"] == "openmp" and info[0]["version"] == qengine.__version__
    with threadpoolctl.threadpool_limits(1):
        assert qengine.get_num_threads() == 1
        team, bad, errors = _hammer(workloads, SERVING)
    assert qengine.get_num_threads() == 2                        # restored on exit
    assert not errors, errors[:3]
    assert not bad, f"{len(bad)} results differ from serial runs: {sorted(set(bad))}"
    assert team <= 1, f"a kernel ran a team of {team} threads under threadpool_limits(1)"
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert qengine.get_num_threads() == 1
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert qengine.get_num_threads() == 2


def _python(code, env=None, timeout=240):
    """Run `code` in a fresh interpreter (no OpenMP pool yet) importing this tree's qengine."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    prelude = textwrap.dedent("""
        import io, multiprocessing as mp, threading, numpy as np
        import qengine
        from qengine import functional as F
        from qengine._ext import _cpu
        rng = np.random.default_rng(0)
        w = F.pack_weights(rng.integers(-127, 128, (256, 256), dtype=np.int8))
        x = rng.standard_normal((64, 256)).astype(np.float32)
        scale = np.full(256, 0.01, np.float32)
        def gemm():   # threaded above 1 thread
            return F.linear_dynamic(x, w, scale)
        def threads_line():
            buf = io.StringIO()
            qengine.show_config(buf)
            return next(l for l in buf.getvalue().splitlines() if l.startswith("threads"))
    """)
    r = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_omp_num_threads_is_read_at_import_and_reaches_worker_threads():
    out = _python("""
        from concurrent.futures import ThreadPoolExecutor
        assert qengine.get_num_threads() == 3, qengine.get_num_threads()
        if _cpu.openmp_enabled():
            with ThreadPoolExecutor(2) as pool:
                _cpu.max_team(reset=True)
                list(pool.map(lambda _: gemm(), range(4)))
                assert _cpu.max_team() == 3, _cpu.max_team()
                qengine.set_num_threads(1)
                _cpu.max_team(reset=True)
                list(pool.map(lambda _: gemm(), range(4)))
                assert _cpu.max_team() <= 1, _cpu.max_team()
        print("ok")
    """, env={"OMP_NUM_THREADS": "3,1"})
    assert out.strip() == "ok"


FORK = """
    def child(q):
        try:
            _cpu.max_team(reset=True)
            same = bool(np.array_equal(gemm(), want))
            try:
                qengine.set_num_threads(2)
                refused = False
            except qengine.ConfigError:
                refused = True
            q.put((qengine.get_num_threads(), _cpu.fork_fallback(), _cpu.max_team(),
                   threads_line(), refused, same))
        except BaseException as e:
            q.put(repr(e))
    qengine.set_num_threads(2 if START_POOL else 1)   # 1: the reference runs serially, no pool
    want = gemm()
    qengine.set_num_threads(2)
    assert _cpu.pool_started() == START_POOL
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        raise SystemExit("forked child hung in OpenMP")
    print(repr(q.get(timeout=10)))
"""


def _fork(start_pool):
    got = ast.literal_eval(_python(f"START_POOL = {start_pool}\n" + textwrap.dedent(FORK)))
    assert isinstance(got, tuple), got          # else: the child's exception
    return got


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.skipif(not _cpu.openmp_enabled(), reason="serial build: nothing to fall back from")
def test_forked_child_keeps_the_setting_when_the_parent_had_no_openmp_pool():
    n, fallback, team, line, refused, same = _fork(False)
    assert (n, fallback, refused, same) == (2, False, False, True)
    assert team == 2, "the child's GEMM should run on the 2 threads it kept"
    assert line.split()[1:] == ["2"], line


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.skipif(not _cpu.openmp_enabled(), reason="serial build: nothing to fall back from")
def test_forked_child_falls_back_to_one_thread_after_the_parent_started_openmp():
    n, fallback, team, line, refused, same = _fork(True)
    assert (n, fallback, refused, same) == (1, True, True, True)
    assert team <= 1
    assert "fork fallback" in line, line


def test_set_num_threads_validates():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError):
            qengine.set_num_threads(bad)


def _gomp_env(extra):
    """libgomp's own report of its settings (OMP_DISPLAY_ENV) when `import qengine` loads it in
    a fresh process with `extra` in the environment, and whether GOMP_SPINCOUNT is left set."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(extra, OMP_DISPLAY_ENV="verbose")
    r = subprocess.run([sys.executable, "-c", "import os, qengine; "
                        "print(os.environ.get('GOMP_SPINCOUNT'))"],
                       env=env, capture_output=True, text=True, check=True)
    shown = {}
    for line in r.stderr.splitlines():
        k, sep, v = line.strip().partition(" = ")
        if sep:
            shown[k] = v.strip("'")
    if "GOMP_SPINCOUNT" not in shown:
        pytest.skip("the OpenMP runtime is not libgomp (or the build is serial)")
    return shown, r.stdout.strip()


def test_openmp_spin_is_bounded_unless_the_user_chose():
    """qengine sets GOMP_SPINCOUNT=1000 for libgomp's load only (a busy neighbour process made
    the default ~11 ms spin cost 300× on the 2-thread LSTM, bench/wait_policy.py), and leaves the
    user's OMP_WAIT_POLICY / GOMP_SPINCOUNT alone."""
    from qengine._runtime import SPINCOUNT_DEFAULT
    shown, left = _gomp_env({})
    assert shown["GOMP_SPINCOUNT"] == SPINCOUNT_DEFAULT and left == "None"
    shown, left = _gomp_env({"GOMP_SPINCOUNT": "77"})
    assert shown["GOMP_SPINCOUNT"] == "77" and left == "77"
    shown, _ = _gomp_env({"OMP_WAIT_POLICY": "active"})
    assert shown["OMP_WAIT_POLICY"] == "ACTIVE" and shown["GOMP_SPINCOUNT"] != SPINCOUNT_DEFAULT
