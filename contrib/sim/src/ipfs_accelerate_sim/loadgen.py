"""A load generator for measuring the simulator (run it in its own process).

    python -m ipfs_accelerate_sim.loadgen URL [--connections 32] [--seconds 5]
    python -m ipfs_accelerate_sim.loadgen spawn      # start `ipfs-accelerate sim` itself

Opens keep-alive connections and sends OpenAI chat requests back to back on each,
spreading them over ``--keys`` fake keys; prints requests/s and the status counts as
JSON.  Plain asyncio sockets, so it costs far less per request than ``requests``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def _conn(host: str, port: int, path: str, body: bytes, key: str, until: float,
                counts: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    req = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    try:
        while time.monotonic() < until:
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            chunked = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                lname = name.strip().lower()
                if lname == b"content-length":
                    length = int(value)
                elif lname == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if chunked:
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            elif length:
                await reader.readexactly(length)
            counts[status] = counts.get(status, 0) + 1
    finally:
        writer.close()


async def run(url: str, connections: int, seconds: float, keys: int, path: str,
              body: bytes) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    counts: dict[int, int] = {}
    start = time.monotonic()
    until = start + seconds
    await asyncio.gather(*(_conn(host, port, parts.path.rstrip("/") + path, body,
                                 f"test-key-{i % keys + 1}", until, counts)
                           for i in range(connections)))
    elapsed = time.monotonic() - start
    total = sum(counts.values())
    return {"requests": total, "seconds": round(elapsed, 3), "rps": round(total / elapsed, 1),
            "statuses": {str(k): v for k, v in sorted(counts.items())},
            "connections": connections}


def _worker(args: tuple) -> dict:
    return asyncio.run(run(*args))


def run_processes(url: str, a: argparse.Namespace) -> dict:
    """Run the load from ``a.processes`` processes (one Python process cannot saturate the
    simulator) and add their counts up."""
    if a.processes <= 1:
        return asyncio.run(run(url, a.connections, a.seconds, a.keys, a.path, a.body.encode()))
    from concurrent.futures import ProcessPoolExecutor

    per = max(1, a.connections // a.processes)
    job = (url, per, a.seconds, a.keys, a.path, a.body.encode())
    with ProcessPoolExecutor(a.processes) as pool:
        parts = list(pool.map(_worker, [job] * a.processes))
    statuses: dict[str, int] = {}
    for part in parts:
        for k, v in part["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    total = sum(p["requests"] for p in parts)
    secs = max(p["seconds"] for p in parts)
    return {"requests": total, "seconds": secs, "rps": round(total / secs, 1),
            "statuses": statuses, "connections": per * a.processes, "processes": a.processes}


def spawn_and_measure(args: argparse.Namespace) -> dict:
    """Start ``ipfs-accelerate sim`` in its own process, load it, and report both the
    wall-clock rate and the simulator's CPU cost per request (requests per CPU-second is
    what one core sustains, however busy the machine is)."""
    import re
    import subprocess

    cmd = [sys.executable, "-m", "ipfs_accelerate_py.cli", "sim", "--port", "0",
           *(["--backends", args.backends] if args.backends else []),
           *(["--latency", str(args.latency)] if args.latency else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"(http://\S+)", proc.stdout.readline()).group(1)  # type: ignore[union-attr]
        import urllib.request

        def stats() -> dict:
            with urllib.request.urlopen(url + "/_sim/stats") as r:
                return json.load(r)

        before = stats()
        out = run_processes(url, args)
        after = stats()
        cpu = after["process_cpu_seconds"] - before["process_cpu_seconds"]
        served = after["requests"] - before["requests"]
        out["sim_cpu_seconds"] = round(cpu, 3)
        out["sim_requests_per_cpu_second"] = round(served / cpu, 1) if cpu > 0 else None
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ipfs_accelerate_sim.loadgen",
                                description="Measure the simulator's requests/s.")
    p.add_argument("url", help="the simulator's URL, e.g. http://127.0.0.1:8765, or 'spawn' to "
                               "start one in its own process and report its CPU cost too")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--keys", type=int, default=3)
    p.add_argument("--path", default="/openai/v1/chat/completions")
    p.add_argument("--body", default=json.dumps({"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "Hello world"}]}))
    p.add_argument("--backends", help="with spawn: mount only these protocols")
    p.add_argument("--latency", type=float, default=0.0, help="with spawn: the simulator's latency")
    p.add_argument("--processes", type=int, default=1, help="load-generating processes")
    a = p.parse_args(argv)
    if a.url == "spawn":
        out = spawn_and_measure(a)
    else:
        out = run_processes(a.url, a)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
