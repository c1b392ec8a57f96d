"""Session: a graph made ready to run, with input validation.

Input rules (checked on every `run`, errors name the input, what was expected and what came):
* every graph input must be given, nothing else may be (ShapeError otherwise);
* dtype: a float input accepts any float array and casts it to the declared float dtype
  (float64 → float32 loses precision the model never had, so that is accepted); an integer
  input accepts any integer array whose values the declared dtype can hold (checked, so
  uint64/int64 → int32 fails loudly only when a value does not fit); bool only from bool.
  Mixing kinds (int given for float, float for int) is a ShapeError: it is almost always a bug.
* rank must match; static dims must match; a symbolic dim binds to the first size seen and
  every other input using the same name must agree (e.g. "batch").
* NaN (docs/numerics.md "NaN and Inf"): with the default `nan="error"` a float input holding
  NaN is a ShapeError naming the input, the count and the first index. The int8 paths would
  otherwise read NaN as 0.0 (the zero point) without a word. `nan="allow"` lets NaN in: float
  ops propagate it, quantization to int8 maps it to the zero point. ±Inf are always accepted
  (they saturate in int8). The check is one vectorized pass over each float input.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ._ext._plan import has_nan
from ._runtime import active_isa
from .errors import ConfigError, ShapeError
from .graph.executor import Executor, Profile
from .graph.ir import Graph, ValueInfo
from .model_files import require_graph
from .quant import find_nan

#: Session(nan=...): what a float input holding NaN does (module docstring)
NAN_POLICIES = ("error", "allow")


def _coerce(info: ValueInfo, value) -> np.ndarray:
    arr = np.asarray(value)
    want = np.dtype(info.dtype)
    if arr.dtype == want:
        return arr
    got_kind, want_kind = arr.dtype.kind, want.kind
    ints = "iu"
    if want_kind == "f" and got_kind == "f":
        return arr.astype(want)
    if want_kind in ints and got_kind in ints:
        if np.can_cast(arr.dtype, want, "safe"):
            return arr.astype(want)
        lo, hi = np.iinfo(want).min, np.iinfo(want).max
        if arr.size == 0 or (arr.min() >= lo and arr.max() <= hi):
            return arr.astype(want)
        raise ShapeError(f"input {info.name!r}: values of {arr.dtype} do not fit the expected "
                         f"{want} (range [{arr.min()}, {arr.max()}])")
    raise ShapeError(f"input {info.name!r}: expected dtype {want}, got {arr.dtype} (only "
                     f"float→float and value-preserving int→int conversions are automatic)")


def _refuse_nan(info: ValueInfo, arr: np.ndarray) -> None:
    found = find_nan(arr)
    if found:
        count, first = found
        raise ShapeError(
            f"input {info.name!r} holds {count} NaN value(s) of {arr.size} (first at index "
            f"{first}); qengine refuses NaN by default because int8 ops would silently read it "
            f"as 0.0. Clean the input, or opt out with nan='allow' (Session(graph, "
            f"nan='allow'), qengine.load(path, nan='allow'), qengine run --nan allow): float "
            f"ops then propagate NaN and int8 quantization maps it to the zero point")


class Session:
    """A runnable graph. `Session(graph, nan="error")` verifies it and builds (packs) every op
    once. `nan`: "error" (default) refuses float inputs holding NaN, "allow" lets them through
    (see the module docstring).

    `run` is safe to call from several threads at once: op objects are immutable after
    construction and all per-call state lives in the call.
    """

    #: runs of layout nodes (Reshape, Transpose, ...) and attention's core (scale, MatMul,
    #: Softmax, MatMul) execute as one node each, with the same bits; the graph keeps its
    #: nodes (Session.profile reports LayoutChain / AttentionCore nodes)
    _FUSE = True

    def __init__(self, graph: Graph, *, float_dtype=np.float32, nan: str = "error"):
        require_graph(graph, "Session")             # a path or ModelProto: say what to call
        if nan not in NAN_POLICIES:
            raise ConfigError(f"nan must be one of {NAN_POLICIES}, got {nan!r}")
        active_isa()        # a bad QENGINE_ISA fails here, even for a graph of float ops only
        self.nan = nan
        self.graph = graph
        self._float_dtype = np.dtype(float_dtype)
        self._executor = Executor(graph, float_dtype=float_dtype, fuse=self._FUSE)
        self._inputs = list(graph.inputs)
        self._names = tuple(v.name for v in self._inputs)
        self._name_set = frozenset(self._names)
        # inputs whose dtype and every dim are static: `run` checks them with one comparison
        # each (the general checks below run only when one of these fails, to say why)
        self._static = [(v.name, np.dtype(v.dtype), tuple(v.shape)) for v in self._inputs
                        if v.shape is not None and all(isinstance(d, int) for d in v.shape)]
        if len(self._static) != len(self._inputs):
            self._static = None

    def __reduce__(self):
        """A Session pickles as its engine file's bytes (engine_file.dumps) and is rebuilt, with
        every check `engine_file.loads` makes, where it is unpickled: how a Session ships to Ray
        or Dask workers. The engine file format itself holds no pickle."""
        from .engine_file import dumps
        return (_session_from_engine, (dumps(self.graph), self.nan, self._float_dtype.str))

    def __repr__(self) -> str:
        return (f"<Session {self.graph.name!r}: {len(self.graph.nodes)} nodes, inputs "
                f"[{', '.join(v.brief() for v in self._inputs)}], outputs "
                f"[{', '.join(v.brief() for v in self.graph.outputs)}], nan={self.nan!r}>")

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self._inputs]

    @property
    def output_names(self) -> list[str]:
        return self.graph.output_names

    @property
    def inputs(self) -> list[ValueInfo]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[ValueInfo]:
        return list(self.graph.outputs)

    def _fast_feeds(self, inputs):
        """The feeds when every input is exactly what the graph declares (dtype, static shape,
        C-contiguous, no NaN under nan="error"); None to take the general path."""
        if self._static is None or type(inputs) is not dict or len(inputs) != len(self._static):
            return None
        for name, dtype, shape in self._static:
            arr = inputs.get(name)
            if type(arr) is not np.ndarray or arr.dtype != dtype or arr.shape != shape:
                return None
            if dtype.kind == "f" and self.nan == "error":
                if dtype.itemsize not in (4, 8) or not arr.flags.c_contiguous or has_nan(arr):
                    return None
        return inputs

    def _validate(self, inputs) -> dict[str, np.ndarray]:
        fast = self._fast_feeds(inputs)
        if fast is not None:
            return fast
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, Mapping):
            if isinstance(inputs, np.ndarray) or not isinstance(inputs, Sequence):
                inputs = [inputs]
            if len(inputs) != len(self._inputs):
                raise ShapeError(f"expected {len(self._inputs)} positional inputs "
                                 f"{self.input_names}, got {len(inputs)}")
            inputs = dict(zip(self.input_names, inputs))
        if len(inputs) == len(self._names) and all(n in inputs for n in self._names):
            missing = extra = ()
        else:
            missing = [n for n in self._names if n not in inputs]
            extra = [n for n in inputs if n not in self._name_set]
        if missing or extra:
            raise ShapeError(f"inputs do not match the graph: missing {missing}, unexpected "
                             f"{extra} (expected exactly {self.input_names})")
        feeds, symbols = {}, {}
        for info in self._inputs:
            arr = _coerce(info, inputs[info.name])
            if arr.dtype.kind == "f" and self.nan == "error":
                _refuse_nan(info, arr)
            if info.shape is not None:
                if arr.ndim != len(info.shape):
                    raise ShapeError(f"input {info.name!r}: expected rank {len(info.shape)} "
                                     f"{list(info.shape)}, got rank {arr.ndim} {list(arr.shape)}")
                for axis, (want, got) in enumerate(zip(info.shape, arr.shape)):
                    if isinstance(want, int) and want != got:
                        raise ShapeError(f"input {info.name!r}: dim {axis} must be {want} "
                                         f"(expected shape {list(info.shape)}), got shape "
                                         f"{list(arr.shape)}")
                    if isinstance(want, str):
                        seen = symbols.setdefault(want, (got, info.name))
                        if seen[0] != got:
                            raise ShapeError(f"input {info.name!r}: dim {axis} ({want!r}) is "
                                             f"{got} but input {seen[1]!r} has {want!r} = "
                                             f"{seen[0]}")
            feeds[info.name] = arr
        return feeds

    def _output_names(self, output_names):
        if output_names is None:
            return None
        names = [output_names] if isinstance(output_names, str) else list(output_names)
        unknown = [n for n in names if n not in set(self.output_names)]
        if unknown:
            raise ShapeError(f"unknown output names {unknown}; outputs are {self.output_names}")
        return names

    def run(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray] | None = None,
            output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the graph; returns {output name: array} for `output_names` (default: all)."""
        return self._executor.run(self._validate(inputs), self._output_names(output_names))

    def profile(self, inputs=None, output_names=None, repeat: int = 1):
        """Run `repeat` times timing every node; returns (outputs, [Profile per run])."""
        feeds, names = self._validate(inputs), self._output_names(output_names)
        profiles, out = [], None
        for _ in range(max(1, int(repeat))):
            p = Profile()
            out = self._executor.run(feeds, names, profile=p)
            profiles.append(p)
        return out, profiles


def _session_from_engine(data: bytes, nan: str, float_dtype: str) -> Session:
    from .engine_file import loads
    return loads(data, nan=nan, float_dtype=np.dtype(float_dtype))
