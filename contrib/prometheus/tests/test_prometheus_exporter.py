"""Scrape the exporter over HTTP after real requests through the pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ipfs_accelerate_py import BackendConfig, BreakerPolicy, Client, ClientConfig, Request, RetryPolicy
from ipfs_accelerate_py.errors import CircuitOpenError, TransientError
from ipfs_accelerate_py.plugins import PluginManager
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_prometheus import Metrics, start_exporter

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
import echo_backend  # noqa: E402


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    resp = requests.get(url, timeout=5)
    assert resp.status_code == 200
    assert "test-key" not in resp.text  # keys appear only as their key_id
    out = {}
    for fam in text_string_to_metric_families(resp.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _series(samples: dict, name: str) -> list[dict]:
    return [dict(lbl) for (n, lbl) in samples if n == name]


@pytest.fixture
def setup():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(echo_backend, name="echo")
    pm.add_plugin(metrics, name="metrics")
    server = LocalServer(echo_backend.EchoServer())
    yield registry, pm, server
    server.close()


def test_requests_retries_429s_latency_and_gauges(setup) -> None:
    registry, pm, server = setup
    server.script(
        ServerResponse.json({"error": {"message": "slow down", "type": "rate_limit"}}, 429,
                            headers={"retry-after": "0", "x-ratelimit-limit-requests": "600",
                                     "x-ratelimit-remaining-requests": "0"}),
        ServerResponse.json({"error": {"message": "boom", "type": "server_error"}}, 503),
    )
    client = Client([BackendConfig(name="echo", keys=["test-key-1", "test-key-2"],
                                   base_url=server.url, requests_per_minute=6000)],
                    ClientConfig(max_concurrency=2, retry=RetryPolicy(base_delay=0.001)),
                    plugin_manager=pm)
    with client, start_exporter(client, port=0, addr="127.0.0.1", registry=registry) as exp:
        results = client.map([Request(backend="echo", operation="echo", payload={"n": i},
                                      priority="HIGH" if i == 0 else "NORMAL")
                              for i in range(10)])
        assert len(results) == 10
        s = _scrape(exp.url)
        key_ids = {k.key_id for k in client.backends["echo"].config.keys}
        assert all(k.startswith("key-") for k in key_ids)

        done = _series(s, "ipfs_accelerate_requests_total")
        assert {d["key_id"] for d in done} <= key_ids
        assert sum(_get(s, "ipfs_accelerate_requests_total", **d) for d in done) == 10
        assert {d["outcome"] for d in done} == {"success"}
        assert {d["backend"] for d in done} == {"echo"}
        retries = {d["error_class"]: _get(s, "ipfs_accelerate_retries_total", **d)
                   for d in _series(s, "ipfs_accelerate_retries_total")}
        assert retries == {"rate_limited": 1.0, "transient": 1.0}
        assert sum(_get(s, "ipfs_accelerate_rate_limited_total", **d)
                   for d in _series(s, "ipfs_accelerate_rate_limited_total")) == 1.0
        assert sum(_get(s, "ipfs_accelerate_attempts_total", **d)
                   for d in _series(s, "ipfs_accelerate_attempts_total")) == 12.0
        assert _get(s, "ipfs_accelerate_request_duration_seconds_count", backend="echo",
                    operation="echo", outcome="success") == 10.0
        assert _get(s, "ipfs_accelerate_request_duration_seconds_bucket", backend="echo",
                    operation="echo", outcome="success", le="+Inf") == 10.0
        assert _get(s, "ipfs_accelerate_queued_total", backend="echo", operation="echo",
                    priority="high") == 1.0
        assert _get(s, "ipfs_accelerate_queue_wait_seconds_count", backend="echo",
                    operation="echo") == 10.0
        tokens = _series(s, "ipfs_accelerate_tokens_total")
        assert {d["kind"] for d in tokens} == {"total"}  # the echo server reports a total only
        assert sum(_get(s, "ipfs_accelerate_tokens_total", **d) for d in tokens) == 30.0
        # Gauges read from client.stats() at scrape time.
        assert _get(s, "ipfs_accelerate_queue_depth", backend="echo") == 0.0
        assert _get(s, "ipfs_accelerate_backend_in_flight", backend="echo") == 0.0
        assert _get(s, "ipfs_accelerate_breaker_state", backend="echo", state="closed") == 1.0
        assert _get(s, "ipfs_accelerate_breaker_state", backend="echo", state="open") == 0.0
        for k in key_ids:
            assert _get(s, "ipfs_accelerate_in_flight", backend="echo", key_id=k) == 0.0
            assert _get(s, "ipfs_accelerate_key_healthy", backend="echo", key_id=k) == 1.0
            assert _get(s, "ipfs_accelerate_key_max_concurrent", backend="echo", key_id=k) == 8.0
            assert 0.0 <= _get(s, "ipfs_accelerate_limiter_headroom", backend="echo", key_id=k) <= 1.0
            assert _get(s, "ipfs_accelerate_limiter_requests_per_minute", backend="echo",
                        key_id=k) == 6000.0
        cooldowns = [_get(s, "ipfs_accelerate_limiter_cooldown_seconds", backend="echo", key_id=k)
                     for k in key_ids]
        assert all(c >= 0 for c in cooldowns)


def test_breaker_transitions_and_final_errors(setup) -> None:
    registry, pm, server = setup
    boom = ServerResponse.json({"error": {"message": "down", "type": "server_error"}}, 500)
    server.script(boom, boom)
    client = Client([BackendConfig(name="echo", keys=["test-key-1"], base_url=server.url)],
                    ClientConfig(max_concurrency=1, fail_fast=True,
                                 retry=RetryPolicy(max_attempts=1, base_delay=0.001),
                                 breaker=BreakerPolicy(window_size=2, minimum_calls=2,
                                                       failure_rate_threshold=0.5,
                                                       open_interval=30.0)),
                    plugin_manager=pm)
    with start_exporter(client, port=0, addr="127.0.0.1", registry=registry) as exp:
        for i in range(2):  # a 500, then the breaker (2 calls, 50 %) refuses the next
            with pytest.raises((TransientError, CircuitOpenError)):
                client.call("echo", "echo", {"n": i})
        s = _scrape(exp.url)
        endpoint = _series(s, "ipfs_accelerate_breaker_transitions_total")[0]["endpoint"]
        assert endpoint.startswith("echo")
        assert _get(s, "ipfs_accelerate_breaker_transitions_total", endpoint=endpoint,
                    from_state="closed", to_state="open") == 1.0
        assert _get(s, "ipfs_accelerate_breaker_state", backend="echo", state="open") == 1.0
        key = _series(s, "ipfs_accelerate_request_errors_total")[0]["key_id"]
        errors = {d["error_class"]: _get(s, "ipfs_accelerate_request_errors_total", **d)
                  for d in _series(s, "ipfs_accelerate_request_errors_total")}
        # The second failure opened the breaker; with fail_fast that request still ends with
        # its own classified error (requests that never got through see CircuitOpenError).
        assert errors == {"transient": 2.0}
        assert _get(s, "ipfs_accelerate_requests_total", backend="echo", operation="echo",
                    key_id=key, outcome="error") == 2.0
    client.close(wait=False)


def test_installed_entry_point_feeds_the_default_registry_only_when_named(setup) -> None:
    _, _, server = setup
    pm = PluginManager()  # loads the installed entry points, this package's included
    pm.add_plugin(echo_backend, name="echo-test")
    assert any(p.name == "prometheus" for p in pm.list_plugins())
    backends = [BackendConfig(name="echo", keys=["test-key-1"], base_url=server.url)]
    key_id = BackendConfig(name="echo", keys=["test-key-1"]).keys[0].key_id
    labels = {"backend": "echo", "operation": "echo", "key_id": key_id, "outcome": "success"}

    def count() -> float:
        return REGISTRY.get_sample_value("ipfs_accelerate_requests_total", labels) or 0.0

    before = count()
    with Client(backends, plugin_manager=pm) as quiet:  # installed, not configured
        quiet.call("echo", "echo", {"n": 1})
    assert count() == before
    with Client(backends, ClientConfig(observers=("prometheus",)), plugin_manager=pm) as client:
        client.call("echo", "echo", {"n": 1})
    assert count() == before + 1


def test_observer_options_give_a_client_its_own_registry(setup) -> None:
    _, _, server = setup
    pm = PluginManager()
    pm.add_plugin(echo_backend, name="echo-test")
    mine = CollectorRegistry()
    backends = [BackendConfig(name="echo", keys=["test-key-1"], base_url=server.url)]
    with Client(backends, ClientConfig(observers=(("prometheus", {"registry": mine}),)),
                plugin_manager=pm) as client:
        client.call("echo", "echo", {"n": 1})
        client.call("echo", "echo", {"n": 2})
    assert mine.get_sample_value("ipfs_accelerate_requests_total", {
        "backend": "echo", "operation": "echo", "outcome": "success",
        "key_id": client.backends["echo"].config.keys[0].key_id}) == 2.0


def test_a_shared_store_reports_degraded_limiters(setup) -> None:
    """A store whose limiters report ``degraded`` in their snapshot (as the Redis store
    does) gets a gauge per key; the in-memory store reports none."""
    from ipfs_accelerate_py import hookimpl
    from ipfs_accelerate_py.limiter import KeyLimiter
    from ipfs_accelerate_py.state import InMemoryStateStore

    class Limiter(KeyLimiter):
        def snapshot(self, now: float) -> dict:
            return {**super().snapshot(now), "shared": True, "degraded": True}

    class Store(InMemoryStateStore):
        def limiter(self, scope, requests_per_minute, tokens_per_minute, burst, now):
            return Limiter(now, requests_per_minute, tokens_per_minute, burst)

    class StorePlugin:
        @hookimpl
        def accelerate_make_state_store(self, config):
            return Store()

    registry, pm, server = setup
    plain = Client([BackendConfig(name="echo", keys=["test-key-1"], base_url=server.url)],
                   plugin_manager=pm)
    with plain, start_exporter(plain, port=0, addr="127.0.0.1", registry=registry) as exp:
        assert _series(_scrape(exp.url), "ipfs_accelerate_limiter_degraded") == []
    pm.add_plugin(StorePlugin(), name="store")
    shared = Client([BackendConfig(name="echo", keys=["test-key-1"], base_url=server.url)],
                    plugin_manager=pm)
    with shared, start_exporter(shared, port=0, addr="127.0.0.1", registry=registry) as exp:
        s = _scrape(exp.url)
        key_id = shared.backends["echo"].config.keys[0].key_id
        assert _get(s, "ipfs_accelerate_limiter_degraded", backend="echo", key_id=key_id) == 1.0


def test_cost_unpriced_results_and_budget_warnings(setup) -> None:
    from decimal import Decimal

    from ipfs_accelerate_py.costs import Budget

    registry, pm, server = setup
    # The echo server reports no prompt/completion split: a per-request fee prices it.
    prices = {"echo": {"echo-1": {"input": "0", "output": "0", "per_request": "0.25"}}}
    client = Client([BackendConfig(name="echo", keys=["test-key-1"], base_url=server.url)],
                    ClientConfig(max_concurrency=1, prices=prices,
                                 budgets=[Budget("team", usd="1", tags={"team": "a"})]),
                    plugin_manager=pm)
    with client, start_exporter(client, port=0, addr="127.0.0.1", registry=registry) as exp:
        priced = [client.call("echo", "echo", {"n": i, "model": "echo-1"}, tags={"team": "a"})
                  for i in range(3)]
        unpriced = client.call("echo", "echo", {"n": 9, "model": "echo-unknown"})
        assert [r.cost for r in priced] == [Decimal("0.25")] * 3 and unpriced.cost is None
        s = _scrape(exp.url)
        cost = _series(s, "ipfs_accelerate_cost_dollars_total")
        assert sum(_get(s, "ipfs_accelerate_cost_dollars_total", **d) for d in cost) == 0.75
        assert sum(_get(s, "ipfs_accelerate_unpriced_results_total", **d)
                   for d in _series(s, "ipfs_accelerate_unpriced_results_total")) == 1.0
        # 0.25, 0.50, 0.75 of the team's $1: the 50 % threshold was crossed once.
        assert _get(s, "ipfs_accelerate_budget_warnings_total", budget="team", threshold="0.5",
                    refused="false") == 1.0
        assert ("ipfs_accelerate_budget_warnings_total",
                (("budget", "team"), ("refused", "false"), ("threshold", "0.8"))) not in s
        stats = client.stats()
        assert stats.costs["total"]["spend"] == "0.75" == stats.to_dict()["spend"]
        assert stats.costs["total"]["unpriced"] == 1
        assert stats.costs["tags"]["team=a"]["spend"] == "0.75"
        assert stats.costs["budgets"]["team"]["spent"] == "0.75"
