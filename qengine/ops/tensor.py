"""Shape and data-movement ops (ONNX opset-13+ forms: axes/split/shape come in as inputs).

Inputs that steer the shape (axes, shape, starts/ends, split sizes) are read once at session
creation when they are initializers, and at run time otherwise.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ..errors import ModelError, ShapeError
from .base import REQUIRED, Op, check_dtype_name, register_op


#: the most elements an op that makes new data from small inputs (Range, Tile, ConvTranspose,
#: Resize) may produce: a malformed model asks for more, and gets a ShapeError instead of a
#: MemoryError or an exhausted machine
MAX_MADE_ELEMENTS = 1 << 31


def check_made(op: Op, shape) -> None:
    n = math.prod(int(d) for d in shape)
    if n > MAX_MADE_ELEMENTS:
        op.fail(f"the output {list(shape)} would hold {n} elements, more than "
                f"{MAX_MADE_ELEMENTS}", ShapeError)


def _norm_axis(op: Op, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        op.fail(f"{what} {axis} is out of range for rank {rank}", ShapeError)
    return axis % rank


class _ConstInputs(Op):
    """Caches the listed inputs (by index) as int lists when they are initializers."""
    CONST_INPUTS: tuple[int, ...] = ()

    def prepare(self, initializers):
        self.consts = {}
        for i in self.CONST_INPUTS:
            arr = self.const_input(initializers, i)
            if arr is not None:
                self.consts[i] = self.int_vector(arr, f"input {i}", ModelError)
        # every steering input the node has is constant: plans depend on the input shape only
        self._shape_only = all(i in self.consts for i in range(1, len(self.node.inputs))
                               if self.input_name(i))
        self._plans = {}

    def planned(self, inputs, make):
        """make(*inputs) — a plan (index tuple, output shape) that depends only on the input's
        shape when every steering input present is constant — cached per shape: these ops run
        on small tensors in streaming models, where rebuilding the plan costs more than the
        copy or view it makes. Bounded: many distinct shapes just clear the cache."""
        if not self._shape_only:
            return make(*inputs)
        return self.cached(inputs[0].shape, make, *inputs)

    def cached(self, key, make, *args):
        """make(*args), kept under `key` (at most 64 entries: many distinct keys clear it)."""
        plan = self._plans.get(key)
        if plan is None:
            plan = make(*args)
            if len(self._plans) >= 64:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def ints(self, inputs, i, what):
        """Input i as an int list (cached constant or run-time tensor), None if omitted."""
        if i in self.consts:
            return self.consts[i]
        if i < len(inputs) and inputs[i] is not None:
            return self.int_vector(inputs[i], what)
        return None


@register_op
class Gather(Op):
    op_type = "Gather"
    INPUTS = (2, 2)
    ATTRS = {"axis": ("int", 0)}

    def prepare(self, initializers):
        idx = self.const_input(initializers, 1)
        # constant indices (exporters' Gather of one state slice): checked once per axis size
        self._const_idx = None if idx is None or idx.dtype.kind not in "iu" else \
            (idx.astype(np.int64), int(idx.min()) if idx.size else 0,
             int(idx.max()) if idx.size else -1)
        self._checked = set()

    def run(self, data, idx):
        axis = _norm_axis(self, self.attrs["axis"], data.ndim)
        n = data.shape[axis]
        c = self._const_idx
        if c is not None and (n, axis) in self._checked:
            if c[0].ndim == 0:      # one slice (torch's q / k / v of a packed projection): a view
                return (data[(slice(None),) * axis + (int(c[0]),)],)
            return (np.take(data, c[0], axis=axis),)
        if idx.dtype.kind not in "iu":
            self.fail(f"indices must be integers, got {idx.dtype}", ShapeError)
        if c is not None and c[1] >= -n and c[2] < n:
            self._checked.add((n, axis))
        try:
            # np.take checks the range itself ([-n, n), as ONNX) and costs ~1 µs; a min and a
            # max first would cost three (an embedding lookup per decoder step)
            return (np.take(data, idx, axis=axis),)
        except IndexError:
            self.fail(f"indices must lie in [{-n}, {n - 1}] (axis {axis} has size {n}), got "
                      f"values in [{idx.min()}, {idx.max()}]", ShapeError)


@register_op
class Squeeze(_ConstInputs):
    op_type = "Squeeze"
    INPUTS = (1, 2)
    CONST_INPUTS = (1,)

    def run(self, x, *rest):
        return (x.reshape(self.planned((x, *rest), self._shape)),)

    def _shape(self, x, *rest):
        axes = self.ints((x, *rest), 1, "axes")
        if axes is None:
            return tuple(d for d in x.shape if d != 1)
        axes = tuple(sorted({_norm_axis(self, a, x.ndim, "axes") for a in axes}))
        bad = [a for a in axes if x.shape[a] != 1]
        if bad:
            self.fail(f"cannot squeeze axes {bad} of shape {x.shape} (size is not 1)", ShapeError)
        return tuple(d for i, d in enumerate(x.shape) if i not in axes)


@register_op
class Unsqueeze(_ConstInputs):
    op_type = "Unsqueeze"
    INPUTS = (2, 2)
    CONST_INPUTS = (1,)

    def run(self, x, axes_in):
        return (x.reshape(self.planned((x, axes_in), self._shape)),)

    def _shape(self, x, axes_in):
        axes = self.ints((x, axes_in), 1, "axes")
        rank = x.ndim + len(axes)
        axes = sorted(_norm_axis(self, a, rank, "axes") for a in axes)
        if len(set(axes)) != len(axes):
            self.fail(f"axes {axes} contain duplicates", ShapeError)
        shape = list(x.shape)
        for a in axes:
            shape.insert(a, 1)
        return tuple(shape)


@register_op
class Transpose(Op):
    op_type = "Transpose"
    ATTRS = {"perm": ("ints", None)}

    def run(self, x):
        perm = self.attrs["perm"]
        if perm is None:
            return (np.transpose(x),)
        if sorted(perm) != list(range(x.ndim)):
            self.fail(f"perm {perm} is not a permutation of the {x.ndim} axes", ShapeError)
        return (np.transpose(x, perm),)


def reshape_target(op: Op, in_shape: tuple[int, ...], shape: list[int], allowzero: int):
    """ONNX Reshape: 0 copies the input dim (unless allowzero), one -1 is inferred."""
    out = []
    for i, d in enumerate(shape):
        if d == 0 and not allowzero:
            if i >= len(in_shape):
                op.fail(f"shape {shape}: 0 at position {i} but input rank is {len(in_shape)}",
                        ShapeError)
            d = in_shape[i]
        elif d < -1:
            op.fail(f"shape {shape} has a negative dim other than -1", ShapeError)
        out.append(d)
    if out.count(-1) > 1:
        op.fail(f"shape {shape} has more than one -1", ShapeError)
    size = math.prod(in_shape)
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or size % known:
            op.fail(f"cannot reshape {in_shape} to {shape}", ShapeError)
        out[out.index(-1)] = size // known
    if math.prod(out) != size:
        op.fail(f"cannot reshape {in_shape} (size {size}) to {shape}", ShapeError)
    return tuple(out)


@register_op
class Reshape(_ConstInputs):
    op_type = "Reshape"
    INPUTS = (2, 2)
    ATTRS = {"allowzero": ("int", 0)}
    CONST_INPUTS = (1,)

    def run(self, x, shape_in):
        if self._shape_only:       # a constant target: its resolution depends on x.shape alone
            return (x.reshape(self.cached(x.shape, self._target, x, shape_in)),)
        return (x.reshape(self._target(x, shape_in)),)

    def _target(self, x, shape_in):
        shape = self.ints((x, shape_in), 1, "shape")
        return reshape_target(self, x.shape, shape, self.attrs["allowzero"])


@register_op
class Flatten(Op):
    op_type = "Flatten"
    ATTRS = {"axis": ("int", 1)}

    def run(self, x):
        axis = self.attrs["axis"]
        if not -x.ndim <= axis <= x.ndim:
            self.fail(f"axis {axis} is out of range for rank {x.ndim}", ShapeError)
        if axis < 0:  # axis lies in [-r, r]: -1 keeps the last dim apart
            axis += x.ndim
        return (x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:])),)


def onnx_slice(start: int, end: int, step: int, dim: int) -> slice:
    """ONNX Slice clamping for one axis, as a Python slice (negative ends mean 'before 0')."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        return slice(start, end, step)
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    if dim == 0:
        return slice(0, 0, step)
    return slice(start, end if end >= 0 else None, step)


