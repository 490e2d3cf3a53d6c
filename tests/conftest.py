from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import echo_backend  # noqa: E402

from ipfs_accelerate_py.plugins import PluginManager  # noqa: E402
from ipfs_accelerate_sim.testing import LocalServer  # noqa: E402


@pytest.fixture
def pm() -> PluginManager:
    """A plugin manager with only the core defaults and the echo test backend."""
    manager = PluginManager(load_entry_points=False)
    manager.add_plugin(echo_backend, name="echo_backend")
    return manager


@pytest.fixture
def echo_server():
    srv = LocalServer(echo_backend.EchoServer())
    yield srv
    srv.close()
