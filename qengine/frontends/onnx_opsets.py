"""Which versions of which ONNX operators qengine implements: plain data, no onnx import.

An ONNX model names an opset, and each operator's meaning at that opset is the operator
schema with the largest `since_version` <= opset. For every default-domain op qengine
imports, `OP_VERSIONS` lists every such version from the one in effect at `MIN_OPSET` up to
what `MAX_OPSET` reaches, each with what changed and what qengine does about it:

* ``BASE``   — the version in effect at MIN_OPSET (or the op's first version); implemented.
* ``SAME``   — same semantics as the previous version: only type lists, wording or accepted
  value ranges changed (tests check that attributes, inputs and outputs are unchanged).
* ``IMPLEMENTED`` — the semantics changed (new attributes/inputs, a different default or
  meaning); qengine implements this version, in the op or by a rewrite in the ONNX frontend.
* ``REFUSED`` — a semantic change qengine does not implement: models resolving to it are
  refused with the note as the reason.

`tests/test_onnx_opsets.py` compares this table with the installed onnx package's schemas, so a
new onnx release that adds an operator version fails a test instead of being accepted unread.
MAX_OPSET only moves after every op here has been reviewed against the new opset.
"""
from __future__ import annotations

from typing import NamedTuple

from ..errors import ModelError

MIN_OPSET = 7
MAX_OPSET = 28

BASE, SAME, IMPLEMENTED, REFUSED = "base", "same", "implemented", "refused"


class OpVersion(NamedTuple):
    since: int
    kind: str
    note: str


def _v(*entries) -> tuple[OpVersion, ...]:
    return tuple(OpVersion(*e) for e in entries)


_BF16 = "adds bfloat16"
_NEW_TYPES = "adds element types qengine has no dtype for (refused as dtypes)"
_BINARY = _v((7, BASE, "multidirectional (NumPy) broadcasting; opset 6's broadcast/axis "
                       "attributes are gone"),
             (13, SAME, _BF16), (14, SAME, "adds 8- and 16-bit integer types"))
_UNARY_FLOAT = _v((6, BASE, "consumed_inputs is gone"), (13, SAME, _BF16))
_AXES_TO_INPUT = "axes becomes input 1 (the frontend turns older models' attribute into it)"

_REDUCE = _v((1, BASE, "axes attribute (the frontend turns it into an input)"),
             (11, SAME, "wording: negative axes allowed"), (13, SAME, _BF16),
             (18, IMPLEMENTED, _AXES_TO_INPUT + "; adds noop_with_empty_axes"))
_ARG = _v((1, BASE, "index of the max / min along axis, int64; keepdims"),
          (11, SAME, "wording: negative axis allowed"),
          (12, IMPLEMENTED, "adds select_last_index (ties to the last index)"),
          (13, SAME, _BF16))