@register_op
class Slice(_ConstInputs):
    op_type = "Slice"
    INPUTS = (3, 5)
    CONST_INPUTS = (1, 2, 3, 4)

    def run(self, x, *rest):
        return (x[self.planned((x, *rest), self._index)],)

    def _index(self, x, *rest):
        inputs = (x, *rest)
        starts, ends = self.ints(inputs, 1, "starts"), self.ints(inputs, 2, "ends")
        axes = self.ints(inputs, 3, "axes")
        steps = self.ints(inputs, 4, "steps")
        if axes is None:
            axes = list(range(len(starts)))
        if steps is None:
            steps = [1] * len(starts)
        if not len(starts) == len(ends) == len(axes) == len(steps):
            self.fail(f"starts/ends/axes/steps lengths differ: {len(starts)}, {len(ends)}, "
                      f"{len(axes)}, {len(steps)}", ShapeError)
        index = [slice(None)] * x.ndim
        seen = set()
        for s, e, a, st in zip(starts, ends, axes, steps):
            a = _norm_axis(self, a, x.ndim, "axes")
            if a in seen or st == 0:
                self.fail(f"axes repeat or a step is 0 (axes {axes}, steps {steps})", ShapeError)
            seen.add(a)
            index[a] = onnx_slice(s, e, st, x.shape[a])
        return tuple(index)


