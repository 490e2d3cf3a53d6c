"""Budgets shared through a real redis-server: atomic reserve/settle from many threads and
stores, four processes against the simulator stopping within one request's worst case, and
a Redis killed and restarted (append-only file) losing no settled spend."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig
from ipfs_accelerate_py.costs import Budget, to_dollars
from ipfs_accelerate_py.plugins import get_plugin_manager
from ipfs_accelerate_sim import SimConfig, Simulator
from ipfs_accelerate_redis import RedisStatePlugin, RedisStateStore

WORKER = Path(__file__).with_name("budget_worker.py")


def test_reserve_and_settle_are_atomic_across_stores_and_threads(redis_url, namespace):
    stores = [RedisStateStore(redis_url, namespace=namespace) for _ in range(3)]
    ledgers = [s.budget_ledger() for s in stores]
    limit = 20_000
    costs: list[int] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        ledger = ledgers[seed % len(ledgers)]
        for _ in range(300):
            amount = rng.randint(1, 100)
            refused = ledger.reserve([("b|total", amount, limit),
                                      ("c|2026-01", amount, 10 * limit)])
            if refused is not None:
                continue
            actual = 0 if rng.random() < 0.2 else rng.randint(0, amount)
            ledger.settle([("b|total", amount, actual), ("c|2026-01", amount, actual)])
            with lock:
                costs.append(actual)

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        settled, reserved = ledgers[0].usage("b|total")
        assert reserved == 0 and settled == sum(costs) <= limit
        assert ledgers[1].usage("c|2026-01") == (sum(costs), 0)
        assert limit - settled <= 100  # the refusals came within one worst case
        # A window's hash expires after its window; a total one never does.
        r = stores[0].redis
        assert r.pttl(f"{namespace}:budget:c|2026-01") > 0
        assert r.pttl(f"{namespace}:budget:b|total") == -1
    finally:
        for s in stores:
            s.close()


def test_four_processes_share_one_budget_and_stop_within_one_worst_case(redis_url, namespace):
    limit = Decimal("0.0006")
    with Simulator(SimConfig(latency=0.002)) as sim:
        base = sim.base_url("openai") + "/v1"
        procs = [subprocess.Popen([sys.executable, str(WORKER), redis_url, namespace, base,
                                   str(w), "40", str(limit)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for w in range(4)]
        for p in procs:
            line = p.stdout.readline()
            assert line.strip() == "ready", p.communicate(timeout=30)[1][-3000:]
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["failed"] == [] for r in reports), [r["failed"][:3] for r in reports]
    costs = [Decimal(c) for r in reports for c in r["costs"]]
    needed = [Decimal(n) for r in reports for n in r["refused"]]
    assert len(costs) + len(needed) == 160 and needed
    assert all(sum(1 for _ in r["costs"]) for r in reports)  # every process spent some
    store = RedisStateStore(redis_url, namespace=namespace)
    try:
        settled, reserved = store.budget_ledger().usage("shared|total")
    finally:
        store.close()
    assert reserved == 0
    assert to_dollars(settled) == sum(costs)  # exact across processes
    assert sum(costs) <= limit < sum(costs) + max(needed)


def test_redis_restarted_midway_loses_no_settled_spend(aof_redis, namespace):
    pm = get_plugin_manager()
    pm.add_plugin(RedisStatePlugin(aof_redis.url, namespace=namespace, socket_timeout=1.0,
                                   retry_interval=0.1), name="redis-budget-restart")
    chat = {"model": "gpt-4o-mini", "max_tokens": 30,
            "messages": [{"role": "user", "content": "how much did this cost?"}]}
    try:
        with Simulator(SimConfig(latency=0.001)) as sim:
            with Client([BackendConfig("openai", keys=["test-key-1"],
                                       base_url=sim.base_url("openai") + "/v1")],
                        ClientConfig(budgets=[Budget("kept", usd="1")]), plugin_manager=pm) as c:
                ledger = c._s.costs.ledger
                before = [c.call("openai", "chat", chat).cost for _ in range(5)]
                stream = c.stream("openai", "chat", chat)  # reserved; settles when it ends
                aof_redis.kill()  # SIGKILL: only what the append-only file holds survives
                result = stream.collect()  # settled while Redis is down: kept in order
                assert ledger.pending() == 1
                aof_redis.start()
                after = [c.call("openai", "chat", chat).cost for _ in range(5)]
                assert ledger.pending() == 0
                spend = c.stats().costs["budgets"]["kept"]
    finally:
        pm.unregister(name="redis-budget-restart")
    assert spend["reserved"] == "0"
    assert Decimal(spend["spent"]) == sum(before) + result.cost + sum(after)
