"""Calibration for static post-training quantization: observers that watch activations and
propose ranges (min/max, moving average, histogram-based entropy / percentile / MSE), and the
driver that runs a float model over calibration data to feed them.

    stats = collect_stats(session, {"x": samples}, ["x", "conv1_out"], method="entropy")
    qp = stats["conv1_out"].qparams(bits=8, symmetric=False)
    saved = {k: o.to_dict() for k, o in stats.items()}      # JSON-able; observer_from_dict
"""
from .base import Observer  # noqa: F401
from .collect import collect_stats  # noqa: F401
from .entropy import EntropyObserver  # noqa: F401
from .hist_observer import HistogramObserver  # noqa: F401
from .histogram import Histogram  # noqa: F401
from .minmax import (MinMaxObserver, MovingAverageMinMaxObserver,  # noqa: F401
                     PerChannelMinMaxObserver)
from .mse import MSEObserver  # noqa: F401
from .percentile import PercentileObserver  # noqa: F401
from .registry import OBSERVERS, make_observer, observer_from_dict  # noqa: F401
from .rnn import RNNObserver, carry_state  # noqa: F401
