"""One worker process of the shared-budget test (run as a script, not collected).

argv: redis_url namespace openai_base_url worker_id n limit_usd
Prints "ready" once connected, waits for a line on stdin (so all workers start
together), submits ``n`` chat requests under the shared budget ``shared``, and prints one
JSON line: the successes' costs (exact decimal strings), the refusals (BudgetExceeded:
its ``needed``), and any other failure.
"""

from __future__ import annotations

import json
import sys

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, Request
from ipfs_accelerate_py.costs import Budget, BudgetExceeded
from ipfs_accelerate_py.plugins import get_plugin_manager
from ipfs_accelerate_redis import RedisStatePlugin


def main() -> None:
    url, ns, base, wid, n, limit = sys.argv[1:7]
    pm = get_plugin_manager()
    pm.add_plugin(RedisStatePlugin(url, namespace=ns, socket_timeout=5.0), name="redis-budget")
    client = Client([BackendConfig(name="openai", keys=["test-key-1"], base_url=base)],
                    ClientConfig(max_concurrency=4, budgets=[Budget("shared", usd=limit)]),
                    plugin_manager=pm)
    print("ready", flush=True)
    sys.stdin.readline()
    futures = [client.submit(Request(backend="openai", operation="chat", payload={
        "model": "gpt-4o-mini", "max_tokens": 30,
        "messages": [{"role": "user", "content": f"worker {wid} question {i}"}]}))
        for i in range(int(n))]
    costs, refused, failed = [], [], []
    for i, f in enumerate(futures):
        try:
            costs.append(str(f.result(timeout=120).cost))
        except BudgetExceeded as exc:
            refused.append(str(exc.needed))
        except Exception as exc:  # reported, and the test fails on it
            failed.append(f"{i}: {type(exc).__name__}: {exc}")
    client.close()
    print(json.dumps({"costs": costs, "refused": refused, "failed": failed}), flush=True)


if __name__ == "__main__":
    main()
