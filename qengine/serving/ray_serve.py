"""A Ray Serve deployment of a StreamPool: the pool and its DynamicBatcher live in a replica;
callers open a stream, send chunks (`await handle.step.remote(stream, chunk)`) and close it.

    from ray import serve
    from qengine.serving.ray_serve import stream_deployment
    handle = serve.run(stream_deployment(session, {"h0": "h_n", "c0": "c_n"}))
    sid = handle.open.remote().result()
    outputs = handle.step.remote(sid, chunk).result()

The Session travels to the replica as its engine file's bytes (Session pickling). A stream's
state lives in one replica, so this deployment runs one replica: Ray Serve's default router does
not send a key's calls to the same replica, and a pool per replica would split a stream's
state. Scale out with one deployment per group of streams (route by stream in the caller).
Ray is imported here only, when called.
"""
from __future__ import annotations

from typing import Mapping

from .batcher import DynamicBatcher
from .pool import StreamPool


def stream_deployment(session, state: Mapping[str, str], *, max_batch: int = 32,
                      max_wait_ms: float = 5.0, max_queue: int = 1024, name: str = "qengine-streams",
                      **pool_options):
    """A bound Ray Serve application serving `session`'s streams (see the module docstring)."""
    from ray import serve

    state = dict(state)

    @serve.deployment(name=name, num_replicas=1, max_ongoing_requests=max_queue)
    class StreamPoolDeployment:
        def __init__(self, session):
            self.pool = StreamPool(session, state, **pool_options)
            self.batcher = DynamicBatcher(self.pool, max_batch=max_batch,
                                          max_wait_ms=max_wait_ms, max_queue=max_queue)

        def open(self, stream_id=None):
            return self.pool.open(stream_id)

        def close(self, stream_id):
            self.pool.close(stream_id)

        def reset(self, stream_id):
            self.pool.reset(stream_id)

        async def step(self, stream_id, chunk):
            return await self.batcher.asubmit(stream_id, chunk)

        def stats(self):
            return self.batcher.stats()

    return StreamPoolDeployment.bind(session)
