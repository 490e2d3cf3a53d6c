"""Response caching: an exact cache (memory, SQLite, Redis via the extra) in front of the
queue, and the hooks a semantic matcher plugs into (``ipfs-accelerate-semantic-cache``).
See ``docs/caching.md``."""

from .config import CacheConfig, as_cache_config
from .entry import CacheEntry, CacheHit
from .keys import (CHAT_OPERATIONS, IGNORED_FIELDS, PURE_OPERATIONS, Uncacheable, cache_key,
                   canonical_json, relevant_payload)
from .resolve import open_store, resolve_cache
from .sqlite_store import SQLiteCacheStore
from .stage import CacheStage
from .store import CacheStore, MemoryCacheStore

__all__ = ["CacheConfig", "CacheEntry", "CacheHit", "CacheStage", "CacheStore",
           "CHAT_OPERATIONS", "IGNORED_FIELDS", "MemoryCacheStore", "PURE_OPERATIONS",
           "SQLiteCacheStore", "Uncacheable", "as_cache_config", "cache_key", "canonical_json",
           "open_store", "relevant_payload", "resolve_cache"]
