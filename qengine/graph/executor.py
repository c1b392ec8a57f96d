"""The executor: builds one op object per node once, then runs nodes in order over a dict of
values, dropping each intermediate right after its last reader (lifetimes computed once).

Memory plan: ops that declare `USES_ARENA` (the int8 ops) get a dict per node and per thread
that persists across runs; they write their output into the buffer they returned last time.
After the first run of a given input shape such a graph allocates no activation memory. A node
gets no arena when its output can reach a graph output — directly or through ops that may
return views of their inputs (Reshape, Flatten...) — since the caller keeps those arrays.

`float_dtype=np.float64` executes the same graph as a float64 reference: float initializers
and inputs are widened and every float op computes in float64.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import QEngineError, ShapeError
from ..ops import get_op_class
from .ir import Graph


@dataclass
class Profile:
    """Timings of one profiled run, in seconds. `nodes` is [(node name, op type, seconds)] in
    execution order; `by_op_type` sums them per op type."""
    nodes: list[tuple[str, str, float]] = field(default_factory=list)
    total: float = 0.0

    @property
    def by_op_type(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for _, op_type, t in self.nodes:
            out[op_type] = out.get(op_type, 0.0) + t
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _widen(arr: np.ndarray, float_dtype: np.dtype) -> np.ndarray:
    if arr.dtype.kind == "f" and arr.dtype != float_dtype:
        return arr.astype(float_dtype)
    return arr


def _own(value) -> np.ndarray:
    """A graph output as the caller gets it: a broadcast view (Expand's zero-stride output)
    becomes a real array, so callers can write or save it — and a model whose output would not
    fit in memory fails here, as an allocation, instead of in the caller's np.save."""
    arr = np.asarray(value)
    if any(st == 0 and n > 1 for st, n in zip(arr.strides, arr.shape)):
        try:
            return np.array(arr)
        except MemoryError as e:
            raise ShapeError(f"an output of shape {arr.shape} ({arr.dtype}) does not fit in "
                             f"memory") from e
    return arr


class Executor:
    """Runs a verified graph. Thread-safe: `run` keeps all per-call state in locals."""

    def __init__(self, graph: Graph, float_dtype=np.float32):
        graph.verify()
        self.graph = graph
        self.float_dtype = np.dtype(float_dtype)
        consts = {}
        for k, v in graph.initializers.items():
            v = _widen(v, self.float_dtype)
            if v.flags.writeable:  # ops must never write into shared weights
                v = v.view()
                v.setflags(write=False)
            consts[k] = v
        self.constants = consts
        self.ops = [get_op_class(n.op_type, n.name)(n, consts, float_dtype=self.float_dtype)
                    for n in graph.nodes]
        keep = set(graph.output_names) | set(consts)
        last_use: dict[str, int] = {}
        for i, n in enumerate(graph.nodes):
            for v in (*n.inputs, *n.outputs):  # outputs nobody reads die where they are born
                if v and v not in keep:
                    last_use[v] = i
        self.free_after: list[tuple[str, ...]] = [() for _ in graph.nodes]
        for v, i in last_use.items():
            self.free_after[i] += (v,)
        self.plan = [(op, n.inputs, n.outputs) for op, n in zip(self.ops, graph.nodes)]
        escaping = set(graph.output_names)
        for op, n in zip(reversed(self.ops), reversed(graph.nodes)):
            if escaping.intersection(n.outputs) and not getattr(op, "USES_ARENA", False):
                escaping.update(v for v in n.inputs if v)      # it may return views of these
        self.arena_ok = [getattr(op, "USES_ARENA", False) and not escaping.intersection(n.outputs)
                         for op, n in zip(self.ops, graph.nodes)]
        self._tls = threading.local()

    def _arenas(self):
        """This thread's per-node arenas (None for nodes without one)."""
        arenas = getattr(self._tls, "arenas", None)
        if arenas is None:
            arenas = self._tls.arenas = [{} if ok else None for ok in self.arena_ok]
        return arenas

    def run(self, feeds: Mapping[str, np.ndarray], output_names=None,
            profile: Profile | None = None) -> dict[str, np.ndarray]:
        """Run with already validated feeds; fill `profile` when given."""
        if profile is not None:
            return self._run_profiled(feeds, output_names, profile)
        env = dict(self.constants)
        fd = self.float_dtype
        for k, v in feeds.items():
            env[k] = v if v.dtype.kind != "f" or v.dtype == fd else v.astype(fd)
        for (op, ins, outs), dead, arena in zip(self.plan, self.free_after, self._arenas()):
            try:
                if arena is None or not getattr(op, "USES_ARENA", False):
                    results = op.run(*[env[i] if i else None for i in ins])
                else:
                    results = op.run(*[env[i] if i else None for i in ins], arena=arena)
            except QEngineError:
                raise
            except (ValueError, TypeError, IndexError, ArithmeticError, MemoryError) as e:
                self._failed(op, [env[i] if i else None for i in ins], e)
            if len(results) < len(outs):
                self._short(op, results, outs)
            for name, value in zip(outs, results):
                if name:
                    env[name] = value
            for name in dead:
                env.pop(name, None)
        names = self.graph.output_names if output_names is None else output_names
        return {k: _own(env[k]) for k in names}

    def _run_profiled(self, feeds, output_names, profile: Profile):
        env = dict(self.constants)
        for k, v in feeds.items():
            env[k] = _widen(v, self.float_dtype)
        clock = time.perf_counter
        t_start = clock()
        for (op, ins, outs), dead, arena in zip(self.plan, self.free_after, self._arenas()):
            args = [env[i] if i else None for i in ins]
            t0 = clock()
            try:
                if arena is None or not getattr(op, "USES_ARENA", False):
                    results = op.run(*args)
                else:
                    results = op.run(*args, arena=arena)
            except QEngineError:
                raise
            except (ValueError, TypeError, IndexError, ArithmeticError, MemoryError) as e:
                self._failed(op, args, e)
            profile.nodes.append((op.name, op.node.op_type, clock() - t0))
            if len(results) < len(outs):
                self._short(op, results, outs)
            for name, value in zip(outs, results):
                if name:
                    env[name] = value
            for name in dead:
                env.pop(name, None)
        profile.total = clock() - t_start
        names = self.graph.output_names if output_names is None else output_names
        return {k: _own(env[k]) for k in names}

    @staticmethod
    def _failed(op, args, e):
        raise ShapeError(f"node {op.name!r} ({op.node.op_type}) failed on inputs "
                         f"{[None if a is None else (a.dtype.name, a.shape) for a in args]}: "
                         f"{type(e).__name__}: {e}") from e

    @staticmethod
    def _short(op, results, outs):
        raise QEngineError(f"node {op.name!r} ({op.node.op_type}) returned {len(results)} "
                           f"outputs, expected {len(outs)}")
