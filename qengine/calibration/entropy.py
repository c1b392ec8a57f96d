"""EntropyObserver: the KL-divergence threshold of TensorRT's entropy calibrator.

On the histogram of |x| (bins of width w from 0), for every candidate length i >= L bins
(L = number of quantization levels on one side, 128 for int8):
  P = the first i bins with every count beyond them ("outliers") added to bin i - 1 -- the
      distribution the clipped tensor really has;
  Q = the first i bins (outliers not included) quantized to L levels: bin j goes to group
      floor(j * L / i) (np.linspace + digitize, as TensorRT's pytorch-quantization does), each
      group's total spread evenly over its non-empty bins -- what a grid of L levels over
      [0, i*w] can express;
  both smoothed as MXNet/ONNX Runtime do (eps = 1e-4 onto empty bins, the same mass taken off
  the others), normalized, and KL(P || Q) computed.
Like pytorch-quantization, the count of bin 0 is replaced by that of bin 1 first: exact zeros
(ReLU floors, padding) are exactly representable on every grid, and a spike there would
otherwise dominate the divergence of every coarse candidate and drag the threshold to the
smallest one.
The threshold is i*w for the i with the smallest divergence (the first one on ties), clipped to
max|x|. All candidates are evaluated in compiled code (src_pyx/_calib.pyx, O(n^2) for n bins,
parallel over candidates).

Asymmetric (uint8) activations. The search is over |x| like ONNX Runtime's, with a choice of L:
  * one-signed data (min >= 0, e.g. after ReLU; or max <= 0): the whole unsigned grid covers
    [0, T], so L = 2^bits (256) levels -- searching with 128 would clip too hard;
  * two-signed data: L = 2^(bits-1) levels per side, i.e. the search assumes the grid spans
    [-T, T]. The range returned is [max(-T, min), min(T, max)]; when the data is lopsided the
    real u8 grid is then finer than assumed, so the error is no worse than the search saw.
A joint search over (rmin, rmax) would fit lopsided data better; MSEObserver does that.
Symmetric: L = 2^(bits-1) and the range is clipped to the data the same way.
"""
from __future__ import annotations

import numpy as np

from .._ext import _calib
from ..errors import ConfigError
from .hist_observer import HistogramObserver
from .mse import MSEObserver

KL_EPS = 1e-4
MAX_ABS_BINS = 8192


def kl_threshold_bins(abs_counts: np.ndarray, levels: int):
    """(index i of the chosen candidate length in bins, array of KL per candidate L..n)."""
    h = np.array(abs_counts, dtype=np.float64)
    n = h.shape[0]
    if n >= 2:
        h[0] = h[1]
    if n <= levels:
        return n, np.zeros(0)
    kl = _calib.kl_divergences(h, levels, levels, KL_EPS)
    return levels + int(np.argmin(kl)), kl


class EntropyObserver(HistogramObserver):
    method = "entropy"

    def __init__(self, bins: int = 2048, mse_floor: bool = True):
        if not isinstance(mse_floor, bool):
            raise ConfigError(f"mse_floor must be a bool, got {mse_floor!r}")
        super().__init__(bins)
        self.mse_floor = mse_floor

    def _config(self):
        return {"bins": self.bins, "mse_floor": self.mse_floor}

    def levels(self, bits: int, symmetric: bool) -> int:
        h = self.histogram
        one_signed = h.min >= 0.0 or h.max <= 0.0
        return 1 << bits if (not symmetric and one_signed) else 1 << (bits - 1)

    def _search(self, bits, symmetric):
        h = self.histogram
        counts, width = h.abs_counts(), h.width
        # Data far from zero for its spread (values in [2.0, 2.001]) puts max|x| millions of
        # bins from 0, and the search is quadratic in that: merge |x| bins in powers of two
        # (exactly) down to MAX_ABS_BINS. Data reaching near 0 never has more than 2x bins.
        while counts.size > MAX_ABS_BINS:
            counts = np.add.reduceat(counts, np.arange(0, counts.size, 2))
            width *= 2.0
        i, _ = kl_threshold_bins(counts, self.levels(bits, symmetric))
        lo, hi = self._clip(i * width)
        if self.mse_floor:
            mse = MSEObserver(self.bins)
            mse.histogram = h                  # read only: the same counts, no copy
            mlo, mhi = mse._search(bits, symmetric)
            lo, hi = min(lo, mlo), max(hi, mhi)
        return lo, hi
