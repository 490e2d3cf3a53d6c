"""Round-robin key selection: true rotation among the keys that have capacity now."""

from .strategy import RoundRobin

__all__ = ["RoundRobin"]
