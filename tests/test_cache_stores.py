"""The cache stores: the in-memory LRU against a model (hypothesis stateful), its bounds
under thread stress; the SQLite file across instances and processes, damaged entries, and
a writer killed with SIGKILL mid-write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ipfs_accelerate_py.caching import MemoryCacheStore, SQLiteCacheStore
from ipfs_accelerate_py.caching.entry import CacheEntry, decode_body, encode_result
from ipfs_accelerate_py.results import Result

WRITER = Path(__file__).with_name("cache_writer.py")


def entry(ns: str, key: str, text: str = "a", model: str = "m", created: float = 1.0,
          expires: float | None = None) -> CacheEntry:
    return CacheEntry(ns, key, "openai", "chat", model, created, expires,
                      encode_result(ns, key, Result(text=text)))


class MemoryLRU(RuleBasedStateMachine):
    """The memory store behaves as an LRU dict bounded by entries and bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryCacheStore(max_entries=4, max_bytes=2000)
        self.model: OrderedDict = OrderedDict()

    def _trim(self) -> None:
        while len(self.model) > 4 or sum(e.size for e in self.model.values()) > 2000:
            self.model.popitem(last=False)

    @rule(ns=st.sampled_from("ab"), k=st.sampled_from("123456"), size=st.integers(0, 900))
    def put(self, ns, k, size):
        e = entry(ns, k, "x" * size)
        self.store.put(e)
        if e.size <= 2000:
            self.model.pop((ns, k), None)
            self.model[(ns, k)] = e
            self._trim()

    @rule(ns=st.sampled_from("ab"), k=st.sampled_from("123456"))
    def get(self, ns, k):
        got = self.store.get(ns, k, 0.0)
        want = self.model.get((ns, k))
        assert got == want
        if want is not None:
            self.model.move_to_end((ns, k))

    @rule(ns=st.sampled_from(["a", "b", None]), k=st.sampled_from(["1", "2", None]))
    def invalidate(self, ns, k):
        doomed = [x for x in self.model if (ns is None or x[0] == ns) and (k is None or x[1] == k)]
        for x in doomed:
            del self.model[x]
        assert self.store.invalidate(namespace=ns, key=k) == len(doomed)

    @invariant()
    def bounded_and_equal(self):
        info = self.store.info()
        assert info["entries"] == len(self.model) <= 4
        assert info["bytes"] == sum(e.size for e in self.model.values()) <= 2000


TestMemoryLRU = MemoryLRU.TestCase
TestMemoryLRU.settings = settings(max_examples=60, stateful_step_count=30,
                                  suppress_health_check=[HealthCheck.too_slow])


def test_memory_store_under_thread_stress_stays_bounded_and_exact():
    store = MemoryCacheStore(max_entries=50, max_bytes=10 ** 6)
    errors: list = []

    def work(t: int) -> None:
        for i in range(400):
            k = f"{(t * 7 + i) % 80}"
            store.put(entry("n", k, text=k))
            got = store.get("n", k, 0.0)
            if got is not None and decode_body("n", k, got.body)["text"] != k:
                errors.append(k)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    info = store.info()
    assert info["entries"] == 50 and info["bytes"] == sum(e.size for e in store.entries())


def test_expired_entries_are_not_served(tmp_path):
    for store in (MemoryCacheStore(), SQLiteCacheStore(tmp_path / "c.sqlite3")):
        store.put(entry("n", "k", expires=100.0))
        assert store.get("n", "k", 99.0) is not None
        assert store.get("n", "k", 100.0) is None
        store.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_invalidate_by_key_namespace_model_and_age(tmp_path, kind):
    store = MemoryCacheStore() if kind == "memory" else SQLiteCacheStore(tmp_path / "c.sqlite3")
    store.put(entry("a", "1", model="m1", created=10))
    store.put(entry("a", "2", model="m2", created=20))
    store.put(entry("b", "1", model="m1", created=30))
    store.put(entry("b", "3", model="m2", created=40))
    assert store.invalidate(namespace="a", key="1") == 1
    assert store.invalidate(model="m1") == 1
    assert store.invalidate(created_before=35) == 1
    assert [(e.namespace, e.key) for e in store.entries()] == [("b", "3")]
    assert store.invalidate() == 1 and store.info()["entries"] == 0
    store.close()


