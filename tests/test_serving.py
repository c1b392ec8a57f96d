"""Serving: StreamPool (per-stream state in a slab, batches of streams), DynamicBatcher (threads,
asyncio, overload, close), and Session pickling as engine bytes. The oracle for every stream is
the same Session run on that stream alone with its state passed in and out by hand."""
import asyncio
import pickle
import threading
import warnings

import numpy as np
import pytest

import qengine
from qengine import ConfigError, ModelError, ShapeError, UsageError
from qengine.engine_file import dumps, loads, read_safetensors
from qengine.frontends.torch_state_dict import from_torch_state_dict
from qengine.serving import DynamicBatcher, OverloadedError, StreamPool
from qengine.calibration import collect_stats
from qengine.calibration.registry import observer_from_dict
from qengine.tools.demo import demo_path
from qengine.tools.demo_cnn import load_cnn_demo

STATE = {"rnn.h0": "rnn.h_n", "rnn.c0": "rnn.c_n"}


def _stream_graph():
    """The demo's 2-layer LSTM (8 → 128) and its head on every step, stateful."""
    t, _ = read_safetensors(demo_path())
    sd = {k: v for k, v in t.items() if k.startswith(("rnn.", "fc."))}
    return from_torch_state_dict(sd, [("lstm", "rnn", {"batch_first": True, "stateful": True}),
                                      ("linear", "fc", {})], input_name="x", output_name="logits")


@pytest.fixture(scope="module")
def sessions():
    g = _stream_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qengine.QuantizationWarning)
        per_row = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(per_row=True))
        per_tensor = qengine.quantize_dynamic(g)
    return qengine.Session(g), qengine.Session(per_row), qengine.Session(per_tensor)


def _alone(sess, chunks):
    """One stream through `sess`, its state carried by hand: [(outputs, h, c)] per chunk."""
    h = np.zeros((2, 1, 128), np.float32)
    c = np.zeros((2, 1, 128), np.float32)
    out = []
    for x in chunks:
        r = sess.run({"x": x[None], "rnn.h0": h, "rnn.c0": c})
        h, c = r["rnn.h_n"], r["rnn.c_n"]
        out.append((r["logits"][0], h[:, 0], c[:, 0]))
    return out


def _streams(seed, n, lengths):
    rng = np.random.default_rng(seed)
    return [[rng.random((L, 8), np.float32) for L in lengths[i % len(lengths)]] for i in range(n)]


@pytest.mark.parametrize("which", [0, 1])        # the float graph and the per-row int8 graph
def test_batched_streams_equal_each_stream_alone(sessions, which):
    """6 streams, ragged chunk lengths, batched in changing company (all, pairs, alone):
    every output and state is bit-identical to the stream run alone."""
    sess = sessions[which]
    data = _streams(1, 6, [[5, 3, 7, 2], [5, 5, 7, 2], [3, 3, 1, 2]])
    want = [_alone(sess, d) for d in data]
    pool = StreamPool(sess, STATE, max_streams=8)
    ids = [pool.open() for _ in data]
    groupings = [[0, 1, 2, 3, 4, 5], [[0, 3], [1, 4], [2, 5]], [[5], [0, 1, 2, 3, 4]],
                 [[1, 2], [0], [3, 4, 5]]]
    for k, grouping in enumerate(groupings):
        for group in ([grouping] if isinstance(grouping[0], int) else grouping):
            outs = pool.step([data[i][k] for i in group], [ids[i] for i in group])
            for i, o in zip(group, outs):
                np.testing.assert_array_equal(o["logits"], want[i][k][0], err_msg=f"chunk {k}")
                snap = pool.snapshot(ids[i])
                np.testing.assert_array_equal(snap["rnn.h0"], want[i][k][1])
                np.testing.assert_array_equal(snap["rnn.c0"], want[i][k][2])


def test_int8_streams_track_the_float_model(sessions):
    fp32, int8, _ = sessions
    data = _streams(2, 3, [[20, 20]])
    pool = StreamPool(int8, STATE)
    ids = [pool.open() for _ in data]
    for k in range(2):
        outs = pool.step([d[k] for d in data], ids)
        for i, o in enumerate(outs):
            ref = _alone(fp32, data[i][:k + 1])[-1][0]
            err = np.linalg.norm(o["logits"] - ref) / np.linalg.norm(ref)
            assert err < 0.05, err


