#!/usr/bin/env python3
"""Response cache benchmark (docs/benchmarks/cache.md).

1. exact hit latency: ``client.call`` answered from the cache (key, store read, decode,
   result) with 1k / 100k / 1M entries in the memory store and in a SQLite file;
2. semantic search: one query against N vectors (dims 256), NumPy's exact scan vs faiss
   (flat, exact) vs usearch (HNSW, approximate; with its top-1 agreement with the exact
   answer), and a whole semantic hit through the client (the embedding request over HTTP
   to the simulator included);
3. a 10 000-request batch against the simulator (50 ms latency), run twice with a SQLite
   cache: the time and the tokens (money at gpt-4o-mini list prices) the second run saves.

    python3 benchmarks/cache_bench.py [--sizes 1000,100000,1000000] [--batch 10000]

faiss-cpu and usearch are optional (``pip install faiss-cpu usearch``): a missing one is
reported and skipped.  BLAS runs single-threaded (the machine is shared; per-query
numbers, not throughput).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from ipfs_accelerate_openai.server import OpenAIServer  # noqa: E402

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, Request  # noqa: E402
from ipfs_accelerate_py.caching import CacheConfig, MemoryCacheStore, SQLiteCacheStore  # noqa: E402
from ipfs_accelerate_py.caching.entry import CacheEntry, encode_result  # noqa: E402
from ipfs_accelerate_py.caching.keys import cache_key  # noqa: E402
from ipfs_accelerate_py.results import Result, Usage  # noqa: E402
from ipfs_accelerate_semantic_cache import SemanticCache  # noqa: E402
from ipfs_accelerate_sim import SimConfig, Simulator  # noqa: E402
from ipfs_accelerate_sim.embedding import semantic_vector  # noqa: E402
from ipfs_accelerate_sim.testing import LocalServer  # noqa: E402

MODEL, EMBED = "gpt-4o-mini", "text-embedding-3-small"
PRICE_IN, PRICE_OUT = 0.15 / 1e6, 0.60 / 1e6  # USD per token, gpt-4o-mini list price


def payload(i: int) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"question number {i}"}]}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))]


def client_for(url: str, cache: Any) -> Client:
    return Client([BackendConfig("openai", keys=["test-key-1"], base_url=url + "/v1")],
                  ClientConfig(cache=cache, max_concurrency=4))


def fill(store: Any, endpoint: str, n: int) -> None:
    now = time.time()
    rows = []
    for i in range(n):
        key = cache_key(endpoint, "chat", payload(i))
        body = encode_result("default", key, Result(text=f"answer {i} " + "lorem ipsum " * 8,
                                                    usage=Usage(12, 30, 42), model=MODEL))
        rows.append(CacheEntry("default", key, "openai", "chat", MODEL, now, None, body))
        if isinstance(store, SQLiteCacheStore) and len(rows) == 50_000:
            _bulk(store, rows)
            rows = []
        elif not isinstance(store, SQLiteCacheStore):
            store.put(rows.pop())
    if rows:
        _bulk(store, rows)


def _bulk(store: SQLiteCacheStore, rows: list[CacheEntry]) -> None:
    db = store.raw_connection()
    db.execute("BEGIN")
    db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [(e.namespace, e.key, e.backend, e.operation, e.model, e.created, e.expires,
                     e.created, e.size, e.body) for e in rows])
    db.execute("COMMIT")


def exact_hits(url: str, sizes: list[int], samples: int) -> list[dict[str, Any]]:
    out = []
    for kind in ("memory", "sqlite"):
        for n in sizes:
            tmp = tempfile.mkdtemp()
            store = (MemoryCacheStore(max_entries=n + 10, max_bytes=10 ** 12) if kind == "memory"
                     else SQLiteCacheStore(Path(tmp) / "c.sqlite3", max_entries=n + 10,
                                           max_bytes=10 ** 12))
            with client_for(url, CacheConfig(store=store)) as c:
                endpoint = c._pipeline.s.backends["openai"].group
                t0 = time.perf_counter()
                fill(store, endpoint, n)
                filled = time.perf_counter() - t0
                rng = random.Random(1)
                lat = []
                for _ in range(samples):
                    p = payload(rng.randrange(n))
                    s = time.perf_counter()
                    r = c.call("openai", "chat", p)
                    lat.append(time.perf_counter() - s)
                    assert r.cache is not None
                size = store.info()["bytes"]
            store.close()
            row = {"store": kind, "entries": n, "p50_us": pct(lat, 50) * 1e6,
                   "p99_us": pct(lat, 99) * 1e6, "fill_s": filled, "mib": size / 2 ** 20}
            print(row, flush=True)
            out.append(row)
            del store
    return out


def vector_search(sizes: list[int], dims: int, queries: int,
                  usearch_max: int) -> list[dict[str, Any]]:
    try:
        import faiss
        faiss.omp_set_num_threads(1)
    except ImportError:
        faiss = None
        print("faiss-cpu not installed: skipped", flush=True)
    try:
        from usearch.index import Index
    except ImportError:
        Index = None
        print("usearch not installed: skipped", flush=True)
    out = []
    rng = np.random.default_rng(0)
    for n in sizes:
        X = rng.standard_normal((n, dims), dtype=np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        # a query near one stored vector (cosine about 0.95), as a paraphrase is
        noise = rng.standard_normal((queries, dims), dtype=np.float32) * (0.3 / np.sqrt(dims))
        Q = X[rng.integers(0, n, queries)] + noise
        Q /= np.linalg.norm(Q, axis=1, keepdims=True)
        exact = [int(np.argmax(X @ q)) for q in Q[: min(queries, 50)]]

        def timed(f: Any) -> float:
            lat = []
            for q in Q:
                s = time.perf_counter()
                f(q)
                lat.append(time.perf_counter() - s)
            return pct(lat, 50) * 1e6

        row: dict[str, Any] = {"vectors": n, "dims": dims,
                               "numpy_us": timed(lambda q: int(np.argmax(X @ q)))}
        if faiss is not None:
            flat = faiss.IndexFlatIP(dims)
            flat.add(X)
            row["faiss_flat_us"] = timed(lambda q: flat.search(q[None], 1))
            del flat
        if Index is not None and n <= usearch_max:  # its build is the slow part
            s = time.perf_counter()
            idx = Index(ndim=dims, metric="cos", dtype="f32")
            idx.add(np.arange(n), X, threads=2)
            row["usearch_build_s"] = time.perf_counter() - s
            row["usearch_us"] = timed(lambda q: idx.search(q, 1))
            row["usearch_top1_agree"] = sum(int(idx.search(q, 1).keys[0]) == e
                                            for q, e in zip(Q, exact)) / len(exact)
            del idx
        print(row, flush=True)
        out.append(row)
    return out


def semantic_hits(sizes: list[int], samples: int) -> list[dict[str, Any]]:
    srv = OpenAIServer(models=(MODEL, EMBED))
    srv.compat.vectorizer = semantic_vector
    out = []
    with LocalServer(srv) as server:
        for n in sizes:
            matcher = SemanticCache("openai", EMBED, embedding_options={"dimensions": 256},
                                    max_per_scope=n + 10)
            with client_for(server.url, CacheConfig(semantic=matcher, max_entries=10 ** 6)) as c:
                c.call("openai", "chat", payload_text("What is the capital of France?"))
                scope = next(iter(matcher.index._scopes))
                rng = np.random.default_rng(2)
                filler = rng.standard_normal((n - 1, 256), dtype=np.float32)
                for i, v in enumerate(filler):  # the same scope: the scan covers n vectors
                    matcher.index.add(scope, f"filler-{i}", v)
                lat, repeat = [], []
                for i in range(samples):
                    # a new text each time ("please" is a stop word: the same meaning), so
                    # every hit pays its embedding request over HTTP ...
                    text = "Tell me the capital of France" + ", please" * (i + 1)
                    s = time.perf_counter()
                    r = c.call("openai", "chat", payload_text(text))
                    lat.append(time.perf_counter() - s)
                    assert r.cache is not None and r.cache.kind == "semantic"
                    # ... and the same text again: its embedding is an exact hit itself
                    s = time.perf_counter()
                    r = c.call("openai", "chat", payload_text(text))
                    repeat.append(time.perf_counter() - s)
                    assert r.cache is not None and r.cache.kind == "semantic"
            row = {"vectors": n, "p50_us": pct(lat, 50) * 1e6, "p99_us": pct(lat, 99) * 1e6,
                   "repeat_p50_us": pct(repeat, 50) * 1e6}
            print(row, flush=True)
            out.append(row)
    return out


def payload_text(text: str) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}]}


def batch_rerun(n: int) -> dict[str, Any]:
    requests = [Request("chat", payload(i), backend="openai") for i in range(n)]
    out: dict[str, Any] = {"requests": n}
    with tempfile.TemporaryDirectory() as tmp, \
            Simulator(SimConfig(latency=0.05, models={"openai": [MODEL]})) as sim:
        cache = f"sqlite://{tmp}/batch-cache.sqlite3"
        for run in ("first", "second"):
            before = sum(b.get("requests", 0) for b in sim.stats().get("backends", {}).values())
            c = Client([BackendConfig("openai", keys=["test-key-1", "test-key-2"],
                                      base_url=sim.url + "/openai/v1")],
                       ClientConfig(cache=cache, max_concurrency=32, queue_size=n + 10))
            s = time.perf_counter()
            results = c.map(requests)
            took = time.perf_counter() - s
            c.close()
            calls = sum(b.get("requests", 0) for b in sim.stats().get("backends", {}).values()) - before
            hits = sum(1 for r in results if r.cache is not None)
            tin = sum(r.usage.prompt_tokens for r in results if r.cache is None and r.usage)
            tout = sum(r.usage.completion_tokens for r in results if r.cache is None and r.usage)
            out[run] = {"seconds": took, "provider_calls": calls, "hits": hits,
                        "billed_prompt_tokens": tin, "billed_completion_tokens": tout,
                        "usd": tin * PRICE_IN + tout * PRICE_OUT}
            print(run, out[run], flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--semantic-sizes", default="1000,100000")
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--usearch-max", type=int, default=100_000,
                    help="largest index usearch builds (HNSW build time grows fast)")
    ap.add_argument("--only", default="exact,vectors,semantic,batch")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    only = set(args.only.split(","))
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}", flush=True)
    if "exact" in only:
        with LocalServer(OpenAIServer(models=(MODEL,))) as srv:
            exact_hits(srv.url, sizes, args.samples)
    if "vectors" in only:
        vector_search(sizes, 256, 200, args.usearch_max)
    if "semantic" in only:
        semantic_hits([int(x) for x in args.semantic_sizes.split(",")], 300)
    if "batch" in only:
        batch_rerun(args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
