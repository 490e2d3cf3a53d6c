"""Does a well-kept server library beat the simulator's hand-written asyncio HTTP server?

The same simulator application (``SimApp``: every protocol fake, limits, counters) runs in
its own process behind each host in turn:

* ``httpd``     - ``ipfs_accelerate_sim.httpd`` (ours, standard library only);
* ``uvicorn-h11`` / ``uvicorn-httptools`` - uvicorn with its pure-Python and its C
  parser, through a small ASGI adapter (``ServerRequest`` in, ``ServerResponse`` out);

and ``ipfs_accelerate_sim.loadgen`` loads it with keep-alive OpenAI chat requests from two
processes.  Reported: requests/s (wall clock; the machine is shared, so it varies) and
requests per CPU-second of the server process (what one core sustains, read from the
simulator's own ``/_sim/stats``).  Rounds alternate the hosts so load on the machine hits
each alike.

    .venv/bin/python benchmarks/sim_httpd_bench.py --rounds 3 --seconds 5

Needs ``uvicorn`` and ``httptools`` (``pip install uvicorn httptools``), for this benchmark
only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import urllib.request
from typing import Any

HOSTS = ("httpd", "uvicorn-h11", "uvicorn-httptools")


def _asgi(app: Any) -> Any:
    """An ASGI application serving a ``ServerRequest -> ServerResponse`` coroutine."""
    from urllib.parse import parse_qs

    from ipfs_accelerate_py.server import ServerRequest

    async def asgi(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        req = ServerRequest(scope["method"], scope["path"],
                            parse_qs(scope["query_string"].decode("latin-1")),
                            {k.decode("latin-1").lower(): v.decode("latin-1")
                             for k, v in scope["headers"]}, body)
        resp = await app(req)
        headers = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in resp.headers.items()]
        if isinstance(resp.body, (bytes, bytearray)):
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.body", "body": bytes(resp.body)})
            return
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        for chunk in resp.body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return asgi


def serve(host: str) -> None:
    """Run the simulator behind ``host`` on a free port; print its URL (child process)."""
    import asyncio
    import socket
    import time

    from ipfs_accelerate_sim import SimConfig, serve_forever
    from ipfs_accelerate_sim.simulator import SimApp, load_protocol_servers

    cfg = SimConfig(backends=("openai",), port=0)
    if host == "httpd":
        async def main() -> None:
            await serve_forever(cfg, ready=lambda port, app: print(f"http://127.0.0.1:{port}",
                                                                   flush=True))
        asyncio.run(main())
        return
    import uvicorn

    app = SimApp(cfg, load_protocol_servers(cfg.seed, cfg.backends, models=cfg.models))
    app.started = time.monotonic()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # Accepted sockets inherit TCP_NODELAY (Linux): without it, headers and body written
    # separately meet delayed ACKs and cap each connection near 25 requests/s.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(_asgi(app), http=host.split("-", 1)[1], loop="asyncio",
                            lifespan="off", log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def _stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/_sim/stats", timeout=10) as r:
        return json.load(r)


def measure(host: str, seconds: float, connections: int, processes: int) -> dict:
    from ipfs_accelerate_sim import loadgen

    proc = subprocess.Popen([sys.executable, __file__, "--serve", host], stdout=subprocess.PIPE,
                            text=True)
    try:
        url = re.search(r"(http://\S+)", proc.stdout.readline()).group(1)  # type: ignore[union-attr]
        before = _stats(url)
        args = argparse.Namespace(connections=connections, seconds=seconds, keys=3,
                                  path="/openai/v1/chat/completions", processes=processes,
                                  body=json.dumps({"model": "gpt-4o-mini", "messages": [
                                      {"role": "user", "content": "Hello world"}]}))
        out = loadgen.run_processes(url, args)
        after = _stats(url)
        cpu = after["process_cpu_seconds"] - before["process_cpu_seconds"]
        served = after["requests"] - before["requests"]
        return {"host": host, "rps": out["rps"], "statuses": out["statuses"],
                "server_cpu_s": round(cpu, 2), "per_cpu_s": round(served / cpu, 1) if cpu else None}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", choices=HOSTS, help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--processes", type=int, default=2)
    a = p.parse_args()
    if a.serve:
        serve(a.serve)
        return 0
    rows = []
    for r in range(a.rounds):
        for host in HOSTS:
            row = measure(host, a.seconds, a.connections, a.processes)
            row["round"] = r + 1
            row["loadavg"] = round(os.getloadavg()[0], 1)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("| host | rounds | requests/s (wall), median | requests per server CPU-second, median |")
    print("|---|---|---|---|")
    for host in HOSTS:
        mine = [x for x in rows if x["host"] == host]
        rps = sorted(x["rps"] for x in mine)[len(mine) // 2]
        per = sorted(x["per_cpu_s"] or 0 for x in mine)[len(mine) // 2]
        print(f"| {host} | {len(mine)} | {rps:,.0f} | {per:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
