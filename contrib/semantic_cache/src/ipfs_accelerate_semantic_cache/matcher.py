"""The semantic matcher the core's cache stage calls (``CacheConfig(semantic=...)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ipfs_accelerate_py.errors import ConfigError
from ipfs_accelerate_py.request import Request

from .index import VectorIndex
from .scope import scope_of

#: Cosine similarity a cached prompt must reach (docs/caching.md shows precision and
#: recall on the labelled set at this value).
DEFAULT_THRESHOLD = 0.9


class _Memo:
    __slots__ = ("scope", "text", "vector")

    def __init__(self, scope: str, text: str) -> None:
        self.scope = scope
        self.text = text
        self.vector: Any = None


class SemanticCache:
    """Match a chat or completion prompt to a cached one that means the same.

    :param backend: the configured backend whose embeddings embed the prompts (requests
        go through the same client: queued, rate-limited, counted, and exact-cached
        themselves when that backend caches).
    :param model: the embedding model.
    :param operation: the backend's embeddings operation (``embeddings``, ``embed``...).
    :param threshold: the cosine similarity at or above which a cached prompt matches.
    :param path: a SQLite file to persist the vectors in (e.g. the cache file itself);
        None keeps them in memory.
    :param max_per_scope: vectors kept per scope (the oldest go first).
    :param embedding_options: more fields of the embeddings payload (``{"dimensions":
        256}``...).

    A hit needs an intact exact entry too: an entry invalidated or evicted from the store
    is never served through its vector.
    """

    def __init__(self, backend: str, model: str, *, operation: str = "embeddings",
                 threshold: float = DEFAULT_THRESHOLD, path: str | Path | None = None,
                 max_per_scope: int = 100_000,
                 embedding_options: Mapping[str, Any] | None = None) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError("semantic.threshold", f"must be within (0, 1], got {threshold!r}")
        if max_per_scope < 1:
            raise ConfigError("semantic.max_per_scope", f"must be >= 1, got {max_per_scope!r}")
        self.backend = backend
        self.model = model
        self.operation = operation
        self.threshold = threshold
        self.embedding_options = dict(embedding_options or {})
        self.index = VectorIndex(path, max_per_scope)

    # -- the cache stage's calls (see ipfs_accelerate_py.caching.stage) -----------------
    def prepare(self, request: Request, endpoint: str, namespace: str) -> _Memo | None:
        found = scope_of(endpoint, request.operation, namespace, request.payload)
        return None if found is None else _Memo(*found)

    def embedding_request(self, memo: _Memo, request: Request) -> Request:
        return Request(self.operation, {**self.embedding_options, "model": self.model,
                                        "input": memo.text},
                       backend=self.backend, priority=request.priority,
                       deadline=request.deadline, tags={"semantic_cache_for": request.request_id})

    def match(self, memo: _Memo, embedded: Any) -> tuple[str, float] | None:
        data = getattr(embedded, "data", None)
        vector = data[0] if isinstance(data, (list, tuple)) and data else data
        memo.vector = vector
        found = self.index.search(memo.scope, vector)
        if found is None or found[1] < self.threshold:
            return None
        return found

    def add(self, memo: _Memo, key: str) -> None:
        if memo.vector is not None:
            self.index.add(memo.scope, key, memo.vector)

    def close(self) -> None:
        self.index.close()

    def __repr__(self) -> str:
        return (f"SemanticCache(backend={self.backend!r}, model={self.model!r}, "
                f"threshold={self.threshold})")
