"""PNG plots for ``qengine analyze --plots DIR`` (matplotlib, the optional `plot` extra).

* ``sqnr.png``: per-layer SQNR bars — the model with only that layer in int8 (its sensitivity)
  next to the layer's own output inside the fully quantized model.
* ``hist_NN_<layer>.png``: the calibration histogram of each layer's output (log counts) with
  the observed min/max (what min-max calibration would choose) and the range the chosen method's
  (scale, zero point) covers; the shaded tails are what saturates.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError


def require_matplotlib():
    """Import matplotlib with a non-interactive backend, or fail with a one-line reason."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plots needs matplotlib: pip install 'qengine[plot]' (or "
                          "pip install matplotlib)") from None
    return plt


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")[:60] or "layer"


def _finite(v, fallback=0.0):
    return v if math.isfinite(v) else fallback


def plot_sqnr(plt, report, path: Path) -> None:
    names = [r.name for r in report]
    y = np.arange(len(names))
    cap = max([_finite(v, 0.0) for r in report for v in (r.sqnr_db, r.layer_sqnr_db)] + [1.0])
    alone = [min(_finite(r.sqnr_db, cap), cap) for r in report]
    inside = [min(_finite(r.layer_sqnr_db, cap), cap) for r in report]
    fig, ax = plt.subplots(figsize=(9, 2.4 + 0.55 * len(names)))
    ax.barh(y - 0.2, alone, 0.4, label="model output, only this layer int8 (sensitivity)",
            color="#d62728")
    ax.barh(y + 0.2, inside, 0.4, label="layer output inside the full int8 model",
            color="#1f77b4")
    for yi, v in zip(y, alone):
        ax.text(v, yi - 0.2, f" {v:.1f}", va="center", fontsize=8)
    for yi, v in zip(y, inside):
        ax.text(v, yi + 0.2, f" {v:.1f}", va="center", fontsize=8)
    ax.set_yticks(y, [f"{r.rank}. {r.name} ({r.op_type})" for r in report], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("SQNR vs FP32 (dB, higher is better)")
    ax.set_xlim(0, cap * 1.15)
    if math.isfinite(report.int8_sqnr_db):
        ax.axvline(report.int8_sqnr_db, color="k", ls=":", lw=1,
                   label=f"full int8 model output ({report.int8_sqnr_db:.1f} dB)")
    ax.set_title(f"Per-layer SQNR ({report.method} calibration)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.4, -0.14), ncol=1,
              frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_histogram(plt, layer, method: str, path: Path) -> None:
    h = layer.histogram
    edges = h.edges()
    nz = np.flatnonzero(h.counts)
    lo_i, hi_i = nz[0], nz[-1] + 1
    # Merge the fine bins into ~120 for display (the grid keeps 2048, mostly empty).
    group = max(1, (hi_i - lo_i) // 120)
    hi_i = lo_i + -(-(hi_i - lo_i) // group) * group
    counts = np.zeros(hi_i - lo_i, np.int64)
    counts[:min(hi_i, h.bins) - lo_i] = h.counts[lo_i:min(hi_i, h.bins)]
    counts = counts.reshape(-1, group).sum(1)
    left = edges[lo_i] + np.arange(len(counts)) * group * h.width
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(left, counts, width=group * h.width, align="edge", color="#7f7f7f")
    ax.set_yscale("log")
    ax.axvspan(min(layer.observed_min, layer.range_min), layer.range_min, color="#d62728",
               alpha=0.15)
    ax.axvspan(layer.range_max, max(layer.observed_max, layer.range_max), color="#d62728",
               alpha=0.15, label=f"saturated: {100 * layer.saturation:.3g}% of values")
    ax.axvline(layer.observed_min, color="#1f77b4", ls="--", lw=1.2)
    ax.axvline(layer.observed_max, color="#1f77b4", ls="--", lw=1.2,
               label=f"min-max [{layer.observed_min:.4g}, {layer.observed_max:.4g}]")
    ax.axvline(layer.range_min, color="#d62728", lw=1.2)
    ax.axvline(layer.range_max, color="#d62728", lw=1.2,
               label=f"{method} range [{layer.range_min:.4g}, {layer.range_max:.4g}]")
    ax.set_xlabel(f"value of {layer.output}")
    ax.set_ylabel("count (log)")
    ax.set_title(f"{layer.name} ({layer.op_type}) output, scale {layer.scale:.4g}, "
                 f"zero point {layer.zero_point}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_sensitivity(report, directory, progress=None) -> list[Path]:
    """Write the PNGs of a `layer_sensitivity` report into `directory` (created if missing):
    `sqnr.png` (per-layer SQNR bars) and one activation histogram per layer with the min-max
    and the method's range marked. Returns their paths. Each figure takes a fraction of a
    second, so `progress(done, total)` is called after each one (the CLI draws a bar)."""
    plt = require_matplotlib()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    layers = [(i, layer) for i, layer in enumerate(report)
              if layer.histogram is not None and layer.histogram.count]
    total = 1 + len(layers)
    paths = [d / "sqnr.png"]
    plot_sqnr(plt, report, paths[0])
    if progress is not None:
        progress(1, total)
    for i, layer in layers:
        p = d / f"hist_{i:02d}_{_slug(layer.name)}.png"
        plot_histogram(plt, layer, report.method, p)
        paths.append(p)
        if progress is not None:
            progress(len(paths), total)
    return paths