@register_op
class Concat(Op):
    op_type = "Concat"
    INPUTS = (1, None)
    ATTRS = {"axis": ("int", 0)}

    def run(self, *xs):
        axis = _norm_axis(self, self.attrs["axis"], xs[0].ndim)
        return (np.concatenate(xs, axis=axis),)


@register_op
class Shape(Op):
    op_type = "Shape"
    ATTRS = {"start": ("int", 0), "end": ("int", None)}

    def run(self, x):
        shape = np.array(x.shape, dtype=np.int64)
        start, end = self.attrs["start"], self.attrs["end"]
        return (shape[onnx_slice(start, x.ndim if end is None else end, 1, x.ndim)],)


@register_op
class Size(Op):
    op_type = "Size"

    def run(self, x):
        return (np.array(x.size, dtype=np.int64),)


@register_op
class Constant(Op):
    """A constant given by a JSON attribute (tensor-valued Constants become initializers)."""
    op_type = "Constant"
    INPUTS = (0, 0)
    ATTRS = {"value_float": ("float", None), "value_floats": ("floats", None),
             "value_int": ("int", None), "value_ints": ("ints", None)}

    @classmethod
    def check_attrs(cls, attrs, node):
        given = [k for k, v in attrs.items() if v is not None]
        if len(given) != 1:
            raise ModelError(f"node {node.name!r} (Constant): exactly one value attribute is "
                             f"needed, got {given}")

    def prepare(self, initializers):
        key, value = next((k, v) for k, v in self.attrs.items() if v is not None)
        dtype = self.map_dtype("float32") if "float" in key else np.int64
        self.value = np.array(value, dtype=dtype)
        self.value.setflags(write=False)

    def run(self):
        return (self.value,)


@register_op
class ConstantOfShape(_ConstInputs):
    """`value` (a number) and `dtype` (a dtype name) replace ONNX's one-element tensor attr."""
    op_type = "ConstantOfShape"
    ATTRS = {"value": ("float", 0.0), "dtype": ("string", "float32")}
    CONST_INPUTS = (0,)

    @classmethod
    def check_attrs(cls, attrs, node):
        check_dtype_name(attrs["dtype"], f"node {node.name!r} (ConstantOfShape)")

    def prepare(self, initializers):
        super().prepare(initializers)
        self.dtype = self.map_dtype(self.attrs["dtype"])

    def run(self, shape_in):
        shape = self.ints((shape_in,), 0, "shape")
        if any(d < 0 for d in shape):
            self.fail(f"shape {shape} has a negative dim", ShapeError)
        return (np.full(shape, self.attrs["value"], dtype=self.dtype),)


