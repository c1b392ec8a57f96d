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
