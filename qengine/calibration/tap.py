"""Running a float graph while watching intermediate values.

The executor drops every intermediate right after its last reader and only returns graph
outputs, which is what inference wants. Calibration needs to see chosen intermediates without
keeping them all alive: `TapSession` is a Session whose executor plan has the ops that produce
a watched value wrapped, so each watched value is handed to a callback the moment it exists
(and can be freed as usual afterwards). Graph inputs are handed over from the validated feeds.
`node_hooks` {node name: fn(*inputs)} also hand chosen nodes' inputs over as they run.

It swaps the wrapped ops in with `Executor.replace_ops`; the executor is otherwise unchanged. One TapSession is meant for one calibration loop: the callback is per
instance, so do not run one TapSession from several threads at once.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from ..errors import ConfigError
from ..graph.ir import Graph
from ..session import Session


class _TapOp:
    """Forwards to the wrapped op, then reports the watched outputs."""

    def __init__(self, op, outputs, watched, owner):
        self._op, self._outputs, self._watched, self._owner = op, outputs, watched, owner
        self.name, self.node = op.name, op.node

    def run(self, *args, **kwargs):
        results = self._op.run(*args, **kwargs)
        for name, value in zip(self._outputs, results):
            if name in self._watched:
                self._owner._emit(name, value)
        return results


class _HookOp:
    """Hands the op's inputs to `hook(*inputs)`, then runs it (RNN calibration: the observer
    replays the node on exactly what it was given)."""

    def __init__(self, op, hook):
        self._op, self._hook = op, hook
        self.name, self.node = op.name, op.node

    def run(self, *args, **kwargs):
        self._hook(*args)
        return self._op.run(*args, **kwargs)


class TapSession(Session):
    """A Session that calls `callback(name, array)` for each watched value during `run_tapped`.
    It lets NaN in (nan="allow"): the observers count what they drop and the calibration
    driver reports it (collect.py). Its nodes run one by one (no fused runs): each value is
    seen."""
    _FUSE = False

    def __init__(self, graph: Graph, names: Iterable[str] | None = None, node_hooks=None):
        super().__init__(graph, nan="allow")
        produced = [o for n in graph.nodes for o in n.outputs if o]
        if names is None:
            names = list(self.input_names) + produced
        else:
            names = [names] if isinstance(names, str) else list(names)
            known = set(self.input_names) | set(produced)
            for name in names:
                if name in graph.initializers:
                    raise ConfigError(f"{name!r} is a constant (initializer), not an activation; "
                                      f"observe weights directly, e.g. with "
                                      f"PerChannelMinMaxObserver")
                if name not in known:
                    raise ConfigError(f"{name!r} is not an input or node output of the graph "
                                      f"(some values: {sorted(known)[:8]})")
        self.tapped = list(dict.fromkeys(names))
        watched = set(self.tapped)
        self._callback = None
        ex = self._executor
        hooks = dict(node_hooks or {})
        unknown = set(hooks) - {n.name for n in graph.nodes}
        if unknown:
            raise ConfigError(f"node_hooks name nodes that are not in the graph: {sorted(unknown)}")
        ops = [_HookOp(op, hooks[op.name]) if op.name in hooks else op for op, _, _ in ex.plan]
        ex.replace_ops(_TapOp(op, outs, watched, self) if watched.intersection(outs) else op
                       for op, (_, ins, outs) in zip(ops, ex.plan))

    def _emit(self, name, value):
        self._callback(name, value)

    def run_tapped(self, inputs, callback: Callable[[str, np.ndarray], None]) -> None:
        """Validate `inputs` like Session.run, run the graph, call callback for every watched
        value (graph inputs first, then in execution order). Returns nothing."""
        feeds = self._validate(inputs)
        self._callback = callback
        try:
            for name in self.input_names:
                if name in self.tapped:
                    callback(name, feeds[name])
            self._executor.run(feeds, output_names=[])
        finally:
            self._callback = None
