"""Least-loaded key selection: fewest requests in flight, ties by most limiter headroom."""

from .strategy import LeastLoaded

__all__ = ["LeastLoaded"]
