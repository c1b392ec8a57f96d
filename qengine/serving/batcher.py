"""DynamicBatcher: chunks submitted one at a time, from any thread or an asyncio loop, run by a
StreamPool in batches.

A worker thread takes the oldest waiting chunk, then waits up to `max_wait_ms` for more, until
`max_batch` streams — or every open stream — are in hand; a stream with several chunks waiting
has them run in order, one per batch. The queue is bounded (`max_queue`): a chunk that does not
fit is refused at once with OverloadedError rather than left to wait without limit. close()
stops taking chunks, finishes every one already accepted, and joins the worker.
"""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from concurrent.futures import Future
from typing import Hashable

import numpy as np

from ..errors import ConfigError, UsageError
from .pool import OverloadedError, StreamPool

_LATENCIES_KEPT = 4096          # recent per-chunk latencies behind the p50 / p99 figures


class DynamicBatcher:
    """DynamicBatcher(pool, *, max_batch=32, max_wait_ms=5.0, max_queue=1024): see the module
    docstring. submit() / run() from threads, asubmit() from an asyncio loop; stats()."""

    def __init__(self, pool: StreamPool, *, max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 1024):
        if not isinstance(pool, StreamPool):
            raise ConfigError("DynamicBatcher needs a StreamPool")
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ConfigError("max_batch and max_queue must be ≥ 1 and max_wait_ms ≥ 0")
        self.pool, self.max_batch = pool, int(max_batch)
        self.max_wait, self.max_queue = max_wait_ms / 1e3, int(max_queue)
        self._cv = threading.Condition()
        self._queue: collections.deque = collections.deque()   # (stream, chunk, waiter, t0)
        self._closing = False
        self._stats = {"requests": 0, "refused": 0, "batches": 0, "failed": 0}
        self._batch_sizes = collections.Counter()
        self._latency = collections.deque(maxlen=_LATENCIES_KEPT)
        self._queue_wait = collections.deque(maxlen=_LATENCIES_KEPT)
        self._worker = threading.Thread(target=self._loop, name="qengine-batcher", daemon=True)
        self._worker.start()

    def submit(self, stream_id: Hashable, chunk) -> Future:
        """Queue one chunk of a stream; the Future's result is its outputs dict (StreamPool.step)."""
        fut: Future = Future()
        self._put(stream_id, chunk, _ThreadWaiter(fut))
        return fut

    async def asubmit(self, stream_id: Hashable, chunk) -> dict:
        """submit() for an asyncio loop: awaits the outputs without blocking the loop. The
        worker settles a batch's futures of one loop with one call_soon_threadsafe (one wake-up
        of the loop per batch, not one per chunk)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._put(stream_id, chunk, _LoopWaiter(loop, fut))
        return await fut

    def _put(self, stream_id, chunk, waiter):
        chunk = self.pool.check_chunk(chunk)        # a bad chunk fails its caller, not a batch
        with self._cv:
            if self._closing:
                raise UsageError("the batcher is closed")
            if len(self._queue) >= self.max_queue:
                self._stats["refused"] += 1
                raise OverloadedError(f"{len(self._queue)} chunks waiting (max_queue "
                                      f"{self.max_queue})")
            self._queue.append((stream_id, chunk, waiter, time.perf_counter()))
            self._stats["requests"] += 1
            self._cv.notify()

    def run(self, stream_id: Hashable, chunk, timeout: float | None = None) -> dict:
        """submit() and wait."""
        return self.submit(stream_id, chunk).result(timeout)

    def close(self) -> None:
        """Refuse new chunks, finish the accepted ones, stop the worker."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._worker.join()

    def stats(self) -> dict:
        """Counters and recent latencies (ms): requests, refused, batches, failed, queued,
        mean batch size, batch-size histogram, p50 / p99 of queue wait and of total latency."""
        with self._cv:
            lat, wait = np.array(self._latency), np.array(self._queue_wait)
            sizes = dict(sorted(self._batch_sizes.items()))
            out = dict(self._stats, queued=len(self._queue), batch_sizes=sizes)
        n = sum(sizes.values())
        out["mean_batch"] = sum(k * v for k, v in sizes.items()) / n if n else 0.0
        for name, arr in (("latency", lat), ("queue_wait", wait)):
            for q in (50, 99):
                out[f"{name}_p{q}_ms"] = float(np.percentile(arr, q)) * 1e3 if arr.size else None
        return out

    # ---- the worker ---------------------------------------------------------------------------
    def _take(self):
        """The next batch: the oldest chunk, then more until max_batch or max_wait, one chunk per
        stream (a stream's later chunks stay queued, in order)."""
        with self._cv:
            while not self._queue and not self._closing:
                self._cv.wait()
            if not self._queue:
                return None
            # waiting for company is pointless once every open stream has a chunk in hand
            deadline = self._queue[0][3] + self.max_wait
            while len(self._distinct()) < min(self.max_batch, self.pool.open_streams) \
                    and not self._closing:
                left = deadline - time.perf_counter()
                if left <= 0 or not self._cv.wait(left):
                    break
            batch, seen, keep = [], set(), collections.deque()
            while self._queue:
                item = self._queue.popleft()
                if len(batch) < self.max_batch and item[0] not in seen:
                    # a caller that gave up (a cancelled Future, e.g. an asyncio task
                    # cancelled while it awaited) is dropped; a running one cannot be cancelled
                    if item[2].start():
                        seen.add(item[0])
                        batch.append(item)
                else:
                    keep.append(item)
            self._queue = keep
            return batch

    def _distinct(self):
        return {item[0] for item in self._queue}

    def _loop(self):
        while True:
            batch = self._take()
            if batch is None:
                return
            gone = [b for b in batch if not self.pool.is_open(b[0])]
            _settle([(b[2], None, UsageError(f"stream {b[0]!r} is not open")) for b in gone])
            if gone:
                with self._cv:
                    self._stats["failed"] += len(gone)
            batch = [b for b in batch if self.pool.is_open(b[0])]   # closed while it waited
            if not batch:
                continue
            t_run = time.perf_counter()
            try:
                outs = self.pool._step([b[1] for b in batch], [b[0] for b in batch], checked=True)
                err = None
            except Exception as e:      # unexpected (inputs were checked at submit)
                outs, err = None, e
            t_end = time.perf_counter()
            with self._cv:
                self._stats["batches"] += 1
                self._batch_sizes[len(batch)] += 1
                self._stats["failed"] += len(batch) if outs is None else 0
                for b in batch:
                    self._queue_wait.append(t_run - b[3])
                    self._latency.append(t_end - b[3])
            _settle([(b[2], None if outs is None else outs[k], err)
                     for k, b in enumerate(batch)])


class _ThreadWaiter:
    """A concurrent.futures.Future's side of a queued chunk."""

    def __init__(self, fut: Future):
        self.fut = fut

    def start(self) -> bool:          # False: its caller cancelled it before it ran
        return self.fut.set_running_or_notify_cancel()


class _LoopWaiter:
    """An asyncio future's side of a queued chunk (settled on its own loop)."""

    def __init__(self, loop, fut):
        self.loop, self.fut = loop, fut

    def start(self) -> bool:
        return not self.fut.cancelled()


def _settle(results):
    """Set (waiter, value, error) results: thread futures directly, asyncio futures with one
    call into each loop."""
    loops: dict = {}
    for w, value, err in results:
        if isinstance(w, _LoopWaiter):
            loops.setdefault(w.loop, []).append((w.fut, value, err))
        elif err is not None:
            w.fut.set_exception(err)
        else:
            w.fut.set_result(value)
    for loop, items in loops.items():
        try:
            loop.call_soon_threadsafe(_settle_in_loop, items)
        except RuntimeError:          # the loop is closed: nobody is waiting any more
            pass


def _settle_in_loop(items):
    for fut, value, err in items:
        if not fut.done():            # cancelled while it ran: nobody to tell
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(value)
