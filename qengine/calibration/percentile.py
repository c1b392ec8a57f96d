"""PercentileObserver: clip the tails that hold (100 - percentile)% of the values.

Symmetric: the threshold is the `percentile`-th percentile of |x| (as ONNX Runtime does for
symmetric activations), and the range [max(-T, min), min(T, max)].
Asymmetric: the (100 - percentile)% is split evenly between the two tails: rmin is the
(100 - p)/2 percentile and rmax the (100 + p)/2 percentile of x. For one-signed data (ReLU) the
lower quantile is simply 0 / the minimum, and choose_qparams widens the range to 0 anyway.
Percentiles come from the histogram with linear interpolation inside a bin, so they are exact
to within one bin width.
"""
from __future__ import annotations

import math

from ..errors import ConfigError
from .histogram import _quantile
from .hist_observer import HistogramObserver


class PercentileObserver(HistogramObserver):
    method = "percentile"

    def __init__(self, percentile: float = 99.99, bins: int = 2048):
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) \
                or not math.isfinite(percentile) or not 0.0 < percentile <= 100.0:
            raise ConfigError(f"percentile must be a number in (0, 100], got {percentile!r}")
        super().__init__(bins)
        self.percentile = float(percentile)

    def _search(self, bits, symmetric):
        h = self.histogram
        p = self.percentile / 100.0
        if symmetric:
            a = h.abs_counts()
            t = _quantile(a, 0, h.width, p, h.count, 0.0, max(abs(h.min), abs(h.max)))
            return self._clip(t)
        tail = (1.0 - p) / 2.0
        return h.quantile(tail), h.quantile(1.0 - tail)

    def _config(self):
        return {"percentile": self.percentile, "bins": self.bins}
