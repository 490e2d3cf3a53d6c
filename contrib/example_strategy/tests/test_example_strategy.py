"""The shared strategy contract, plus what makes this strategy weighted."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import pytest
from ipfs_accelerate_example_strategy import Weighted, plugin

from ipfs_accelerate_py import ApiKey, Backend, BackendConfig, Client, ClientConfig, hookimpl
from ipfs_accelerate_py.errors import ConfigError
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.plugins import PluginManager
from ipfs_accelerate_py.request import Request
from ipfs_accelerate_py.results import Result
from ipfs_accelerate_py.selection import KeyCandidate
from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_sim.testing import LocalServer, StrategyContract


class TestWeightedContract(StrategyContract):
    strategy_factory = Weighted


class _Unlimited:
    def headroom(self, now: float) -> float:
        return 1.0


def candidates(*weights: object) -> list[KeyCandidate]:
    out = []
    for i, w in enumerate(weights):
        extra = {} if w is None else {"weight": w}
        out.append(KeyCandidate(ApiKey(secret=f"test-key-{i}", name=f"k{i}", extra=extra), i, 4,
                                _Unlimited()))
    return out


def picks(strategy: Weighted, keys: list[KeyCandidate], n: int) -> list[str]:
    return [strategy.select(Request("op"), keys).key_id for _ in range(n)]


def test_shares_follow_the_weights_exactly_per_cycle():
    keys = candidates(5, 1, 1)
    counts = Counter(picks(Weighted(), keys, 700))
    assert counts == {"k0": 500, "k1": 100, "k2": 100}


def test_heavy_key_is_interleaved_not_bursted():
    assert picks(Weighted(), candidates(5, 1, 1), 7) == ["k0", "k0", "k1", "k0", "k2", "k0", "k0"]


def test_missing_weight_means_one():
    assert Counter(picks(Weighted(), candidates(None, 2), 300)) == {"k0": 100, "k1": 200}


def test_a_key_without_capacity_is_skipped_and_keeps_its_place():
    s = Weighted()
    keys = candidates(1, 1, 1)
    assert picks(s, keys, 3) == ["k0", "k1", "k2"]
    # k1 is busy: only k0 and k2 are offered, and they alternate
    assert picks(s, [keys[0], keys[2]], 4) == ["k0", "k2", "k0", "k2"]
    assert set(picks(s, keys, 3)) == {"k0", "k1", "k2"}


@pytest.mark.parametrize("bad", [0, -1, "heavy", float("inf"), float("nan"), None])
def test_an_invalid_weight_names_the_key_not_the_secret(bad):
    keys = candidates(1, 1)
    keys[1].key.extra["weight"] = bad
    with pytest.raises(ConfigError) as info:
        Weighted().select(Request("op"), keys)
    assert "'k1'" in str(info.value) and "test-key-1" not in str(info.value)


class WhoServer(ProtocolServer):
    """A one-route service that answers which key it was called with."""

    name = "who"

    @route("GET", "/who")
    def who(self, req: ServerRequest) -> ServerResponse:
        return ServerResponse.json({"key": req.bearer_token()})


class WhoBackend(Backend):
    name = "who"
    operations = {"who": "which key carried the call"}

    def build_who(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self.url("/who"))

    def parse_who(self, request: Request, response: Any) -> Result:
        return Result(text=self.decode_json(response)["key"])


@hookimpl
def accelerate_backends() -> list[type[Backend]]:
    return [WhoBackend]


def test_registered_under_its_name_and_chosen_by_a_client():
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(plugin, name="weighted")
    pm.add_plugin(sys.modules[__name__], name="who")
    assert pm.strategy_factory("weighted") is Weighted
    keys = [ApiKey(secret="test-key-1", name="a", extra={"weight": 2}),
            ApiKey(secret="test-key-2", name="b")]
    srv = LocalServer(WhoServer())
    try:
        with Client([BackendConfig("who", keys=keys, base_url=srv.url)],
                    ClientConfig(strategy="weighted", max_concurrency=1), plugin_manager=pm) as c:
            sent = [c.call("who", "who", {}).text for _ in range(6)]
    finally:
        srv.close()
    assert Counter(sent) == {"test-key-1": 4, "test-key-2": 2}