def test_sqlite_store_persists_evicts_lru_and_keeps_totals(tmp_path):
    path = tmp_path / "c.sqlite3"
    store = SQLiteCacheStore(path, max_entries=3)
    for k in "abc":
        store.put(entry("n", k))
    store.close()
    store = SQLiteCacheStore(path, max_entries=3)
    assert store.get("n", "a", time.time() + 5) is not None  # refreshes a's last use
    store.put(entry("n", "d"))
    assert store.get("n", "b", 0.0) is None and store.get("n", "a", 0.0) is not None
    info = store.info()
    assert (info["entries"], info["evictions"]) == (3, 1)
    assert info["bytes"] == sum(e.size for e in store.entries())
    store.put(entry("n", "a", text="replaced, and longer than before"))
    assert store.info()["bytes"] == sum(e.size for e in store.entries())
    store.close()


def test_sqlite_damaged_rows_decode_to_nothing(tmp_path):
    store = SQLiteCacheStore(tmp_path / "c.sqlite3")
    store.put(entry("n", "k1", "one"))
    store.put(entry("n", "k2", "two"))
    db = store.raw_connection()
    db.execute("UPDATE entries SET body = substr(body, 1, 30) WHERE key = 'k1'")  # torn
    # a body moved under another key is not that key's answer
    body2 = db.execute("SELECT body FROM entries WHERE key = 'k2'").fetchone()[0]
    db.execute("INSERT INTO entries SELECT namespace, 'k3', backend, operation, model, created, "
               "expires, last_used, size, ? FROM entries WHERE key = 'k2'", (body2,))
    for k in ("k1", "k3"):
        assert decode_body("n", k, store.get("n", k, 0.0).body) is None
    assert decode_body("n", "k2", store.get("n", "k2", 0.0).body)["text"] == "two"
    store.close()


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WRITER), *args], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_sigkill_mid_write_leaves_a_usable_cache(tmp_path):
    path = tmp_path / "c.sqlite3"
    for round_ in range(3):
        child = _spawn(str(path), "loop", f"r{round_}", "50", "20000")
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.05 * (round_ + 1))  # kill at some point of a stream of 20 KB writes
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
        store = SQLiteCacheStore(path, max_entries=10 ** 9, max_bytes=10 ** 12)
        assert store.raw_connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = list(store.entries(f"r{round_}"))
        assert len(rows) >= 50
        for e in rows:  # every row that exists is whole
            doc = decode_body(e.namespace, e.key, e.body)
            assert doc is not None and doc["text"].startswith(f"answer {int(e.key, 16)} ")
        info = store.info()
        assert info["entries"] == sum(1 for _ in store.entries())  # totals survived too
        store.put(entry("after", "k"))
        assert store.get("after", "k", 0.0) is not None
        store.close()


def test_concurrent_writer_processes_and_threads_lose_nothing(tmp_path):
    path = tmp_path / "c.sqlite3"
    SQLiteCacheStore(path).close()
    children = [_spawn(str(path), "count", f"p{i}", "150", "200") for i in range(3)]
    store = SQLiteCacheStore(path, max_entries=10 ** 9, max_bytes=10 ** 12)

    def local(t: int) -> None:
        for i in range(100):
            store.put(entry(f"t{t}", f"{i}", text=f"{t}/{i}"))

    threads = [threading.Thread(target=local, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in children:
        assert c.wait(60) == 0
        c.stdout.close()
    for i in range(3):
        got = list(store.entries(f"p{i}"))
        assert len(got) == 150 and all(decode_body(e.namespace, e.key, e.body) for e in got)
        assert len(list(store.entries(f"t{i}"))) == 100
    assert store.info()["entries"] == 750
    store.close()


def test_memory_store_refuses_an_entry_larger_than_its_bound():
    store = MemoryCacheStore(max_entries=10, max_bytes=1000)
    store.put(entry("n", "small"))
    store.put(attrs.evolve(entry("n", "big"), body=b"x" * 2000))
    assert [e.key for e in store.entries()] == ["small"]


def test_a_hit_does_not_wait_for_another_writer(tmp_path):
    import sqlite3

    path = tmp_path / "c.sqlite3"
    store = SQLiteCacheStore(path)
    store.put(entry("n", "k"))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        got = store.get("n", "k", time.time() + 60)  # an LRU refresh is due: skipped
        assert got is not None and decode_body("n", "k", got.body)["text"] == "a"
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.close()
