"""`qengine serve`: a real server process on loopback (uvicorn + Starlette), driven with httpx and
websockets. The oracle is the same engine file run in this process (one-shot), or each stream
run alone with its state passed by hand (streaming)."""
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import qengine

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
ws_sync = pytest.importorskip("websockets.sync.client")

from test_serving import _alone, _stream_graph, _streams  # noqa: E402


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model, *args):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qengine", "serve", str(model), "--port", str(self.port),
             "--threads", "1", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.returncode


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", qengine.QuantizationWarning)
        g = qengine.quantize_dynamic(_stream_graph(), qengine.DynamicQuantConfig(per_row=True))
    qengine.save(g, d / "stream.qe")
    return d / "stream.qe", qengine.Session(g)


@pytest.fixture(scope="module")
def server(models):
    s = Server(models[0], "--max-batch", "8", "--max-wait-ms", "10")
    yield s
    assert s.stop() in (0, -signal.SIGTERM)


def _b64(a):
    a = np.ascontiguousarray(a, "<f4")
    return {"dtype": "float32", "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}


def _unb64(d):
    return np.frombuffer(base64.b64decode(d["b64"]), d["dtype"]).reshape(d["shape"])


def test_health_and_one_shot_runs_equal_the_engine_here(server, models):
    h = httpx.get(server.url + "/health").json()
    assert h["status"] == "ok" and h["streaming"] is True
    assert [i["name"] for i in h["inputs"]] == ["x", "rnn.h0", "rnn.c0"]
    rng = np.random.default_rng(0)
    feeds = {"x": rng.random((3, 6, 8), np.float32),
             "rnn.h0": rng.random((2, 3, 128), np.float32) - 0.5,
             "rnn.c0": rng.random((2, 3, 128), np.float32) - 0.5}
    want = models[1].run(feeds)
    r = httpx.post(server.url + "/v1/run", json={"inputs": {k: _b64(v) for k, v in feeds.items()}})
    assert r.status_code == 200, r.text
    for k, v in r.json()["outputs"].items():
        np.testing.assert_array_equal(_unb64(v), want[k])
    r = httpx.post(server.url + "/v1/run", json={"inputs": {k: v.tolist() for k, v in feeds.items()}})
    for k, v in r.json()["outputs"].items():       # nested lists: JSON floats round-trip float32
        np.testing.assert_array_equal(np.asarray(v, np.float32), want[k])


@pytest.mark.parametrize("body,match", [
    (b"{not json", "not JSON"),
    (json.dumps({"x": 1}).encode(), "inputs"),
    (json.dumps({"inputs": {"x": [[1, 2], [3]]}}).encode(), "rectangular"),
    (json.dumps({"inputs": {"x": [[[0.0] * 9]]}}).encode(), "x"),
    (json.dumps({"inputs": {"x": {"dtype": "float32", "shape": [2], "b64": "AAAA"}}}).encode(),
     "do not hold"),
])
def test_bad_requests_get_400_with_a_reason(server, body, match):
    r = httpx.post(server.url + "/v1/run", content=body)
    assert r.status_code == 400 and match in r.json()["error"], r.text


def test_an_oversized_body_is_refused_unread(server):
    """A declared 1 TiB body: 413 at once, nothing read (a raw socket: httpx would refuse to
    send a Content-Length it does not hold)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"POST /v1/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1099511627776\r\n\r\n{}")
        reply = b""
        while b"limit" not in reply:            # headers and body may come in two pieces
            piece = s.recv(65536)
            if not piece:
                break
            reply += piece
    assert reply.startswith(b"HTTP/1.1 413") and b"limit" in reply, reply


def test_streams_over_websockets_equal_each_stream_alone(server, models):
    """4 concurrent clients, 3 chunks each (JSON b64 and binary frames): every output equals the
    stream run alone; the batcher did batch them; closing a connection frees its stream."""
    data = _streams(1, 4, [[5, 5, 5], [5, 3, 5]])
    want = [_alone(models[1], d) for d in data]
    got = [[None] * 3 for _ in data]
    barrier = threading.Barrier(len(data))

    def client(i):
        with ws_sync.connect(f"ws://127.0.0.1:{server.port}/v1/stream") as ws:
            barrier.wait()
            for k, x in enumerate(data[i]):
                if i % 2:
                    ws.send(np.ascontiguousarray(x, "<f4").tobytes())
                else:
                    ws.send(json.dumps({"chunk": _b64(x)}))
                m = json.loads(ws.recv())
                assert m["step"] == k + 1, m
                got[i][k] = _unb64(m["outputs"]["logits"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(data))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(len(data)):
        for k in range(3):
            np.testing.assert_array_equal(got[i][k], want[i][k][0])
    metrics = httpx.get(server.url + "/metrics").text
    assert "qengine_stream_chunks_total" in metrics and 'qengine_stream_batch_size{size="' in metrics
    sizes = [int(line.split('"')[1]) for line in metrics.splitlines()
             if line.startswith("qengine_stream_batch_size{")]
    assert max(sizes) > 1, metrics
    deadline = time.monotonic() + 10                # the server sees the disconnects
    while "qengine_open_streams 0" not in httpx.get(server.url + "/metrics").text:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_new_connection_starts_from_zero_state_and_bad_chunks_are_refused(server, models):
    x = _streams(2, 1, [[4]])[0][0]
    first = _alone(models[1], [x])[0][0]
    for _ in range(2):                              # the second client inherits nothing
        with ws_sync.connect(f"ws://127.0.0.1:{server.port}/v1/stream") as ws:
            ws.send(json.dumps({"chunk": x.tolist()}))
            np.testing.assert_array_equal(
                np.asarray(json.loads(ws.recv())["outputs"]["logits"], np.float32), first)
            ws.send(json.dumps({"chunk": np.zeros((4, 9)).tolist()}))
            assert "expected ('?', 8)" in json.loads(ws.recv())["error"]
            ws.send(b"\x00" * 7)
            assert "binary chunk of 7 bytes" in json.loads(ws.recv())["error"]
            ws.send("nonsense")
            assert "not JSON" in json.loads(ws.recv())["error"]
            ws.send(json.dumps({"reset": True}))
            assert json.loads(ws.recv()) == {"reset": True}
            ws.send(json.dumps({"chunk": x.tolist()}))  # still usable, state zero again
            m = json.loads(ws.recv())
            assert m["step"] == 1
            np.testing.assert_array_equal(np.asarray(m["outputs"]["logits"], np.float32), first)


def test_overload_is_answered_503_and_shutdown_finishes_in_flight_work(models):
    """--max-inflight 1: concurrent heavy one-shot requests get 503 "overloaded" beside 200s;
    SIGTERM while a request runs: it still completes, then the process ends."""
    s = Server(models[0], "--max-inflight", "1")
    try:
        rng = np.random.default_rng(3)
        feeds = {"x": _b64(rng.random((64, 200, 8), np.float32)),
                 "rnn.h0": _b64(np.zeros((2, 64, 128), np.float32)),
                 "rnn.c0": _b64(np.zeros((2, 64, 128), np.float32))}
        codes = []

        def post():
            r = httpx.post(s.url + "/v1/run", json={"inputs": feeds}, timeout=120)
            codes.append((r.status_code, r.json().get("error")))

        threads = [threading.Thread(target=post) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (200, None) in codes and (503, "overloaded") in codes, codes
        assert "qengine_run_refused_total" in httpx.get(s.url + "/metrics").text
        # graceful shutdown with a request in flight
        t = threading.Thread(target=post)
        codes.clear()
        t.start()
        time.sleep(0.3)
        s.proc.send_signal(signal.SIGTERM)
        t.join()
        assert codes == [(200, None)], codes
        # uvicorn re-raises the signal once its graceful shutdown is over
        assert s.proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        s.stop()


def test_serve_without_the_extra_says_what_to_install(models, monkeypatch):
    from qengine.serving import server
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(qengine.UsageError, match="serve extra"):
        server.serve(models[0])
    assert os.path.exists(models[0])
