"""Load test: N concurrent streams of the demo-size LSTM over WebSockets on loopback, qengine serve
against the same model served by ONNX Runtime the sherpa-onnx way (each connection keeps its
own state arrays; a batch concatenates them and splits the result), dynamic batching on and off.

    python bench/serve_load.py [--streams 64] [--seconds 10] [--threads 1] [--json PATH]

The model: the demo's 2-layer LSTM (8 → 128) with its head on every step, streaming (h0 / c0 in,
h_n / c_n out). qengine serves it dynamic int8 with per-row activations (so batching never
changes a stream's outputs); ONNX Runtime serves torch's ONNX export of the same weights,
quantize_dynamic'd (QInt8, after quant_pre_process). A chunk is 8 frames × 8 features; a frame
is 10 ms, so a chunk is 80 ms of signal. A third server, `null`, is the ONNX Runtime app with no
engine behind it (zeros returned at once): the most chunks per second this HTTP / WebSocket stack
and batching carry on the machine, whatever the engine.

Two modes per server, each `--seconds` long after a 1 s warm-up:
  paced   every stream sends a chunk every 80 ms (staggered), as a live source would; per-chunk
          latency (send → reply) p50 / p99, and the chunks answered per second;
  closed  every stream sends its next chunk as soon as the last reply arrives: the most chunks
          per second the server sustains, and RTF = wall time / seconds of signal processed
          (summed over streams).
Each server runs with `--threads` kernel threads in its own process; the clients (asyncio, one
task per stream) run in this process. Everything stays on 127.0.0.1 and ends after a bounded
time. Needs torch, onnx, onnxruntime and the serve extra (starlette, uvicorn, websockets).
"""
import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import ort_session  # noqa: E402

FRAME_MS, CHUNK_FRAMES, FEATURES, HIDDEN, LAYERS = 10, 8, 8, 128, 2


# ---- the models -------------------------------------------------------------------------------
def build_models(d: Path):
    import torch
    import qengine
    from qengine.engine_file import read_safetensors
    from qengine.frontends.torch_state_dict import from_torch_state_dict
    from qengine.tools.demo import demo_path
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    sd, _ = read_safetensors(demo_path())
    sd = {k: np.asarray(v) for k, v in sd.items() if k.startswith(("rnn.", "fc."))}
    g = from_torch_state_dict(sd, [("lstm", "rnn", {"batch_first": True, "stateful": True}),
                                   ("linear", "fc", {})], input_name="x", output_name="logits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = qengine.quantize_dynamic(g, qengine.DynamicQuantConfig(per_row=True))
    qengine.save(q, d / "stream.qe")

    class Stream(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(FEATURES, HIDDEN, LAYERS, batch_first=True)
            self.fc = torch.nn.Linear(HIDDEN, 10)

        def forward(self, x, h0, c0):
            y, (h, c) = self.rnn(x, (h0, c0))
            return self.fc(y), h, c

    m = Stream().eval()
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()})
    args = (torch.zeros(1, CHUNK_FRAMES, FEATURES), torch.zeros(LAYERS, 1, HIDDEN),
            torch.zeros(LAYERS, 1, HIDDEN))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, args, str(d / "fp32.onnx"), input_names=["x", "h0", "c0"],
                          output_names=["logits", "hn", "cn"], opset_version=17, dynamo=False,
                          dynamic_axes={"x": {0: "b", 1: "t"}, "h0": {1: "b"}, "c0": {1: "b"},
                                        "logits": {0: "b", 1: "t"}, "hn": {1: "b"},
                                        "cn": {1: "b"}})
        quant_pre_process(str(d / "fp32.onnx"), str(d / "pre.onnx"), skip_symbolic_shape=True)
        quantize_dynamic(str(d / "pre.onnx"), str(d / "int8.onnx"), weight_type=QuantType.QInt8)
    return d / "stream.qe", d / "int8.onnx"


# ---- ONNX Runtime, served the sherpa-onnx way ---------------------------------------------------
class _NullSession:
    """No engine: zeros of the model's output shapes, the state passed through. Served by the
    same app, it measures what the HTTP / WebSocket stack and the batching cost per chunk, the
    ceiling of any engine behind them."""
    def run(self, _, feeds):
        x = feeds["x"]
        return np.zeros((*x.shape[:2], 10), np.float32), feeds["h0"], feeds["c0"]


