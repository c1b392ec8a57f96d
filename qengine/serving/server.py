"""`qengine serve`: an engine file behind HTTP and WebSocket, on Starlette + uvicorn.

Why these: Starlette is a small, well-kept ASGI toolkit (routing, JSON, WebSockets, lifespan)
with no validation framework to carry; uvicorn is the reference ASGI server, and handles
SIGINT / SIGTERM gracefully (stops accepting, lets in-flight requests finish, then runs the
lifespan shutdown, where the batcher finishes every chunk it accepted). Both are the optional
`serve` extra; nothing here is imported by the runtime.

Protocol (docs/serving.md):
  GET  /health          {"status": "ok", "model", "inputs", "outputs", "streaming"}
  GET  /metrics         Prometheus text: requests, refusals, errors, batches, batch sizes,
                        open streams, p50 / p99 of queue wait and latency
  POST /v1/run          {"inputs": {name: array}} → {"outputs": {name: array}}; one-shot
  WS   /v1/stream       (a streaming model) a stream per connection, its state kept by the
                        pool: send {"chunk": array} (or a binary frame: the chunk's float32
                        bytes, its one free dim inferred), {"reset": true}; receive
                        {"outputs": {...}, "step": n} or {"error": "..."}. Closing the
                        connection closes the stream.
An array is a nested list, or {"dtype", "shape", "b64"} (little-endian bytes, base64); replies
use the request's form (binary frames get b64). Errors: HTTP 400 with {"error"} for bad input,
413 for a body over 64 MiB, 503 {"error": "overloaded"} when the queue / in-flight limit is
reached.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np

from ..errors import QEngineError, ShapeError, UsageError
from .batcher import DynamicBatcher
from .pool import OverloadedError, StreamPool

_MAX_BODY = 64 << 20            # bytes of one HTTP request / WebSocket message


def decode_array(spec, where: str) -> np.ndarray:
    """A JSON array spec → ndarray (ShapeError naming `where` and what was expected)."""
    if isinstance(spec, dict):
        try:
            dtype = np.dtype(spec["dtype"])
            shape = tuple(int(d) for d in spec["shape"])
            raw = base64.b64decode(spec["b64"], validate=True)
        except (KeyError, TypeError, ValueError) as e:
            raise ShapeError(f"{where}: a binary array needs dtype, shape and b64 ({e})") from None
        if dtype.kind not in "fiub" or len(raw) != dtype.itemsize * int(np.prod(shape)):
            raise ShapeError(f"{where}: {len(raw)} bytes do not hold {dtype} {list(shape)}")
        return np.frombuffer(raw, dtype.newbyteorder("<")).reshape(shape)
    try:
        a = np.asarray(spec)
    except ValueError as e:            # ragged nested lists
        raise ShapeError(f"{where}: not a rectangular array ({e})") from None
    if a.dtype.kind not in "fiub":
        raise ShapeError(f"{where}: expected numbers, got {a.dtype}")
    return a


def encode_array(a: np.ndarray, binary: bool):
    a = np.asarray(a)
    if binary:
        le = a.astype(a.dtype.newbyteorder("<"), copy=False)
        return {"dtype": a.dtype.name, "shape": list(a.shape),
                "b64": base64.b64encode(np.ascontiguousarray(le).tobytes()).decode()}
    return a.tolist()


class _Metrics:
    def __init__(self):
        self.run_requests = self.run_refused = self.run_errors = 0
        self.run_latency: list[float] = []
        self.ws_connections = self.ws_errors = 0

    def prometheus(self, batcher: DynamicBatcher | None, pool: StreamPool | None) -> str:
        lines = []

        def metric(name, kind, help_, value, labels=""):
            if value is None:
                return
            lines.append(f"# HELP qengine_{name} {help_}")
            lines.append(f"# TYPE qengine_{name} {kind}")
            lines.append(f"qengine_{name}{labels} {value}")

        lat = np.array(self.run_latency[-4096:])
        metric("run_requests_total", "counter", "one-shot /v1/run requests", self.run_requests)
        metric("run_refused_total", "counter", "one-shot requests refused (overloaded)",
               self.run_refused)
        metric("run_errors_total", "counter", "one-shot requests with bad input", self.run_errors)
        for q in (50, 99):
            metric(f"run_latency_p{q}_ms", "gauge", f"p{q} of recent one-shot latencies",
                   round(float(np.percentile(lat, q)) * 1e3, 4) if lat.size else None)
        metric("ws_connections_total", "counter", "stream connections", self.ws_connections)
        metric("ws_errors_total", "counter", "stream messages refused", self.ws_errors)
        if batcher is not None:
            st = batcher.stats()
            metric("stream_chunks_total", "counter", "chunks submitted", st["requests"])
            metric("stream_refused_total", "counter", "chunks refused (queue full)",
                   st["refused"])
            metric("stream_batches_total", "counter", "batches run", st["batches"])
            metric("stream_queued", "gauge", "chunks waiting", st["queued"])
            metric("stream_mean_batch", "gauge", "mean streams per batch",
                   round(st["mean_batch"], 4))
            for q in (50, 99):
                for k in ("latency", "queue_wait"):
                    v = st[f"{k}_p{q}_ms"]
                    metric(f"stream_{k}_p{q}_ms", "gauge", f"p{q} of recent chunk {k}",
                           None if v is None else round(v, 4))
            lines.append("# HELP qengine_stream_batch_size batches by their number of streams")
            lines.append("# TYPE qengine_stream_batch_size counter")
            for size, n in st["batch_sizes"].items():
                lines.append(f'qengine_stream_batch_size{{size="{size}"}} {n}')
        if pool is not None:
            metric("open_streams", "gauge", "open streams", pool.open_streams)
        return "\n".join(lines) + "\n"


def detect_state(session) -> dict[str, str]:
    """{state input: output} by name: "<p>.h0" → "<p>.h_n" (from_torch_state_dict's stateful
    layers), "h0" → "hn" and "h0" → "h_n" (and c0)."""
    outs = set(session.output_names)
    found = {}
    for name in session.input_names:
        for suffix, nxt in (("h0", ("h_n", "hn")), ("c0", ("c_n", "cn"))):
            if name.endswith(suffix):
                for n in nxt:
                    cand = name[: -len(suffix)] + n
                    if cand in outs:
                        found[name] = cand
                        break
    return found


def create_app(session, *, state=None, max_batch: int = 32, max_wait_ms: float = 5.0,
               max_queue: int = 1024, max_streams: int = 1024, max_inflight: int = 64,
               idle_timeout: float | None = 600.0, batch_axis: int = 0,
               state_batch_axis: int = 1):
    """The ASGI app for `session` (streaming when `state` maps state inputs to outputs, or
    detect_state finds them)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    state = detect_state(session) if state is None else dict(state)
    pool = StreamPool(session, state, max_streams=max_streams, batch_axis=batch_axis,
                      state_batch_axis=state_batch_axis,
                      idle_timeout=idle_timeout) if state else None
    batcher_box: dict = {}
    metrics = _Metrics()
    inflight = [0]

    def error(status, msg):
        return JSONResponse({"error": " ".join(str(msg).split())}, status_code=status)

    async def health(request: Request):
        return JSONResponse({
            "status": "ok", "model": session.graph.name,
            "inputs": [{"name": v.name, "dtype": v.dtype, "shape": v.shape}
                       for v in session.inputs],
            "outputs": session.output_names, "streaming": pool is not None})

    async def metrics_endpoint(request: Request):
        return PlainTextResponse(metrics.prometheus(batcher_box.get("b"), pool))

    async def run(request: Request):
        metrics.run_requests += 1
        if inflight[0] >= max_inflight:
            metrics.run_refused += 1
            return error(503, "overloaded")
        inflight[0] += 1
        t0 = time.perf_counter()
        try:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > _MAX_BODY:    # refused before reading it
                return error(413, f"request of {declared} bytes (limit {_MAX_BODY})")
            body = await request.body()
            if len(body) > _MAX_BODY:
                return error(413, f"request of {len(body)} bytes (limit {_MAX_BODY})")
            try:
                msg = json.loads(body)
            except (ValueError, UnicodeDecodeError) as e:
                raise ShapeError(f"the body is not JSON ({e})") from None
            if not isinstance(msg, dict) or not isinstance(msg.get("inputs"), dict):
                raise ShapeError('expected {"inputs": {name: array, ...}}')
            binary = any(isinstance(v, dict) for v in msg["inputs"].values())
            feeds = {k: decode_array(v, f"input {k!r}") for k, v in msg["inputs"].items()}
            out = await run_in_threadpool(session.run, feeds)
            metrics.run_latency.append(time.perf_counter() - t0)
            del metrics.run_latency[:-4096]
            return JSONResponse({"outputs": {k: encode_array(v, binary) for k, v in out.items()}})
        except (QEngineError, ValueError, TypeError) as e:
            metrics.run_errors += 1
            return error(400, e)
        finally:
            inflight[0] -= 1

    async def stream(ws: WebSocket):
        await ws.accept()
        if pool is None:
            await ws.send_json({"error": "this model has no state inputs: use POST /v1/run"})
            await ws.close(code=1003)
            return
        metrics.ws_connections += 1
        try:
            sid = pool.open()
        except OverloadedError as e:
            await ws.send_json({"error": f"overloaded: {e}"})
            await ws.close(code=1013)
            return
        step = 0
        try:
            while True:
                m = await ws.receive()
                if m["type"] == "websocket.disconnect":
                    break
                try:
                    if m.get("bytes") is not None:
                        chunk, binary = _chunk_from_bytes(pool, m["bytes"]), True
                    else:
                        text = m.get("text") or ""
                        if len(text) > _MAX_BODY:
                            raise ShapeError(f"message of {len(text)} characters (limit)")
                        try:
                            msg = json.loads(text)
                        except ValueError as e:
                            raise ShapeError(f"the message is not JSON ({e})") from None
                        if isinstance(msg, dict) and msg.get("reset") is True:
                            pool.reset(sid)
                            step = 0
                            await ws.send_json({"reset": True})
                            continue
                        if not isinstance(msg, dict) or "chunk" not in msg:
                            raise ShapeError('expected {"chunk": array} or {"reset": true}')
                        binary = isinstance(msg["chunk"], dict)
                        chunk = decode_array(msg["chunk"], "chunk")
                    out = await batcher_box["b"].asubmit(sid, chunk)
                    step += 1
                    await ws.send_json({"outputs": {k: encode_array(v, binary)
                                                    for k, v in out.items()}, "step": step})
                except OverloadedError:
                    metrics.ws_errors += 1
                    await ws.send_json({"error": "overloaded"})
                except (QEngineError, ValueError, TypeError) as e:
                    metrics.ws_errors += 1
                    await ws.send_json({"error": " ".join(str(e).split())})
        except WebSocketDisconnect:
            pass
        finally:
            try:
                pool.close(sid)
            except UsageError:      # its chunk is still running: idle eviction frees it later
                pass

    async def evictor():
        while True:
            await asyncio.sleep(max(1.0, (idle_timeout or 60.0) / 4))
            pool.evict_idle()

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        task = None
        if pool is not None:
            batcher_box["b"] = DynamicBatcher(pool, max_batch=max_batch, max_wait_ms=max_wait_ms,
                                              max_queue=max_queue)
            if idle_timeout is not None:
                task = asyncio.create_task(evictor())
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            if "b" in batcher_box:              # finishes every chunk it accepted
                await run_in_threadpool(batcher_box["b"].close)

    routes = [Route("/health", health), Route("/metrics", metrics_endpoint),
              Route("/v1/run", run, methods=["POST"]), WebSocketRoute("/v1/stream", stream)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.pool = pool
    return app


def _chunk_from_bytes(pool: StreamPool, raw: bytes) -> np.ndarray:
    """A binary frame: the chunk's little-endian bytes in the model input's dtype; the one
    dim that is not static is inferred from the length."""
    shape, dtype = pool.chunk_shape, pool.chunk_dtype
    fixed = int(np.prod([d for d in shape if isinstance(d, int)]))
    free = [i for i, d in enumerate(shape) if not isinstance(d, int)]
    per = fixed * dtype.itemsize
    if len(free) > 1 or per == 0 or len(raw) % per:
        raise ShapeError(f"a binary chunk of {len(raw)} bytes does not fit "
                         f"{tuple(d if isinstance(d, int) else '?' for d in shape)} of {dtype}")
    dims = [d if isinstance(d, int) else len(raw) // per for d in shape]
    return np.frombuffer(raw, dtype.newbyteorder("<")).reshape(dims)


def serve(path, *, host: str = "127.0.0.1", port: int = 8000, threads: int | None = None,
          **options) -> None:
    """Load the engine file and serve it until SIGINT / SIGTERM."""
    try:
        import uvicorn
    except ImportError:
        raise UsageError("qengine serve needs the serve extra: pip install 'qengine[serve]'") \
            from None
    from .. import load, set_num_threads
    if threads:
        set_num_threads(threads)
    app = create_app(load(path), **options)
    # no permessage-deflate: the payloads are float arrays, which it barely shrinks, and it
    # took 15 % of the server's CPU in bench/serve_load.py
    uvicorn.run(app, host=host, port=port, log_level="warning", ws_max_size=_MAX_BODY,
                ws_per_message_deflate=False, timeout_graceful_shutdown=30)
