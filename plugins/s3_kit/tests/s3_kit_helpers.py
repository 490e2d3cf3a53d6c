"""Test helpers: a real S3-compatible server (moto's standalone server) on 127.0.0.1, and a
pipeline client for the s3_kit backend pointed at it.  (A uniquely named module: with
``--import-mode=importlib`` a bare ``import conftest`` could find another plugin's.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import requests
from ipfs_accelerate_py import Client, RetryPolicy
from ipfs_accelerate_sim import testing
from ipfs_accelerate_s3_kit import s3_key

ACCESS = "test-access-key-1"
SECRET = "test-key-1-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """``python -m moto.server`` in a subprocess (its own GIL), stopped afterwards."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        for _ in range(3):  # a free port can be taken by someone else before moto binds it
            if self._start(env):
                return
        raise RuntimeError("moto server did not start")

    def _start(self, env: dict[str, str] | None) -> bool:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=full_env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                requests.get(self.url + "/moto-api/", timeout=1)
                if self.proc.poll() is None:
                    return True
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_client(endpoint: str | None, *, max_attempts: int = 4, concurrency: int = 16,
                keys=None, strategy: str = "least-loaded", **options) -> Client:
    # The kit's client keeps the breaker out of the way: injected failures must exhaust
    # retries, not open the breaker (an open breaker parks requests until their deadline).
    return testing.make_client(
        "s3_kit", endpoint, keys=keys or [s3_key(ACCESS, SECRET, name="primary")],
        concurrency=concurrency, deadline=600.0, seed=None,
        config={"strategy": strategy,
                "retry": RetryPolicy(max_attempts=max_attempts, base_delay=0.01, max_delay=0.05,
                                     budget_ratio=1.0, budget_min_per_second=100.0)},
        options={"addressing_style": "path", **options})


def attempts(client: Client) -> int:
    return client.stats().backends["s3_kit"]["attempts"]