@register_op
class Expand(_ConstInputs):
    op_type = "Expand"
    INPUTS = (2, 2)
    CONST_INPUTS = (1,)

    def run(self, x, shape_in):
        shape = self.ints((x, shape_in), 1, "shape")
        try:
            target = np.broadcast_shapes(x.shape, tuple(shape))
        except ValueError:
            self.fail(f"cannot expand {x.shape} to {shape}", ShapeError)
        return (np.broadcast_to(x, target),)


@register_op
class Split(_ConstInputs):
    """Split sizes as input 1 (opset 13+) or `num_outputs` (opset 18), else equal parts."""
    op_type = "Split"
    INPUTS = (1, 2)
    OUTPUTS = (1, None)
    ATTRS = {"axis": ("int", 0), "num_outputs": ("int", None)}
    CONST_INPUTS = (1,)

    @classmethod
    def check_attrs(cls, attrs, node):
        n = attrs["num_outputs"]
        if n is not None and n != len(node.outputs):
            raise ModelError(f"node {node.name!r} (Split): num_outputs is {n} but the node has "
                             f"{len(node.outputs)} outputs")

    def run(self, x, *rest):
        axis = _norm_axis(self, self.attrs["axis"], x.ndim)
        n_out, dim = len(self.node.outputs), x.shape[axis]
        sizes = self.ints((x, *rest), 1, "split")
        if sizes is None:
            # ONNX: equal chunks of ceil(dim / n); the last one may be smaller (opset 18)
            chunk = -(-dim // n_out)
            sizes = [min(chunk, max(dim - i * chunk, 0)) for i in range(n_out)]
        if len(sizes) != n_out or sum(sizes) != dim or min(sizes) < 0:
            self.fail(f"split sizes {sizes} do not partition axis {axis} of size {dim} into "
                      f"{n_out} outputs", ShapeError)
        return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


@register_op
class Pad(_ConstInputs):
    """Pad in the opset-18 form: inputs (data, pads, constant_value?, axes?), attr `mode`
    (constant, reflect, edge, wrap). Negative pads crop. The frontend rewrites the opset < 11
    attribute form (pads, value) into inputs."""
    op_type = "Pad"
    INPUTS = (2, 4)
    ATTRS = {"mode": ("string", "constant")}
    CONST_INPUTS = (1, 3)

    @classmethod
    def check_attrs(cls, attrs, node):
        if attrs["mode"] not in _PAD_MODES:
            raise ModelError(f"node {node.name!r} (Pad): mode {attrs['mode']!r} is not one of "
                             f"{sorted(_PAD_MODES)}")

    def _plan(self, x, pads, axes):
        axes = list(range(x.ndim)) if axes is None else \
            [_norm_axis(self, a, x.ndim, "axes") for a in axes]
        if len(pads) != 2 * len(axes) or len(set(axes)) != len(axes):
            self.fail(f"pads {pads} do not fit axes {axes} (need 2 per axis)", ShapeError)
        width = [[0, 0] for _ in range(x.ndim)]
        for i, a in enumerate(axes):
            width[a] = [pads[i], pads[i + len(axes)]]
        crop = tuple(slice(max(-b, 0), x.shape[a] - max(-e, 0))
                     for a, (b, e) in enumerate(width))
        return crop, [(max(b, 0), max(e, 0)) for b, e in width]

    def run(self, x, *rest):
        inputs = (x, *rest)
        pads = self.ints(inputs, 1, "pads")
        axes = self.ints(inputs, 3, "axes")
        # pads may be computed at run time: they are part of the key
        key = (x.shape, tuple(pads), None if axes is None else tuple(axes))
        crop, width = self.cached(key, self._plan, x, pads, axes)
        x = x[crop]
        mode = self.attrs["mode"]
        if mode == "constant":
            value = rest[1] if len(rest) > 1 and rest[1] is not None else None
            cval = 0 if value is None or value.size == 0 else value.reshape(-1)[0]
            y = np.empty(tuple(n + b + e for n, (b, e) in zip(x.shape, width)), x.dtype)
            y[...] = cval
            y[tuple(slice(b, b + n) for n, (b, _) in zip(x.shape, width))] = x
            return (y,)
        if x.size == 0 and any(w != (0, 0) for w in width):
            self.fail(f"mode {mode!r} cannot pad an empty tensor", ShapeError)
        # np.pad costs ~30 µs of Python per call, which dominates a streaming model's small
        # tensors (a VAD pads every 36 ms chunk); one gather per padded axis does the same
        for a, (b, e) in enumerate(width):
            if b or e:
                x = np.take(x, _pad_index(mode, x.shape[a], b, e), axis=a)
        return (x,)


@functools.lru_cache(maxsize=256)
def _pad_index(mode: str, n: int, before: int, after: int) -> np.ndarray:
    """Source index of every output position of a non-constant pad along one axis, as np.pad
    computes it (reflect without repeating the edge, periodically for pads longer than n)."""
    i = np.arange(-before, n + after)
    if mode == "edge" or n == 1:
        return np.clip(i, 0, n - 1)
    if mode == "wrap":
        return i % n
    period = 2 * (n - 1)
    j = i % period
    return np.where(j >= n, period - j, j)


@register_op
class Range(Op):
    """start + i·delta for i < max(ceil((limit − start) / delta), 0), in the inputs' type
    (ONNX Range; the count is computed in float64, as onnx's reference does)."""
    op_type = "Range"
    INPUTS = (3, 3)
    ATTRS = {"stash_type": ("int", 1)}

    def run(self, start, limit, delta):
        if any(v.size != 1 for v in (start, limit, delta)):
            self.fail(f"start, limit and delta must be scalars, got shapes "
                      f"{[v.shape for v in (start, limit, delta)]}", ShapeError)
        dt = start.dtype
        s, lim, d = (v.reshape(()).item() for v in (start, limit, delta))
        if d == 0:
            self.fail("delta is 0: the range would never reach its limit", ShapeError)
        n = max(int(math.ceil((lim - s) / d)), 0)
        check_made(self, (n,))
        return ((np.asarray(s, dt) + np.arange(n, dtype=dt) * np.asarray(d, dt)).astype(dt),)


@register_op
class Tile(_ConstInputs):
    op_type = "Tile"
    INPUTS = (2, 2)
    CONST_INPUTS = (1,)

    def run(self, x, repeats_in):
        reps = self.ints((x, repeats_in), 1, "repeats")
        if len(reps) != x.ndim or any(r < 0 for r in reps):
            self.fail(f"repeats {reps} must hold one non-negative count per input dim "
                      f"(rank {x.ndim})", ShapeError)
        check_made(self, [d * r for d, r in zip(x.shape, reps)])
        return (np.tile(x, reps),)


@register_op
class CumSum(Op):
    """Cumulative sum along `axis` (input 1), optionally exclusive and/or reversed."""
    op_type = "CumSum"
    INPUTS = (2, 2)
    ATTRS = {"exclusive": ("int", 0), "reverse": ("int", 0)}

    def run(self, x, axis_in):
        if axis_in.size != 1 or axis_in.dtype.kind not in "iu":
            self.fail(f"axis must be an integer scalar, got {axis_in.dtype} {axis_in.shape}",
                      ShapeError)
        axis = _norm_axis(self, int(axis_in.reshape(-1)[0]), max(x.ndim, 1))
        y = np.flip(x, axis) if self.attrs["reverse"] else x
        y = np.cumsum(y, axis=axis, dtype=x.dtype)
        if self.attrs["exclusive"]:
            y = np.concatenate([np.zeros_like(np.take(y, [0], axis=axis)),
                                np.take(y, range(y.shape[axis] - 1), axis=axis)], axis=axis)
        return (np.flip(y, axis) if self.attrs["reverse"] else y,)


@register_op
class TopK(_ConstInputs):
    """The k largest (or smallest) values along `axis` and their int64 indices; equal values
    keep the lower index first (ONNX), which a stable sort gives."""
    op_type = "TopK"
    INPUTS = (2, 2)
    OUTPUTS = (1, 2)
    ATTRS = {"axis": ("int", -1), "largest": ("int", 1), "sorted": ("int", 1)}
    CONST_INPUTS = (1,)

    def run(self, x, k_in):
        k = self.ints((x, k_in), 1, "K")
        axis = _norm_axis(self, self.attrs["axis"], x.ndim)
        if len(k) != 1 or not 0 <= k[0] <= x.shape[axis]:
            self.fail(f"K must be one value in [0, {x.shape[axis]}] (axis {axis} of "
                      f"{x.shape}), got {k}", ShapeError)
        # stable sort on the negated values for "largest": ties stay in index order; NaN
        # counts as the largest value, as in onnx's reference
        key = x
        if self.attrs["largest"]:
            key = -x if x.dtype.kind in "fi" else np.iinfo(x.dtype).max - x
        idx = np.argsort(key, axis=axis, kind="stable")
        idx = np.take(idx, range(k[0]), axis=axis).astype(np.int64)
        return np.take_along_axis(x, idx, axis=axis), idx


@register_op
class Einsum(Op):
    """np.einsum with the equation as written (explicit or implicit output, ellipses)."""
    op_type = "Einsum"
    INPUTS = (1, None)
    ATTRS = {"equation": ("string", REQUIRED)}

    @classmethod
    def check_attrs(cls, attrs, node):
        eq = attrs["equation"]
        operands = len(eq.replace(" ", "").split("->")[0].split(","))
        if operands != len(node.inputs):
            raise ModelError(f"node {node.name!r} (Einsum): equation {eq!r} has {operands} "
                             f"operands, the node {len(node.inputs)} inputs")

    def run(self, *xs):
        try:
            y = np.einsum(self.attrs["equation"].replace(" ", ""), *xs, optimize=len(xs) > 2)
        except ValueError as e:
            self.fail(f"equation {self.attrs['equation']!r} does not fit the inputs "
                      f"{[x.shape for x in xs]}: {e}", ShapeError)
        return (np.asarray(y, dtype=np.result_type(*xs)),)


@register_op
class LayoutChain(Op):
    """Consecutive layout steps on one tensor run as one node (qengine/graph/layout.py
    `fold_layout_chains`, made by a Session for its own executor, never saved): `steps` are
    "reshape:d0,d1,..." (a static target), "transpose:p0,p1,..." and "index:axis:i" (one slice
    of an axis, as Gather of a scalar index). Each is the NumPy view the node it replaces
    returns, so the result is the same array — the chain only saves the dispatches."""
    op_type = "LayoutChain"
    ATTRS = {"steps": ("strings", REQUIRED), "shape_in": ("ints", REQUIRED),
             "fused_nodes": ("strings", None)}

    def prepare(self, initializers):
        self._in = tuple(self.attrs["shape_in"])
        self._steps = []
        for s in self.attrs["steps"]:
            kind, _, rest = s.partition(":")
            if kind == "reshape":
                self._steps.append((0, tuple(int(v) for v in rest.split(",") if v)))
            elif kind == "transpose":
                self._steps.append((1, tuple(int(v) for v in rest.split(","))))
            elif kind == "index":
                axis, i = (int(v) for v in rest.split(":"))
                self._steps.append((2, (slice(None),) * axis + (i,)))
            else:
                self.fail(f"unknown step {s!r}")

    def run(self, x):
        if x.shape != self._in:
            self.fail(f"expects an input of shape {self._in}, got {x.shape}", ShapeError)
        for kind, p in self._steps:
            x = x.reshape(p) if kind == 0 else x.transpose(p) if kind == 1 else x[p]
        return (x,)
