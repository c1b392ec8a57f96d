"""Memory that stays flat, measured where tracemalloc cannot see: kernel scratch lives in per-thread
workspaces (include/qengine/qe_threads.h), reused across calls and freed when their thread ends,
so these tests read the process RSS (/proc/self); and a loaded engine holds its weights once
(the packed copy), not the file pages it packed them from as well (qengine.engine_file.load)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import qengine
from qengine._ext import _cpu
from qengine.tools.demo import load_demo
from qengine.tools.demo_cnn import load_cnn_demo

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the process RSS from /proc/self (Linux only)")
ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def demo_sessions():
    """The two sessions `qengine demo` runs (dynamic int8 LSTM, static int8 CNN); a call runs
    both on a batch (1 unless told: the demo's latency case)."""
    fp32, x, _, _ = load_demo()
    lstm = qengine.Session(qengine.quantize_dynamic(fp32))
    g, calib, xi, _ = load_cnn_demo()
    cfg = qengine.StaticQuantConfig(method="minmax", per_channel=True)
    cnn = qengine.Session(qengine.quantize_static(g, {"image": calib}, cfg))
    return lambda batch=1: (lstm.run({"x": x[:batch]}), cnn.run({"image": xi[:batch]}))


# The demo sessions and an RSS reader, for the checks that run in a process of their own: in the
# suite's process, libraries other tests imported (torch, OpenVINO, NNCF thread pools) may
# allocate during the window and be counted as qengine's
_CHILD_SETUP = """
import os, sys, threading, time, qengine
from qengine._ext import _cpu
from qengine.tools.demo import load_demo
from qengine.tools.demo_cnn import load_cnn_demo
fp32, x, _, _ = load_demo()
lstm = qengine.Session(qengine.quantize_dynamic(fp32))
g, calib, xi, _ = load_cnn_demo()
cfg = qengine.StaticQuantConfig(method="minmax", per_channel=True)
cnn = qengine.Session(qengine.quantize_static(g, {"image": calib}, cfg))
def demo(batch=1):
    lstm.run({"x": x[:batch]}), cnn.run({"image": xi[:batch]})
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
"""


def _child_rss_growth(body, *args):
    """Run _CHILD_SETUP + body in a fresh interpreter; the RSS growth (bytes) it prints."""
    out = subprocess.run([sys.executable, "-c", _CHILD_SETUP + textwrap.dedent(body),
                          *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


def test_10000_runs_of_the_demo_sessions_keep_rss_flat():
    grown = _child_rss_growth("""
        for _ in range(200):
            demo()
        before = rss()
        for _ in range(10_000):
            demo()
        print(rss() - before)
    """)
    assert grown < 1 * MiB, f"RSS grew {grown / 1024:.0f} KiB over 10 000 runs"


_THREAD_WAVES = """
    threads, batch, runs = (int(v) for v in sys.argv[1:4])
    def settled(mine, timeout=10.0):
        # a pthread key destructor runs as its thread ends, a moment after join() returned
        end = time.monotonic() + timeout
        while _cpu.workspace_bytes() != mine and time.monotonic() < end:
            time.sleep(0.01)
        assert _cpu.workspace_bytes() == mine, (_cpu.workspace_bytes(), mine)
    def wave(count):
        for _ in range(count):
            t = threading.Thread(target=lambda: [demo(batch) for _ in range(runs)])
            t.start()
            t.join()
    qengine.set_num_threads(threads)
    demo(batch)
    mine = _cpu.workspace_bytes()          # the main thread's (and its team's)
    assert mine > 0
    _cpu.max_team(reset=True)
    wave(20)
    if threads > 1 and _cpu.openmp_enabled():
        assert _cpu.max_team() == threads, _cpu.max_team()   # the OpenMP workers did run
    settled(mine)
    before = rss()
    wave(200)
    settled(mine)
    print(rss() - before)
"""


# batch 16 makes the LSTM step threaded (its OpenMP workers get scratch of their own)
@pytest.mark.parametrize("threads, batch, runs", [(1, 1, 20), (2, 16, 2)])
def test_threads_that_end_free_their_workspaces(threads, batch, runs):
    """A server spawning a thread per request: each thread's kernel scratch (and that of its
    OpenMP workers) is freed when it ends, so neither the workspaces nor the RSS accumulate.
    In a process of its own, as the 10 000-run check (in the suite's process a full run once
    counted 2.4 MiB of other libraries' allocations)."""
    grown = _child_rss_growth(_THREAD_WAVES, threads, batch, runs)
    assert grown < 1 * MiB, f"RSS grew {grown / 1024:.0f} KiB over 200 short-lived threads"


def test_workspaces_are_reused_not_reallocated(demo_sessions):
    demo_sessions()
    held = _cpu.workspace_bytes()
    for _ in range(50):
        demo_sessions()
    assert _cpu.workspace_bytes() == held


def _lstm_engine(path):
    """One LSTM layer (hidden 512) + a linear head, dynamic int8: 2.6 MB of int8 weights."""
    rng = np.random.default_rng(0)
    H, I = 512, 256
    sd = {"rnn.weight_ih_l0": rng.standard_normal((4 * H, I)) * 0.05,
          "rnn.weight_hh_l0": rng.standard_normal((4 * H, H)) * 0.05,
          "rnn.bias_ih_l0": rng.standard_normal(4 * H) * 0.05,
          "rnn.bias_hh_l0": rng.standard_normal(4 * H) * 0.05,
          "fc.weight": rng.standard_normal((1000, H)) * 0.05, "fc.bias": np.zeros(1000)}
    sd = {k: v.astype(np.float32) for k, v in sd.items()}
    g = qengine.from_torch_state_dict(sd, [("lstm", "rnn", {"batch_first": True}),
                                           ("linear", "fc", {})])
    qengine.save(qengine.quantize_dynamic(g), path)


LOAD_PROBE = """
    import gc, json, os, re, sys
    import numpy as np
    import qengine

    def file_rss(path):   # resident bytes of the engine file's mappings
        total, mine = 0, False
        with open("/proc/self/smaps") as f:
            for line in f:
                if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
                    mine = line.rstrip().endswith(" " + path)
                elif mine and line.startswith("Rss:"):
                    total += int(line.split()[1]) * 1024
        return total

    path = os.path.realpath(sys.argv[1])
    sess = qengine.load(path)
    gc.collect()
    after_load = file_rss(path)
    x = np.random.default_rng(1).standard_normal((1, 10, 256)).astype(np.float32)
    y = sess.run({"input": x})["output"]
    after_run = file_rss(path)
    same = bool(np.array_equal(qengine.Session(sess.graph).run({"input": x})["output"], y))
    packed = sum(getattr(getattr(op, "layer", None), "nbytes", 0) for op in sess._executor.ops)
    print(json.dumps({"after_load": after_load, "after_run": after_run, "same": same,
                      "packed": packed, "file": os.path.getsize(path)}))
"""


def test_a_loaded_engine_holds_its_weights_once(tmp_path):
    path = tmp_path / "lstm.qe"
    _lstm_engine(path)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(LOAD_PROBE), str(path)],
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    m = __import__("json").loads(r.stdout)
    assert m["packed"] > 2 * MiB and m["file"] > 2 * MiB, m
    # Packing read every int8 weight from the map; those pages are dropped after the ops were
    # built. What comes back at run time is what float code reads in place (the head's scales
    # and bias here: a few KiB).
    assert m["after_load"] <= 64 << 10, m
    assert m["after_run"] <= 64 << 10, m
    assert m["same"], "a second Session from session.graph must read the same weights"
