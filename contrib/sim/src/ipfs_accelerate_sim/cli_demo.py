"""``ipfs-accelerate demo``: the simulator and a few hundred requests, offline (added by
this distribution's plugin through the ``accelerate_cli_commands`` hook)."""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from ipfs_accelerate_py.cli.common import (EXIT_FAILED, EXIT_OK, CliError, fraction,
                                           non_negative_float, plugin_manager, positive_float,
                                           positive_int, protocol_path, start_watchers,
                                           stop_watchers)
from ipfs_accelerate_py.cli.request import CHAT_OPS
from ipfs_accelerate_py.jobs import Progress


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="simulator + a few hundred requests with an outage, offline",
        description="Start the simulator in-process and send a few hundred chat requests over "
                    "three keys with rate limits, injected errors and an outage midway, showing "
                    "progress and the final stats table.  Prints 'lost: 0' and exits 0 when "
                    "every request completed; non-zero if any was lost.")
    p.add_argument("--requests", type=positive_int, default=300)
    p.add_argument("--rps", type=positive_float, default=60.0, help="simulated limit per key (req/s)")
    p.add_argument("--latency", type=non_negative_float, default=0.02)
    p.add_argument("--error-rate", type=fraction, default=0.03)
    p.add_argument("--outage-start", type=non_negative_float, default=1.0)
    p.add_argument("--outage-length", type=non_negative_float, default=1.0)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=run)


def _demo_backend() -> tuple[str, Any, str]:

    pm = plugin_manager()
    backends, servers = pm.backends(), pm.protocol_servers()
    order = (["openai"] if "openai" in backends else []) + sorted(backends)
    for name in order:
        cls = backends[name]
        if name in servers:
            op = next((o for o in CHAT_OPS if o in cls.operations), None)
            if op is not None:
                return name, cls, op
    raise CliError("the demo needs a backend with a simulator and a chat operation (the "
                   "OpenAI plugin has both; see the README's install section)")


def _first_model(client: Any, name: str, cls: Any) -> str:
    """A model the service knows (from its own model listing; never a built-in list)."""
    if "models" in cls.operations:
        try:
            res = client.call(name, "models", {})
            items = res.data if isinstance(res.data, list) else (res.raw or {}).get("data", [])
            for item in items or ():
                ident = item if isinstance(item, str) else (
                    getattr(item, "id", None) or (item.get("id") or item.get("name")
                                                  if isinstance(item, Mapping) else None))
                if ident:
                    return str(ident).removeprefix("models/")
        except Exception:
            pass
    return "demo-model"


def run(args: argparse.Namespace) -> int:
    from ipfs_accelerate_py.client import Client
    from ipfs_accelerate_py.config import BackendConfig, BreakerPolicy, ClientConfig, RetryPolicy
    from ipfs_accelerate_py.keys import ApiKey
    from ipfs_accelerate_py.request import Request

    from .config import SimConfig
    from .simulator import Simulator

    name, cls, op = _demo_backend()
    n = args.requests
    outage = (args.outage_start, args.outage_start + args.outage_length)
    simcfg = SimConfig(rps=args.rps, burst=max(1.0, args.rps / 4), latency=args.latency,
                       jitter=args.latency, error_rate=args.error_rate, outages=[outage],
                       seed=args.seed, backends=[name])
    keys = [ApiKey(secret=f"demo-key-{i}", name=f"demo-key-{i}") for i in (1, 2, 3)]
    print(f"demo: {n} {name} {op} requests over 3 keys against the simulator "
          f"({args.rps:g} req/s per key, {args.error_rate:.0%} errors, outage {outage[0]:g}-{outage[1]:g} s)",
          flush=True)
    lost = n
    with Simulator(simcfg) as sim:
        cfg = BackendConfig(name=name, keys=keys, base_url=sim.base_url(name) + protocol_path(cls),
                            max_concurrent_per_key=8)
        ccfg = ClientConfig(max_concurrency=24, default_deadline=120.0,
                            retry=RetryPolicy(base_delay=0.05, max_delay=1.0, max_attempts=8),
                            breaker=BreakerPolicy(open_interval=0.25, max_open_interval=1.0))
        client = Client([cfg], ccfg)
        model = _first_model(client, name, cls)
        ok = 0
        errors: dict[str, int] = {}
        progress = Progress(n, client, label="demo ")
        watchers = start_watchers("demo", args, client, progress)
        with progress:
            futures = []
            for i in range(n):
                payload = {"model": model, "max_tokens": 16,
                           "messages": [{"role": "user", "content": f"Demo request {i}: say hello."}]}
                fut = client.submit(Request(operation=op, payload=payload, backend=name), block=True)
                fut.add_done_callback(lambda f: progress.advance(1, 0 if f.exception() is None else 1))
                futures.append(fut)
            for fut in futures:
                try:
                    fut.result()
                    ok += 1
                except Exception as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        stop_watchers(watchers)
        client.close()
        print(client.stats().table())
        s = sim.stats()
        print(f"simulator: {s['requests']} HTTP requests, {s['rate_limited']} answered 429, "
              f"{s['errors_injected']} injected errors, {s['outage_calls']} calls during the outage")
        lost = n - ok
    print(f"requests: {n}  ok: {ok}  failed: {n - ok}" +
          (f" ({', '.join(f'{k}: {v}' for k, v in errors.items())})" if errors else ""))
    print(f"lost: {lost}")
    return EXIT_OK if lost == 0 else EXIT_FAILED

