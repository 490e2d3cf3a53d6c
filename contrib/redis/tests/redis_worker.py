"""One worker process of the multi-process tests (run as a script, not collected).

argv: redis_url namespace server_url worker_id n rpm burst [local_share|auto]
Prints "ready" once its client is connected, waits for a line on stdin (so all workers
start together however slow the machine), then prints one JSON line: successes, failures,
and the store's outage/recovery counts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))

import echo_backend  # noqa: E402

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, Request, RetryPolicy  # noqa: E402
from ipfs_accelerate_py.plugins import PluginManager  # noqa: E402
from ipfs_accelerate_redis import RedisStatePlugin  # noqa: E402


def main() -> None:
    url, ns, server_url, wid = sys.argv[1:5]
    n, rpm, burst = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(echo_backend, name="echo")
    # No local_share: while Redis is down each worker keeps 1/N of the rate, N counted by
    # heartbeats (short here, so every worker has counted the others before the outage).
    share = float(sys.argv[8]) if len(sys.argv) > 8 and sys.argv[8] != "auto" else None
    plugin = RedisStatePlugin(url, namespace=ns, retry_interval=0.2, heartbeat_interval=0.2,
                              socket_timeout=5.0, local_share=share)
    pm.add_plugin(plugin, name="redis-state")
    client = Client([BackendConfig(name="echo", keys=["test-key-1"], base_url=server_url,
                                   requests_per_minute=rpm, burst=burst)],
                    ClientConfig(max_concurrency=4, retry=RetryPolicy(base_delay=0.01)),
                    plugin_manager=pm)
    store = client._store
    print("ready", flush=True)
    sys.stdin.readline()
    futures = [client.submit(Request(backend="echo", operation="echo",
                                     payload={"n": f"{wid}-{i}"})) for i in range(n)]
    ok, failed = [], []
    for i, f in enumerate(futures):
        try:
            res = f.result(timeout=120)
            ok.append(json.loads(res.text)["n"])
        except Exception as exc:  # reported, and the test fails on it
            failed.append(f"{i}: {type(exc).__name__}: {exc}")
    client.close()
    print(json.dumps({"ok": ok, "failed": failed, "outages": store.health.outages,
                      "recoveries": store.health.recoveries,
                      # the share each limiter fell back to in the (last) outage
                      "shares": sorted({lim.fallback_share for lim in store._limiters.values()})}),
          flush=True)


if __name__ == "__main__":
    main()
