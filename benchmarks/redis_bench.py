#!/usr/bin/env python3
"""Added latency per request of the Redis state store versus the in-memory one.

Runs the whole pipeline (queue, limiter, breaker, echo backend over real HTTP to a local
server) with each store, against a redis-server it starts on 127.0.0.1 (installing
Debian's package with scripts/install-redis.sh when missing):

* sequential: one request at a time, latency per request (mean, p50, p99);
* concurrent: ``--threads`` submitters, ``max_concurrency`` workers, throughput;
* Redis round trips per request (from INFO commandstats).

    python3 benchmarks/redis_bench.py [--requests 2000] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import echo_backend  # noqa: E402
import redis  # noqa: E402

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, Request  # noqa: E402
from ipfs_accelerate_py.plugins import PluginManager  # noqa: E402
from ipfs_accelerate_sim.testing import LocalServer  # noqa: E402
from ipfs_accelerate_redis import RedisStatePlugin  # noqa: E402


def start_redis() -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        subprocess.run(["bash", str(ROOT / "scripts" / "install-redis.sh")], check=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", "/tmp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    r = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            r.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.02)
    return proc, url


def make_client(server_url: str, redis_url: str | None, concurrency: int) -> Client:
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(echo_backend, name="echo")
    if redis_url:
        pm.add_plugin(RedisStatePlugin(redis_url, namespace=f"bench{time.monotonic_ns()}"),
                      name="redis-state")
    # A limit far above what we send: the limiter does its work on every request without
    # ever making one wait.
    return Client([BackendConfig(name="echo", keys=["test-key-1", "test-key-2"],
                                 base_url=server_url, requests_per_minute=6_000_000)],
                  ClientConfig(max_concurrency=concurrency), plugin_manager=pm)


#: Commands a client sends (commandstats also counts the TIME, HGETALL, HSET and PEXPIRE
#: that the Lua scripts run inside the server: those are no round trips).
ROUND_TRIPS = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_incrby", "cmdstat_get",
               "cmdstat_script|load")


def commands(url: str) -> int:
    stats = redis.Redis.from_url(url).info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k in ROUND_TRIPS)


def run(server_url: str, redis_url: str | None, store_url: str | None, n: int,
        threads: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with make_client(server_url, store_url, 1) as client:
        for i in range(50):  # warm-up: connections, scripts loaded
            client.call("echo", "echo", {"n": i})
        before = commands(redis_url) if redis_url else 0
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            client.call("echo", "echo", {"n": i})
            lat.append(time.perf_counter() - t0)
        out["redis_cmds"] = (commands(redis_url) - before) / n if store_url else 0.0
    lat.sort()
    out["mean"] = statistics.fmean(lat)
    out["p50"] = lat[len(lat) // 2]
    out["p99"] = lat[int(len(lat) * 0.99)]
    with make_client(server_url, store_url, threads) as client:
        client.map([Request(backend="echo", operation="echo", payload={"n": i}) for i in range(50)])
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            chunks = [[Request(backend="echo", operation="echo", payload={"n": i})
                       for i in range(k, n, threads)] for k in range(threads)]
            list(pool.map(client.map, chunks))
        out["throughput"] = n / (time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="alternate the stores this many times")
    args = ap.parse_args()
    proc, redis_url = start_redis()
    results: dict[str, list[dict[str, Any]]] = {"memory": [], "redis": []}
    try:
        with LocalServer(echo_backend.EchoServer()) as srv:
            for _ in range(args.rounds):
                results["memory"].append(run(srv.url, redis_url, None, args.requests, args.threads))
                results["redis"].append(run(srv.url, redis_url, redis_url, args.requests,
                                            args.threads))
    finally:
        proc.terminate()
        proc.wait(5)

    def med(store: str, field: str) -> float:
        return statistics.median(r[field] for r in results[store])

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}; {args.requests} requests x {args.rounds} rounds "
          f"(medians)\n")
    print("| store | mean ms | p50 ms | p99 ms | Redis round trips / request | "
          f"throughput, {args.threads} threads (req/s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for store in ("memory", "redis"):
        print(f"| {store} | {med(store, 'mean') * 1e3:.3f} | {med(store, 'p50') * 1e3:.3f} | "
              f"{med(store, 'p99') * 1e3:.3f} | {med(store, 'redis_cmds'):.2f} | "
              f"{med(store, 'throughput'):.0f} |")
    added = (med("redis", "mean") - med("memory", "mean")) * 1e3
    added50 = (med("redis", "p50") - med("memory", "p50")) * 1e3
    print(f"\nadded latency per request (Redis - memory): mean {added:+.3f} ms, p50 {added50:+.3f} ms")


if __name__ == "__main__":
    main()
