"""A cache in one SQLite file (stdlib ``sqlite3``, WAL): shared by the processes of one
host, and the default store of ``ipfs-accelerate batch --cache PATH``.

Every write is one transaction, so a process killed mid-write (even SIGKILL) leaves the
file as it was before or after that write; WAL recovery runs when the next process opens
it.  Totals are kept by triggers (no full scan per write); eviction deletes the least
recently used rows (``last_used`` is refreshed at most once a second per entry, so a hit
is a read, not a write, most of the time).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from .entry import CacheEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    namespace TEXT NOT NULL, key TEXT NOT NULL, backend TEXT NOT NULL,
    operation TEXT NOT NULL, model TEXT, created REAL NOT NULL, expires REAL,
    last_used REAL NOT NULL, size INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (namespace, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_lru ON entries (last_used);
CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 0),
    entries INTEGER NOT NULL, bytes INTEGER NOT NULL, evictions INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES (0, 0, 0, 0);
CREATE TRIGGER IF NOT EXISTS entries_ins AFTER INSERT ON entries BEGIN
    UPDATE totals SET entries = entries + 1, bytes = bytes + NEW.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_del AFTER DELETE ON entries BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - OLD.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS entries_upd AFTER UPDATE OF size ON entries BEGIN
    UPDATE totals SET bytes = bytes + NEW.size - OLD.size WHERE id = 0; END;
"""

_COLS = "namespace, key, backend, operation, model, created, expires, body"


def _entry(row: Any) -> CacheEntry:
    return CacheEntry(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bytes(row[7]))


class SQLiteCacheStore:
    """A cache file; ``max_entries`` / ``max_bytes`` bound it (LRU eviction)."""

    name = "sqlite"

    def __init__(self, path: str | Path, max_entries: int = 1_000_000,
                 max_bytes: int = 4 * 1024 ** 3, timeout: float = 10.0) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be >= 1")
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._lock = threading.Lock()
        # One connection guarded by a lock: sqlite3 objects are not for concurrent use;
        # other processes are serialized by SQLite's own file locks (busy timeout).
        self._db = sqlite3.connect(str(self.path), timeout=timeout, check_same_thread=False,
                                   isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._lock:
                self._db.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
        except BaseException:
            self._db.close()
            raise

    def get(self, namespace: str, key: str, now: float) -> CacheEntry | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLS}, last_used FROM entries WHERE namespace = ? AND key = ?",
                (namespace, key)).fetchone()
            if row is None:
                return None
            e = _entry(row)
            if e.expired(now):
                self._db.execute("DELETE FROM entries WHERE namespace = ? AND key = ? "
                                 "AND expires <= ?", (namespace, key, now))
                return None
            if now - row[8] > 1.0:
                self._touch(namespace, key, now)
            return e

    def _touch(self, namespace: str, key: str, now: float) -> None:
        # Best effort and never waiting: a hit must not queue behind another process's
        # write for the busy timeout just to refresh its LRU time.
        db = self._db
        db.execute("PRAGMA busy_timeout = 0")
        try:
            db.execute("UPDATE entries SET last_used = ? WHERE namespace = ? AND key = ?",
                       (now, namespace, key))
        except sqlite3.OperationalError:
            pass
        finally:
            db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")

    def put(self, entry: CacheEntry) -> None:
        if entry.size > self.max_bytes:
            return
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (namespace, key) DO UPDATE SET backend = excluded.backend, "
                    "operation = excluded.operation, model = excluded.model, "
                    "created = excluded.created, expires = excluded.expires, "
                    "last_used = excluded.last_used, size = excluded.size, body = excluded.body",
                    (entry.namespace, entry.key, entry.backend, entry.operation, entry.model,
                     entry.created, entry.expires, now, entry.size, entry.body))
                count, size = db.execute("SELECT entries, bytes FROM totals").fetchone()
                if count > self.max_entries or size > self.max_bytes:
                    self._evict(count, size, now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _evict(self, count: int, size: int, now: float) -> None:
        db = self._db
        gone = db.execute("DELETE FROM entries WHERE expires IS NOT NULL AND expires <= ?",
                          (now,)).rowcount
        count, size = db.execute("SELECT entries, bytes FROM totals").fetchone()
        while count > self.max_entries or size > self.max_bytes:
            # Least recently used first: the rows over the count, or 1/64 of them (at
            # least one) at a time while the bytes are over.
            n = max(1, count - self.max_entries, count // 64 if size > self.max_bytes else 0)
            gone += db.execute(
                "DELETE FROM entries WHERE (namespace, key) IN (SELECT namespace, key FROM "
                "entries ORDER BY last_used LIMIT ?)", (n,)).rowcount
            count, size = db.execute("SELECT entries, bytes FROM totals").fetchone()
        db.execute("UPDATE totals SET evictions = evictions + ? WHERE id = 0", (gone,))

    def invalidate(self, *, namespace: str | None = None, key: str | None = None,
                   model: str | None = None, created_before: float | None = None) -> int:
        where, args = [], []
        for col, op, value in (("namespace", "=", namespace), ("key", "=", key),
                               ("model", "=", model), ("created", "<", created_before)):
            if value is not None:
                where.append(f"{col} {op} ?")
                args.append(value)
        sql = "DELETE FROM entries" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def entries(self, namespace: str | None = None) -> Iterator[CacheEntry]:
        sql = f"SELECT {_COLS} FROM entries" + (" WHERE namespace = ?" if namespace else "")
        with self._lock:
            rows = self._db.execute(sql, (namespace,) if namespace else ()).fetchall()
        return (_entry(r) for r in rows)

    def raw_connection(self) -> sqlite3.Connection:
        """For tests and tools only (e.g. to damage an entry on purpose)."""
        return self._db

    def info(self) -> dict:
        with self._lock:
            count, size, evictions = self._db.execute(
                "SELECT entries, bytes, evictions FROM totals").fetchone()
        return {"store": self.name, "path": str(self.path), "entries": count, "bytes": size,
                "evictions": evictions, "max_entries": self.max_entries,
                "max_bytes": self.max_bytes}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteCacheStore({str(self.path)!r})"
