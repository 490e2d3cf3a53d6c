"""Hook implementations.  Installed, this plugin makes every client use Redis when
``IPFS_ACCELERATE_REDIS_URL`` is set (and does nothing otherwise).  For explicit
configuration register a :class:`RedisStatePlugin` instead::

    pm = get_plugin_manager(); pm.add_plugin(RedisStatePlugin("redis://host:6379/0"))
"""

from __future__ import annotations

import os
from typing import Any

from ipfs_accelerate_py import hookimpl

URL_ENV = "IPFS_ACCELERATE_REDIS_URL"


@hookimpl
def accelerate_make_state_store(config: Any) -> Any:
    if not os.environ.get(URL_ENV):
        return None
    from .store import RedisStateStore

    return RedisStateStore.from_env()


class RedisStatePlugin:
    """Explicit configuration: every client built with this plugin registered uses a
    Redis store (a new one per client from ``url`` and ``options``, or the given
    ``store``)."""

    def __init__(self, url: str | None = None, *, store: Any = None, **options: Any) -> None:
        if url is None and store is None:
            raise TypeError("RedisStatePlugin needs a url or a store")
        self.url = url
        self.store = store
        self.options = options

    @hookimpl(tryfirst=True)
    def accelerate_make_state_store(self, config: Any) -> Any:
        if self.store is not None:
            return self.store
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
