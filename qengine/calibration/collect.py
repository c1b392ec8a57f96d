"""The calibration driver: run the float graph over calibration data and feed every watched
activation to its own observer.

Calibration data is either
  * a dict {input name: array} with samples along the first axis -- it is cut into batches:
    of the model's batch size when the input's first dim is fixed (e.g. 1), otherwise of
    `batch_size` (default 32). When a fixed batch size does not divide the number of samples,
    the incomplete last batch is dropped (padding it would bias the statistics) and a
    warning says how many samples were skipped;
  * or an iterable of feed dicts, each run as given (a generator keeps memory flat; workflows
    that need the data more than once read it into a list first, see `reusable`).
The library never prints: `progress(done, total)` is called after each batch (total is None
when the iterable has no len()), so a CLI can draw a bar. NaN values are left out of every range
and counted by the observers (`observer.nan`); when any were seen, one NaNWarning names each
tensor and its count, in graph order (the first one is where they enter).
"""
from __future__ import annotations

import warnings
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from ..errors import ConfigError, NaNWarning, ShapeError
from ..graph.ir import Graph
from ..session import Session
from .base import Observer
from .registry import make_observer
from .tap import TapSession

DEFAULT_BATCH = 32


def _graph_of(model) -> Graph:
    if isinstance(model, Session):
        return model.graph
    if isinstance(model, Graph):
        return model
    raise ConfigError(f"collect_stats expects a qengine.Session or Graph, got "
                      f"{type(model).__name__}")


