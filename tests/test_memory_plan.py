"""The executor's memory plan: int8 ops write into the buffer they returned on the previous run
of the same thread, so a steady-state run allocates (almost) no activation memory, while the
arrays handed back to the caller are never reused."""
import threading
import tracemalloc
from pathlib import Path

import numpy as np

import qengine
from qengine.engine_file import load_graph, read_safetensors

DATA = Path(qengine.__file__).parent / "data"


def _session():
    g = load_graph(DATA / "demo_cnn_digits.qe")
    calib = read_safetensors(DATA / "digits_calib.safetensors")[0]["calib.x_u8"]
    q = qengine.quantize_static(g, {"image": calib[:, None].astype(np.float32) / 16})
    return qengine.Session(q)


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_steady_state_runs_allocate_almost_nothing():
    sess = _session()
    x = np.random.default_rng(0).random((256, 1, 8, 8)).astype(np.float32)
    cold = _peak(lambda: sess.run({"image": x}))
    for _ in range(2):
        sess.run({"image": x})
    warm = _peak(lambda: sess.run({"image": x}))
    out_bytes = 256 * 10 * 4
    # cold: every activation (256 images × up to 8×8×32 bytes per layer...) is allocated;
    # warm: the output array, Python objects and small copies of data-movement views only
    assert cold > 1_000_000, cold
    assert warm < out_bytes + 150_000, (cold, warm)


def test_returned_outputs_are_never_overwritten():
    sess = _session()
    rng = np.random.default_rng(1)
    a, b = (rng.random((8, 1, 8, 8)).astype(np.float32) for _ in range(2))
    ya = sess.run({"image": a})["logits"]
    ya_copy = ya.copy()
    yb = sess.run({"image": b})["logits"]
    np.testing.assert_array_equal(ya, ya_copy)
    assert not np.shares_memory(ya, yb)
    np.testing.assert_array_equal(sess.run({"image": a})["logits"], ya_copy)


def test_shape_changes_and_threads_keep_results_exact():
    sess = _session()
    rng = np.random.default_rng(2)
    inputs = [rng.random((n, 1, 8, 8)).astype(np.float32) for n in (3, 17, 3, 64, 1)]
    want = [qengine.Session(sess.graph).run({"image": x})["logits"] for x in inputs]
    for x, w in zip(inputs, want):                      # one thread, shapes changing
        np.testing.assert_array_equal(sess.run({"image": x})["logits"], w)
    got = {}

    def work(t):
        for k in range(3):
            for i, x in enumerate(inputs):
                got[(t, k, i)] = sess.run({"image": x})["logits"]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for (t, k, i), y in got.items():
        np.testing.assert_array_equal(y, want[i])
