"""The executor: builds one op object per node once, then runs nodes in order, dropping each
intermediate right after its last reader (lifetimes computed once).

The plan is compiled at construction: every value gets a slot in a list (constants are filled
in once, in a template the run copies), every node a tuple of the slots it reads and writes
and the slots that die after it (`_plan.Schedule`). A run is one compiled loop making one
vectorcall per node of its op's run function, bound once per thread to the node's arena — no
dict of values, no name lookups, no arena checks per node. Errors are mapped back to the node
(name, op type, input shapes) only when one happens.

Memory plan: ops that declare `USES_ARENA` (the int8 ops) get a dict per node and per thread
that persists across runs; they write their output into the buffer they returned last time.
After the first run of a given input shape such a graph allocates no activation memory. A node
gets no arena when its output can reach a graph output — directly or through ops that may
return views of their inputs (Reshape, Flatten...) — since the caller keeps those arrays.

`float_dtype=np.float64` executes the same graph as a float64 reference: float initializers
and inputs are widened and every float op computes in float64.
"""
from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .._ext import _plan
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
    if 0 in arr.strides and any(st == 0 and n > 1 for st, n in zip(arr.strides, arr.shape)):
        try:
            return np.array(arr)
        except MemoryError as e:
            raise ShapeError(f"an output of shape {arr.shape} ({arr.dtype}) does not fit in "
                             f"memory") from e
    return arr


class Executor:
    """Runs a verified graph. Thread-safe: `run` keeps all per-call state in locals (the slot
    list); the per-thread state (arenas, bound run functions) is built once per thread."""

    def __init__(self, graph: Graph, float_dtype=np.float32, fuse: bool = False):
        if fuse:    # runs of layout nodes, attention's core: one node each, the same bits
            from .attention import fuse_attention
            from .layout import fold_layout_chains
            graph = fuse_attention(fold_layout_chains(graph))
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
        self._compile()
        self._tls = threading.local()

    def _compile(self) -> None:
        """Slots for every value; the template holds the constants; the schedule per node."""
        g = self.graph
        names = list(self.constants) + [v.name for v in g.inputs if v.name not in
                                        self.constants]
        names += [o for n in g.nodes for o in n.outputs if o]
        slot = {name: i for i, name in enumerate(dict.fromkeys(names))}
        self._template = [None] * len(slot)
        for k, v in self.constants.items():
            self._template[slot[k]] = v
        self._feed_slots = [(v.name, slot[v.name]) for v in g.inputs
                            if v.name not in self.constants]
        self._out_slots = {name: slot[name] for name in g.output_names}
        self._schedule = _plan.Schedule(
            [tuple(slot[i] if i else -1 for i in n.inputs) for n in g.nodes],
            [tuple(slot[o] if o else -1 for o in n.outputs) for n in g.nodes],
            [tuple(slot[v] for v in dead) for dead in self.free_after])

    def replace_ops(self, ops) -> None:
        """Swap the op objects (one per node, same order), e.g. for wrappers that watch values
        (qengine/calibration/tap.py). A wrapper must accept the `arena` keyword when the op it
        wraps uses one. Threads rebind their run functions on their next run."""
        ops = list(ops)
        if len(ops) != len(self.ops):
            raise ValueError(f"replace_ops: {len(ops)} ops for {len(self.ops)} nodes")
        self.ops = ops
        self.plan = [(op, ins, outs) for op, (_, ins, outs) in zip(ops, self.plan)]
        self._tls = threading.local()

    def _arenas(self):
        """This thread's per-node arenas (None for nodes without one)."""
        arenas = getattr(self._tls, "arenas", None)
        if arenas is None:
            arenas = self._tls.arenas = [{} if ok else None for ok in self.arena_ok]
        return arenas

    def _calls(self):
        """This thread's run function per node, bound to its arena."""
        calls = getattr(self._tls, "calls", None)
        if calls is None:
            calls = self._tls.calls = [
                op.run if arena is None else functools.partial(op.run, arena=arena)
                for op, arena in zip(self.ops, self._arenas())]
        return calls

    def _values(self, feeds):
        vals = self._template.copy()
        fd = self.float_dtype
        for name, slot in self._feed_slots:
            v = feeds[name]
            vals[slot] = v if v.dtype.kind != "f" or v.dtype == fd else v.astype(fd)
        return vals

    def run(self, feeds: Mapping[str, np.ndarray], output_names=None,
            profile: Profile | None = None) -> dict[str, np.ndarray]:
        """Run with already validated feeds; fill `profile` when given."""
        vals = self._values(feeds)
        if profile is not None:
            self._run_profiled(vals, profile)
        else:
            try:
                self._schedule.run(self._calls(), vals)
            except (_plan.StepError, _plan.ShortResult) as e:
                self._step_failed(e, vals)
        names = self.graph.output_names if output_names is None else output_names
        return {k: _own(vals[self._out_slots[k]]) for k in names}

    def _run_profiled(self, vals, profile: Profile):
        """Node by node, timing each (the same schedule and bound functions as `run`)."""
        clock, calls, sched = time.perf_counter, self._calls(), self._schedule
        t_start = clock()
        for i, op in enumerate(self.ops):
            t0 = clock()
            try:
                sched.run(calls, vals, i, i + 1)
            except (_plan.StepError, _plan.ShortResult) as e:
                self._step_failed(e, vals)
            profile.nodes.append((op.name, op.node.op_type, clock() - t0))
        profile.total = clock() - t_start

    def _step_failed(self, e, vals):
        """Say which node failed and on what (the inputs are still in their slots: a node's
        inputs die only after it ran)."""
        op = self.ops[e.index]
        if isinstance(e, _plan.ShortResult):
            raise QEngineError(f"node {op.name!r} ({op.node.op_type}) returned {e.got} "
                               f"outputs, expected {len(op.node.outputs)}") from None
        cause = e.__cause__
        if isinstance(cause, QEngineError):
            raise cause.with_traceback(cause.__traceback__) from None
        if isinstance(cause, (ValueError, TypeError, IndexError, ArithmeticError, MemoryError)):
            args = [vals[self._slot_of(i)] if i else None for i in op.node.inputs]
            self._failed(op, args, cause)
        raise cause.with_traceback(cause.__traceback__) from None

    def _slot_of(self, name):
        if name in self._out_slots:
            return self._out_slots[name]
        return next(i for i, n in enumerate(self._slot_names()) if n == name)

    def _slot_names(self):
        g = self.graph
        names = list(self.constants) + [v.name for v in g.inputs if v.name not in
                                        self.constants]
        names += [o for n in g.nodes for o in n.outputs if o]
        return list(dict.fromkeys(names))

    @staticmethod
    def _failed(op, args, e):
        raise ShapeError(f"node {op.name!r} ({op.node.op_type}) failed on inputs "
                         f"{[None if a is None else (a.dtype.name, a.shape) for a in args]}: "
                         f"{type(e).__name__}: {e}") from e
