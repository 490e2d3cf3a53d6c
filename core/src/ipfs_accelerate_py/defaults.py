"""The core's default hook implementations: registered first, by the plugin manager's
constructor, and marked ``trylast`` so that any plugin's implementation runs before them."""

from __future__ import annotations

from typing import Any

from .hookspecs import hookimpl


@hookimpl(trylast=True)
def accelerate_make_queue(config: Any) -> Any:
    from .queue import PriorityRequestQueue

    return PriorityRequestQueue(maxsize=config.queue_size)


@hookimpl(trylast=True)
def accelerate_make_state_store(url: str | None, config: Any) -> Any:
    if url is not None and url.split("://", 1)[0] != "memory":
        return None  # a scheme some installed extra must answer
    from .state import InMemoryStateStore

    return InMemoryStateStore()


@hookimpl(trylast=True)
def accelerate_make_cache_store(url: str, config: Any) -> Any:
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        from .caching import MemoryCacheStore

        return MemoryCacheStore(config.max_entries, config.max_bytes)
    if scheme == "sqlite":
        from .caching import SQLiteCacheStore
        from .caching.resolve import sqlite_path

        return SQLiteCacheStore(sqlite_path(url), config.max_entries, config.max_bytes)
    return None


@hookimpl(trylast=True)
def accelerate_backoff(request: Any, attempt: int, error: Any, policy: Any, now: float,
                       deadline: float | None, rng: Any) -> Any:
    from .retry import decide_retry

    return decide_retry(policy, attempt, error, now, deadline, rng)


@hookimpl
def accelerate_strategies() -> dict[str, Any]:
    from .selection import BUILTIN_STRATEGIES

    return dict(BUILTIN_STRATEGIES)
