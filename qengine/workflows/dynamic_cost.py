"""The cost model behind quantize_dynamic's keep-float rule: for each Conv / Gemm / MatMul it
would swap for a dynamic int8 op, predict the time of the float op and of the int8 op, and keep
the node in float when int8 would not be faster.

Why a model and not a stopwatch at quantize time: the decision must be the same every time the
same model is quantized (an engine file should not depend on how busy the machine was), it
needs no example inputs (dynamic quantization has no data, and real models have dynamic sizes),
and it can be tested. The price is that its constants describe today's kernels on the reference
machine; bench/dynamic_cost.py measures both ops on a grid of shapes and on the bench models'
layers, refits the constants and prints how well the model predicts each measured node — rerun
it when a float or int8 kernel changes.

The model (µs, one thread; terms are linear in work counts the node's weights and shapes give):

  int8 conv   C_I8 + Q·E_in + O·E_out + work / R      E_in / E_out: input / output elements
              work = GEMM MACs with the kernel's padding (N to panels of 32, K to groups of 4)
              plus the packing of P·K·g bytes (im2col, or the 1×1 path's pixel panels; im2col
              gathers byte by byte when Cin/g is not a multiple of 4: image stems), or,
              depthwise, P·ceil(C/64)·64·taps (vpdpbusd lanes, 1 in 4 useful)
  float conv  C_F + B·E_in + X·P·K·g + work_f / R_f + O_f·E_out
              im2col copy of P·K·g elements (none for a 1×1 stride-1 conv), the compiled FP32
              GEMM's MACs, or, depthwise, the compiled kernel's taps × outputs
  linear      the same shape: quantize M·K, GEMM, dequantize M·N; float: one BLAS call

When the sizes are static (shape inference on the float graph) the whole call is compared,
fixed costs included. When they are not (a dynamic image width), the comparison is per output
pixel (per row for a linear): the fixed costs drop out and E_in is taken as P·Cin·sh·sw.

A node stays float only when int8 is predicted slower by more than MARGIN: the model's typical
error (bench/dynamic_cost.py prints it) is about that size, and within it the int8 node still
has a 4× smaller weight.

One rule sits beside the linear terms: a depthwise convolution stays float unless its output
map is known to be small (fewer than DW_INT8_MAX_PIXELS pixels). Depthwise int8 has no
arithmetic to gain (vpdpbusd uses 1 lane in 4 there: the FP32 FMA rate), and it pays a quantize
pass and an output written back to NCHW from channels-last tiles, whose strided stores slow
down with the map's size in a way no per-element constant captures: on the Intel Xeon (Sapphire
Rapids) VM it measured 1.1–3× slower than the float kernel from 28×28 up, and 1.7–2× slower on
every depthwise layer of the real PP-OCRv4 recognizer (960 to 240 pixels; 7.05 vs 3.62 ms for
its 14 of them), while on 7×7 maps the float kernel's per-call cost makes int8 the faster one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# Fitted by bench/dynamic_cost.py --fit on the reference machine (AMD EPYC Zen 4, 2 vCPUs,
# AVX-512 VNNI, 1 thread); refitted 2026-11-29 after the FP32 convolutions were compiled (see
# BENCHMARKS.md). Units: µs, and µs per element or per MAC.
INT8 = {"call": 5.14, "quant_in": 4.09e-4, "out": 1.87e-4, "gemm_mac": 5.16e-6, "pack": 5.55e-6,
        "gather": 4.89e-4, "dw_lane": 2.93e-5,
        "lin_call": 5.16, "lin_quant": 5.43e-4, "lin_out": 1.29e-4, "lin_mac": 4.26e-6}
FLOAT = {"call": 7.56, "pad_in": 4.68e-4, "im2col": 8.92e-5, "gemm_mac": 2.07e-5,
         "dw_tap": 3.65e-5, "out": 4.73e-5, "lin_call": 4.33, "lin_mac": 1.97e-5}
MARGIN = 1.15
DW_INT8_MAX_PIXELS = 64     # depthwise: int8 only on output maps of fewer pixels (see above)


@dataclass(frozen=True)
class NodeCost:
    float_us: float
    int8_us: float
    basis: str          # "per call" or "per output pixel" / "per row" (sizes unknown)
    rule: str = ""      # why the node stays float whatever the predicted times, if it does

    @property
    def keep_float(self) -> bool:
        return bool(self.rule) or self.int8_us > MARGIN * self.float_us

    def describe(self) -> str:
        return (f"predicted int8 {self.int8_us:.3g} µs vs float {self.float_us:.3g} µs "
                f"{self.basis}" + (f"; {self.rule}" if self.rule else ""))


def _pad(v: int, m: int) -> int:
    return -(-v // m) * m


def conv_cost(w_shape, group=1, strides=None, pads=None, x_shape=None, y_shape=None) -> NodeCost:
    """Cost of a Conv with weights w_shape [Cout, Cin/g, k...] (1-D or 2-D). x_shape / y_shape:
    the static input / output shapes, or None when unknown (then per output pixel)."""
    cout, cin_g = int(w_shape[0]), int(w_shape[1])
    ks = [int(k) for k in w_shape[2:]]
    taps = math.prod(ks)
    g = int(group)
    cin = cin_g * g
    st = list(strides or [1] * len(ks))
    known = x_shape is not None and y_shape is not None and \
        all(isinstance(d, int) for d in (*x_shape, *y_shape))
    if known:
        p = math.prod(y_shape) // cout          # N · output spatial
        e_in = math.prod(x_shape)
        fixed_i8, fixed_f = INT8["call"], FLOAT["call"]
        basis = "per call"
    else:
        p = 1
        e_in = cin * math.prod(st)
        fixed_i8 = fixed_f = 0.0
        basis = "per output pixel"
    e_out = p * cout
    k = cin_g * taps
    depthwise = g > 1 and cin_g == 1 and cout == cin
    if depthwise:
        work_i8 = INT8["dw_lane"] * p * _pad(cout, 64) * taps
        work_f = FLOAT["dw_tap"] * taps * e_out
    else:
        pointwise = taps == 1 and all(s == 1 for s in st)
        gather = not pointwise and cin_g % 4 != 0
        work_i8 = INT8["gemm_mac"] * g * p * _pad(cout // g, 32) * _pad(k, 4) + \
            (INT8["pack"] + (INT8["gather"] if gather else 0.0)) * g * p * _pad(k, 4)
        work_f = FLOAT["gemm_mac"] * p * cout * k + \
            (0.0 if pointwise else FLOAT["im2col"] * p * k * g)
    padded = pads is not None and any(pads)
    int8 = fixed_i8 + INT8["quant_in"] * e_in + INT8["out"] * e_out + work_i8
    flt = fixed_f + (FLOAT["pad_in"] * e_in if padded else 0.0) + work_f + FLOAT["out"] * e_out
    rule = ""
    if depthwise and (not known or p >= DW_INT8_MAX_PIXELS):
        rule = (f"depthwise on {'maps of unknown size' if not known else f'{p} output pixels'}"
                f" (int8 only below {DW_INT8_MAX_PIXELS})")
    return NodeCost(flt, int8, basis, rule)


def linear_cost(n: int, k: int, m: int | None = None) -> NodeCost:
    """Cost of Y[m, n] = X[m, k]·W (Gemm / MatMul with constant weights); m None = per row."""
    rows = 1 if m is None else int(m)
    fixed_i8, fixed_f = (0.0, 0.0) if m is None else (INT8["lin_call"], FLOAT["lin_call"])
    int8 = fixed_i8 + INT8["lin_quant"] * rows * k + INT8["lin_out"] * rows * n + \
        INT8["lin_mac"] * rows * _pad(n, 32) * _pad(k, 4)
    flt = fixed_f + FLOAT["lin_mac"] * rows * n * k
    return NodeCost(flt, int8, "per call" if m is not None else "per row")
