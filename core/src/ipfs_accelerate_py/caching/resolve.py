"""Opening a cache store from a URL (through ``accelerate_make_cache_store``)."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .config import CacheConfig
from .stage import CacheStage


def sqlite_path(url: str) -> str:
    """``sqlite:///abs/path``, ``sqlite://rel/path`` or a plain path -> the file path."""
    return url[len("sqlite://"):] if url.startswith("sqlite://") else url


def open_store(url: str, config: CacheConfig, pm: Any) -> Any:
    """The store a URL names, made by the first plugin that answers for its scheme."""
    store = pm.hooks.accelerate_make_cache_store(url=url, config=config)
    if store is None:
        scheme = url.split("://", 1)[0]
        raise ConfigError("cache.store", f"no installed plugin makes a cache store for "
                                         f"{scheme}:// URLs (is its extra installed? see "
                                         f"docs/caching.md)")
    return store


def resolve_cache(config: CacheConfig, pm: Any) -> CacheStage:
    """The client's cache stage; it owns (closes) a store it made from a URL."""
    store = config.store
    if isinstance(store, str):
        return CacheStage(config, open_store(store, config, pm), owns_store=True)
    return CacheStage(config, store, owns_store=False)


CACHE_ENV = "IPFS_ACCELERATE_CACHE"


def cache_url(location: str) -> str:
    """A command line's ``--cache``: a URL as given, a plain path as ``sqlite:///abs/path``."""
    if "://" in location:
        return location
    import os

    return "sqlite://" + os.path.abspath(location)
