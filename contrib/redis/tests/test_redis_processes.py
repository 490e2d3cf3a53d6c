"""Four real processes share one key through Redis, against a local echo server and
against the simulator enforcing the quota itself."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from ipfs_accelerate_sim import SimConfig, Simulator
from ipfs_accelerate_sim.testing import LocalServer

WORKER = Path(__file__).with_name("redis_worker.py")
WORKERS = 4


class _Arrivals:
    """The echo protocol, recording when each request arrived (one clock: this process)."""

    def __init__(self, echo_module) -> None:
        self.echo = echo_module.EchoServer()
        self.stamps: list[float] = []
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while len(self.seen) < count and time.monotonic() < end:
            time.sleep(0.005)

    def __call__(self, req):
        with self.lock:
            self.stamps.append(time.monotonic())
            self.seen.append(req.json()["n"])
        return self.echo(req)


def _run_workers(redis_url: str, ns: str, server_url: str, per_worker: int, rpm: float,
                 burst: float, during=None) -> list[dict]:
    procs = [subprocess.Popen([sys.executable, str(WORKER), redis_url, ns, server_url, str(w),
                               str(per_worker), str(rpm), str(burst)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for w in range(WORKERS)]
    for p in procs:  # every worker connected: start them together
        line = p.stdout.readline()
        assert line.strip() == "ready", p.communicate(timeout=30)[1][-3000:]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    if during is not None:
        during()
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=90)
        assert p.returncode == 0, stderr[-3000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _check_complete(reports: list[dict], arrivals: _Arrivals, per_worker: int) -> None:
    expected = {f"{w}-{i}" for w in range(WORKERS) for i in range(per_worker)}
    assert all(r["failed"] == [] for r in reports), [r["failed"][:3] for r in reports]
    done = [n for r in reports for n in r["ok"]]
    assert sorted(done) == sorted(expected)  # every request answered exactly once: none lost
    assert set(arrivals.seen) == expected


def test_four_processes_keep_the_aggregate_rate(redis_url: str, namespace: str,
                                                echo_backend_module) -> None:
    # 40 requests/s shared by 4 processes; 240 requests.  Burst 8 (0.2 s of quota): a
    # smaller bucket loses refill whenever a worker wakes late (scheduling gaps on a
    # small machine running 5 processes).
    rpm, burst, per_worker = 2400.0, 8.0, 60
    arrivals = _Arrivals(echo_backend_module)
    with LocalServer(arrivals) as srv:
        reports = _run_workers(redis_url, namespace, srv.url, per_worker, rpm, burst)
    _check_complete(reports, arrivals, per_worker)
    stamps = sorted(arrivals.stamps)
    span = stamps[-1] - stamps[0]
    limit = rpm / 60.0
    # In any span T at most burst + limit*T requests: the rate beyond the initial burst.
    rate = (len(stamps) - burst) / span
    goodput = (len(set(arrivals.seen)) - burst) / span
    assert rate <= limit * 1.02, (rate, limit)
    per_half_second = [0] * (int(span * 2) + 1)
    for t in stamps:
        per_half_second[int((t - stamps[0]) * 2)] += 1
    assert goodput >= limit * 0.95, (goodput, limit, per_half_second)
    # The work was really shared: every process sent a fair part.
    assert all(len(r["ok"]) == per_worker for r in reports)


def test_redis_killed_and_restarted_midway(own_redis, namespace: str, echo_backend_module) -> None:
    rpm, per_worker = 3000.0, 75  # 50/s; 300 requests: about 6 s
    arrivals = _Arrivals(echo_backend_module)

    def outage() -> None:
        # Kill Redis a quarter of the way through, restart it once the fallback has
        # carried 40 more requests.
        arrivals.wait_for(per_worker * WORKERS // 4)
        own_redis.kill()
        arrivals.wait_for(len(arrivals.seen) + 40)
        own_redis.start()

    with LocalServer(arrivals) as srv:
        reports = _run_workers(own_redis.url, namespace, srv.url, per_worker, rpm, 1.0, outage)
    _check_complete(reports, arrivals, per_worker)
    assert all(r["outages"] == 1 and r["recoveries"] == 1 for r in reports), reports
    # With 1/N of the rate each while Redis was down (N = 4, counted by heartbeats, no
    # local_share configured), the key stayed inside its quota throughout (small slack:
    # 4 local buckets of capacity 1 each at the switch).
    assert all(r["shares"] == [1 / WORKERS] for r in reports), reports
    stamps = sorted(arrivals.stamps)
    span = stamps[-1] - stamps[0]
    assert (len(stamps) - 1) / span <= rpm / 60 * 1.05


def test_four_processes_against_the_simulator_enforcing_the_quota(
        redis_url: str, namespace: str, echo_backend_module) -> None:
    """The simulator enforces the key's quota itself (429 with rate-limit headers) and
    reports what it admitted: the processes stay inside it and lose nothing."""
    rpm, burst, per_worker = 2400.0, 8.0, 60
    stamps: list[float] = []

    class TimedEcho(echo_backend_module.EchoServer):
        def __call__(self, req):  # reached only by requests the simulator admitted
            stamps.append(time.monotonic())
            return super().__call__(req)

    # The simulator's bucket is 4 requests (0.1 s at 40/s) deeper than the clients': the
    # time from admission (Redis) to arrival (HTTP) varies by a few milliseconds.
    cfg = SimConfig(rps=rpm / 60, burst=burst + 4)
    with Simulator(cfg, servers={"echo": TimedEcho()}) as sim:
        reports = _run_workers(redis_url, namespace, sim.base_url("echo"), per_worker, rpm,
                               burst)
        stats = sim.stats()
    total = WORKERS * per_worker
    assert all(r["failed"] == [] for r in reports)
    assert sorted(n for r in reports for n in r["ok"]) == sorted(
        f"{w}-{i}" for w in range(WORKERS) for i in range(per_worker))  # none lost
    assert stats["ok"] == total
    assert stats["rate_limited"] <= total // 100, stats  # paced, not refused
    stamps.sort()
    span = stamps[-1] - stamps[0]
    rate = (len(stamps) - burst) / span
    assert rate <= rpm / 60 * 1.02, rate
    assert rate >= rpm / 60 * 0.95, rate
