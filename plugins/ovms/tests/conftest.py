"""Fixtures for the ovms plugin tests: a LocalServer speaking OVMS, and a pipeline client."""

from __future__ import annotations

import threading
from typing import Any, Iterator

import pytest

from ipfs_accelerate_py import Client
from ipfs_accelerate_sim import testing
from ipfs_accelerate_sim.testing import LocalServer, fake_key
from ipfs_accelerate_ovms.server import OvmsServer

OVMS_ENV = ("OVMS_API_URL", "OVMS_API_KEY", "OVMS_MODEL", "OVMS_VERSION")


@pytest.fixture(autouse=True)
def _no_ovms_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OVMS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def srv() -> Iterator[LocalServer]:
    with LocalServer(OvmsServer(seed=0)) as server:
        yield server


def _make_client(url: str | None, *, keys: Any = (fake_key(1),), attempts: int = 1,
                 concurrency: int = 4, **backend: Any) -> Client:
    return testing.make_client("ovms", url, keys=keys, attempts=attempts, concurrency=concurrency,
                               base_delay=0.01, max_delay=0.05, **backend)


def _hold_worker(srv: LocalServer, client: Client) -> threading.Event:
    return testing.hold_worker(srv, client, "ovms", "live")


@pytest.fixture
def make_client() -> Any:
    """``make_client(url, keys=..., attempts=..., concurrency=..., **BackendConfig fields)``."""
    return _make_client


@pytest.fixture
def hold_worker() -> Any:
    return _hold_worker
