"""The cache's configuration: ``ClientConfig(cache=CacheConfig(...))``."""

from __future__ import annotations

from typing import Any

import attrs

from ..errors import ConfigError


def _store(_inst: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, str):
        if "://" not in value:
            raise ConfigError("cache.store", f"expected a URL such as memory://, "
                                             f"sqlite:///path/cache.sqlite3 or "
                                             f"redis://host:6379/0, got {value!r}")
        return
    for method in ("get", "put", "invalidate", "info"):
        if not callable(getattr(value, method, None)):
            raise ConfigError("cache.store", f"{type(value).__name__} is not a cache store "
                                             f"(no {method}() method)")


def _store_repr(value: Any) -> str:
    from ..redaction import redact_url

    return repr(redact_url(value)) if isinstance(value, str) else repr(value)


def _positive_or_none(_inst: Any, attribute: Any, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not value > 0):
        raise ConfigError(f"cache.{attribute.name}", f"must be > 0 or None, got {value!r}")


def _at_least_one(_inst: Any, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"cache.{attribute.name}", f"must be a whole number >= 1, got {value!r}")


def _namespace(_inst: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ConfigError("cache.namespace", f"must be a non-empty string (<= 200 chars), "
                                             f"got {value!r}")


def _flag(_inst: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"cache.{attribute.name}", f"must be true or false, got {value!r}")


@attrs.frozen
class CacheConfig:
    """Response caching for one client.

    ``enabled``: cache every backend's cacheable operations (a backend's
    ``BackendConfig(cache=...)`` and a request's ``Request(cache=...)`` override it; with
    ``enabled=False`` only those that ask are cached).  ``store``: a URL resolved through
    ``accelerate_make_cache_store`` (``memory://``, ``sqlite:///path``, ``redis://...``
    with the Redis extra) or a store object (shared: the client never closes it).
    ``namespace``: entries are served only to clients of the same namespace.  ``ttl``:
    seconds an entry lives (None: until evicted or invalidated).  ``max_entries`` /
    ``max_bytes`` bound the memory and SQLite stores.  ``semantic``: a semantic matcher
    (``ipfs-accelerate-semantic-cache``), or None for the exact cache only.
    """

    enabled: bool = attrs.field(default=True, validator=_flag)
    #: Shown without user info or query string (a Redis URL may hold a password).
    store: Any = attrs.field(default="memory://", validator=_store, repr=_store_repr)
    namespace: str = attrs.field(default="default", validator=_namespace)
    ttl: float | None = attrs.field(default=None, validator=_positive_or_none)
    max_entries: int = attrs.field(default=10_000, validator=_at_least_one)
    max_bytes: int = attrs.field(default=256 * 1024 * 1024, validator=_at_least_one)
    semantic: Any = None


def as_cache_config(value: Any) -> CacheConfig | None:
    """``ClientConfig.cache``: None (off), True, a store URL, a store object, or a
    :class:`CacheConfig`."""
    if value is None or isinstance(value, CacheConfig):
        return value
    if value is True:
        return CacheConfig()
    if value is False:
        return None
    return CacheConfig(store=value)