def _batch_size(session: TapSession, data: Mapping, batch_size):
    fixed = {info.name: info.shape[0] for info in session.inputs
             if info.shape and isinstance(info.shape[0], int)}
    sizes = set(fixed.values())
    if len(sizes) > 1:
        raise ShapeError(f"inputs have different fixed batch sizes {fixed}; pass an iterable "
                         f"of feed dicts instead")
    if batch_size is not None and (isinstance(batch_size, bool) or
                                   not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    if sizes:
        b = sizes.pop()
        if b == 0:
            raise ShapeError("the model's batch dimension is fixed at 0")
        if batch_size is not None and batch_size != b:
            raise ConfigError(f"batch_size={batch_size} but the model's batch dim is fixed at "
                              f"{b} (inputs {sorted(fixed)})")
        return b, True
    return batch_size or DEFAULT_BATCH, False


def reusable(data):
    """`data` in a form that can be iterated more than once. A one-shot iterator (a generator)
    is read into a list: the workflows that call this go over the data several times (bias
    correction, sensitivity), so every batch is then held in memory at once. A dict of arrays
    or a list is returned as is (it is in memory already)."""
    return list(data) if isinstance(data, Iterator) else data


def _split(session: TapSession, data: Mapping, batch_size):
    arrays = {}
    for k, v in data.items():
        a = np.asarray(v)
        if a.ndim == 0:
            raise ShapeError(f"calibration data {k!r} is a scalar; expected samples along the "
                             f"first axis")
        arrays[k] = a
    counts = {k: a.shape[0] for k, a in arrays.items()}
    if len(set(counts.values())) > 1:
        raise ShapeError(f"calibration arrays disagree on the number of samples (first axis): "
                         f"{counts}")
    n = next(iter(counts.values()), 0)
    if n == 0:
        raise ShapeError("calibration data holds no samples")
    b, fixed = _batch_size(session, arrays, batch_size)
    full = n // b if fixed else -(-n // b)
    if full == 0:
        raise ShapeError(f"calibration data has {n} samples, fewer than the model's fixed "
                         f"batch size {b}")
    if fixed and n % b:
        warnings.warn(f"calibration: {n} samples do not fill batches of the model's fixed "
                      f"batch size {b}; the last {n % b} samples are skipped", stacklevel=3)

    def batches():
        for i in range(full):
            yield {k: a[i * b:(i + 1) * b] for k, a in arrays.items()}
    return batches(), full


def _warn_nan(dropped: Mapping[str, int], shown: int = 8) -> None:
    """One NaNWarning naming the tensors whose observers dropped NaN values (graph order)."""
    bad = [(name, n) for name, n in dropped.items() if n]
    if not bad:
        return
    names = ", ".join(f"{name!r} ({n})" for name, n in bad[:shown])
    more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
    warnings.warn(f"calibration: NaN values were left out of the ranges of {len(bad)} "
                  f"tensor(s): {names}{more} (count per tensor; `observer.nan` keeps it). An "
                  f"int8 model reads NaN as 0.0: check the calibration data and the model",
                  NaNWarning, stacklevel=3)


def collect_stats(model, calibration_data, tensor_names=None, method: str = "minmax",
                  progress: Callable[[int, int | None], None] | None = None, *,
                  batch_size: int | None = None, observer_options: Mapping | None = None,
                  observers: Mapping[str, Observer] | None = None,
                  node_hooks: Mapping | None = None) -> dict[str, Observer]:
    """Observe activations of a float model over calibration data.

    model             qengine.Session or Graph (run in float32)
    calibration_data  {input name: array with samples on axis 0} or an iterable of feed dicts
    tensor_names      values to observe (graph inputs or node outputs); None: every input and
                      node output whose values are floating point (others are skipped)
    method            a name from OBSERVERS ("minmax", "entropy", "percentile", "mse",
                      "moving_average", ...), built with `observer_options`
    progress          callable(batches done, total batches or None)
    batch_size        batch size for dynamic-batch models (default 32); a fixed batch dim wins
    observers         existing {name: Observer} to continue (e.g. loaded with from_dict); new
                      ones are created for names it lacks
    node_hooks        {node name: fn(*inputs)} called with those nodes' inputs as they run
                      (RNN calibration, qengine/calibration/rnn.py)
    Returns {name: Observer}, in tensor_names order.
    """
    graph = _graph_of(model)
    session = TapSession(graph, tensor_names, node_hooks)
    explicit = tensor_names is not None
    options = dict(observer_options or {})
    make_observer(method, **options)                    # validate the method/options up front
    obs: dict[str, Observer] = dict(observers or {})
    for name in session.tapped:
        if name not in obs:
            obs[name] = make_observer(method, **options)

    if isinstance(calibration_data, Mapping):
        batches, total = _split(session, calibration_data, batch_size)
    elif isinstance(calibration_data, Iterable) and not isinstance(calibration_data,
                                                                   (str, bytes, np.ndarray)):
        batches = iter(calibration_data)
        total = len(calibration_data) if hasattr(calibration_data, "__len__") else None
    else:
        raise ConfigError(f"calibration_data must be a dict of arrays or an iterable of feed "
                          f"dicts, got {type(calibration_data).__name__}")
    if progress is not None and not callable(progress):
        raise ConfigError("progress must be callable(done, total)")

    skipped = set()
    nan_before = {name: getattr(obs[name], "nan", 0) for name in session.tapped}

    def watch(name, value):
        arr = np.asarray(value)
        if arr.dtype.kind != "f":
            if explicit:
                raise ShapeError(f"value {name!r} is {arr.dtype}, not floating point; only "
                                 f"float activations can be calibrated")
            skipped.add(name)
            return
        obs[name].observe(arr)

    done = 0
    for feeds in batches:
        if not isinstance(feeds, Mapping):
            raise ConfigError(f"calibration batch {done} is a {type(feeds).__name__}, expected "
                              f"a dict {{input name: array}}")
        session.run_tapped(feeds, watch)
        done += 1
        if progress is not None:
            progress(done, total)
    if done == 0:
        raise ConfigError("calibration_data produced no batches")
    # graph order: the first tensor named is where the NaN enter
    _warn_nan({name: getattr(obs[name], "nan", 0) - nan_before[name]
               for name in (*graph.input_names, *graph.producers())
               if name in nan_before and name not in skipped})
    return {name: obs[name] for name in session.tapped if name not in skipped} | \
        {k: v for k, v in obs.items() if k not in session.tapped}
