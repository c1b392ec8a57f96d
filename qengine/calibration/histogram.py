"""A streaming histogram with a fixed number of bins whose range grows without losing counts.

The grid (the same definition as include/qengine/calib/qe_hist.h): bin width w = 2^e, bin k
(a global integer index) holds the values in [k*w, (k+1)*w); the histogram keeps `bins`
consecutive bins k = m .. m + bins - 1. With a power-of-two width every edge k*w is exact in
float64, and the edges of a grid with width 2^(e+d) are a subset of the edges of width 2^e
(anchored at 0.0), so a coarse bin is exactly the union of 2^d fine bins.

Which grid. For the finite range [lo, hi] seen so far the grid is *canonical*: the smallest e
(not below a floor that only grows with max|x|, see `_exp_floor`) for which the bins starting
at m = floor(lo / 2^e) cover hi, i.e. (m + bins) * 2^e > hi. Coverage only gets easier as e
grows and the canonical e only grows as [lo, hi] widens, so:
  * when new data widens the range, the new canonical grid is coarser or equal; the old counts
    are re-binned exactly (old bin k goes to new bin floor(k / 2^d)) and only the values the
    old grid could not hold need a second pass;
  * the state depends only on the multiset of values seen, not on their order or batching:
    merging two histograms gives exactly the histogram of observing everything in one pass.
The price of exactness is resolution: the data spans between 1/2 and all of the bins (about
3/4 on average) rather than exactly all of them as with a [min, max]-fitted grid. Re-binning a
fitted grid into a wider one (PyTorch) or growing the bin count (ONNX Runtime, whose histograms
then have more than `num_bins` bins) either loses exactness or the fixed size.

NaN and +-Inf are counted and not binned; min, max and count are over finite values.
"""
from __future__ import annotations

import math

import numpy as np

from .._ext import _calib
from .._runtime import isa_index
from ..errors import ConfigError
from .base import as_float32, check_count

#: The bin width never goes below 2^EXP_MIN (all-zero data) ...
EXP_MIN = -160
#: ... nor below max|x| * 2^-FLOOR_BITS: finer bins than float32 can tell apart are pointless,
#: and it bounds the global bin index by 2^FLOOR_BITS so it stays exact in float64/int64.
FLOOR_BITS = 40
MAX_BINS = 1 << 24


def _exp_floor(amax: float) -> int:
    if amax == 0.0:
        return EXP_MIN
    return max(EXP_MIN, math.frexp(amax)[1] - FLOOR_BITS)


def canonical_grid(lo: float, hi: float, bins: int) -> tuple[int, int]:
    """(e, m) of the canonical grid for the finite range [lo, hi] (see the module docstring)."""
    e = _exp_floor(max(abs(lo), abs(hi)))
    span = hi - lo
    if span > 0.0:
        # (m + bins) * 2^e > hi with m * 2^e <= lo needs bins * 2^e > span; start below that.
        e = max(e, math.frexp(span / bins)[1] - 2)
    while True:
        m = math.floor(math.ldexp(lo, -e))
        if math.ldexp(float(m + bins), e) > hi:
            return e, m
        e += 1


def rebin(counts: np.ndarray, e: int, m: int, e2: int, m2: int, bins: int) -> np.ndarray:
    """Counts of grid (e, m) summed into the coarser-or-equal grid (e2, m2) (exact)."""
    if e2 < e:
        raise ValueError("rebin only coarsens")   # canonical grids never get finer
    out = np.zeros(bins, dtype=np.int64)
    nz = np.flatnonzero(counts)
    if nz.size == 0:
        return out
    k = nz.astype(np.int64) + m
    # Arithmetic shift is floor division by 2^d; |k| < 2^(FLOOR_BITS+1), so d > 62 is d = 62.
    idx = np.right_shift(k, min(e2 - e, 62)) - m2
    if idx.min() < 0 or idx.max() >= bins:
        raise ValueError("rebin target grid does not cover the data")
    np.add.at(out, idx, counts[nz])
    return out


