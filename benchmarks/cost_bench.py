#!/usr/bin/env python3
"""Cost bookkeeping benchmark (issue 14): what pricing results, keeping spend in the
stats and reserving/settling budgets costs per request.

1. Per-request bookkeeping, measured alone (no HTTP): pricing a result and recording it in
   the stats; a reserve + settle under one and under three in-memory budgets; the same
   under one budget in Redis (a real redis-server on 127.0.0.1, started here, if installed).
2. Pipeline throughput with the bookkeeping off (a no-op tracker), on (prices, stats), and
   with one and three in-memory budgets: ``Client.call`` from 8 threads against the OpenAI
   protocol through the in-memory transport (no sockets, so the pipeline's own CPU cost is
   what is measured), alternating the variants, median of the runs.

Writes docs/benchmarks/cost.md.

    python3 benchmarks/cost_bench.py [--quick]
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
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "benchmarks" / "cost.md"
NOTES = "## Reading these numbers"
CHAT = {"model": "gpt-4o-mini", "max_tokens": 16,
        "messages": [{"role": "user", "content": "what does this cost?"}]}


class NullTracker:
    """The bookkeeping off: the tracker's interface doing nothing."""

    budgets = ()
    stats = None

    def __init__(self, real: Any) -> None:
        self.stats = real.stats

    def price_result(self, job: Any, result: Any) -> None:
        return None

    def price_stream(self, job: Any, stream: Any, usage: Any) -> None:
        return None

    def release(self, job: Any) -> None:
        return None

    def finished(self, *args: Any) -> None:
        return None

    @staticmethod
    def cost_of(job: Any) -> None:
        return None

    def annotate(self, snapshot: Any) -> Any:
        return snapshot

    def close(self) -> None:
        return None


def per_op(fn: Callable[[], None], n: int) -> float:
    """CPU microseconds of this thread per call (best of 5 runs of n): CPU time, not wall
    time, so other work on a busy machine does not count (a Redis round trip's wait does
    not either: see ``per_op_wall``)."""
    best = float("inf")
    for _ in range(5):
        t = time.thread_time()
        for _ in range(n):
            fn()
        best = min(best, time.thread_time() - t)
    return best / n * 1e6


def per_op_wall(fn: Callable[[], None], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t)
    return best / n * 1e6


def bookkeeping(n: int) -> list[tuple[str, float]]:
    from ipfs_accelerate_py import Request
    from ipfs_accelerate_py.costs import Budget, CostTracker, PriceBook
    from ipfs_accelerate_py.results import Result, Usage

    class Cfg:
        options: dict = {}

    class BS:
        name = "openai"
        needs_tokens = False
        config = Cfg()

        class backend:  # noqa: N801 -- stands in for the backend object
            @staticmethod
            def estimate_tokens(req: Any) -> int:
                return 40

    class J:
        __slots__ = ("request", "bstate", "key_id", "reservation", "cost_units", "cost_model",
                     "tokens")

        def __init__(self) -> None:
            self.request = Request("chat", CHAT, backend="openai", tags={"team": "a"})
            self.bstate = BS()
            self.key_id = "key-1"
            self.reservation = None
            self.cost_units = None
            self.cost_model = None
            self.tokens = None

    usage = Usage.of(12, 16)
    rows = []
    tracker = CostTracker(PriceBook())
    job = J()

    def price_and_record() -> None:
        r = Result(text="x", usage=usage, model="gpt-4o-mini-2024-07-18")
        tracker.price_result(job, r)
        tracker.finished(job, usage, None, True)

    rows.append(("price the result + record spend (per backend, key, model, tag)",
                 per_op(price_and_record, n)))

    def reserve_settle(t: CostTracker) -> Callable[[], None]:
        def run() -> None:
            j = J()
            t.reserve([j], "key-1")
            t.price_result(j, Result(text="x", usage=usage, model="gpt-4o-mini"))
            t.finished(j, usage, None, True)
        return run

    one = CostTracker(PriceBook(), [Budget("b", usd="1000000")])
    rows.append(("+ reserve and settle under 1 budget (memory)", per_op(reserve_settle(one), n)))
    three = CostTracker(PriceBook(), [Budget("b", usd="1000000"), Budget("t", tokens=10**15),
                                      Budget("d", usd="1000000", window="day",
                                             tags={"team": "a"})])
    rows.append(("+ reserve and settle under 3 budgets (memory)",
                 per_op(reserve_settle(three), n)))
    redis = redis_row(n // 10, reserve_settle)
    if redis is not None:
        rows.append(redis)
    return rows


def redis_row(n: int, reserve_settle: Any) -> tuple[str, float] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        from ipfs_accelerate_py.costs import Budget, CostTracker, PriceBook
        from ipfs_accelerate_redis import RedisStateStore

        end = time.monotonic() + 10
        while True:
            try:
                store = RedisStateStore(f"redis://127.0.0.1:{port}/0", namespace="bench")
                break
            except Exception:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)
        tracker = CostTracker(PriceBook(), [Budget("b", usd="1000000")], store.budget_ledger())
        us = per_op_wall(reserve_settle(tracker), n)
        store.close()
        return ("+ reserve and settle under 1 budget (Redis, 2 round trips; wall time)", us)
    finally:
        proc.terminate()
        proc.wait(10)


