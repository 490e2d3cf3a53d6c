"""The protocol server mounted in the core's simulator: every 429 the simulator answers (in
this protocol's own format) is seen by the client as rate limited, and nothing is lost.
(Chat, not embeddings: a 429 on a coalesced call counts once per request it carried.)"""

from __future__ import annotations

from ipfs_accelerate_opea.backend import OPEABackend
from ipfs_accelerate_opea.server import OPEAServer

from ipfs_accelerate_py.client import Client
from ipfs_accelerate_py.config import BackendConfig, ClientConfig, RetryPolicy
from ipfs_accelerate_py.hookspecs import hookimpl
from ipfs_accelerate_py.plugins import PluginManager
from ipfs_accelerate_py.request import Request
from ipfs_accelerate_sim import SimConfig, Simulator

BACKEND = OPEABackend


class _Only:
    @staticmethod
    @hookimpl
    def accelerate_backends():
        return [BACKEND]


def test_simulated_quota_is_respected_and_nothing_lost():
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(_Only, name="opea-only")
    with Simulator(SimConfig(rps=40, burst=2, seed=3), servers={"opea": OPEAServer(seed=3)}) as sim:
        client = Client([BackendConfig(name="opea", keys=[],
                                       base_url=sim.base_url("opea") + "/v1")],
                        ClientConfig(max_concurrency=4, default_deadline=30.0,
                                     retry=RetryPolicy(base_delay=0.01, max_attempts=20)),
                        plugin_manager=pm, seed=3)
        try:
            reqs = [Request("chat", {"messages": [{"role": "user", "content": f"question {i}"}]}, backend="opea") for i in range(6)]
            results = client.map(reqs)
            stats = client.stats().to_dict()["backends"]["opea"]
        finally:
            client.close(wait=False)
        seen = sim.stats()
    assert len(results) == 6 and all(r.backend == "opea" for r in results)
    assert seen["ok"] >= 1 and seen["errors_injected"] == 0
    assert stats["rate_limited"] == seen["rate_limited"]