def test_per_tensor_activations_are_refused(sessions):
    with pytest.raises(ConfigError, match="per_row=True"):
        StreamPool(sessions[2], STATE)
    StreamPool(sessions[2], STATE, allow_batch_coupling=True)     # the user's choice


def test_stream_lifecycle(sessions):
    sess = sessions[1]
    pool = StreamPool(sess, STATE, max_streams=2, idle_timeout=60.0)
    x = np.random.default_rng(3).random((4, 8), np.float32)
    a = pool.open()
    b = pool.open("caller-key")
    with pytest.raises(OverloadedError, match="2 stream slots"):
        pool.open()
    with pytest.raises(UsageError, match="already open"):
        pool.open("caller-key")
    first = pool.step([x], [a])[0]
    snap = pool.snapshot(a)
    second = pool.step([x], [a])[0]
    assert not np.array_equal(first["logits"], second["logits"])     # the state moved on
    pool.restore(a, snap)
    np.testing.assert_array_equal(pool.step([x], [a])[0]["logits"], second["logits"])
    pool.reset(a)
    np.testing.assert_array_equal(pool.step([x], [a])[0]["logits"], first["logits"])
    pool.close(b)
    c = pool.open()                      # the freed slot, zeroed
    np.testing.assert_array_equal(pool.step([x], [c])[0]["logits"], first["logits"])
    # eviction: everything idle "an hour later", then a new stream fits again
    import time
    assert sorted(map(str, pool.evict_idle(time.monotonic() + 3600))) == sorted(map(str, [a, c]))
    assert pool.open_streams == 0
    with pytest.raises(UsageError, match="not open"):
        pool.step([x], [a])
    # bad input names what was expected
    d = pool.open()
    with pytest.raises(ShapeError, match=r"expected \('\?', 8\)"):
        pool.step([np.zeros((4, 9), np.float32)], [d])
    with pytest.raises(ShapeError, match="NaN"):
        pool.step([np.full((4, 8), np.nan, np.float32)], [d])
    with pytest.raises(UsageError, match="once per step"):
        pool.step([x, x], [d, d])
    with pytest.raises(ShapeError, match="snapshot"):
        pool.restore(d, {"rnn.h0": np.zeros((2, 128))})
    with pytest.raises(ConfigError, match="inputs are"):
        StreamPool(sess, {"h0": "h_n"})


def test_batcher_from_many_threads_batches_and_equals_alone(sessions):
    sess = sessions[1]
    data = _streams(4, 12, [[6, 6, 6]])
    want = [_alone(sess, d) for d in data]
    pool = StreamPool(sess, STATE)
    ids = [pool.open() for _ in data]
    batcher = DynamicBatcher(pool, max_batch=8, max_wait_ms=20)
    got = [[None] * 3 for _ in data]
    barrier = threading.Barrier(len(data))

    def client(i):
        barrier.wait()
        for k in range(3):
            got[i][k] = batcher.run(ids[i], data[i][k], timeout=60)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(data))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    for i in range(len(data)):
        for k in range(3):
            np.testing.assert_array_equal(got[i][k]["logits"], want[i][k][0])
    st = batcher.stats()
    assert st["requests"] == 36 and st["failed"] == 0 and st["queued"] == 0
    assert max(st["batch_sizes"]) > 1 and max(st["batch_sizes"]) <= 8, st["batch_sizes"]
    assert st["latency_p99_ms"] >= st["latency_p50_ms"] > 0


def test_batcher_keeps_a_streams_chunks_in_order_and_serves_asyncio(sessions):
    sess = sessions[1]
    data = _streams(5, 2, [[3, 4, 5]])
    want = [_alone(sess, d) for d in data]
    pool = StreamPool(sess, STATE)
    ids = [pool.open() for _ in data]
    batcher = DynamicBatcher(pool, max_batch=4, max_wait_ms=5)

    async def main():     # every chunk of both streams submitted at once
        return await asyncio.gather(*[batcher.asubmit(ids[i], data[i][k])
                                      for k in range(3) for i in range(2)])

    outs = asyncio.run(main())
    batcher.close()
    for n, o in enumerate(outs):
        k, i = divmod(n, 2)
        np.testing.assert_array_equal(o["logits"], want[i][k][0])
    assert batcher.stats()["batches"] >= 3        # one chunk per stream per batch


