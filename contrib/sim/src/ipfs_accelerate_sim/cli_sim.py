"""``ipfs-accelerate sim``: the local provider simulator (added by this distribution's
plugin through the ``accelerate_cli_commands`` hook)."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from ipfs_accelerate_py.cli.common import (EXIT_OK, CliError, fraction, non_negative_float,
                                           plugin_manager, port_number, positive_float,
                                           protocol_path)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sim", help="run the local provider simulator",
        description="Serve every installed backend's protocol under /<backend> on one port (a "
                    "client's base URL is http://HOST:PORT/openai/v1 etc.), with per-key rate "
                    "limits answered by the provider's own 429 and headers, latency, injected "
                    "errors and outage windows, deterministic under --seed.  GET /_sim/stats "
                    "returns its counters.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=8765,
                   help="(default: %(default)s; 0 picks one)")
    p.add_argument("--rps", type=positive_float,
                   help="requests per second per key (default: unlimited)")
    p.add_argument("--burst", type=positive_float,
                   help="bucket size of --rps (default: one second's worth)")
    p.add_argument("--tpm", type=positive_float, help="tokens per minute per key")
    p.add_argument("--latency", type=non_negative_float, default=0.0, metavar="SECONDS",
                   help="fixed latency of every answer")
    p.add_argument("--jitter", type=non_negative_float, default=0.0, metavar="SECONDS",
                   help="plus uniform(0, JITTER)")
    p.add_argument("--error-rate", type=fraction, default=0.0, metavar="P",
                   help="share of requests answered with the protocol's 500")
    p.add_argument("--outage", action="append", metavar="START:END",
                   help="answer 503 between these seconds after start (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backends", metavar="A,B", help="mount only these protocols")
    p.add_argument("--model", action="append", metavar="BACKEND=MODEL",
                   help="an extra model name a protocol accepts (repeatable)")
    p.set_defaults(func=run)


def _sim_config(args: argparse.Namespace) -> Any:
    from .config import SimConfig

    outages = []
    for spec in args.outage or ():
        a, sep, b = spec.partition(":")
        try:
            outages.append((float(a), float(b)))
        except ValueError:
            raise CliError(f"--outage {spec!r}: expected START:END in seconds") from None
    models: dict[str, list[str]] = {}
    for spec in args.model or ():
        backend, sep, model = spec.partition("=")
        if not sep or not backend or not model:
            raise CliError(f"--model {spec!r}: expected BACKEND=MODEL")
        models.setdefault(backend, []).append(model)
    try:
        return SimConfig(rps=args.rps, models=models, burst=args.burst, tokens_per_minute=args.tpm,
                         latency=args.latency, jitter=args.jitter, error_rate=args.error_rate,
                         outages=outages, seed=args.seed, host=args.host, port=args.port,
                         backends=args.backends.split(",") if args.backends else None)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    import asyncio

    from .simulator import serve_forever

    cfg = _sim_config(args)
    backends = plugin_manager().backends()

    def ready(port: int, app: Any) -> None:
        url = f"http://{cfg.host}:{port}"
        print(f"simulator listening on {url}", flush=True)
        for name in sorted(app.servers):
            cls = backends.get(name)
            suffix = protocol_path(cls) if cls is not None else ""
            print(f"  {name:<10} base_url {url}/{name}{suffix}", flush=True)
        print(f"  stats      GET {url}/_sim/stats", flush=True)

    async def serve() -> None:
        task = asyncio.ensure_future(serve_forever(cfg, ready=ready))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, task.cancel)
            except (NotImplementedError, RuntimeError):  # not on this platform
                pass
        try:
            await task
        except asyncio.CancelledError:
            pass

    try:
        asyncio.run(serve())
    except OSError as exc:  # the port is taken, the host is not ours...
        raise CliError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
    return EXIT_OK


