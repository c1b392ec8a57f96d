"""Serving: many streams through one recurrent model (StreamPool), dynamic batching of their
chunks from threads or asyncio (DynamicBatcher). NumPy only; the HTTP server is elsewhere."""
from .batcher import DynamicBatcher  # noqa: F401
from .pool import OverloadedError, StreamPool  # noqa: F401

__all__ = ["StreamPool", "DynamicBatcher", "OverloadedError"]
