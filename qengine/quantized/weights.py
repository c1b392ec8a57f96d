"""Weight quantization for the packed int8 layers (numerics.md: symmetric, narrow range)."""
import numpy as np

from ..quant import choose_qparams


def quantize_per_channel_symmetric(w, bits=8):
    """Weights [N, K] → (int8 [N, K], float32 scales [N]), one symmetric scale per output row."""
    w = np.asarray(w, np.float32)
    if w.ndim != 2 or w.shape[1] == 0:
        raise ValueError(f"expected a non-empty 2-D weight matrix, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights contain NaN or Inf")
    qp = choose_qparams(w.min(axis=1), w.max(axis=1), bits=bits, symmetric=True, axis=0)
    q = qp.quantize(w)
    return q.data, q.scale


INT4_GROUP_SIZES = (32, 64, 128)


def int4_groups(k, group_size):
    """Number of scales per row for K values: 1 (group_size None) or ceil(K / group_size) (the
    last group zero-padded when group_size does not divide K)."""
    return 1 if group_size is None else -(-k // group_size)


def quantize_int4(w, group_size=None):
    """Weights [N, K] → (int8 [N, K] in [−7, 7], float32 scales [N, G]): symmetric, narrow range,
    one scale per output row (group_size None, G = 1) or per (row, group of group_size
    consecutive K values) (numerics.md "4-bit weights"). A last group shorter than group_size
    is scaled over its own values."""
    w = np.asarray(w, np.float32)
    if w.ndim != 2 or w.shape[1] == 0:
        raise ValueError(f"expected a non-empty 2-D weight matrix, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights contain NaN or Inf")
    n, k = w.shape
    gs = k if group_size is None else int(group_size)
    g = int4_groups(k, group_size)
    q = np.empty((n, k), np.int8)
    scales = np.empty((n, g), np.float32)
    for j in range(g):
        cols = w[:, j * gs:(j + 1) * gs]
        qp = choose_qparams(cols.min(axis=1), cols.max(axis=1), bits=4, symmetric=True, axis=0,
                            dtype=np.int8)
        q[:, j * gs:(j + 1) * gs] = qp.quantize(cols).data
        scales[:, j] = qp.scale
    return q, scales


def pack_int4(q):
    """int8 [.., K] in [−7, 7] → uint8 [.., ceil(K/2)]: the engine file's int4 storage, two
    values per byte, value 2i in the low nibble and 2i+1 in the high one, 4-bit two's
    complement (the ONNX int4 convention); an odd K leaves the last high nibble 0."""
    q = np.asarray(q)
    if q.dtype != np.int8 or q.size and (q.min() < -7 or q.max() > 7):
        raise ValueError("int4 weights must be int8 values in [-7, 7]")
    k = q.shape[-1]
    pad = np.zeros(q.shape[:-1] + (k % 2,), np.int8)
    u = np.concatenate([q, pad], axis=-1).view(np.uint8) & 0x0F
    return np.ascontiguousarray(u[..., 0::2] | (u[..., 1::2] << 4))


def unpack_int4(packed, k):
    """pack_int4's inverse: uint8 [.., ceil(K/2)] → int8 [.., K]. ValueError for storage that
    pack_int4 cannot have written (−8 anywhere, a nonzero padding nibble, a wrong width)."""
    p = np.asarray(packed)
    if p.dtype != np.uint8 or p.ndim < 1 or p.shape[-1] != -(-k // 2):
        raise ValueError(f"int4 storage for K = {k} must be uint8 [..., {-(-k // 2)}], got "
                         f"{p.dtype} {p.shape}")
    nib = np.stack([p & 0x0F, p >> 4], axis=-1).reshape(p.shape[:-1] + (-1,))
    if k % 2 and nib.shape[-1] and np.any(nib[..., -1]):
        raise ValueError("int4 storage: the padding nibble after an odd K must be 0")
    nib = nib[..., :k]
    if np.any(nib == 8):
        raise ValueError("int4 storage holds -8, outside the narrow range [-7, 7] of weights")
    return ((nib.astype(np.int16) ^ 8) - 8).astype(np.int8)