def ort_app(model, threads, max_batch, max_wait_ms):
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Route, WebSocketRoute
    from starlette.responses import JSONResponse
    sess = _NullSession() if model == "null" else ort_session(str(model), threads)
    queue: asyncio.Queue = asyncio.Queue()

    async def batches():
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + max_wait_ms / 1e3
            while len(batch) < max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:
                    break
            # every stream's state concatenated into the batch, the results split back
            feeds = {"x": np.stack([b[0] for b in batch]),
                     "h0": np.concatenate([b[1]["h"] for b in batch], axis=1),
                     "c0": np.concatenate([b[1]["c"] for b in batch], axis=1)}
            logits, hn, cn = await run_in_threadpool(sess.run, None, feeds)
            for i, (_, st, fut) in enumerate(batch):
                st["h"], st["c"] = hn[:, i:i + 1].copy(), cn[:, i:i + 1].copy()
                fut.set_result(logits[i])

    async def stream(ws):
        await ws.accept()
        st = {"h": np.zeros((LAYERS, 1, HIDDEN), np.float32),
              "c": np.zeros((LAYERS, 1, HIDDEN), np.float32)}
        step = 0
        try:
            while True:
                raw = await ws.receive_bytes()
                x = np.frombuffer(raw, "<f4").reshape(-1, FEATURES)
                fut = asyncio.get_running_loop().create_future()
                await queue.put((x, st, fut))
                y = await fut
                step += 1
                await ws.send_text(json.dumps({"outputs": {"logits": {
                    "dtype": "float32", "shape": list(y.shape),
                    "b64": base64.b64encode(np.ascontiguousarray(y).tobytes()).decode()}},
                    "step": step}))
        except Exception:
            pass

    async def health(request):
        return JSONResponse({"status": "ok"})

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batches())
        yield
        task.cancel()

    return Starlette(routes=[Route("/health", health), WebSocketRoute("/v1/stream", stream)],
                     lifespan=lifespan)


# ---- servers and clients ------------------------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind, model, threads, max_batch, max_wait_ms):
    import httpx
    port = _free_port()
    if kind == "qengine":
        cmd = [sys.executable, "-m", "qengine", "serve", str(model), "--port", str(port),
               "--threads", str(threads), "--max-batch", str(max_batch),
               "--max-wait-ms", str(max_wait_ms)]
    else:
        cmd = [sys.executable, __file__, "--ort-server", str(model), "--port", str(port),
               "--threads", str(threads), "--max-batch", str(max_batch),
               "--max-wait-ms", str(max_wait_ms)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start")


async def _client(port, mode, chunks, t_start, t_stop, lat, offset):
    import websockets
    chunk_s = CHUNK_FRAMES * FRAME_MS / 1e3
    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/stream", max_size=None) as ws:
        k, next_t = 0, t_start + offset
        while True:
            now = time.perf_counter()
            if mode == "paced":
                if next_t > now:
                    await asyncio.sleep(next_t - now)
                next_t += chunk_s
            if time.perf_counter() >= t_stop:
                return
            t0 = time.perf_counter()
            await ws.send(chunks[k % len(chunks)].tobytes())
            reply = json.loads(await ws.recv())
            if "outputs" not in reply:
                raise RuntimeError(f"server error: {reply}")
            if t0 >= t_start + 1.0:                  # after the warm-up second
                lat.append(time.perf_counter() - t0)
            k += 1


async def load(port, mode, streams, seconds):
    rng = np.random.default_rng(0)
    chunks = [rng.random((CHUNK_FRAMES, FEATURES), np.float32).astype("<f4") for _ in range(16)]
    chunk_s = CHUNK_FRAMES * FRAME_MS / 1e3
    lat: list = []
    t_start = time.perf_counter() + 0.5
    t_stop = t_start + 1.0 + seconds
    await asyncio.gather(*[_client(port, mode, chunks, t_start, t_stop, lat,
                                   chunk_s * i / streams) for i in range(streams)])
    n = len(lat)
    lat_ms = np.array(lat) * 1e3
    return {"chunks": n, "chunks_per_s": n / seconds,
            "p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99)),
            "rtf": seconds / (n * chunk_s) if n and mode == "closed" else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--modes", default="paced,closed")
    ap.add_argument("--engines", default="qengine,ort,null",
                    help="null: the ORT app without an engine (the stack's own ceiling)")
    ap.add_argument("--json")
    ap.add_argument("--ort-server", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.ort_server:
        import uvicorn
        uvicorn.run(ort_app(a.ort_server, a.threads, a.max_batch, a.max_wait_ms),
                    host="127.0.0.1", port=a.port, log_level="warning",
                    ws_per_message_deflate=False)       # as qengine serve
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="qengine-serve-load-") as d:
        qe_model, ort_model = build_models(Path(d))
        print(f"# {a.streams} streams, chunk {CHUNK_FRAMES} frames × {FRAME_MS} ms, "
              f"{a.seconds:g} s per mode, server threads {a.threads}, load "
              f"{os.getloadavg()[0]:.2f}")
        print(f"{'server':<22} {'batching':<16} {'mode':<7} {'chunks/s':>9} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'RTF':>8}")
        for kind in a.engines.split(","):
            model = {"qengine": qe_model, "null": "null"}.get(kind, ort_model)
            for batch in (a.max_batch, 1):
                proc, port = start_server(kind, model, a.threads, batch, a.max_wait_ms)
                try:
                    for mode in a.modes.split(","):
                        r = asyncio.run(load(port, mode, a.streams, a.seconds))
                        label = f"max {batch}, {a.max_wait_ms:g} ms" if batch > 1 else "off"
                        rows.append(dict(server=kind, max_batch=batch, mode=mode, **r))
                        print(f"{kind:<22} {label:<16} {mode:<7} {r['chunks_per_s']:9.1f} "
                              f"{r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
                              f"{'-' if r['rtf'] is None else format(r['rtf'], '8.4f'):>8}",
                              flush=True)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
    if a.json:
        Path(a.json).write_text(json.dumps({"streams": a.streams, "seconds": a.seconds,
                                            "threads": a.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