def test_batcher_overload_bad_input_and_close(sessions):
    pool = StreamPool(sessions[1], STATE)
    a = pool.open()
    batcher = DynamicBatcher(pool, max_batch=1, max_wait_ms=0, max_queue=2)
    x = np.random.default_rng(6).random((50, 8), np.float32)
    futures, refused = [], 0
    for _ in range(40):
        try:
            futures.append(batcher.submit(a, x))
        except OverloadedError:
            refused += 1
    assert refused > 0 and batcher.stats()["refused"] == refused
    with pytest.raises(ShapeError, match="expected"):
        batcher.submit(a, np.zeros((3, 2), np.float32))       # the caller's error, at once
    batcher.close()                                             # finishes what it accepted
    assert all(f.done() and f.exception() is None for f in futures)
    with pytest.raises(UsageError, match="closed"):
        batcher.submit(a, x)


def test_a_session_pickles_as_its_engine_bytes(sessions, tmp_path):
    for sess in (sessions[1], qengine.load(str(demo_path().with_name("demo_cnn_digits.qe")))):
        back = pickle.loads(pickle.dumps(sess))
        assert isinstance(back, qengine.Session) and back.nan == sess.nan
        feeds = {v.name: np.random.default_rng(7).random(
            [2 if isinstance(d, str) else d for d in v.shape], np.float32)
            for v in sess.inputs}
        a, b = sess.run(feeds), back.run(feeds)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    data = dumps(sessions[1].graph)
    qengine.save(sessions[1].graph, tmp_path / "m.qe")
    assert (tmp_path / "m.qe").read_bytes() == data
    with pytest.raises(ModelError, match="engine bytes"):
        loads(data[:-7])                                       # truncated
    with pytest.raises(ModelError, match="bytes of an engine file"):
        loads("not bytes")


def _classify(session, part):
    """map_partitions body: a list of (batch, x) → [(batch, logits argmax)] on the worker."""
    return [(b, session.run({"image": x})[session.output_names[0]].argmax(1)) for b, x in part]


def _shard_stats(graph, images, method):
    from qengine.calibration import collect_stats
    return {k: v.to_dict() for k, v in collect_stats(graph, [{"image": images}], method=method).items()}


def test_dask_map_partitions_on_a_local_cluster():
    """The CNN engine ships to a LocalCluster's worker processes as its engine bytes (Session
    pickling) and classifies batches there, equal to running them here; calibration sharded
    over the workers and merged gives the observers and qparams of one pass."""
    distributed = pytest.importorskip("distributed")
    import dask.bag as db
    sess = qengine.load(str(demo_path().with_name("demo_cnn_digits.qe")))
    rng = np.random.default_rng(8)
    batches = [(i, rng.random((5, 1, 8, 8), np.float32)) for i in range(6)]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        got = db.from_sequence(batches, npartitions=3).map_partitions(
            lambda part, s: _classify(s, part), sess).compute(scheduler=client)
        pids = set(client.run(lambda: __import__("os").getpid()).values())
        # calibration sharded over the workers: statistics per shard (sent back as the
        # observers' JSON dicts), merged here, equal one pass over all the data
        g, calib, _, _ = load_cnn_demo()
        shards = [calib[i::3] for i in range(3)]
        for method in ("minmax", "entropy", "percentile"):
            parts = client.gather(client.map(_shard_stats, [g] * 3, shards, [method] * 3))
            merged = {k: observer_from_dict(v) for k, v in parts[0].items()}
            for part in parts[1:]:
                for k, v in part.items():
                    merged[k].merge(observer_from_dict(v))
            one = collect_stats(g, [{"image": s} for s in shards], method=method)
            assert merged.keys() == one.keys()
            for k, obs in one.items():
                assert merged[k].to_dict() == obs.to_dict(), (method, k)
                qm, qo = merged[k].qparams(), obs.qparams()
                np.testing.assert_array_equal(qm.scale, qo.scale)
                np.testing.assert_array_equal(qm.zero_point, qo.zero_point)
    want = _classify(sess, batches)
    assert [b for b, _ in got] == [b for b, _ in want]
    for (_, g), (_, w) in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert len(pids) == 2 and __import__("os").getpid() not in pids


