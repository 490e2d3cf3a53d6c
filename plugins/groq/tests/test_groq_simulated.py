"""The protocol server mounted in the core's simulator: every 429 the simulator answers (in
this protocol's own format) is seen by the client as rate limited, and nothing is lost."""

from __future__ import annotations

from ipfs_accelerate_groq.backend import GroqBackend
from ipfs_accelerate_groq.server import GroqServer

from ipfs_accelerate_py.client import Client
from ipfs_accelerate_py.config import BackendConfig, ClientConfig, RetryPolicy
from ipfs_accelerate_py.hookspecs import hookimpl
from ipfs_accelerate_py.plugins import PluginManager
from ipfs_accelerate_py.request import Request
from ipfs_accelerate_sim import SimConfig, Simulator

BACKEND = GroqBackend


class _Only:
    @staticmethod
    @hookimpl
    def accelerate_backends():
        return [BACKEND]


def test_simulated_quota_is_respected_and_nothing_lost():
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(_Only, name="groq-only")
    with Simulator(SimConfig(rps=40, burst=2, seed=3), servers={"groq": GroqServer(seed=3)}) as sim:
        client = Client([BackendConfig(name="groq", keys=["test-key-1"],
                                       base_url=sim.base_url("groq") + "/openai/v1")],
                        ClientConfig(max_concurrency=4, default_deadline=30.0,
                                     retry=RetryPolicy(base_delay=0.01, max_attempts=20)),
                        plugin_manager=pm, seed=3)
        try:
            reqs = [Request("chat", {"model": "llama-3.1-8b-instant", "messages": [{"role": "user", "content": f"question {i}"}]}, backend="groq") for i in range(6)]
            results = client.map(reqs)
            stats = client.stats().to_dict()["backends"]["groq"]
        finally:
            client.close(wait=False)
        seen = sim.stats()
    assert len(results) == 6 and all(r.backend == "groq" for r in results)
    assert seen["ok"] >= 1 and seen["errors_injected"] == 0
    assert stats["rate_limited"] == seen["rate_limited"]
