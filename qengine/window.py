"""Sliding-window arithmetic on one spatial axis (ONNX / PyTorch rules), shared by the float
ops' `ops.spatial.Geometry` and the int8 layers in `quantized/`. Plain integer arithmetic on
Python ints: it runs once per node and input shape, never per element.

The NumPy definitions the tests hold these to are in qengine/reference/conv.py.
"""


def out_size(size, k, stride, dilation, pad_begin, pad_end, ceil_mode=False):
    """Number of window positions along an axis of length `size`; 0 when even the first window
    does not fit. With ceil_mode the last, partial window is kept unless it would start past the
    input and its begin padding (then it would read only padding)."""
    span = size + pad_begin + pad_end - dilation * (k - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    n = (span + stride - 1) // stride + 1
    return n - 1 if (n - 1) * stride >= size + pad_begin else n


def same_pads(size, k, stride, dilation, upper=True):
    """(begin, end) padding for auto_pad SAME_UPPER (upper=True) or SAME_LOWER: the output
    keeps ceil(size / stride) positions and the odd pad element goes to the end (UPPER) or the
    beginning (LOWER). It depends on `size`, so it is resolved per input shape."""
    positions = (size + stride - 1) // stride
    total = (positions - 1) * stride + dilation * (k - 1) + 1 - size
    if total <= 0:
        return 0, 0
    half = total >> 1
    return (half, total - half) if upper else (total - half, half)
