"""Thread stress: 64 threads x 1000 submissions; every future resolved exactly once, none
lost, no deadlock, in bounded time.  The transport answers in memory so the test measures
the pipeline's bookkeeping, not a socket's speed; a share of answers are 503s and 429s so
retries, requeues and key rotation all run under contention."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter

import requests

from ipfs_accelerate_py import BackendConfig, BreakerPolicy, Client, ClientConfig, Priority, RetryPolicy


class MemoryTransport:
    """Answers the echo protocol without a socket; fails a seeded share of calls."""

    def __init__(self, fail_every: int = 17) -> None:
        self.calls = Counter()
        self.lock = threading.Lock()
        self.fail_every = fail_every
        self.n = 0

    def send(self, req, timeout, *, backend=None, request_id=None):
        body = req.json
        with self.lock:
            self.n += 1
            n = self.n
            self.calls[body["id"]] += 1
        resp = requests.Response()
        resp.url = req.url
        if n % self.fail_every == 0:
            resp.status_code = 503
            resp._content = b'{"error": {"message": "flaky"}}'
        elif n % (self.fail_every + 2) == 0:
            resp.status_code = 429
            resp.headers["retry-after-ms"] = "1"
            resp._content = b'{"error": {"message": "slow down"}}'
        else:
            resp.status_code = 200
            resp._content = json.dumps({"echo": body, "key": None}).encode()
        return resp

    def close(self):
        pass


def test_64_threads_x_1000_submissions(pm):
    transport = MemoryTransport()
    client = Client(
        [BackendConfig("echo", keys=[f"test-key-{i}" for i in range(4)], base_url="http://mem")],
        ClientConfig(max_concurrency=16, queue_size=100_000,
                     retry=RetryPolicy(base_delay=0.0005, max_delay=0.002, max_attempts=50,
                                       budget_ratio=1.0),
                     breaker=BreakerPolicy(minimum_calls=10_000, window_size=10_000)),
        plugin_manager=pm, transport=transport, seed=5)
    resolved = Counter()
    lock = threading.Lock()
    futures = []

    def on_done(f, rid):
        with lock:
            resolved[rid] += 1

    def producer(t):
        rng = random.Random(t)
        local = []
        for i in range(1000):
            rid = t * 1000 + i
            f = client.submit("echo", "echo", {"id": rid},
                              priority=rng.choice(list(Priority)))
            f.add_done_callback(lambda f, rid=rid: on_done(f, rid))
            local.append((rid, f))
        with lock:
            futures.extend(local)

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(64)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads), "a producer deadlocked"
    for rid, f in futures:
        res = f.result(timeout=120)
        assert json.loads(res.text)["id"] == rid
    client.close(timeout=60)
    assert len(futures) == 64_000
    assert len(resolved) == 64_000 and set(resolved.values()) == {1}
    snap = client.stats()
    assert snap.backends["echo"]["outcomes"] == {"success": 64_000}
    assert snap.backends["echo"]["retries"] > 0
    assert snap.in_flight == 0 and snap.queue_depth == 0
    # every request reached the wire at least once; retries only for failed attempts
    assert set(transport.calls) == set(range(64_000))
