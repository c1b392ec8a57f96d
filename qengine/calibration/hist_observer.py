"""HistogramObserver: the base of the threshold-searching observers (entropy, percentile, MSE).

It keeps one `Histogram` (fixed bins, exact growth and merge, see histogram.py); subclasses
only implement `_search(bits, symmetric) -> (rmin, rmax)`. On its own it proposes the exact
min/max range, so histograms can be collected once and a method chosen later
(`EntropyObserver.from_histogram(obs.histogram)`).
"""
from __future__ import annotations

from ..errors import ConfigError
from .base import Observer, check_options
from .histogram import Histogram


class HistogramObserver(Observer):
    method = "histogram"

    def __init__(self, bins: int = 2048):
        self.histogram = Histogram(bins)
        self._cache = {}

    @property
    def bins(self) -> int:
        return self.histogram.bins

    @property
    def nan(self) -> int:
        """NaN values dropped so far (the histogram counts them, never bins them)."""
        return self.histogram.nan

    @classmethod
    def from_histogram(cls, histogram: Histogram, **config):
        """An observer of this class over a copy of an existing histogram."""
        obs = cls(bins=histogram.bins, **config)
        obs.histogram = Histogram.from_state(histogram.state())
        return obs

    def observe(self, x, *, isa=None, threads=None) -> None:
        self.histogram.add(x, isa=isa, threads=threads)
        self._cache.clear()

    def merge(self, other):
        if not isinstance(other, HistogramObserver):
            raise ConfigError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        self._check_merge(other)
        self.histogram.merge(other.histogram)
        self._cache.clear()
        return self

    def range(self, *, bits=8, symmetric=False):
        h = self.histogram
        if not h.count:
            raise ConfigError(f"{type(self).__name__} has seen no finite values yet (observed "
                              f"{h.nan} NaN, {h.pinf + h.ninf} Inf); cannot choose a range")
        key = check_options(bits, symmetric)
        if key not in self._cache:
            lo, hi = self._search(*key)
            self._cache[key] = (float(lo) + 0.0, float(hi) + 0.0)
        return self._cache[key]

    def _search(self, bits, symmetric):
        return self.histogram.min, self.histogram.max

    def _clip(self, t):
        """Symmetric threshold t as a range clipped to the data: (max(-t, min), min(t, max)),
        kept ordered when all the data lies beyond t on one side (then both ends are ±t)."""
        h = self.histogram
        hi = min(t, h.max)
        return min(max(-t, h.min), hi), max(hi, -t)

    def _config(self):
        return {"bins": self.bins}

    def _state(self):
        return self.histogram.state()

    def _load(self, s):
        h = Histogram.from_state(s)
        if h.bins != self.bins:
            raise ConfigError(f"state has {h.bins} bins, config says {self.bins}")
        self.histogram = h
        self._cache.clear()
