"""The cache store interface and the in-memory store (LRU, bounded by entries and bytes).

A store keeps :class:`~.entry.CacheEntry` objects by ``(namespace, key)``.  Stores do not
decode bodies: the cache stage does, and treats an undecodable body as a miss.  Every
method is thread-safe.  ``now`` is wall-clock time (``time.time()``): entries outlive the
process that wrote them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterator, Protocol, runtime_checkable

from .entry import CacheEntry


@runtime_checkable
class CacheStore(Protocol):
    """What the cache stage needs from a store (memory, SQLite, Redis...)."""

    name: str

    def get(self, namespace: str, key: str, now: float) -> CacheEntry | None:
        """The live entry, or None (absent or expired; an expired one may be dropped)."""

    def put(self, entry: CacheEntry) -> None:
        """Store (or replace) an entry; evict least-recently-used ones over the bounds."""

    def invalidate(self, *, namespace: str | None = None, key: str | None = None,
                   model: str | None = None, created_before: float | None = None) -> int:
        """Delete the entries matching every given criterion (none given: all); the count."""

    def entries(self, namespace: str | None = None) -> Iterator[CacheEntry]:
        """Every entry (of one namespace), for export."""

    def info(self) -> dict:
        """``{"store", "entries", "bytes", "evictions", ...}``."""

    def close(self) -> None: ...


def matches(e: CacheEntry, namespace: str | None, key: str | None, model: str | None,
            created_before: float | None) -> bool:
    return ((namespace is None or e.namespace == namespace) and (key is None or e.key == key)
            and (model is None or e.model == model)
            and (created_before is None or e.created < created_before))


class MemoryCacheStore:
    """An in-process LRU store bounded by ``max_entries`` and ``max_bytes``."""

    name = "memory"

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be >= 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._data: OrderedDict[tuple[str, str], CacheEntry] = OrderedDict()
        self._bytes = 0
        self.evictions = 0

    def get(self, namespace: str, key: str, now: float) -> CacheEntry | None:
        k = (namespace, key)
        with self._lock:
            e = self._data.get(k)
            if e is None:
                return None
            if e.expired(now):
                self._drop(k)
                return None
            self._data.move_to_end(k)
            return e

    def _drop(self, k: tuple[str, str]) -> None:
        e = self._data.pop(k)
        self._bytes -= e.size

    def put(self, entry: CacheEntry) -> None:
        k = (entry.namespace, entry.key)
        if entry.size > self.max_bytes:
            return  # never fits: storing it would only empty the cache
        with self._lock:
            if k in self._data:
                self._drop(k)
            self._data[k] = entry
            self._bytes += entry.size
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._data)))
                self.evictions += 1

    def invalidate(self, *, namespace: str | None = None, key: str | None = None,
                   model: str | None = None, created_before: float | None = None) -> int:
        with self._lock:
            doomed = [k for k, e in self._data.items()
                      if matches(e, namespace, key, model, created_before)]
            for k in doomed:
                self._drop(k)
            return len(doomed)

    def entries(self, namespace: str | None = None) -> Iterator[CacheEntry]:
        with self._lock:
            snapshot = list(self._data.values())
        return iter([e for e in snapshot if namespace is None or e.namespace == namespace])

    def info(self) -> dict:
        with self._lock:
            return {"store": self.name, "entries": len(self._data), "bytes": self._bytes,
                    "evictions": self.evictions, "max_entries": self.max_entries,
                    "max_bytes": self.max_bytes}

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"MemoryCacheStore(max_entries={self.max_entries}, max_bytes={self.max_bytes})"
