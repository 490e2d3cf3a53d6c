"""Hook implementations.  Installed, this plugin does nothing until a client names a
Redis URL as its state store::

    Client(backends, ClientConfig(state_store="redis://host:6379/0"))

or ``IPFS_ACCELERATE_STATE_STORE=redis://host:6379/0``.  The client then owns (and closes)
its store; ``IPFS_ACCELERATE_REDIS_FAIL_CLOSED`` and ``..._NAMESPACE`` set its options.  To
share one store among clients, pass the store object: ``ClientConfig(state_store=store)``
(never closed by the clients), or register a :class:`RedisStatePlugin` on a plugin manager.
"""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl

SCHEMES = ("redis", "rediss", "unix")


@hookimpl
def accelerate_make_state_store(url: str | None, config: Any) -> Any:
    if url is None or url.split("://", 1)[0] not in SCHEMES:
        return None
    from .store import RedisStateStore

    return RedisStateStore.from_env(url=url)


class RedisStatePlugin:
    """Every client built with this plugin registered uses a Redis store, whatever its
    config names: a new one per client from ``url`` and ``options`` (owned, closed by that
    client), or the given ``store`` (shared: no client closes it)."""

    def __init__(self, url: str | None = None, *, store: Any = None, **options: Any) -> None:
        if url is None and store is None:
            raise TypeError("RedisStatePlugin needs a url or a store")
        self.url = url
        self.store = store
        self.options = options

    @hookimpl(tryfirst=True)
    def accelerate_make_state_store(self, config: Any) -> Any:
        if self.store is not None:
            from ipfs_accelerate_py.state import SharedStore

            return SharedStore(self.store)
        from .store import RedisStateStore

        return RedisStateStore(self.url, **self.options)

    def __repr__(self) -> str:
        from .health import redact_url

        return f"RedisStatePlugin({redact_url(self.url) if self.url else self.store!r})"


# ---------------------------------------------------------------- command line
@hookimpl
def accelerate_cli_options(command: str, parser: Any) -> None:
    """``batch --redis URL``: several workers share one job through Redis Streams."""
    if command != "batch":
        return
    from ipfs_accelerate_py.cli.common import positive_float

    group = parser.add_argument_group("distributed (ipfs-accelerate-redis)")
    group.add_argument("--redis", metavar="URL",
                       help="distributed: workers started with the same IN and URL share the "
                            "job through Redis Streams (no journal)")
    group.add_argument("--job", metavar="NAME",
                       help="with --redis: the job name (default: a hash of IN's content)")
    group.add_argument("--claim-timeout", type=positive_float, default=30.0, metavar="SECONDS",
                       help="with --redis: take over a silent worker's requests after this "
                            "long (default: %(default)s)")


@hookimpl
def accelerate_cli_run_batch(job: Any) -> int | None:
    if not getattr(job.options, "redis", None):
        return None
    from .batch import run_cli_job

    return run_cli_job(job)


# ---------------------------------------------------------------- response cache
@hookimpl
def accelerate_make_cache_store(url: str, config: Any) -> Any:
    """``CacheConfig(store="redis://host:6379/0")``: the response cache in Redis, shared
    by every process and host using it."""
    if url.split("://", 1)[0] not in SCHEMES:
        return None
    from .cache import RedisCacheStore

    return RedisCacheStore(url, max_entries=config.max_entries, max_bytes=config.max_bytes)
