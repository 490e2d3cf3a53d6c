"""A real redis-server per test session on 127.0.0.1 (free port, no persistence; the
``aof_redis`` fixture: a persistent one of a test's own).

If ``redis-server`` is not on PATH the project's own ``scripts/install-redis.sh`` installs
Debian's package first (CI runs as root with apt access).  Never skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[3]
INSTALL = ROOT / "scripts" / "install-redis.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        subprocess.run(["bash", str(INSTALL)], check=True)
        found = shutil.which("redis-server") or "/usr/bin/redis-server"
    return found


class RedisProcess:
    """One redis-server that a test may kill and start again on the same port."""

    def __init__(self, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.binary = redis_server_binary()
        self.port = port or _free_port()
        self.proc: subprocess.Popen | None = None
        self.extra = extra  # later options override the defaults (persistence...)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning",
             "--dir", "/tmp", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start within 10 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    """A fresh key prefix per test: tests share the session's server."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A server of the test's own, to kill and restart."""
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A server of the test's own that persists every write (append-only file, fsync
    always) in the test's directory: killed and restarted, it keeps what it acknowledged."""
    server = RedisProcess(extra=("--appendonly", "yes", "--appendfsync", "always",
                                 "--dir", str(tmp_path))).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def echo_backend_module():
    """The core's echo test backend (tests/echo_backend.py), importable in this process."""
    path = str(ROOT / "tests")
    if path not in sys.path:
        sys.path.insert(0, path)
    import echo_backend

    return echo_backend


os.environ.pop("IPFS_ACCELERATE_REDIS_URL", None)  # tests configure the store explicitly
