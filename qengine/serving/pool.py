"""StreamPool: many streams through one recurrent model, each stream's state kept by the pool.

A streaming model is a graph whose recurrent state goes in and comes out as tensors (h0 / c0 →
h_n / c_n, e.g. `from_torch_state_dict(..., stateful=True)`). The pool keeps every open stream's
state in one preallocated slab per state tensor, indexed by the stream's slot, and runs the
chunks of several streams as one batch: their states are gathered from the slab into the batch
(one vectorized take per state tensor) and the new states scattered back (one put), instead of
a list of per-stream arrays concatenated and split on every call.

Batch invariance: a stream's outputs do not depend on which streams share its batch when every
op of the model treats batch rows independently. Dynamic int8 layers do once they quantize
activations per row (`DynamicQuantConfig(per_row=True)`): the pool refuses a graph whose
dynamic layers quantize per tensor (one scale for the whole batch would couple the streams)
unless `allow_batch_coupling=True`. Chunks of different lengths run as separate batches, one
per length, so no stream's state ever sees padding.
"""
from __future__ import annotations

import threading
import time
from typing import Hashable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, QEngineError, ShapeError, UsageError

# graph ops whose per_row attribute decides whether batch rows share quantization parameters
_PER_ROW_OPS = frozenset({"DynamicQuantLSTM", "DynamicQuantGRU", "DynamicQuantLinear"})


class OverloadedError(QEngineError):
    """No room: every stream slot is taken, or a batcher's queue is full. Retry later."""


