"""A child process for the cache tests: writes entries to a SQLite cache file until
killed (``loop``) or writes ``count`` entries and exits (``count``)."""

from __future__ import annotations

import sys
import time

from ipfs_accelerate_py.caching import SQLiteCacheStore
from ipfs_accelerate_py.caching.entry import CacheEntry, encode_result
from ipfs_accelerate_py.results import Result


def entry(ns: str, i: int, size: int) -> CacheEntry:
    key = f"{i:064x}"
    body = encode_result(ns, key, Result(text=f"answer {i} " + "x" * size, model="m"))
    return CacheEntry(ns, key, "openai", "chat", "m", time.time(), None, body)


def main() -> None:
    path, mode, ns, n, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    store = SQLiteCacheStore(path, max_entries=10 ** 9, max_bytes=10 ** 12)
    i = 0
    while mode == "loop" or i < n:
        store.put(entry(ns, i, size))
        i += 1
        if mode == "loop" and i == n:
            print("ready", flush=True)  # the parent kills us from here on, mid-write
    store.close()


if __name__ == "__main__":
    main()
