#!/usr/bin/env python3
"""What a Redis outage costs processes sharing one key: the old fallback (each process at
the full rate, ``local_share=1.0``) against the default (1/N of the processes counted by
heartbeats).

Three worker processes (``contrib/redis/tests/redis_worker.py``) share one key of the
simulator, which enforces the key's quota itself and answers 429 past it.  Redis is
killed once every worker has counted the others and before any request is sent, so the
whole run is the fallback.  Reported per setting: the simulator's 429s, requests that
succeeded, requests lost (failed at the client), and the wall time.

    python3 benchmarks/redis_outage_share.py [--per-worker 60] [--rps 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import echo_backend  # noqa: E402
from redis_bench import start_redis  # noqa: E402

from ipfs_accelerate_sim import SimConfig, Simulator  # noqa: E402

WORKER = ROOT / "contrib" / "redis" / "tests" / "redis_worker.py"
WORKERS = 3


def run(share: str, per_worker: int, rps: float, burst: float) -> dict:
    proc, url = start_redis()
    ns = "bench-" + uuid.uuid4().hex[:8]
    cfg = SimConfig(rps=rps, burst=burst)
    try:
        with Simulator(cfg, servers={"echo": echo_backend.EchoServer()}) as sim:
            workers = [subprocess.Popen(
                [sys.executable, str(WORKER), url, ns, sim.base_url("echo"), str(w),
                 str(per_worker), str(rps * 60), str(burst), share],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for w in range(WORKERS)]
            for w in workers:
                assert w.stdout.readline().strip() == "ready", w.communicate(timeout=30)[1][-2000:]
            time.sleep(0.6)  # three heartbeats: every worker has counted the others
            proc.kill()
            proc.wait()
            t0 = time.monotonic()
            for w in workers:
                w.stdin.write("go\n")
                w.stdin.flush()
            reports = []
            for w in workers:
                out, err = w.communicate(timeout=300)
                assert w.returncode == 0, err[-2000:]
                reports.append(json.loads(out.strip().splitlines()[-1]))
            elapsed = time.monotonic() - t0
            stats = sim.stats()
    finally:
        if proc.poll() is None:
            proc.kill()
    return {"share": share, "429s": stats["rate_limited"],
            "ok": sum(len(r["ok"]) for r in reports),
            "lost": sum(len(r["failed"]) for r in reports),
            "seconds": round(elapsed, 2),
            "fallback shares": sorted({s for r in reports for s in r["shares"]})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-worker", type=int, default=60)
    ap.add_argument("--rps", type=float, default=20.0, help="the key's quota, requests/s")
    ap.add_argument("--burst", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"{WORKERS} processes x {args.per_worker} requests, key quota {args.rps:g}/s "
          f"burst {args.burst:g}, Redis down for the whole run")
    print("| fallback | 429s | ok | lost | seconds | share used |")
    print("|---|---:|---:|---:|---:|---|")
    for _ in range(args.rounds):
        for share in ("1.0", "auto"):
            r = run(share, args.per_worker, args.rps, args.burst)
            label = "local_share=1.0 (old default)" if share == "1.0" else "1/N by heartbeat (default)"
            print(f"| {label} | {r['429s']} | {r['ok']} | {r['lost']} | {r['seconds']} | "
                  f"{', '.join(f'{s:.3f}' for s in r['fallback shares'])} |", flush=True)


if __name__ == "__main__":
    main()
