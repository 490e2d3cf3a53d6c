"""The shared backend contract, in a few lines: what every backend plugin passes."""

from __future__ import annotations

from ipfs_accelerate_example_backend.backend import LingoBackend
from ipfs_accelerate_example_backend.server import LingoServer

from ipfs_accelerate_sim.testing import BackendContract


class TestLingoContract(BackendContract):
    backend_class = LingoBackend
    server_class = LingoServer
    base_path = "/v1"  # the server's routes live under /v1, like the real base URL
    samples = {
        "translate": {"text": "hello world", "target": "fr"},
        "languages": {},
    }
    plugin_module = "ipfs_accelerate_example_backend.plugin"