def test_batcher_does_not_wait_for_streams_that_cannot_come(sessions):
    """Once every open stream has a chunk waiting, the batch runs: no stream is left waiting the
    whole max_wait (a minute here) for company that does not exist."""
    pool = StreamPool(sessions[1], STATE)
    ids = [pool.open() for _ in range(3)]
    batcher = DynamicBatcher(pool, max_batch=8, max_wait_ms=60_000)
    x = np.random.default_rng(9).random((4, 8), np.float32)
    futures = [batcher.submit(i, x) for i in ids]
    for f in futures:
        f.result(timeout=30)
    batcher.close()
    assert batcher.stats()["batch_sizes"] == {3: 1}


class _Classify:
    """A Ray Data map_batches UDF holding the engine (shipped as engine bytes)."""

    def __init__(self, session):
        self.session = session

    def __call__(self, batch):
        out = self.session.run({"image": np.stack(batch["image"])})
        return {"i": batch["i"], "pred": out[self.session.output_names[0]].argmax(1)}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    import sys
    from ray import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import tests/
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def test_ray_data_map_batches_and_a_ray_serve_stream_pool(ray_local, sessions):
    """Ray Data classifies batches with the CNN engine in a worker (equal to running here); a
    Ray Serve deployment of the StreamPool serves 3 streams, each output equal to the stream
    run alone."""
    from ray import serve
    from qengine.serving.ray_serve import stream_deployment
    cnn = qengine.load(str(demo_path().with_name("demo_cnn_digits.qe")))
    x = np.random.default_rng(10).random((20, 1, 8, 8), np.float32)
    ds = ray_local.data.from_items([{"i": i, "image": x[i]} for i in range(len(x))])
    rows = ds.map_batches(_Classify, fn_constructor_args=(cnn,), batch_size=6,
                          concurrency=1).take_all()
    want = _classify(cnn, [(0, x)])[0][1]
    got = np.zeros(len(x), np.int64)
    for r in rows:
        got[r["i"]] = r["pred"]
    np.testing.assert_array_equal(got, want)

    sess = sessions[1]
    data = _streams(11, 3, [[4, 6], [4, 4]])
    expect = [_alone(sess, d) for d in data]
    handle = serve.run(stream_deployment(sess, STATE, max_batch=4, max_wait_ms=20),
                       name="qengine-test", route_prefix=None)
    try:
        ids = [handle.open.remote().result() for _ in data]
        for k in range(2):
            pending = [handle.step.remote(ids[i], data[i][k]) for i in range(len(data))]
            for i, p in enumerate(pending):
                np.testing.assert_array_equal(p.result()["logits"], expect[i][k][0])
        for i in ids:
            handle.close.remote(i).result()
        assert handle.stats.remote().result()["requests"] == 6
    finally:
        serve.shutdown()


def test_a_cancelled_chunk_is_dropped_and_the_batcher_goes_on(sessions):
    pool = StreamPool(sessions[1], STATE)
    a, b = pool.open(), pool.open()
    batcher = DynamicBatcher(pool, max_batch=4, max_wait_ms=60_000)
    x = np.random.default_rng(12).random((4, 8), np.float32)
    gone = batcher.submit(a, x)            # waits for b's chunk (max_wait is a minute)
    assert gone.cancel()                   # its caller gave up before it ran
    kept = batcher.submit(b, x)
    np.testing.assert_array_equal(kept.result(timeout=30)["logits"],
                                  _alone(sessions[1], [x])[0][0])
    snap = pool.snapshot(a)                # a's state never moved
    assert not snap["rnn.h0"].any() and not snap["rnn.c0"].any()
    pool.close(b)                          # (else a would wait for b, open and idle)
    np.testing.assert_array_equal(batcher.run(a, x, timeout=30)["logits"],
                                  _alone(sessions[1], [x])[0][0])
    batcher.close()