def throughput(variant: str, n_threads: int, per_thread: int) -> tuple[float, float]:
    """(requests per second, CPU microseconds of the process per request)."""
    from ipfs_accelerate_py.costs import Budget
    from ipfs_accelerate_sim import testing
    from ipfs_accelerate_openai.server import OpenAIServer

    budgets = {"off": [], "on": [], "1 budget": [Budget("b", usd="1000000")],
               "3 budgets": [Budget("b", usd="1000000"), Budget("t", tokens=10**15),
                             Budget("d", usd="1000000", window="day", tags={"team": "a"})]}
    srv = testing.MemoryServer(OpenAIServer())
    client = testing.make_client("openai", srv.url + "/v1", transport=srv.transport,
                                 concurrency=n_threads, deadline=None,
                                 config={"budgets": budgets[variant]})
    if variant == "off":
        s = client._pipeline.s
        s.costs = NullTracker(s.costs)
    client.call("openai", "chat", CHAT)  # warm up

    def worker() -> None:
        for _ in range(per_thread):
            client.call("openai", "chat", CHAT, tags={"team": "a"})

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    t0, c0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    client.close()
    srv.close()
    n = n_threads * per_thread
    return n / elapsed, cpu / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 2_000 if args.quick else 20_000
    rounds, per_thread = (2, 100) if args.quick else (11, 500)
    rows = bookkeeping(n)
    variants = ["off", "on", "1 budget", "3 budgets"]
    runs: dict[str, list[float]] = {v: [] for v in variants}
    cpus: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(rounds):  # alternate and rotate, so machine noise hits every variant alike
        for v in variants[i % 4:] + variants[:i % 4]:
            rate, cpu = throughput(v, 8, per_thread)
            runs[v].append(rate)
            cpus[v].append(cpu)
    med = {v: statistics.median(r) for v, r in runs.items()}
    cpu_med = {v: statistics.median(r) for v, r in cpus.items()}
    load = os.getloadavg()[0]
    lines = [
        "# Cost bookkeeping benchmark",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()}. Command: "
        f"`python3 benchmarks/cost_bench.py{' --quick' if args.quick else ''}`. "
        f"Load average when done: {load:.1f} (other work shares the cores).",
        "",
        "## Per request, measured alone",
        "",
        f"CPU time of the measuring thread, best of 5 runs of {n} (Redis: {n // 10}, wall "
        f"time); a chat result of 12 + 16 tokens of `gpt-4o-mini`, one tag.",
        "",
        "| bookkeeping | microseconds per request |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {us:.1f} |" for name, us in rows]
    lines += [
        "",
        "## Pipeline throughput",
        "",
        f"`Client.call` from 8 threads, {8 * per_thread} requests per run, the OpenAI protocol "
        f"through the in-memory transport (no sockets: the pipeline's own CPU cost), "
        f"{rounds} runs per variant, alternating in a rotating order, median.",
        "",
        "| variant | req/s (median) | vs off | CPU us/request (median) | CPU vs off | "
        "req/s of each run |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for v in variants:
        ratio = med[v] / med["off"]
        lines.append(f"| {v} | {med[v]:.0f} | {ratio:.3f}x | {cpu_med[v]:.0f} | "
                     f"{cpu_med[v] / cpu_med['off']:.3f}x | "
                     f"{', '.join(f'{x:.0f}' for x in runs[v])} |")
    lines += [
        "",
        "`off`: the bookkeeping replaced by a no-op tracker; `on`: the default (every result "
        "priced, spend in the stats); budgets: in memory, large enough never to refuse. "
        "CPU us/request is the whole process's CPU time (the pipeline, the in-memory server "
        "and `requests`) over the requests: steadier than req/s on a shared machine.",
        "",
    ]
    # The hand-written reading of the numbers (from its heading on) is kept across runs.
    old = OUT.read_text() if OUT.exists() else ""
    notes = old[old.find(NOTES):] if NOTES in old else ""
    OUT.write_text("\n".join(lines) + ("\n" + notes if notes else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
