"""Vectors by scope, searched by cosine similarity; optionally persisted in SQLite.

Each scope holds a float32 matrix of unit vectors (grown by doubling) and their entry
keys; a search is an exact scan for the largest inner product -- no approximate index
can miss the neighbour the scan finds, or return one from another scope.  The scan is
faiss's brute-force ``knn`` kernel (faiss-cpu) when it is installed, about 3x NumPy's
matrix-vector product at 100k vectors, else NumPy's; docs/benchmarks/cache.md compares
both with usearch's HNSW graph at 1k, 100k and 1M vectors.  A scope is bounded by
``max_per_scope`` (the oldest vectors go first).  With ``path`` every vector is also
written to a SQLite table (one transaction each) and loaded back on start, so the index
lives as long as the entries it points to.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

try:  # the faster exact kernel; NumPy does the same search without it
    import faiss as _faiss
except ImportError:  # pragma: no cover - faiss-cpu is a dependency; a platform without wheels
    _faiss = None


def _best_numpy(matrix: np.ndarray, vec: np.ndarray) -> tuple[int, float]:
    sims = matrix @ vec
    i = int(np.argmax(sims))
    return i, float(sims[i])


def _best_faiss(matrix: np.ndarray, vec: np.ndarray) -> tuple[int, float]:
    sims, idx = _faiss.knn(vec[None], matrix, 1, metric=_faiss.METRIC_INNER_PRODUCT)
    return int(idx[0, 0]), float(sims[0, 0])


#: The scan kernels by name: ``VectorIndex(kernel=...)``.
KERNELS = {"numpy": _best_numpy, **({"faiss": _best_faiss} if _faiss is not None else {})}


class _Scope:
    __slots__ = ("matrix", "keys", "n")

    def __init__(self, dims: int) -> None:
        self.matrix = np.empty((8, dims), dtype=np.float32)
        self.keys: list[str] = []
        self.n = 0


def unit(vector: Any) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError("an embedding must be a non-empty vector of finite numbers")
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise ValueError("an embedding of all zeros has no direction")
    return v / norm


class VectorIndex:
    """Thread-safe; ``search`` returns the best (key, cosine) of one scope."""

    def __init__(self, path: str | Path | None = None, max_per_scope: int = 100_000,
                 kernel: str | None = None) -> None:
        kernel = kernel or ("faiss" if "faiss" in KERNELS else "numpy")
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; available: {', '.join(KERNELS)}")
        self.kernel = kernel
        self._best = KERNELS[kernel]
        self.max_per_scope = max_per_scope
        self._lock = threading.Lock()
        self._scopes: dict[str, _Scope] = {}
        self._db: sqlite3.Connection | None = None
        if path is not None:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                       timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS semantic_vectors (scope TEXT NOT NULL, "
                             "key TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (scope, key))")
            for scope, key, blob in self._db.execute(
                    "SELECT scope, key, vector FROM semantic_vectors ORDER BY rowid"):
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.size and np.all(np.isfinite(vec)):  # a damaged row is skipped
                    self._add(scope, key, vec)

    def __len__(self) -> int:
        with self._lock:
            return sum(s.n for s in self._scopes.values())

    def _add(self, scope: str, key: str, vec: np.ndarray) -> None:
        s = self._scopes.get(scope)
        if s is None:
            s = self._scopes[scope] = _Scope(vec.size)
        if s.matrix.shape[1] != vec.size:
            return  # another embedding model's vector: never compared
        if key in s.keys:
            i = s.keys.index(key)
            s.matrix[i] = vec
            return
        if s.n == self.max_per_scope:  # drop the oldest
            s.matrix[: s.n - 1] = s.matrix[1: s.n]
            s.keys.pop(0)
            s.n -= 1
        if s.n == len(s.matrix):
            grown = np.empty((len(s.matrix) * 2, vec.size), dtype=np.float32)
            grown[: s.n] = s.matrix[: s.n]
            s.matrix = grown
        s.matrix[s.n] = vec
        s.keys.append(key)
        s.n += 1

    def add(self, scope: str, key: str, vector: Any) -> None:
        vec = unit(vector)
        with self._lock:
            self._add(scope, key, vec)
            if self._db is not None:
                self._db.execute("INSERT OR REPLACE INTO semantic_vectors VALUES (?, ?, ?)",
                                 (scope, key, vec.tobytes()))

    def search(self, scope: str, vector: Any) -> tuple[str, float] | None:
        vec = unit(vector)
        with self._lock:
            s = self._scopes.get(scope)
            if s is None or s.n == 0 or s.matrix.shape[1] != vec.size:
                return None
            i, sim = self._best(s.matrix[: s.n], vec)
            return s.keys[i], sim

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