class Histogram:
    """Counts of finite float32 values on the canonical power-of-two grid (fixed `bins`)."""

    def __init__(self, bins: int = 2048):
        if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= MAX_BINS:
            raise ConfigError(f"bins must be an int in 2..{MAX_BINS}, got {bins!r}")
        self.bins = bins
        self.counts = np.zeros(bins, dtype=np.int64)
        self.exp = None      # None until a finite value was seen
        self.m = 0
        self.min = math.inf
        self.max = -math.inf
        self.count = 0
        self.nan = self.pinf = self.ninf = 0

    # ---- grid ------------------------------------------------------------------------------
    @property
    def width(self) -> float:
        return math.ldexp(1.0, self.exp)

    def edges(self) -> np.ndarray:
        """float64 edges (bins + 1) of the current grid; exactly the edges the kernel uses."""
        if self.exp is None:
            raise ConfigError("the histogram has no finite values yet")
        return (self.m + np.arange(self.bins + 1, dtype=np.int64)).astype(np.float64) * self.width

    def _bounds(self):
        if self.exp is None:
            return 0.0, 0.0
        return math.ldexp(float(self.m), self.exp), math.ldexp(float(self.m + self.bins), self.exp)

    def _regrid(self, lo, hi):
        e2, m2 = canonical_grid(lo, hi, self.bins)
        if self.exp is not None and (e2, m2) != (self.exp, self.m):
            self.counts = rebin(self.counts, self.exp, self.m, e2, m2, self.bins)
        self.exp, self.m = e2, m2

    # ---- accumulation ----------------------------------------------------------------------
    def add(self, x, *, isa=None, threads=None) -> None:
        """Add the values of x (any float array; observed as float32). `isa`/`threads` force a
        kernel path and thread count (tests, benchmarks); the result never depends on them."""
        x32 = as_float32(x)
        isa_i = isa_index(isa)
        nthreads = 0 if threads is None else int(threads)
        w = self.width if self.exp is not None else 1.0
        target = self.counts if self.exp is not None else np.zeros(0, dtype=np.int64)
        st = _calib.histogram(x32, w, self.m, target, 0.0, 0.0, isa_i, nthreads)
        self.nan += st["nan"]
        self.pinf += st["pinf"]
        self.ninf += st["ninf"]
        finite = st["binned"] + st["outside"]
        if not finite:
            return
        old_lo, old_hi = self._bounds()       # (0, 0): an empty skip range
        lo = min(self.min, st["min"]) + 0.0   # + 0.0: -0.0 and 0.0 are one state
        hi = max(self.max, st["max"]) + 0.0
        self._regrid(lo, hi)
        if st["outside"]:
            # Values the old grid could not hold: the kernel kept them when there were few
            # (the usual case once the range has settled), else a second pass finds them.
            rest = st["spill"]
            lo2, hi2 = (1.0, 0.0) if rest is not None else (old_lo, old_hi)
            st2 = _calib.histogram(x32 if rest is None else rest, self.width, self.m,
                                   self.counts, lo2, hi2, isa_i, nthreads, 0)
            if st2["binned"] != st["outside"]:   # would be a bug in the grid logic
                raise AssertionError(f"second histogram pass binned {st2['binned']} of "
                                     f"{st['outside']} values")
        self.min, self.max = lo, hi
        self.count += finite

    def merge(self, other: "Histogram") -> None:
        """Add other's counts (exactly what observing its data here would have added)."""
        if other.bins != self.bins:
            raise ConfigError(f"cannot merge histograms with {other.bins} and {self.bins} bins")
        self.nan += other.nan
        self.pinf += other.pinf
        self.ninf += other.ninf
        if not other.count:
            return
        lo, hi = min(self.min, other.min), max(self.max, other.max)
        self._regrid(lo, hi)
        self.counts = self.counts + rebin(other.counts, other.exp, other.m, self.exp, self.m,
                                          self.bins)
        self.min, self.max = lo, hi
        self.count += other.count

    # ---- views -----------------------------------------------------------------------------
    def abs_counts(self) -> np.ndarray:
        """Histogram of |x| on [0, n*w) with the same width w: bin a holds |x| in [a*w, (a+1)*w)
        (for negative x the fold puts x = -a*w exactly into bin a - 1; a measure-zero shift).
        Trimmed after the last non-empty bin."""
        nz = np.flatnonzero(self.counts)
        if nz.size == 0:
            return np.zeros(0, dtype=np.int64)
        k = nz.astype(np.int64) + self.m
        a = np.where(k >= 0, k, -k - 1)
        out = np.zeros(int(a.max()) + 1, dtype=np.int64)
        np.add.at(out, a, self.counts[nz])
        return out

    def quantile(self, q: float) -> float:
        """The q-quantile (0 <= q <= 1) of the finite values, interpolating linearly inside the
        bin that holds it, clamped to [min, max]."""
        if not self.count:
            raise ConfigError("the histogram has no finite values yet")
        return _quantile(self.counts, self.m, self.width, q, self.count, self.min, self.max)

    # ---- serialization ---------------------------------------------------------------------
    def state(self) -> dict:
        nz = np.flatnonzero(self.counts)
        return {"bins": self.bins, "exp": self.exp, "m": self.m,
                "nonzero": nz.tolist(), "counts": self.counts[nz].tolist(),
                "min": self.min if self.count else None, "max": self.max if self.count else None,
                "count": self.count, "nan": self.nan, "pinf": self.pinf, "ninf": self.ninf}

    @classmethod
    def from_state(cls, s: dict) -> "Histogram":
        h = cls(s["bins"])
        h.nan, h.pinf, h.ninf = (check_count(k, s[k]) for k in ("nan", "pinf", "ninf"))
        h.count = check_count("count", s["count"])
        if not h.count:
            if s["counts"]:
                raise ConfigError("histogram state has counts but count is 0")
            return h
        lo, hi = s["min"], s["max"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                   for v in (lo, hi)) or lo > hi:
            raise ConfigError(f"histogram state needs finite min <= max, got {lo!r}, {hi!r}")
        h.min, h.max = float(lo), float(hi)
        if (s["exp"], s["m"]) != canonical_grid(h.min, h.max, h.bins):
            raise ConfigError("histogram state's grid is not the canonical grid of its range")
        h.exp, h.m = canonical_grid(h.min, h.max, h.bins)
        idx = np.asarray(s["nonzero"], dtype=np.int64)
        cnt = np.asarray(s["counts"], dtype=np.int64)
        if idx.ndim != 1 or idx.shape != cnt.shape or (idx.size and (idx.min() < 0 or
                                                                     idx.max() >= h.bins)) \
                or np.any(cnt < 0) or np.unique(idx).size != idx.size:
            raise ConfigError("histogram state: nonzero/counts must be equal-length lists of "
                              "distinct bin indices and non-negative counts")
        h.counts[idx] = cnt
        if int(h.counts.sum()) != h.count:
            raise ConfigError(f"histogram state: counts sum to {int(h.counts.sum())}, "
                              f"count says {h.count}")
        return h


def _quantile(counts, m, w, q, total, lo, hi):
    cdf = np.cumsum(counts)
    target = q * total
    i = int(np.searchsorted(cdf, target, side="left"))
    i = min(i, len(counts) - 1)
    before = cdf[i - 1] if i > 0 else 0
    inside = counts[i]
    frac = 0.0 if inside == 0 else (target - before) / inside
    v = (m + i + min(max(frac, 0.0), 1.0)) * w
    return float(min(max(v, lo), hi))
