"""The cache stage: before the queue, a hit resolves the request at once; at settlement,
a success is written.

A hit takes no key, no rate-limit token and no budget, and its result says where it came
from (``Result.cache``, a :class:`~.entry.CacheHit`).  A store that fails, or an entry
that does not decode, is a miss (logged, counted), never an error or a wrong answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from ..results import Result, ResultStream
from .config import CacheConfig
from .entry import CacheEntry, CacheHit, decode_body, encode_result, replay_chunk, result_from
from .keys import Uncacheable, cache_key, is_cacheable

log = logging.getLogger("ipfs_accelerate")  # its redacting log filter applies

REFRESH = "refresh"


class Pending:
    """What a miss leaves on its job for the write at settlement."""

    __slots__ = ("key", "semantic")

    def __init__(self, key: str, semantic: Any = None) -> None:
        self.key = key
        self.semantic = semantic


class CacheStage:
    """One client's cache: decides per request, looks up, writes, counts."""

    def __init__(self, config: CacheConfig, store: Any, owns_store: bool,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.owns_store = owns_store
        self.namespace = config.namespace
        self.semantic = config.semantic
        self.wall_clock = wall_clock
        #: Set by the driver: submit a Request through the same pipeline and return its
        #: future (the semantic cache's embeddings go through it, limited and counted).
        self.submit: Callable[[Any], Any] | None = None
        self._lock = threading.Lock()
        self._counts = {"hits": 0, "misses": 0, "writes": 0, "bypassed": 0, "refreshed": 0,
                        "corrupt": 0, "errors": 0, "semantic_hits": 0, "semantic_misses": 0}
        self._similarities: deque[float] = deque(maxlen=1000)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    # ------------------------------------------------------------------ decisions
    def mode(self, job: Any) -> str | None:
        """``"use"``, ``"refresh"`` or None (this request does not touch the cache)."""
        req = job.request
        flag = req.cache
        if flag is False:
            return None
        if flag is None:
            per_backend = getattr(job.bstate.config, "cache", None)
            if not (per_backend if per_backend is not None else self.config.enabled):
                return None
        if not is_cacheable(job.bstate.backend, req.operation):
            return None
        return REFRESH if flag == REFRESH else "use"

    # ------------------------------------------------------------------ lookup
    def lookup(self, job: Any) -> Result | ResultStream | None:
        """The cached answer for ``job`` (a stream for a streamed request), or None; on a
        miss the job remembers its key for the write at settlement."""
        mode = self.mode(job)
        if mode is None:
            self._count("bypassed")
            return None
        req = job.request
        try:
            key = cache_key(job.bstate.group, req.operation, req.payload)
        except Uncacheable as exc:
            log.debug("ipfs-accelerate: request %s not cached: %s", req.request_id, exc)
            self._count("bypassed")
            return None
        pending = job.cache = Pending(key)
        if mode == REFRESH:
            self._count("refreshed")
            return None
        hit = self._exact(key, job)
        if hit is None and self.semantic is not None:
            hit = self._semantic(job, pending)
        if hit is None:
            self._count("misses")
            return None
        job.cache = None  # nothing to write
        return self._deliver(hit, job)

    def _read(self, key: str) -> dict[str, Any] | None:
        ns = self.namespace
        try:
            entry = self.store.get(ns, key, self.wall_clock())
        except Exception as exc:
            log.warning("ipfs-accelerate: cache store %s failed on read (%s: %s); a miss",
                        self.store.name, type(exc).__name__, exc)
            self._count("errors")
            return None
        if entry is None:
            return None
        doc = decode_body(ns, key, entry.body)
        if doc is None:
            log.warning("ipfs-accelerate: cache entry %s… is damaged; dropped (a miss)", key[:12])
            self._count("corrupt")
            try:
                self.store.invalidate(namespace=ns, key=key)
            except Exception:
                pass
            return None
        doc["_created"] = entry.created
        return doc

    def _exact(self, key: str, job: Any) -> Any:
        doc = self._read(key)
        if doc is None:
            return None
        self._count("hits")
        return doc, CacheHit(key, self.namespace, self.store.name, doc["_created"])

    def _semantic(self, job: Any, pending: Pending) -> Any:
        sem = self.semantic
        try:
            memo = sem.prepare(job.request, job.bstate.group, self.namespace)
            if memo is None:
                return None
            if self.submit is None:
                return None
            embedded = self.submit(sem.embedding_request(memo, job.request)).result()
            found = sem.match(memo, embedded)
        except Exception as exc:  # an embeddings failure is a miss, not the request's error
            log.warning("ipfs-accelerate: semantic cache lookup failed (%s: %s); a miss",
                        type(exc).__name__, exc)
            self._count("errors")
            return None
        pending.semantic = memo
        if found is None:
            self._count("semantic_misses")
            return None
        key, similarity = found
        doc = self._read(key)
        if doc is None:
            self._count("semantic_misses")
            return None
        with self._lock:
            self._counts["semantic_hits"] += 1
            self._similarities.append(float(similarity))
        return doc, CacheHit(key, self.namespace, self.store.name, doc["_created"],
                             kind="semantic", similarity=float(similarity))

    def _deliver(self, hit: Any, job: Any) -> Result | ResultStream:
        doc, info = hit
        req = job.request
        result = result_from(doc, info, req.request_id, job.bstate.name)
        if not req.stream:
            return result
        stream = ResultStream(replay_chunk(result), iter(()), request_id=req.request_id,
                              backend=job.bstate.name, key_id=None, attempts=0)
        stream.cache = info  # type: ignore[attr-defined]
        stream.cost = result.cost
        return stream

    # ------------------------------------------------------------------ writes
    def write(self, job: Any, result: Result) -> None:
        """At settlement of a success: store the answer (a failure is logged, not raised)."""
        pending = job.cache
        if pending is None:
            return
        job.cache = None
        ns, key, req = self.namespace, pending.key, job.request
        try:
            body = encode_result(ns, key, result)
        except Uncacheable as exc:
            log.debug("ipfs-accelerate: result of %s not cached: %s", req.request_id, exc)
            return
        now = self.wall_clock()
        ttl = self.config.ttl
        model = req.payload.get("model") if hasattr(req.payload, "get") else None
        entry = CacheEntry(ns, key, job.bstate.name, req.operation,
                           model if isinstance(model, str) else result.model, now,
                           None if ttl is None else now + ttl, body)
        try:
            self.store.put(entry)
            if pending.semantic is not None:
                self.semantic.add(pending.semantic, key)
        except Exception as exc:
            log.warning("ipfs-accelerate: cache store %s failed on write (%s: %s)",
                        self.store.name, type(exc).__name__, exc)
            self._count("errors")
            return
        self._count("writes")

    def write_stream(self, job: Any, stream: ResultStream) -> None:
        """A stream read to its end: cache the whole answer (replayed as a stream)."""
        if job.cache is None:
            return
        self.write(job, Result(text=stream.text, tool_calls=stream.tool_calls,
                               finish_reason=stream.finish_reason, usage=stream.usage,
                               model=stream.model))

    # ------------------------------------------------------------------ management
    def invalidate(self, *, key: str | None = None, model: str | None = None,
                   older_than: float | None = None, namespace: str | None = None,
                   all_namespaces: bool = False) -> int:
        """Delete this namespace's entries (or another's, or every one) by key, model
        and/or age in seconds; returns how many."""
        ns = None if all_namespaces else (namespace or self.namespace)
        before = None if older_than is None else self.wall_clock() - older_than
        return self.store.invalidate(namespace=ns, key=key, model=model, created_before=before)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
            sims = list(self._similarities)
        looked = out["hits"] + out["misses"] + out["semantic_hits"]
        out["hit_rate"] = (out["hits"] + out["semantic_hits"]) / looked if looked else None
        out["semantic_similarity_mean"] = sum(sims) / len(sims) if sims else None
        out["semantic_similarity_min"] = min(sims) if sims else None
        out["namespace"] = self.namespace
        try:
            out["store"] = self.store.info()
        except Exception as exc:
            out["store"] = {"store": getattr(self.store, "name", "?"),
                            "error": f"{type(exc).__name__}: {exc}"}
        return out

    def close(self) -> None:
        if self.owns_store:
            try:
                self.store.close()
            except Exception as exc:
                log.warning("ipfs-accelerate: closing the cache store failed: %s", exc)
        closer = getattr(self.semantic, "close", None)
        if callable(closer):
            closer()