OP_VERSIONS: dict[str, tuple[OpVersion, ...]] = {
    "Abs": _UNARY_FLOAT,
    "Add": _BINARY,
    "AveragePool": _v(
        (7, BASE, "count_include_pad"),
        (10, IMPLEMENTED, "adds ceil_mode"),
        (11, SAME, "wording: output-shape formulas restated, auto_pad SAME gives "
                   "ceil(in / stride)"),
        (19, IMPLEMENTED, "adds dilations"),
        (22, SAME, f"{_BF16}; wording: with ceil_mode a window starting in the right padding "
                   f"is dropped (qengine does so at every opset, like onnxruntime)")),
    "BatchNormalization": _v(
        (7, BASE, "spatial attribute (the frontend drops it; spatial=0 statistics of shape "
                  "(C, D1, ...) broadcast)"),
        (9, IMPLEMENTED, "spatial is gone: statistics are per channel"),
        (14, IMPLEMENTED, "adds training_mode and renames the statistics outputs (inference "
                          "only: training_mode=1 and the running-statistics outputs are "
                          "refused)"),
        (15, SAME, "scale/bias and mean/var may have their own float types")),
    "Cast": _v(
        (6, BASE, "`to` is an element-type enum"),
        (9, SAME, "adds string tensors (refused as a dtype)"),
        (13, SAME, f"{_BF16}; wording: conversion rules spelled out"),
        (19, IMPLEMENTED, "adds float8 types and `saturate`, which only affects float8 "
                          "targets (refused as dtypes), so qengine accepts and ignores it"),
        (21, SAME, _NEW_TYPES + " (int4/uint4)"),
        (23, SAME, _NEW_TYPES + " (float4e2m1)"),
        (24, IMPLEMENTED, "adds float8e8m0 and `round_mode`, which only affects float8e8m0 "
                          "targets (refused as a dtype), so qengine accepts and ignores it"),
        (25, SAME, _NEW_TYPES + " (int2/uint2)"),
        (28, SAME, _NEW_TYPES + " (float6)")),
    "Clip": _v(
        (6, BASE, "min/max attributes (the frontend turns them into inputs)"),
        (11, IMPLEMENTED, "min and max become optional inputs"),
        (12, SAME, "adds integer types"),
        (13, SAME, f"{_BF16}; wording: min > max gives max everywhere (qengine computes "
                   f"min(max(x, min), max) at every opset)")),
    "Concat": _v((4, BASE, "axis required"),
                 (11, SAME, "wording: negative axis allowed (qengine accepts it at every "
                            "opset)"),
                 (13, SAME, _BF16)),
    "Constant": _v(
        (1, BASE, "`value` tensor attribute"),
        (9, SAME, "adds non-float types"),
        (11, IMPLEMENTED, "adds sparse_value (refused: qengine has no sparse tensors)"),
        (12, IMPLEMENTED, "adds value_float(s)/value_int(s) (implemented) and "
                          "value_string(s) (refused: no string dtype)"),
        (13, SAME, _BF16), (19, SAME, _NEW_TYPES), (21, SAME, _NEW_TYPES),
        (23, SAME, _NEW_TYPES), (24, SAME, _NEW_TYPES), (25, SAME, _NEW_TYPES)),
    "ConstantOfShape": _v(
        (9, BASE, "value tensor attribute"),
        (20, SAME, _BF16 + " and float8"), (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES),
        (24, SAME, _NEW_TYPES), (25, SAME, _NEW_TYPES)),
    "Conv": _v((1, BASE, "N-D convolution"),
               (11, SAME, "wording: auto_pad, dilations and strides defaults spelled out"),
               (22, SAME, _BF16)),
    "ConvInteger": _v((10, BASE, "int32 convolution of (x − x_zero_point) and "
                                 "(w − w_zero_point); qengine runs 1-D and 2-D ones")),
    "Div": _BINARY,
    "DynamicQuantizeLinear": _v((11, BASE, "float32 → uint8 with the scale and zero point of the "
                                           "input's range widened to include 0")),
    "Dropout": _v(
        (7, BASE, "inference: identity (is_test is gone)"),
        (10, IMPLEMENTED, "the mask output is bool (qengine outputs an all-true mask)"),
        (12, IMPLEMENTED, "ratio and training_mode become inputs, adds seed (inference "
                          "only: a training_mode that is not a constant false is refused)"),
        (13, SAME, _BF16), (22, SAME, _NEW_TYPES + " (float8)")),
    "Equal": _v((7, BASE, "integer and bool types"), (11, SAME, "adds float types"),
                (13, SAME, _BF16), (19, SAME, "adds string (refused as a dtype)")),
    "Erf": _v((9, BASE, "elementwise erf (include/qengine/chain/qe_f32_math.h, <= 1.2 ulp)"),
              (13, SAME, _BF16)),
    "Exp": _UNARY_FLOAT,
    "Ceil": _UNARY_FLOAT, "Log": _UNARY_FLOAT,
    "Reciprocal": _UNARY_FLOAT,
    "Round": _v((11, BASE, "round half to even"), (22, SAME, _BF16)),
    "Sign": _v((9, BASE, "-1, 0 or 1, any numeric type"), (13, SAME, _BF16)),
    "CastLike": _v((15, BASE, "cast to the second input's element type"),
                   (19, IMPLEMENTED, "adds saturate (it only matters for float8 targets, a "
                                     "dtype qengine does not have)"),
                   (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES),
                   (24, IMPLEMENTED, "adds round_mode (float8e8m0 targets only)"),
                   (25, SAME, _NEW_TYPES)),
    "Expand": _v((8, BASE, "bidirectional broadcast to a shape"), (13, SAME, _BF16)),
    "Flatten": _v((1, BASE, "flatten to 2-D at axis"), (9, SAME, "adds non-float types"),
                  (11, SAME, "wording: negative axis allowed (qengine accepts it at every "
                             "opset)"),
                  (13, SAME, _BF16), (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES),
                  (24, SAME, _NEW_TYPES), (25, SAME, _NEW_TYPES)),
    "Floor": _UNARY_FLOAT,
    "Gelu": _v((20, BASE, "approximate='none' (the erf form); 'tanh' is refused (its X³ is a "
                          "Pow whose float32 rounding qengine does not reproduce)"),),
    "GRU": _v((7, BASE, "seq-major layout"), (14, IMPLEMENTED, "adds layout (batch-major)"),
              (22, SAME, _BF16)),
    "Gather": _v((1, BASE, "gather along axis"),
                 (11, SAME, "wording: negative indices allowed (qengine accepts them at every "
                            "opset)"),
                 (13, SAME, _BF16)),
    "Gemm": _v((7, BASE, "C unidirectionally broadcast (opset 6's broadcast attribute is gone)"),
               (9, SAME, "adds integer types"), (11, IMPLEMENTED, "C becomes optional"),
               (13, SAME, _BF16)),
    "GlobalAveragePool": _v((1, BASE, "mean over spatial axes"), (22, SAME, _BF16)),
    "GlobalMaxPool": _v((1, BASE, "max over spatial axes"), (22, SAME, _BF16)),
    "Greater": _v((7, BASE, "float types"), (9, SAME, "adds integer types"), (13, SAME, _BF16)),
    "LayerNormalization": _v((17, BASE, "normalize over axes [axis, rank), ·Scale + B, "
                                        "computed in float32; Mean and InvStdDev outputs")),
    "HardSigmoid": _v((6, BASE, "alpha, beta"), (22, SAME, _BF16)),
    "HardSwish": _v((14, BASE, "x * HardSigmoid(x; 1/6, 1/2)"), (22, SAME, _BF16)),
    "Identity": _v((1, BASE, "tensors"), (13, SAME, _BF16),
                   (14, SAME, "adds sequence types (refused: tensors only)"),
                   (16, SAME, "adds optional types (refused: tensors only)"),
                   (19, SAME, _NEW_TYPES), (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES),
                   (24, SAME, _NEW_TYPES), (25, SAME, _NEW_TYPES)),
    "If": _v((1, BASE, "two tensor-valued branches; a constant condition is folded away"),
             (11, SAME, "the branches' output shapes may differ"), (13, SAME, _BF16),
             (16, SAME, "adds sequence and optional types (refused: tensors only)"),
             (19, SAME, _NEW_TYPES), (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES),
             (24, SAME, _NEW_TYPES), (25, SAME, _NEW_TYPES)),
    "Loop": _v((1, BASE, "trip count and/or condition, loop-carried tensors, scan outputs "
                         "stacked on a new first axis"),
               (11, SAME, "wording: scan outputs' shapes may vary (qengine refuses that)"),
               (13, SAME, "adds sequence types (refused: tensors only)"),
               (16, SAME, "adds optional types (refused: tensors only)"),
               (19, SAME, _NEW_TYPES), (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES),
               (24, SAME, _NEW_TYPES), (25, SAME, _NEW_TYPES)),
    "LRN": _v((1, BASE, "cross-channel normalisation"), (13, SAME, _BF16)),
    "LSTM": _v((7, BASE, "seq-major layout"), (14, IMPLEMENTED, "adds layout (batch-major)"),
               (22, SAME, _BF16)),
    "LeakyRelu": _v((6, BASE, "alpha"), (16, SAME, _BF16)),
    "Less": _v((7, BASE, "float types"), (9, SAME, "adds integer types"), (13, SAME, _BF16)),
    "LogSoftmax": _v(
        (1, BASE, "normalises the input flattened to 2-D at axis (default 1); the frontend "
                  "rewrites it as Flatten -> LogSoftmax -> Reshape"),
        (11, SAME, "wording: negative axis allowed"),
        (13, IMPLEMENTED, "normalises along the single axis (default -1)")),
    "MatMulInteger": _v((10, BASE, "int32 (A − a_zero_point) @ (B − b_zero_point); zero points "
                                   "per tensor, per row of A, per column of B")),
    "MatMul": _v((1, BASE, "NumPy matmul"), (9, SAME, "adds integer types"), (13, SAME, _BF16)),
    "Max": _v((6, BASE, "inputs of one shape (qengine's broadcasting is a superset)"),
              (8, IMPLEMENTED, "multidirectional broadcasting"),
              (12, SAME, "adds integer types"), (13, SAME, _BF16)),
    "MaxPool": _v(
        (1, BASE, "kernel, pads, strides, auto_pad"),
        (8, IMPLEMENTED, "adds storage_order and the Indices output (refused when read)"),
        (10, IMPLEMENTED, "adds ceil_mode and dilations"),
        (11, SAME, "wording: dilation/stride defaults spelled out"),
        (12, SAME, "adds int8/uint8"),
        (22, SAME, f"{_BF16}; wording: with ceil_mode a window starting in the right padding "
                   f"is dropped (qengine does so at every opset, like onnxruntime)")),
    "Mean": _v((6, BASE, "inputs of one shape (qengine's broadcasting is a superset)"),
               (8, IMPLEMENTED, "multidirectional broadcasting"), (13, SAME, _BF16)),
    "Min": _v((6, BASE, "inputs of one shape (qengine's broadcasting is a superset)"),
              (8, IMPLEMENTED, "multidirectional broadcasting"),
              (12, SAME, "adds integer types"), (13, SAME, _BF16)),
    "Mul": _BINARY,
    "Neg": _v((6, BASE, "signed types"), (13, SAME, _BF16)),
    "Not": _v((1, BASE, "logical not")),
    "Pad": _v(
        (2, BASE, "pads/value attributes (the frontend turns them into inputs)"),
        (11, IMPLEMENTED, "pads and constant_value become inputs"),
        (13, SAME, f"{_BF16}, bool, string (refused as a dtype)"),
        (18, IMPLEMENTED, "adds the axes input"),
        (19, IMPLEMENTED, "adds mode 'wrap'"),
        (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES), (24, SAME, _NEW_TYPES),
        (25, SAME, _NEW_TYPES)),
    "Pow": _v((7, BASE, "base and exponent of one float type, broadcast"),
              (12, IMPLEMENTED, "the exponent may have its own (integer) type; the result "
                                "has the base's type"),
              (13, SAME, _BF16), (15, SAME, "adds bfloat16 exponents")),
    "QuantizeLinear": _v(
        (10, BASE, "per-tensor scale and zero point, uint8/int8"),
        (13, IMPLEMENTED, "adds axis: per-axis scales"),
        (19, IMPLEMENTED, "adds float16/bfloat16 scales and float8 outputs with saturate, "
                          "which only affects float8 (refused as dtypes): accepted, ignored"),
        (21, IMPLEMENTED, "adds block_size (blocked scales), output_dtype, int16/uint16 "
                          "(and int4/uint4, refused as activation types)"),
        (23, IMPLEMENTED, "adds precision (qengine computes in float32 only; others are "
                          "refused) and float4"),
        (24, SAME, "adds float8e8m0 scales (refused as a dtype)"),
        (25, SAME, "adds int2/uint2 (refused as dtypes)"),
        (28, SAME, "adds float6 types (refused as dtypes)")),
    "DequantizeLinear": _v(
        (10, BASE, "per-tensor scale and zero point, uint8/int8/int32"),
        (13, IMPLEMENTED, "adds axis: per-axis scales"),
        (19, SAME, "adds float16/bfloat16 scales and float8 inputs (refused as dtypes)"),
        (21, IMPLEMENTED, "adds block_size (blocked scales), int16/uint16 and int4/uint4 "
                          "(unpacked to int8/uint8 at import)"),
        (23, IMPLEMENTED, "adds output_dtype (float32 only)"),
        (24, SAME, "adds float8e8m0 scales (refused as a dtype)"),
        (25, SAME, "adds int2/uint2 (refused as dtypes)"),
        (28, SAME, "adds float6 types (refused as dtypes)")),
    "ReduceMax": _v(
        (1, BASE, "axes attribute (the frontend turns it into an input)"),
        (11, SAME, "wording: negative axes allowed"), (12, SAME, "adds int8/uint8"),
        (13, SAME, f"{_BF16}; wording: an empty reduction gives -inf (or the type's minimum)"),
        (18, IMPLEMENTED, _AXES_TO_INPUT + "; adds noop_with_empty_axes"),
        (20, SAME, "adds bool")),
    "ReduceMean": _v(
        (1, BASE, "axes attribute (the frontend turns it into an input)"),
        (11, SAME, "wording: negative axes allowed"), (13, SAME, _BF16),
        (18, IMPLEMENTED, _AXES_TO_INPUT + "; adds noop_with_empty_axes")),
    "ReduceMin": _v(
        (1, BASE, "axes attribute (the frontend turns it into an input)"),
        (11, SAME, "wording: negative axes allowed"), (12, SAME, "adds int8/uint8"),
        (13, SAME, f"{_BF16}; wording: an empty reduction gives +inf (or the type's maximum)"),
        (18, IMPLEMENTED, _AXES_TO_INPUT + "; adds noop_with_empty_axes"),
        (20, SAME, "adds bool")),
    "ReduceSum": _v(
        (1, BASE, "axes attribute (the frontend turns it into an input)"),
        (11, SAME, "wording: negative axes allowed"),
        (13, IMPLEMENTED, _AXES_TO_INPUT + "; adds noop_with_empty_axes")),
    "Relu": _v((6, BASE, "max(x, 0)"), (13, SAME, _BF16), (14, SAME, "adds signed integers")),
    "Reshape": _v((5, BASE, "shape input; 0 copies the input dim, -1 is inferred"),
                  (13, SAME, _BF16),
                  (14, IMPLEMENTED, "adds allowzero (0 means an empty dim)"),
                  (19, SAME, _NEW_TYPES), (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES),
                  (24, SAME, _NEW_TYPES), (25, SAME, _NEW_TYPES)),
    "Shape": _v((1, BASE, "the input's shape as int64"), (13, SAME, _BF16),
                (15, IMPLEMENTED, "adds start and end"),
                (19, SAME, _NEW_TYPES), (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES),
                (24, SAME, _NEW_TYPES), (25, SAME, _NEW_TYPES)),
    "Scan": _v((8, BASE, "a leading batch axis on states and scan inputs, directions "
                         "(sequence_lens refused: every element scans the whole sequence)"),
               (9, IMPLEMENTED, "no batch axis; scan_input_axes / directions, "
                                "scan_output_axes / directions"),
               (11, SAME, "negative axes allowed"), (16, SAME, _BF16),
               (19, SAME, _NEW_TYPES), (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES),
               (24, SAME, _NEW_TYPES), (25, SAME, _NEW_TYPES)),
    "Sigmoid": _UNARY_FLOAT,
    "Size": _v((1, BASE, "the input's element count as an int64 scalar"), (13, SAME, _BF16),
               (19, SAME, _NEW_TYPES), (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES),
               (24, SAME, _NEW_TYPES), (25, SAME, _NEW_TYPES)),
    "Slice": _v((1, BASE, "starts/ends/axes attributes (the frontend turns them into inputs)"),
                (10, IMPLEMENTED, "starts, ends, axes and steps become inputs"),
                (11, SAME, "wording: negative axes allowed"),
                (13, SAME, f"{_BF16}; wording: clamping of starts/ends spelled out")),
    "Softmax": _v(
        (1, BASE, "normalises the input flattened to 2-D at axis (default 1); the frontend "
                  "rewrites it as Flatten -> Softmax -> Reshape"),
        (11, SAME, "wording: negative axis allowed"),
        (13, IMPLEMENTED, "normalises along the single axis (default -1)")),
    "Split": _v((2, BASE, "split attribute (the frontend turns it into an input)"),
                (11, SAME, "wording: negative axis allowed"),
                (13, IMPLEMENTED, "split sizes become input 1"),
                (18, IMPLEMENTED, "adds num_outputs; an uneven split makes the last chunk "
                                  "smaller")),
    "Sqrt": _UNARY_FLOAT,
    "Squeeze": _v((1, BASE, "axes attribute (the frontend turns it into an input)"),
                  (11, SAME, "wording: negative axes allowed"),
                  (13, IMPLEMENTED, "axes becomes input 1"),
                  (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES), (24, SAME, _NEW_TYPES),
                  (25, SAME, _NEW_TYPES)),
    "Sub": _BINARY,
    "Sum": _v((6, BASE, "inputs of one shape (qengine's broadcasting is a superset)"),
              (8, IMPLEMENTED, "multidirectional broadcasting"), (13, SAME, _BF16)),
    "Tanh": _UNARY_FLOAT,
    "Transpose": _v((1, BASE, "perm, default reversed"), (13, SAME, _BF16),
                    (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES), (24, SAME, _NEW_TYPES),
                    (25, SAME, _NEW_TYPES)),
    "Unsqueeze": _v((1, BASE, "axes attribute (the frontend turns it into an input)"),
                    (11, SAME, "wording: negative axes allowed"),
                    (13, IMPLEMENTED, "axes becomes input 1"),
                    (21, SAME, _NEW_TYPES), (23, SAME, _NEW_TYPES), (24, SAME, _NEW_TYPES),
                    (25, SAME, _NEW_TYPES)),
    "Where": _v((9, BASE, "select with broadcasting"), (16, SAME, _BF16)),
    # issue 15: the ops of audio front ends, segmentation and small transformers
    "ArgMax": _ARG, "ArgMin": _ARG,
    "ConvTranspose": _v((1, BASE, "N-D, groups, dilations, pads / output_padding / "
                                  "output_shape / auto_pad (NumPy)"),
                        (11, SAME, "wording: auto_pad SAME pads and output_shape"),
                        (22, SAME, _BF16)),
    "CumSum": _v((11, BASE, "cumulative sum along input axis; exclusive, reverse"),
                 (14, SAME, f"{_BF16}, float16")),
    "Einsum": _v((12, BASE, "Einstein summation (np.einsum: explicit or implicit output, "
                            "ellipses)"), (28, SAME, _BF16)),
    "InstanceNormalization": _v((6, BASE, "per sample and channel over the spatial axes"),
                                (22, SAME, _BF16)),
    "Mod": _v((10, BASE, "fmod=0: the divisor's sign (Python's %); fmod=1: C fmod"),
              (13, SAME, _BF16),
              (28, SAME, "wording: float remainders with fmod=0 defined (the divisor's sign, "
                         "as qengine computes them at every opset)")),
    "Range": _v((11, BASE, "start + i·delta, count max(ceil((limit − start) / delta), 0)"),
                (27, IMPLEMENTED, "adds stash_type: the accumulation type of 16-bit float "
                                  "ranges, which qengine has no dtype for (float32 / float64 / "
                                  "integer ranges are unaffected)")),
    "Resize": _v((10, BASE, "nearest / linear by scales, asymmetric coordinates, nearest "
                            "rounds down (what onnxruntime does; the frontend sets those "
                            "attributes)"),
                 (11, IMPLEMENTED, "adds roi, sizes, coordinate_transformation_mode, "
                                   "nearest_mode, cubic, exclude_outside, extrapolation_value"),
                 (13, IMPLEMENTED, f"{_BF16}; roi and scales may be omitted (qengine "
                                   f"treats every opset so)"),
                 (18, IMPLEMENTED, "adds antialias, axes and keep_aspect_ratio_policy"),
                 (19, IMPLEMENTED, "adds coordinate_transformation_mode half_pixel_symmetric")),
    "ReduceL1": _REDUCE, "ReduceL2": _REDUCE, "ReduceProd": _REDUCE,
    "ReduceSumSquare": _REDUCE,
    "ReduceLogSumExp": _REDUCE + _v((28, SAME, "drops the integer types")),
    "Tile": _v((6, BASE, "repeats as an input"), (13, SAME, _BF16)),
    "TopK": _v((1, BASE, "k attribute (the frontend turns it into input K)"),
               (10, IMPLEMENTED, "K becomes input 1"),
               (11, IMPLEMENTED, "adds largest and sorted; negative axis"),
               (24, SAME, _BF16)),
}


def op_version(op_type: str, opset: int, where: str = "") -> OpVersion:
    """The version of `op_type` a model of default-domain `opset` uses; ModelError when
    qengine does not import that op, the op does not exist yet at that opset, or its version
    there is one qengine refuses."""
    prefix = f"{where}: " if where else ""
    versions = OP_VERSIONS.get(op_type)
    if versions is None:
        raise ModelError(f"{prefix}ONNX op {op_type!r} is not supported (supported: "
                         f"{', '.join(sorted(OP_VERSIONS))})")
    usable = [v for v in versions if v.since <= opset]
    if not usable:
        raise ModelError(f"{prefix}{op_type} does not exist at opset {opset} (it was added "
                         f"in opset {versions[0].since})")
    v = usable[-1]
    if v.kind == REFUSED:
        done = [str(x.since) for x in versions if x.kind != REFUSED]
        raise ModelError(f"{prefix}{op_type}-{v.since} (in effect at opset {opset}) is not "
                         f"supported: {v.note} (qengine implements {op_type} versions "
                         f"{', '.join(done)})")
    return v
