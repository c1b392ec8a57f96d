"""MSEObserver: the clipping range whose quantization grid has the smallest expected squared
error over the observed distribution.

The error of a candidate range is evaluated on the histogram, each bin's count placed at its
centre (clamped to [min, max]): sum of count * (c - dequantize(quantize(c)))^2 with the scale
and zero point choose_qparams would give that range (same rounding, same clamping), for the
requested bits / symmetric grid with choose_qparams' default signedness and narrow range. The
within-bin spread adds the same ~w^2/12 per value to every candidate, so it does not move the
minimum. Candidates are the histogram edges (plus the exact min/max):
  * symmetric: thresholds T = w, 2w, ... , max|x|;
  * asymmetric, one-signed data: the open end only (the other is the 0 the range is widened to);
  * asymmetric, two-signed data: a coarse 64 x 64 grid of (rmin, rmax), then coordinate
    descent at full resolution (all rmax for the best rmin, all rmin for that rmax, ...) until
    it stops improving.
Evaluation is compiled (src_pyx/_calib.pyx), parallel over candidates.
"""
from __future__ import annotations

import numpy as np

from .._ext import _calib
from ..quant import choose_qparams
from .hist_observer import HistogramObserver

COARSE = 64
MAX_CANDIDATES = 4096
MAX_DESCENT = 8


class MSEObserver(HistogramObserver):
    method = "mse"

    def _points(self):
        h = self.histogram
        nz = np.flatnonzero(h.counts)
        centers = (nz.astype(np.float64) + h.m + 0.5) * h.width
        return np.clip(centers, h.min, h.max), h.counts[nz].astype(np.float64)

    def errors(self, rmin, rmax, *, bits=8, symmetric=False):
        """Histogram estimate of the total squared error for each candidate range (arrays)."""
        lo = np.atleast_1d(np.asarray(rmin, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(rmax, dtype=np.float64))
        qp = choose_qparams(lo, hi, bits=bits, symmetric=symmetric)
        centers, counts = self._points()
        return _calib.mse_errors(centers, counts, qp.scale.astype(np.float64),
                                 qp.zero_point.astype(np.float64), float(qp.qmin),
                                 float(qp.qmax))

    def _candidates(self, lo_end, hi_end):
        """Edges strictly inside (lo_end, hi_end] on the positive side of 0, plus hi_end."""
        w = self.histogram.width
        n = int(np.ceil(hi_end / w))
        # at most MAX_CANDIDATES edges: data far from zero for its spread has millions of
        # edges between 0 and it (the histogram's own bins still place every point)
        step = -(-n // MAX_CANDIDATES)
        j = np.arange(step, n + 1, step, dtype=np.float64) * w
        return np.unique(np.append(j[(j > lo_end) & (j < hi_end)], hi_end))

    def _search(self, bits, symmetric):
        h = self.histogram
        if h.min == h.max:
            return h.min, h.max
        kw = {"bits": bits, "symmetric": symmetric}
        if symmetric:
            t = self._candidates(0.0, max(abs(h.min), abs(h.max)))
            return self._clip(t[int(np.argmin(self.errors(-t, t, **kw)))])
        # One-signed data: the grid always reaches 0 (choose_qparams widens the range to it),
        # so the candidates are [0, T], scored as such; T may lie below the data's smallest
        # magnitude (data away from 0), and the range returned is then [T, T] rather than the
        # invalid [min, T].
        if h.min >= 0.0:
            hi = self._candidates(0.0, h.max)
            t = hi[int(np.argmin(self.errors(np.zeros_like(hi), hi, **kw)))]
            return min(h.min, t), t
        if h.max <= 0.0:
            lo = -self._candidates(0.0, -h.min)
            t = lo[int(np.argmin(self.errors(lo, np.zeros_like(lo), **kw)))]
            return t, max(h.max, t)
        los = -self._candidates(0.0, -h.min)
        his = self._candidates(0.0, h.max)
        cl = los[np.unique(np.linspace(0, len(los) - 1, min(COARSE, len(los))).round()
                           .astype(int))]
        ch = his[np.unique(np.linspace(0, len(his) - 1, min(COARSE, len(his))).round()
                           .astype(int))]
        gl, gh = np.meshgrid(cl, ch, indexing="ij")
        err = self.errors(gl.ravel(), gh.ravel(), **kw)
        k = int(np.argmin(err))
        lo, hi, best = gl.ravel()[k], gh.ravel()[k], err[k]
        for _ in range(MAX_DESCENT):
            e_hi = self.errors(np.full_like(his, lo), his, **kw)
            hi = his[int(np.argmin(e_hi))]
            e_lo = self.errors(los, np.full_like(los, hi), **kw)
            lo = los[int(np.argmin(e_lo))]
            if e_lo.min() >= best:
                break
            best = e_lo.min()
        return lo, hi
