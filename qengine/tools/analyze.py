"""``qengine analyze``: the per-layer sensitivity report as table rows (the CLI prints them)."""
from __future__ import annotations

import math

from ..workflows.sensitivity import SensitivityReport, layer_sensitivity
from ..workflows.ptq import StaticQuantConfig


def analyze(graph, calibration_data, *, method="minmax", per_channel=True,
            symmetric_activations=False, eval_data=None, labels=None,
            progress=None) -> SensitivityReport:
    cfg = StaticQuantConfig(method=method, per_channel=per_channel,
                            symmetric_activations=symmetric_activations)
    return layer_sensitivity(graph, calibration_data, cfg, eval_data=eval_data, labels=labels,
                             progress=progress)


def _db(v):
    return "inf" if v == math.inf else f"{v:.2f}"


def _range(lo, hi):
    return f"[{lo:.4g}, {hi:.4g}]"


def report_rows(report: SensitivityReport):
    """(headers, rows, align) in graph order."""
    with_metric = report.float_metric is not None
    headers = ["rank", "layer", "op", "sqnr alone dB"] + (["acc alone"] if with_metric else []) \
        + ["in model dB", "observed range", "int8 range", "scale", "zp", "saturated"]
    rows = []
    for r in report:
        row = [r.rank, r.name, r.op_type, _db(r.sqnr_db)]
        if with_metric:
            row.append(f"{100 * r.metric:.2f}%")
        row += [_db(r.layer_sqnr_db), _range(r.observed_min, r.observed_max),
                _range(r.range_min, r.range_max), f"{r.scale:.4g}", r.zero_point,
                f"{100 * r.saturation:.3g}%"]
        rows.append(row)
    align = "rllr" + ("r" if with_metric else "") + "rllrrr"
    return headers, rows, align
