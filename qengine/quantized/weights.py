"""Weight quantization for the packed int8 layers (numerics.md: symmetric, narrow range)."""
import numpy as np


def quantize_per_channel_symmetric(w, bits=8):
    """int8 weights per output row: s[n] = max|w[n,:]| / (2^(b−1) − 1), z = 0.
    Returns (q int8 [N, K], s float32 [N])."""
    w = np.asarray(w, np.float32)
    qmax = 2 ** (bits - 1) - 1
    amax = np.max(np.abs(w.astype(np.float64)), axis=1) if w.shape[1] else np.zeros(w.shape[0])
    if not np.all(np.isfinite(amax)):
        raise ValueError("weights contain NaN or Inf")
    s = (amax / qmax).astype(np.float32)
    s[amax == 0] = 1.0
    s = np.maximum(s, np.finfo(np.float32).tiny)
    q = np.clip(np.rint(w / s[:, None]), -qmax, qmax).astype(np.int8)
    return q, s
