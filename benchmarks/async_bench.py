#!/usr/bin/env python3
"""The asyncio client at thousands of requests in flight (issue 17).

A local OpenAI-compatible server (an asyncio server in its own process, fd limit raised)
answers every chat completion after a random 2-2.5 s and no rate limit.  Each client runs
N requests over 4 keys at concurrency C, in a fresh process of its own:

- ``ours-async``: ``AsyncClient`` (``max_concurrency=C``, aiohttp transport);
- ``ours-sync``: the threaded ``Client`` (``max_concurrency=C`` worker threads);
- ``openai-async``: the official SDK's ``AsyncOpenAI``, one per key, round-robin, C tasks
  under a semaphore, httpx pool sized to C;
- ``aiohttp-raw``: bare aiohttp posts under a semaphore, no pipeline: the floor this
  machine and server allow;
- ``litellm-async``: LiteLLM's ``Router`` (one deployment per key) ``acompletion``, C
  tasks under a semaphore.

Reported: wall time against the ideal (a zero-overhead client with C slots given the
latencies the server drew, in arrival order), client CPU (user + system) per request, the
client process's peak RSS, and errors.

    .venv/bin/python -m pip install -r benchmarks/requirements.txt   # openai, litellm
    .venv/bin/python benchmarks/async_bench.py [--n 10000] [--concurrency 1000,5000]
        [--clients ours-async,ours-sync,openai-async,litellm-async] [--write]
    .venv/bin/python benchmarks/async_bench.py --transports   # aiohttp vs httpx CPU/request

``--write`` replaces the results table in docs/benchmarks/async.md.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEYS = [f"test-key-{i}" for i in range(1, 5)]
PAYLOAD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}],
           "max_tokens": 8}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(want, 65536)), hard))


# ----------------------------------------------------------------------------- server
_ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}).encode()


class _Conn(asyncio.Protocol):
    def __init__(self, srv: _Server) -> None:
        self.srv = srv
        self.buf = bytearray()
        self.t: Any = None

    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buf) < end + 4 + length:
                return
            del self.buf[:end + 4 + length]
            method, path = head.split(" ", 2)[:2]
            if path.startswith("/stats"):
                body = json.dumps(self.srv.latencies).encode()
                self.srv.latencies = []
                self._send(b"200 OK", body)
            elif method == "POST":
                delay = self.srv.rng.uniform(self.srv.low, self.srv.high)
                self.srv.latencies.append(delay)
                asyncio.get_running_loop().call_later(delay, self._send, b"200 OK", _ANSWER)
            else:
                self._send(b"404 Not Found", b'{"error": {"message": "not found"}}')

    def _send(self, status: bytes, body: bytes) -> None:
        if self.t.is_closing():
            return
        self.t.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n"
                     b"x-request-id: req-bench\r\n\r\n" + body)


class _Server:
    def __init__(self, low: float, high: float, seed: int) -> None:
        self.low, self.high = low, high
        self.rng = random.Random(seed)
        self.latencies: list[float] = []


def serve(low: float, high: float, seed: int) -> None:
    raise_fd_limit()

    async def main() -> None:
        srv = _Server(low, high, seed)
        server = await asyncio.get_running_loop().create_server(
            lambda: _Conn(srv), "127.0.0.1", 0, backlog=8192)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


class ServerProcess:
    def __init__(self, low: float = 2.0, high: float = 2.5, seed: int = 17) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(low), str(high),
                                      str(seed)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def latencies(self) -> list[float]:
        import requests

        return requests.get(self.url + "/stats", timeout=30).json()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def ideal_wall(latencies: list[float], concurrency: int) -> float:
    """A zero-overhead client with ``concurrency`` slots, requests in arrival order."""
    slots = [0.0] * min(concurrency, max(1, len(latencies)))
    end = 0.0
    for lat in latencies:
        start = heapq.heappop(slots)
        heapq.heappush(slots, start + lat)
        end = max(end, start + lat)
    return end


# ----------------------------------------------------------------------------- clients
async def _gather_limited(n: int, c: int, one: Any) -> int:
    sem = asyncio.Semaphore(c)
    errors = 0

    async def run(i: int) -> None:
        nonlocal errors
        async with sem:
            try:
                await one(i)
            except Exception as exc:
                errors += 1
                if errors <= 3:
                    print(f"error: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)

    await asyncio.gather(*(run(i) for i in range(n)))
    return errors


def _ours_config(c: int) -> Any:
    from ipfs_accelerate_py import BackendConfig, ClientConfig

    # connect_timeout 30 s: a burst of 5 000 connects overflows the server's accept queue
    # (somaxconn), and the default 5 s would time some out and retry them.
    backend = BackendConfig("openai", keys=KEYS, max_concurrent_per_key=c, connect_timeout=30.0)
    return backend, ClientConfig(max_concurrency=c, queue_size=None, default_deadline=None)


def run_ours_async(url: str, n: int, c: int) -> int:
    import attrs

    from ipfs_accelerate_py import Request
    from ipfs_accelerate_py.aio import AsyncClient

    backend, config = _ours_config(c)
    backend = attrs.evolve(backend, base_url=url + "/v1")

    async def main() -> int:
        async with AsyncClient([backend], config) as client:
            out = await client.map([Request("chat", PAYLOAD, backend="openai") for _ in range(n)],
                                   return_exceptions=True)
        return sum(1 for r in out if isinstance(r, BaseException))

    return asyncio.run(main())


def run_ours_sync(url: str, n: int, c: int) -> int:
    import attrs

    from ipfs_accelerate_py import Client, Request

    backend, config = _ours_config(c)
    backend = attrs.evolve(backend, base_url=url + "/v1")
    with Client([backend], config) as client:
        out = client.map([Request("chat", PAYLOAD, backend="openai") for _ in range(n)],
                         return_exceptions=True)
    return sum(1 for r in out if isinstance(r, BaseException))


def run_openai_async(url: str, n: int, c: int) -> int:
    import httpx
    import openai

    async def main() -> int:
        per_key = max(1, c // len(KEYS) + 1)
        clients = [openai.AsyncOpenAI(
            api_key=k, base_url=url + "/v1", max_retries=2, timeout=120.0,
            http_client=openai.DefaultAsyncHttpxClient(limits=httpx.Limits(
                max_connections=per_key, max_keepalive_connections=per_key)))
            for k in KEYS]

        async def one(i: int) -> None:
            await clients[i % len(clients)].chat.completions.create(**PAYLOAD)

        try:
            return await _gather_limited(n, c, one)
        finally:
            for cl in clients:
                await cl.close()

    return asyncio.run(main())


def run_litellm_async(url: str, n: int, c: int) -> int:
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm
    from litellm import Router

    litellm.telemetry = False
    litellm.suppress_debug_info = True

    async def main() -> int:
        router = Router(model_list=[{
            "model_name": "bench", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_base": url + "/v1", "api_key": k,
                "max_parallel_requests": c}} for k in KEYS],
            routing_strategy="simple-shuffle", num_retries=2, timeout=120)

        async def one(i: int) -> None:
            await router.acompletion(model="bench", messages=PAYLOAD["messages"], max_tokens=8)

        return await _gather_limited(n, c, one)

    return asyncio.run(main())


def run_aiohttp_raw(url: str, n: int, c: int) -> int:
    """The floor: bare aiohttp posts, no pipeline (no retries, limits, stats)."""
    import aiohttp

    body = json.dumps(PAYLOAD).encode()

    async def main() -> int:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as s:
            async def one(i: int) -> None:
                headers = {"Authorization": f"Bearer {KEYS[i % len(KEYS)]}",
                           "Content-Type": "application/json"}
                async with s.post(url + "/v1/chat/completions", data=body,
                                  headers=headers) as r:
                    r.raise_for_status()
                    await r.json()

            return await _gather_limited(n, c, one)

    return asyncio.run(main())


CLIENTS = {"aiohttp-raw": run_aiohttp_raw, "ours-async": run_ours_async, "ours-sync": run_ours_sync,
           "openai-async": run_openai_async, "litellm-async": run_litellm_async}


_PRELOAD = {"ours-async": ["ipfs_accelerate_py.aio", "ipfs_accelerate_openai"],
            "ours-sync": ["ipfs_accelerate_py.client", "ipfs_accelerate_openai"],
            "openai-async": ["openai", "httpx"], "litellm-async": ["litellm"],
            "aiohttp-raw": ["aiohttp"]}


def client_main(name: str, url: str, n: int, c: int) -> None:
    raise_fd_limit()
    import importlib

    for module in _PRELOAD[name]:  # imports are not the run's time
        importlib.import_module(module)
    t0 = time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    errors = CLIENTS[name](url, n, c)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": r1.ru_maxrss / 1024,
                      "errors": errors}), flush=True)


# ----------------------------------------------------------------------------- transports
def transports_main(n: int, c: int) -> list[dict[str, Any]]:
    """Raw CPU per request of aiohttp and httpx against the same server (no pipeline)."""
    rows = []
    with_server = ServerProcess(0.05, 0.06)
    try:
        for lib in ("aiohttp", "httpx"):
            out = subprocess.run([sys.executable, __file__, "--raw", lib, with_server.url,
                                  str(n), str(c)], capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["lib"] = lib
            rows.append(row)
            print(row, flush=True)
    finally:
        with_server.close()
    return rows


def raw_main(lib: str, url: str, n: int, c: int) -> None:
    raise_fd_limit()
    body = json.dumps(PAYLOAD).encode()
    headers = {"Authorization": "Bearer test-key-1", "Content-Type": "application/json"}

    async def main() -> None:
        sem = asyncio.Semaphore(c)
        if lib == "aiohttp":
            import aiohttp

            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as s:
                async def one() -> None:
                    async with sem, s.post(url + "/v1/chat/completions", data=body,
                                           headers=headers) as r:
                        await r.read()
                await asyncio.gather(*(one() for _ in range(n)))
        else:
            import httpx

            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=c)) as s:
                async def one() -> None:
                    async with sem:
                        r = await s.post(url + "/v1/chat/completions", content=body,
                                         headers=headers)
                        r.read()
                await asyncio.gather(*(one() for _ in range(n)))

    t0 = time.monotonic()
    cpu0 = time.process_time()
    asyncio.run(main())
    cpu = time.process_time() - cpu0
    print(json.dumps({"n": n, "c": c, "wall": time.monotonic() - t0, "cpu": cpu,
                      "cpu_per_req_us": cpu / n * 1e6}))


# ----------------------------------------------------------------------------- driver
def run_one(srv: ServerProcess, name: str, n: int, c: int) -> dict[str, Any]:
    srv.latencies()  # reset
    proc = subprocess.run([sys.executable, __file__, "--client", name, srv.url, str(n), str(c)],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return {"client": name, "c": c, "failed": (proc.stderr or proc.stdout).strip()[-300:]}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    ideal = ideal_wall(srv.latencies(), c)
    row.update(client=name, c=c, n=n, ideal=ideal, over=row["wall"] / ideal - 1,
               cpu_per_req_ms=row["cpu"] / n * 1000)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| client | in flight | wall s | ideal s | over ideal | CPU ms/request | peak RSS MB | errors |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "failed" in r:
            out.append(f"| {r['client']} | {r['c']} | failed: {r['failed'][:120]} | | | | | |")
            continue
        out.append(f"| {r['client']} | {r['c']} | {r['wall']:.2f} | {r['ideal']:.2f} | "
                   f"{r['over'] * 100:+.1f} % | {r['cpu_per_req_ms']:.3f} | {r['rss_mb']:.0f} | "
                   f"{r['errors']} |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--serve":
        serve(float(argv[1]), float(argv[2]), int(argv[3]))
        return 0
    if argv and argv[0] == "--client":
        client_main(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0
    if argv and argv[0] == "--raw":
        raw_main(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--concurrency", default="1000,5000")
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--transports", action="store_true")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    if args.transports:
        transports_main(4000, 200)
        return 0
    srv = ServerProcess()
    rows = []
    try:
        for c in (int(x) for x in args.concurrency.split(",")):
            for name in args.clients.split(","):
                row = run_one(srv, name, args.n, c)
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        srv.close()
    print(table(rows))
    if args.write:  # the results table of docs/benchmarks/async.md
        page = ROOT / "docs" / "benchmarks" / "async.md"
        text = page.read_text()
        start = text.index("\n", text.index("<!-- results")) + 1
        end = text.index("<!-- /results -->")
        page.write_text(text[:start] + table(rows) + "\n" + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
