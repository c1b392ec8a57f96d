"""The graph IR: value infos, nodes and the graph that holds them.

A `Graph` is plain data. Nodes are frozen and refer to values by name; arrays live only in
`Graph.initializers` so that a node's attributes stay JSON-serializable (the engine file stores
them as JSON) and a pass can rewrite nodes without copying weights. Op semantics follow the ONNX
operator of the same name at the opset recorded in `Graph.opset` (frontends normalise older
opsets' attribute forms to the current one, so ops have one form each).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import ModelError

#: dtypes a graph value may have, by NumPy name (the engine file allowlists the same set).
DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "uint16",
          "uint32", "uint64", "bool")

# typing.Union, not `int | str | None`: this alias is evaluated at import, and 3.9 lacks `|` on types.
Dim = Optional[Union[int, str]]  # a static size, a symbolic name, or unknown


@dataclass(frozen=True)
class ValueInfo:
    """Name, dtype (a name from `DTYPES`) and shape of a graph input/output.

    `shape` is None when even the rank is unknown; otherwise each dim is an int (static), a str
    (symbolic: every input dim with the same name must have the same size) or None (unknown).
    """
    name: str
    dtype: str = "float32"
    shape: tuple[Dim, ...] | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ModelError(f"value name must be a non-empty string, got {self.name!r}")
        if self.dtype not in DTYPES:
            raise ModelError(f"value {self.name!r}: dtype {self.dtype!r} is not one of {DTYPES}")
        if self.shape is not None:
            shape = tuple(self.shape)
            for d in shape:
                ok = d is None or isinstance(d, str) or (isinstance(d, int) and not
                                                         isinstance(d, bool) and d >= 0)
                if not ok:
                    raise ModelError(f"value {self.name!r}: dim {d!r} must be an int >= 0, a "
                                     f"symbolic name or None")
            object.__setattr__(self, "shape", shape)

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype,
                "shape": None if self.shape is None else list(self.shape)}

    def brief(self) -> str:
        """`name: dtype[d0, d1, ...]`, for reprs and messages."""
        shape = "" if self.shape is None else "[" + ", ".join(map(str, self.shape)) + "]"
        return f"{self.name}: {self.dtype}{shape}"


def _check_attr_value(node: str, key: str, value: Any) -> None:
    """Attributes must be JSON scalars, strings or flat lists of them (arrays go to initializers),
    or a Graph: the body of a control-flow node (an If's branches, a Loop's body)."""
    scalar = (bool, int, float, str)
    if isinstance(value, scalar) or isinstance(value, Graph):
        return
    if isinstance(value, (list, tuple)) and all(isinstance(v, scalar) for v in value):
        return
    raise ModelError(f"node {node!r}: attribute {key!r} has unsupported value type "
                     f"{type(value).__name__} (allowed: int, float, str, bool or a list of them; "
                     f"put arrays in initializers)")


def fresh_name(used: set, base: str, reserve: bool = True) -> str:
    """`base`, or `base_1`, `base_2`... : the first not in `used` (added to it by default)."""
    name, i = base, 0
    while name in used:
        i += 1
        name = f"{base}_{i}"
    if reserve:
        used.add(name)
    return name


@dataclass(frozen=True)
class Node:
    """One operation. `inputs` may contain "" for an omitted optional input (ONNX convention)."""
    op_type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for what in ("op_type", "name"):
            if not isinstance(getattr(self, what), str):
                raise ModelError(f"node {what} must be a string, got {getattr(self, what)!r}")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        for v in self.inputs + self.outputs:
            if not isinstance(v, str):
                raise ModelError(f"node {self.name!r}: value names must be strings, got {v!r}")
        attrs = {}
        for k, v in dict(self.attrs).items():
            if not isinstance(k, str):
                raise ModelError(f"node {self.name!r}: attribute names must be strings")
            _check_attr_value(self.name, k, v)
            attrs[k] = list(v) if isinstance(v, tuple) else v
        object.__setattr__(self, "attrs", attrs)

    def __hash__(self):  # attrs is a dict; hash by identity-ish key so nodes can live in sets
        return hash((self.op_type, self.name, self.inputs, self.outputs))

    def replace(self, **changes) -> "Node":
        """A copy with some fields changed (nodes are frozen)."""
        fields = {"op_type": self.op_type, "name": self.name, "inputs": self.inputs,
                  "outputs": self.outputs, "attrs": dict(self.attrs)}
        fields.update(changes)
        return Node(**fields)

    def to_json(self, tensor_prefix: str = "") -> dict:
        """JSON of the node; a subgraph attribute becomes {"graph": its JSON}, its initializers
        named `<tensor_prefix><node name>/<attribute>/<name>` (`subgraph_tensors` lists them)."""
        attrs = {k: ({"graph": v.to_json(f"{tensor_prefix}{self.name}/{k}/")}
                     if isinstance(v, Graph) else copy.deepcopy(v)) for k, v in self.attrs.items()}
        return {"op_type": self.op_type, "name": self.name, "inputs": list(self.inputs),
                "outputs": list(self.outputs), "attrs": attrs}

    def subgraphs(self) -> list[tuple[str, "Graph"]]:
        """(attribute, graph) of each subgraph attribute (an If's branches, a Loop's body)."""
        return [(k, v) for k, v in self.attrs.items() if isinstance(v, Graph)]


@dataclass
class Graph:
    """A dataflow graph: nodes in topological order over named values.

    Passes build a new node list and assign it (or call `replace_nodes`) rather than mutating
    nodes; initializers are shared NumPy arrays that nobody writes to.
    """
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    nodes: list[Node]
    initializers: dict[str, np.ndarray] = field(default_factory=dict)
    opset: dict[str, int] = field(default_factory=lambda: {"": 21})
    name: str = "graph"
    #: inferred/declared infos of intermediate values (optional, filled by `infer_shapes`).
    value_info: dict[str, ValueInfo] = field(default_factory=dict)

    def __repr__(self) -> str:
        # The dataclass repr would print every weight array (tens of kB for a small CNN).
        n_bytes = sum(a.nbytes for a in self.initializers.values())
        ops = {}
        for n in self.nodes:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        top = ", ".join(f"{k}×{v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:6])
        return (f"<Graph {self.name!r}: {len(self.nodes)} nodes ({top}"
                f"{', ...' if len(ops) > 6 else ''}), inputs "
                f"[{', '.join(v.brief() for v in self.inputs)}], outputs "
                f"[{', '.join(v.brief() for v in self.outputs)}], "
                f"{len(self.initializers)} initializers ({n_bytes} bytes); .summary() lists "
                f"the nodes>")

    # ---- queries -------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [v.name for v in self.outputs]

    def producers(self) -> dict[str, Node]:
        """value name → the node that produces it."""
        return {o: n for n in self.nodes for o in n.outputs if o}

    def consumers(self) -> dict[str, list[Node]]:
        """value name → nodes that read it (in node order)."""
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def copy(self) -> "Graph":
        """A shallow copy: new lists/dicts, same (immutable) nodes and shared arrays."""
        return Graph(list(self.inputs), list(self.outputs), list(self.nodes),
                     dict(self.initializers), dict(self.opset), self.name, dict(self.value_info))

    def inputs_static(self) -> bool:
        """Every graph input has a known shape of ints: then a Session accepts no other, and
        value_info's static shapes are what every run sees (a graph with symbolic inputs may
        carry shapes observed on one batch, e.g. by static calibration)."""
        return all(v.shape is not None and all(isinstance(d, int) for d in v.shape)
                   for v in self.inputs)

    def static_shape(self, name: str) -> tuple[int, ...] | None:
        """The shape of value `name` when every dim is known (an initializer's, an input's or
        value_info's), else None."""
        if name in self.initializers:
            return tuple(self.initializers[name].shape)
        info = self.value_info.get(name) or next((v for v in self.inputs if v.name == name),
                                                 None)
        if info is None or info.shape is None or not all(isinstance(d, int)
                                                         for d in info.shape):
            return None
        return tuple(info.shape)

    def unique_name(self, base: str) -> str:
        """A value/node name not used anywhere in the graph yet (for passes adding things)."""
        used = set(self.initializers) | set(self.input_names) | {
            x for n in self.nodes for x in (n.name, *n.inputs, *n.outputs)}
        return fresh_name(used, base, reserve=False)

    def replace_nodes(self, old: Sequence[Node], new: Sequence[Node]) -> None:
        """Swap the nodes `old` for `new` (e.g. Gemm → a quantized linear), then re-sort.

        The new nodes may read any value and must produce whatever the old nodes' consumers
        read; `verify()` afterwards tells you if they do not.
        """
        old_ids = {id(n) for n in old}
        missing = [n.name for n in old if not any(n is m for m in self.nodes)]
        if missing:
            raise ModelError(f"replace_nodes: nodes {missing} are not in the graph")
        self.nodes = [n for n in self.nodes if id(n) not in old_ids] + list(new)
        self.toposort()

    # ---- structure -----------------------------------------------------------------------
    def toposort(self) -> None:
        """Order nodes so every value is produced before it is read (stable: keeps the current
        order where it is already valid). Raises ModelError on a cycle or a missing producer."""
        available = set(self.initializers) | set(self.input_names) | {""}
        producer_of = {}
        for idx, n in enumerate(self.nodes):
            for o in n.outputs:
                if o:
                    producer_of.setdefault(o, idx)
        pending = {i: {x for x in n.inputs if x not in available}
                   for i, n in enumerate(self.nodes)}
        waiting: dict[str, list[int]] = {}
        for i, needs in pending.items():
            for x in needs:
                if x not in producer_of:
                    raise ModelError(f"node {self.nodes[i].name!r} ({self.nodes[i].op_type}) "
                                     f"reads {x!r}, which no node, input or initializer defines")
                waiting.setdefault(x, []).append(i)
        import heapq
        ready = [i for i, needs in pending.items() if not needs]
        heapq.heapify(ready)
        order = []
        while ready:
            i = heapq.heappop(ready)
            order.append(i)
            for o in self.nodes[i].outputs:
                for j in waiting.pop(o, ()):
                    pending[j].discard(o)
                    if not pending[j]:
                        heapq.heappush(ready, j)
        if len(order) != len(self.nodes):
            stuck = [self.nodes[i].name for i in range(len(self.nodes)) if i not in set(order)]
            raise ModelError(f"graph has a cycle through nodes {stuck[:5]}")
        self.nodes = [self.nodes[i] for i in order]

    def verify(self) -> None:
        """Check the graph is well formed; raise ModelError saying what is wrong.

        Every value is defined exactly once (input, initializer or node output), nodes are in
        topological order, nothing reads an undefined value, outputs exist, every op type is
        registered and each node passes its op class's attribute/arity check.
        """
        from ..ops import get_op_class  # ops import graph.ir; import late to avoid a cycle

        defined: dict[str, str] = {}

        def define(name: str, by: str) -> None:
            if not name:
                return
            if name in defined:
                raise ModelError(f"value {name!r} is defined twice ({defined[name]} and {by})")
            defined[name] = by

        for v in self.inputs:
            if not isinstance(v, ValueInfo):
                raise ModelError(f"graph inputs must be ValueInfo, got {type(v).__name__}")
            define(v.name, "graph input")
        for k, arr in self.initializers.items():
            if not isinstance(arr, np.ndarray):
                raise ModelError(f"initializer {k!r} is not a NumPy array")
            if arr.dtype.name not in DTYPES:
                raise ModelError(f"initializer {k!r} has unsupported dtype {arr.dtype}")
            define(k, "initializer")
        names = set()
        for n in self.nodes:
            if not isinstance(n, Node):
                raise ModelError(f"graph nodes must be Node, got {type(n).__name__}")
            if n.name in names:
                raise ModelError(f"node name {n.name!r} is used twice")
            names.add(n.name)
            for i in n.inputs:
                if i and i not in defined:
                    raise ModelError(f"node {n.name!r} ({n.op_type}) reads {i!r} before it is "
                                     f"defined (undefined value or nodes out of topological order)")
            cls = get_op_class(n.op_type, node_name=n.name)
            cls.check_node(n)
            for o in n.outputs:
                define(o, f"node {n.name!r}")
        seen = set()
        for v in self.outputs:
            if v.name not in defined:
                raise ModelError(f"graph output {v.name!r} is not produced by any node, input or "
                                 f"initializer")
            if v.name in seen:
                raise ModelError(f"graph output {v.name!r} is listed twice")
            seen.add(v.name)
        for dom, ver in self.opset.items():
            if not isinstance(dom, str) or not isinstance(ver, int) or isinstance(ver, bool):
                raise ModelError(f"opset entry {dom!r}: {ver!r} must map a string to an int")

    # ---- serialization (arrays excluded: the engine file stores them as tensors) ----------
    def to_json(self, tensor_prefix: str = "") -> dict:
        """The graph without its arrays; a subgraph's initializers are listed under the names
        `subgraph_tensors` gives them in the file."""
        return {"name": self.name, "opset": dict(self.opset),
                "inputs": [v.to_json() for v in self.inputs],
                "outputs": [v.to_json() for v in self.outputs],
                "nodes": [n.to_json(tensor_prefix) for n in self.nodes],
                "initializers": sorted(tensor_prefix + k for k in self.initializers)}

    def subgraph_tensors(self, tensor_prefix: str = "") -> dict[str, np.ndarray]:
        """Every initializer of every subgraph (nested ones too), under its name in the file."""
        out = {}
        for n in self.nodes:
            for key, sub in n.subgraphs():
                pre = f"{tensor_prefix}{n.name}/{key}/"
                out.update({pre + k: v for k, v in sub.initializers.items()})
                out.update(sub.subgraph_tensors(pre))
        return out

    def summary(self) -> str:
        """A short human-readable listing (for `qengine inspect` and debugging)."""
        lines = [f"graph {self.name!r} opset={self.opset}"]
        lines += [f"  input  {v.name}: {v.dtype}{list(v.shape) if v.shape else ''}"
                  for v in self.inputs]
        lines += [f"  {n.op_type:<12} {n.name}: {list(n.inputs)} -> {list(n.outputs)} "
                  f"{json.dumps(n.attrs, default=repr) if n.attrs else ''}" for n in self.nodes]
        lines += [f"  output {v.name}" for v in self.outputs]
        return "\n".join(lines)


def iter_values(nodes: Iterable[Node]) -> Iterable[str]:
    for n in nodes:
        yield from n.inputs
        yield from n.outputs
