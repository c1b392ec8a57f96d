"""The observer registry: method name -> class, and construction from a name or saved state."""
from __future__ import annotations

from ..errors import ConfigError
from .base import Observer
from .entropy import EntropyObserver
from .hist_observer import HistogramObserver
from .minmax import MinMaxObserver, MovingAverageMinMaxObserver, PerChannelMinMaxObserver
from .mse import MSEObserver
from .percentile import PercentileObserver

OBSERVERS: dict[str, type[Observer]] = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "entropy": EntropyObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
    "histogram": HistogramObserver,
    "minmax_per_channel": PerChannelMinMaxObserver,
}


def make_observer(method: str, **kw) -> Observer:
    """A new observer of the registered `method` with its options (e.g. percentile=99.9)."""
    cls = OBSERVERS.get(method) if isinstance(method, str) else None
    if cls is None:
        raise ConfigError(f"unknown calibration method {method!r}; expected one of "
                          f"{', '.join(OBSERVERS)}")
    try:
        return cls(**kw)
    except TypeError as e:
        raise ConfigError(f"bad options for {method!r} observer {kw}: {e}") from None


def observer_from_dict(d: dict) -> Observer:
    """Rebuild any registered observer from its to_dict() state."""
    if not isinstance(d, dict) or d.get("method") not in OBSERVERS:
        raise ConfigError(f"observer state names an unknown method "
                          f"{d.get('method') if isinstance(d, dict) else d!r}")
    return OBSERVERS[d["method"]].from_dict(d)