class StreamPool:
    """StreamPool(session, state={"h0": "h_n", "c0": "c_n"}, *, max_streams=1024,
    batch_axis=0, state_batch_axis=1, idle_timeout=None, allow_batch_coupling=False)

    session: a Session (or Graph) of a streaming model. state maps each state input to the
    output that carries its next value. The remaining input is the chunk (batch axis
    `batch_axis`, the same for every non-state output); state tensors have their batch on
    `state_batch_axis` (PyTorch / ONNX LSTM layout: [layers·directions, batch, hidden]) and a
    static shape otherwise. A new or reset stream starts from zeros. `idle_timeout` (seconds):
    `evict_idle()` — and `open()` when the pool is full — close streams idle that long.

    Thread-safe: step() may be called from several threads on disjoint streams at once."""

    def __init__(self, session, state: Mapping[str, str], *, max_streams: int = 1024,
                 batch_axis: int = 0, state_batch_axis: int = 1, idle_timeout: float | None = None,
                 allow_batch_coupling: bool = False):
        from ..session import Session
        if not isinstance(session, Session):
            session = Session(session)
        self.session = session
        if not isinstance(state, Mapping) or not state:
            raise ConfigError("state must map each state input to its output, e.g. "
                              "{'h0': 'h_n', 'c0': 'c_n'}")
        ins = {v.name: v for v in session.inputs}
        outs = {v.name: v for v in session.outputs}
        for i, o in state.items():
            if i not in ins or o not in outs:
                raise ConfigError(f"state {i!r} -> {o!r}: the model's inputs are {sorted(ins)} "
                                  f"and its outputs {sorted(outs)}")
        rest = [n for n in ins if n not in state]
        if len(rest) != 1:
            raise ConfigError(f"a streaming model needs exactly one input besides the state, "
                              f"got {rest}")
        if not isinstance(max_streams, int) or max_streams < 1:
            raise ConfigError(f"max_streams must be a positive int, got {max_streams!r}")
        if not allow_batch_coupling:
            coupled = [n.name for n in session.graph.nodes
                       if n.op_type in _PER_ROW_OPS and not n.attrs.get("per_row", 0)]
            if coupled:
                raise ConfigError(
                    f"nodes {coupled} quantize activations per tensor, so a stream's outputs "
                    f"would depend on the streams batched with it; quantize with "
                    f"DynamicQuantConfig(per_row=True) (or pass allow_batch_coupling=True)")
        self.input, self.state = rest[0], dict(state)
        info = ins[self.input]
        if info.shape is None or not -len(info.shape) <= batch_axis < len(info.shape):
            raise ConfigError(f"input {self.input!r}: shape {info.shape} has no batch axis "
                              f"{batch_axis}")
        chunk_shape = list(info.shape)
        del chunk_shape[batch_axis]
        # a chunk: the model input without its batch axis (str dims are free)
        self.chunk_shape, self.chunk_dtype = tuple(chunk_shape), np.dtype(info.dtype)
        self.outputs = [n for n in outs if n not in set(state.values())]
        self.batch_axis, self.state_batch_axis = batch_axis, state_batch_axis
        self.max_streams, self.idle_timeout = max_streams, idle_timeout
        self._slabs = {}
        for name in state:
            shape = ins[name].shape
            if shape is None or not -len(shape) <= state_batch_axis < len(shape):
                raise ConfigError(f"state {name!r}: shape {shape} has no batch axis "
                                  f"{state_batch_axis}")
            per = list(shape)
            del per[state_batch_axis]
            if not all(isinstance(d, int) for d in per):
                raise ConfigError(f"state {name!r}: every dim but the batch must be static to "
                                  f"preallocate the slab, got {shape}")
            self._slabs[name] = np.zeros((max_streams, *per), np.dtype(ins[name].dtype))
        self._lock = threading.Lock()
        self._slot: dict[Hashable, int] = {}
        self._free = list(range(max_streams - 1, -1, -1))
        self._last = np.zeros(max_streams)
        self._busy: set = set()
        self._next_id = 0

    # ---- streams ------------------------------------------------------------------------------
    def open(self, stream_id: Hashable | None = None) -> Hashable:
        """Open a stream (state zero) and return its id (a new int when none is given)."""
        with self._lock:
            if stream_id is None:
                while self._next_id in self._slot:
                    self._next_id += 1
                stream_id, self._next_id = self._next_id, self._next_id + 1
            if stream_id in self._slot:
                raise UsageError(f"stream {stream_id!r} is already open")
            if not self._free and self.idle_timeout is not None:
                self._evict_locked(time.monotonic())
            if not self._free:
                raise OverloadedError(f"all {self.max_streams} stream slots are in use")
            s = self._free.pop()
            for slab in self._slabs.values():
                slab[s] = 0
            self._slot[stream_id] = s
            self._last[s] = time.monotonic()
            return stream_id

    def close(self, stream_id: Hashable) -> None:
        with self._lock:
            s = self._slot_of(stream_id)
            if stream_id in self._busy:
                raise UsageError(f"stream {stream_id!r} is running a step")
            del self._slot[stream_id]
            self._free.append(s)

    def reset(self, stream_id: Hashable) -> None:
        """Back to the zero state."""
        with self._lock:
            s = self._slot_of(stream_id)
            for slab in self._slabs.values():
                slab[s] = 0

    def snapshot(self, stream_id: Hashable) -> dict[str, np.ndarray]:
        """A copy of the stream's state: {state input: array without the batch axis}."""
        with self._lock:
            s = self._slot_of(stream_id)
            return {k: slab[s].copy() for k, slab in self._slabs.items()}

    def restore(self, stream_id: Hashable, snapshot: Mapping[str, np.ndarray]) -> None:
        """Set the stream's state from `snapshot` (what snapshot() returned)."""
        if not isinstance(snapshot, Mapping) or set(snapshot) != set(self._slabs):
            raise ShapeError(f"a snapshot maps {sorted(self._slabs)} to arrays")
        for k, v in snapshot.items():
            if np.shape(v) != self._slabs[k].shape[1:]:
                raise ShapeError(f"snapshot {k!r}: shape {np.shape(v)}, expected "
                                 f"{self._slabs[k].shape[1:]}")
        with self._lock:
            s = self._slot_of(stream_id)
            for k, v in snapshot.items():
                self._slabs[k][s] = v

    def evict_idle(self, now: float | None = None) -> list:
        """Close the streams idle for idle_timeout seconds or more; returns their ids."""
        if self.idle_timeout is None:
            return []
        with self._lock:
            return self._evict_locked(time.monotonic() if now is None else now)

    def _evict_locked(self, now):
        gone = [i for i, s in self._slot.items()
                if i not in self._busy and now - self._last[s] >= self.idle_timeout]
        for i in gone:
            self._free.append(self._slot.pop(i))
        return gone

    def is_open(self, stream_id: Hashable) -> bool:
        with self._lock:
            try:
                return stream_id in self._slot
            except TypeError:
                return False

    @property
    def open_streams(self) -> int:
        return len(self._slot)

    def _slot_of(self, stream_id):
        try:
            return self._slot[stream_id]
        except KeyError:
            raise UsageError(f"stream {stream_id!r} is not open") from None
        except TypeError:
            raise UsageError(f"stream ids must be hashable, got {type(stream_id).__name__}") \
                from None

    # ---- running ------------------------------------------------------------------------------
    def check_chunk(self, chunk) -> np.ndarray:
        """`chunk` as the model's input dtype, or ShapeError saying what was expected: the model
        input without its batch axis (static dims must match), finite values."""
        try:
            a = np.asarray(chunk, self.chunk_dtype)
        except (TypeError, ValueError) as e:
            raise ShapeError(f"chunk for {self.input!r}: not a numeric array ({e})") from None
        want = self.chunk_shape
        if a.ndim != len(want) or any(isinstance(d, int) and d != n for d, n in zip(want, a.shape)):
            raise ShapeError(f"chunk for {self.input!r}: shape {a.shape}, expected "
                             f"{tuple(d if isinstance(d, int) else '?' for d in want)}")
        if a.dtype.kind == "f" and self.session.nan == "error" and not np.isfinite(a).all():
            raise ShapeError(f"chunk for {self.input!r} holds NaN or Inf")
        return a

    def step(self, chunks: Sequence[np.ndarray], stream_ids: Sequence[Hashable]) -> list[dict]:
        """Run one chunk of each stream (a chunk is the model input without its batch axis;
        lengths may differ) and advance their states. Returns, per stream in order, its
        outputs {name: array without the batch axis}."""
        return self._step(chunks, stream_ids, checked=False)

    def _step(self, chunks, stream_ids, checked: bool):
        """step(); checked=True: every chunk came through check_chunk already (the batcher)."""
        if len(chunks) != len(stream_ids):
            raise UsageError(f"{len(chunks)} chunks for {len(stream_ids)} stream ids")
        if len(set(stream_ids)) != len(stream_ids):
            raise UsageError("a stream may appear once per step (its chunks run in order)")
        with self._lock:
            slots = [self._slot_of(i) for i in stream_ids]
            busy = [i for i in stream_ids if i in self._busy]
            if busy:
                raise UsageError(f"streams {busy} are running a step already")
            self._busy.update(stream_ids)
        try:
            if not checked:                                     # all, before any runs
                chunks = [self.check_chunk(c) for c in chunks]
            groups: dict[tuple, list[int]] = {}
            for j, c in enumerate(chunks):
                groups.setdefault(c.shape, []).append(j)
            results: list = [None] * len(chunks)
            for idx in groups.values():
                sl = np.array([slots[j] for j in idx])
                for j, out in zip(idx, self._run(sl, [chunks[j] for j in idx])):
                    results[j] = out
            return results
        finally:
            with self._lock:
                self._busy.difference_update(stream_ids)
                self._last[slots] = time.monotonic()

    def _run(self, slots: np.ndarray, chunks: list[np.ndarray]) -> list[dict]:
        feeds = {self.input: np.stack(chunks, axis=self.batch_axis)}
        for name, slab in self._slabs.items():       # the streams' states, gathered
            feeds[name] = np.moveaxis(slab[slots], 0, self.state_batch_axis)
        out = self.session.run(feeds)
        for name, nxt in self.state.items():         # and scattered back
            self._slabs[name][slots] = np.moveaxis(out[nxt], self.state_batch_axis, 0)
        per = [np.moveaxis(out[o], self.batch_axis, 0) for o in self.outputs]
        return [{o: per[k][r] for k, o in enumerate(self.outputs)} for r in range(len(slots))]
