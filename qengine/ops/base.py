"""The op base class and registry: op_type → class.

How an op works (and how to add one, e.g. a dynamic-int8 LSTM):

1. Subclass `Op`, set `op_type`, the attribute spec `ATTRS` (name → (kind, default); kind is one
   of "int", "float", "string", "ints", "floats", "strings", "graph"; default `REQUIRED` makes it
   mandatory), and the arity `INPUTS`/`OUTPUTS` as (min, max) with max None for variadic.
   Override `check_attrs(attrs, node)` for value ranges (raise ModelError). These run in
   `Graph.verify()` and the engine-file loader without building anything.
2. Override `prepare(initializers)`: called once per node when a Session is created, after the
   attributes were validated into `self.attrs`. Read constant inputs here, check weight shapes
   (ModelError), transpose/pack/quantize weights, and store the results on `self`.
3. Override `run(*inputs) -> tuple` returning one array per node output. `run` must not mutate
   `self` or its inputs: the same op object serves concurrent `Session.run` calls from many
   threads. Bad runtime inputs raise ShapeError naming the node.
4. Decorate the class with `@register_op`. Registering an op_type twice is an error unless
   `replace=True` (so a typo cannot silently shadow a built-in op).

`float_dtype` is the dtype float computation runs in: float32 normally, float64 when a Session
is built as a float64 reference of the same graph (initializers are then already float64).
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np

from ..errors import ModelError, ShapeError
from ..graph.ir import DTYPES, Graph, Node


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()

_KIND_CHECKS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "ints": lambda v: isinstance(v, list) and all(_KIND_CHECKS["int"](x) for x in v),
    "floats": lambda v: isinstance(v, list) and all(_KIND_CHECKS["float"](x) for x in v),
    "strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "graph": lambda v: isinstance(v, Graph),
}


class Op:
    """Base class of every op; see the module docstring for the contract."""
    op_type: ClassVar[str] = ""
    ATTRS: ClassVar[Mapping[str, tuple[str, Any]]] = {}
    INPUTS: ClassVar[tuple[int, int | None]] = (1, 1)
    OUTPUTS: ClassVar[tuple[int, int | None]] = (1, 1)
    #: integer ops: (weight input, scale input) pairs (what `qengine inspect` lists as qparams)
    WEIGHT_INPUTS: ClassVar[tuple] = ()
    #: integer ops with a float bias input that bias correction may adjust (its index)
    BIAS_INPUT: ClassVar[int | None] = None
    #: integer ops whose 4-D uint8 output is always NHWC (the kernels' layout)
    NHWC_OUTPUT: ClassVar[bool] = False

    def __init__(self, node: Node, initializers: Mapping[str, np.ndarray], *,
                 float_dtype: Any = np.float32):
        self.node = node
        self.name = node.name
        self.float_dtype = np.dtype(float_dtype)
        self.attrs = type(self).check_node(node)
        self.prepare(initializers)

    # ---- validation (class level: usable without building the op) --------------------------
    @classmethod
    def check_node(cls, node: Node) -> dict[str, Any]:
        """Validate arity and attributes; return the attributes with defaults filled in."""
        where = f"node {node.name!r} ({node.op_type})"
        for what, got, (lo, hi) in (("inputs", len(node.inputs), cls.INPUTS),
                                    ("outputs", len(node.outputs), cls.OUTPUTS)):
            if got < lo or (hi is not None and got > hi):
                want = f"{lo}" if lo == hi else f"{lo}..{'any' if hi is None else hi}"
                raise ModelError(f"{where}: expected {want} {what}, got {got}")
        if not any(node.outputs):
            raise ModelError(f"{where}: has no named output")
        # "" omits an optional input (ONNX); the first INPUTS[0] and every variadic one are not
        lo, hi = cls.INPUTS
        omitted = [i for i, v in enumerate(node.inputs[:len(node.inputs) if hi is None else lo])
                   if not v]
        if omitted:
            raise ModelError(f"{where}: input {omitted[0]} is required but omitted (empty name)")
        attrs = {}
        for key, value in node.attrs.items():
            if key not in cls.ATTRS:
                raise ModelError(f"{where}: unknown attribute {key!r} (known: "
                                 f"{sorted(cls.ATTRS) or 'none'})")
            kind = cls.ATTRS[key][0]
            if not _KIND_CHECKS[kind](value):
                raise ModelError(f"{where}: attribute {key!r} must be of kind {kind}, got "
                                 f"{value!r}")
            attrs[key] = float(value) if kind == "float" else value
        for key, (kind, default) in cls.ATTRS.items():
            if key not in attrs:
                if default is REQUIRED:
                    raise ModelError(f"{where}: required attribute {key!r} is missing")
                attrs[key] = default
        cls.check_attrs(attrs, node)
        return attrs

    @classmethod
    def check_attrs(cls, attrs: dict[str, Any], node: Node) -> None:
        """Hook: validate attribute values (ranges, enums); raise ModelError."""

    @classmethod
    def infer_shapes(cls, attrs: dict[str, Any], in_shapes: list, consts: list):
        """Hook for `infer_shapes`: static output shapes from static input shapes.

        `attrs` are validated (defaults filled), `in_shapes[i]` is a tuple of ints or None
        (unknown or omitted), `consts[i]` the initializer feeding input i or None. Return a list
        of shapes (one per output, None where unknown; outputs take input 0's dtype) or None
        when nothing can be said. May raise ValueError on inconsistent shapes.
        """
        return None

    # ---- building and running --------------------------------------------------------------
    def prepare(self, initializers: Mapping[str, np.ndarray]) -> None:
        """Hook: read constant inputs, validate and pack weights (once per session)."""

    def run(self, *inputs: np.ndarray | None) -> tuple[np.ndarray, ...]:
        raise NotImplementedError(f"{type(self).__name__}.run")

    # ---- helpers for subclasses --------------------------------------------------------------
    def fail(self, msg: str, cls=ModelError):
        """Raise `cls` with the node named (use ShapeError for bad runtime inputs)."""
        raise cls(f"node {self.name!r} ({self.node.op_type}): {msg}")

    def input_name(self, idx: int) -> str:
        return self.node.inputs[idx] if idx < len(self.node.inputs) else ""

    def const_input(self, initializers: Mapping[str, np.ndarray], idx: int,
                    required: bool = False, what: str = "") -> np.ndarray | None:
        """The initializer feeding input `idx`, None when absent or computed at run time.

        With required=True a missing or non-constant input is a ModelError (e.g. weights that
        must be packed at load).
        """
        name = self.input_name(idx)
        if name and name in initializers:
            return initializers[name]
        if required:
            self.fail(f"input {idx} ({what or name or 'omitted'}) must be an initializer")
        return None

    def int_vector(self, arr: np.ndarray, what: str, cls=ShapeError) -> list[int]:
        """Validate a 1-D (or scalar) integer tensor such as axes/shape and return a list."""
        arr = np.asarray(arr)
        if arr.dtype.kind not in "iu" or arr.ndim > 1:
            self.fail(f"{what} must be a 1-D integer tensor, got {arr.dtype} of shape "
                      f"{arr.shape}", cls)
        return [int(v) for v in arr.reshape(-1)]

    def map_dtype(self, name: str) -> np.dtype:
        """The dtype a graph dtype name denotes here (float32 → float_dtype in float64 mode)."""
        if name == "float32" and self.float_dtype != np.float32:
            return self.float_dtype
        return np.dtype(name)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


def check_dtype_name(name: Any, where: str) -> None:
    if name not in DTYPES:
        raise ModelError(f"{where}: dtype {name!r} is not one of {DTYPES}")


_REGISTRY: dict[str, type[Op]] = {}


def register_op(cls: type[Op] | None = None, *, replace: bool = False):
    """Class decorator adding an op class to the registry under `cls.op_type`."""
    def add(c: type[Op]) -> type[Op]:
        if not (isinstance(c, type) and issubclass(c, Op)) or not c.op_type:
            raise TypeError(f"{c!r} must be an Op subclass with op_type set")
        if c.op_type in _REGISTRY and not replace and _REGISTRY[c.op_type] is not c:
            raise ValueError(f"op type {c.op_type!r} is already registered by "
                             f"{_REGISTRY[c.op_type].__name__}; pass replace=True to override")
        _REGISTRY[c.op_type] = c
        return c
    return add(cls) if cls is not None else add


def get_op_class(op_type: str, node_name: str | None = None) -> type[Op]:
    try:
        return _REGISTRY[op_type]
    except (KeyError, TypeError):
        where = f" (node {node_name!r})" if node_name is not None else ""
        raise ModelError(f"unknown op type {op_type!r}{where}; known ops: "
                         f"{', '.join(sorted(_REGISTRY))}") from None


def is_registered(op_type: str) -> bool:
    return op_type in _REGISTRY


def registered_ops() -> list[str]:
    return sorted(_REGISTRY)


def unregister_op(op_type: str) -> None:
    """Remove an op type (tests that register temporary ops clean up with this)."""
    _REGISTRY.pop(op_type, None)
