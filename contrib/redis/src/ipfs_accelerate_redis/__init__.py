"""Redis state store for ipfs-accelerate: rate limits, circuit breakers and counters
shared by several processes and hosts."""

from __future__ import annotations

from typing import Any

__all__ = ["RedisStateStore", "RedisStatePlugin", "RedisSharedStats", "RedisUnavailableError",
           "RedisStateWarning", "redact_url"]


def __getattr__(name: str) -> Any:  # lazy: importing the package must not import redis
    if name in ("RedisStateStore", "RedisUnavailableError"):
        from . import store

        return getattr(store, name)
    if name == "RedisStatePlugin":
        from .plugin import RedisStatePlugin

        return RedisStatePlugin
    if name == "RedisSharedStats":
        from .stats import RedisSharedStats

        return RedisSharedStats
    if name in ("RedisStateWarning", "redact_url"):
        from . import health

        return getattr(health, name)
    raise AttributeError(name)
