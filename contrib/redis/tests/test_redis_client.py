"""The Redis store behind a real Client: plugin selection, shared stats, in-flight counts."""

from __future__ import annotations

import threading

import pytest

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, Request, RetryPolicy
from ipfs_accelerate_py.plugins import PluginManager
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_redis import RedisSharedStats, RedisStatePlugin, RedisStateStore
from ipfs_accelerate_redis import plugin as entry_point


def _pm(echo, *plugins) -> PluginManager:
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(echo, name="echo")
    for i, p in enumerate(plugins):
        pm.add_plugin(p, name=f"p{i}")
    return pm


def test_env_var_selects_the_redis_store(monkeypatch, redis_url, namespace, echo_backend_module) -> None:
    monkeypatch.setenv("IPFS_ACCELERATE_REDIS_URL", redis_url)  # no longer selects anything
    assert entry_point.accelerate_make_state_store(url=None, config=None) is None
    assert entry_point.accelerate_make_state_store(url="memory://", config=None) is None
    monkeypatch.delenv("IPFS_ACCELERATE_REDIS_URL")
    monkeypatch.setenv("IPFS_ACCELERATE_STATE_STORE", redis_url)
    monkeypatch.setenv("IPFS_ACCELERATE_REDIS_NAMESPACE", namespace)
    monkeypatch.setenv("IPFS_ACCELERATE_REDIS_FAIL_CLOSED", "1")
    pm = _pm(echo_backend_module, entry_point)
    with LocalServer(echo_backend_module.EchoServer()) as srv:
        client = Client([BackendConfig(name="echo", keys=["test-key-1"], base_url=srv.url,
                                       requests_per_minute=600)], plugin_manager=pm)
        with client:
            store = client._store
            assert isinstance(store, RedisStateStore)
            assert store.namespace == namespace and store.fail_closed
            assert client.call("echo", "echo", {"n": 1}).text == '{"n": 1}'
            snap = client.stats().to_dict()["keys"]
            (key,) = snap.values()
            assert key["limiter"]["shared"] is True and key["limiter"]["requests_per_minute"] == 600
        store.close()


def test_shared_stats_and_in_flight_counts(redis_url, namespace, echo_backend_module) -> None:
    store = RedisStateStore(redis_url, namespace=namespace, socket_timeout=5.0)
    stats = RedisSharedStats(store)
    release = threading.Event()
    arrived = threading.Event()
    echo = echo_backend_module.EchoServer()

    def app(req):
        if req.json().get("hold"):
            arrived.set()
            release.wait(10)
        return echo(req)

    pm = _pm(echo_backend_module, RedisStatePlugin(store=store), stats)
    with LocalServer(app) as srv:
        srv.script(ServerResponse.json({"error": {"message": "slow down"}}, 429,
                                       headers={"retry-after": "0"}))
        client = Client([BackendConfig(name="echo", keys=["test-key-1"], base_url=srv.url)],
                        ClientConfig(max_concurrency=2, retry=RetryPolicy(base_delay=0.001)),
                        plugin_manager=pm)
        key_id = client.backends["echo"].config.keys[0].key_id
        with client:
            assert len(client.map([Request(backend="echo", operation="echo", payload={"n": i})
                                   for i in range(5)])) == 5
            held = client.submit("echo", "echo", {"hold": True})
            assert arrived.wait(10)
            assert store.counter(f"in_flight/echo/{key_id}").value() == 1
            release.set()
            held.result(10)
        counts = store.counters()
    assert counts[f"requests/echo/{key_id}/success"] == 6
    assert counts[f"retries/echo/{key_id}"] == 1
    assert counts[f"rate_limited/echo/{key_id}"] == 1
    assert counts[f"in_flight/echo/{key_id}"] == 0
    store.close()


def test_plugin_needs_a_url_or_a_store() -> None:
    with pytest.raises(TypeError):
        RedisStatePlugin()


def test_a_client_closes_the_redis_store_it_made_never_a_shared_one(
        monkeypatch, redis_url, namespace, echo_backend_module) -> None:
    closed: list = []
    original = RedisStateStore.close

    def close(self) -> None:
        closed.append(self)
        original(self)

    monkeypatch.setattr(RedisStateStore, "close", close)
    monkeypatch.setenv("IPFS_ACCELERATE_REDIS_NAMESPACE", namespace)
    pm = _pm(echo_backend_module, entry_point)
    shared = RedisStateStore(redis_url, namespace=namespace)
    with LocalServer(echo_backend_module.EchoServer()) as srv:
        backends = [BackendConfig(name="echo", keys=["test-key-1"], base_url=srv.url)]
        with Client(backends, ClientConfig(state_store=redis_url), plugin_manager=pm) as own, \
                Client(backends, ClientConfig(state_store=shared), plugin_manager=pm) as lent, \
                Client(backends, plugin_manager=pm) as plain:
            for c in (own, lent, plain):
                assert c.call("echo", "echo", {"n": 1}).text == '{"n": 1}'
            made = own._store
            assert isinstance(made, RedisStateStore) and made is not shared
            assert not isinstance(plain._store, RedisStateStore)  # installed, not named
    assert closed == [made]  # the shared store stays open for its owner
    assert shared.counter("still-open").incr() == 1
    shared.close()


def test_the_redis_limiter_and_breaker_follow_the_store_protocols() -> None:
    import inspect

    from ipfs_accelerate_py.state import Breaker, Limiter
    from ipfs_accelerate_redis.breaker import RedisBreaker
    from ipfs_accelerate_redis.limiter import RedisLimiter

    for protocol, cls in ((Limiter, RedisLimiter), (Breaker, RedisBreaker)):
        assert issubclass(cls, protocol)
        for name, member in vars(protocol).items():
            if name.startswith("_") or not callable(member):
                continue
            impl = getattr(cls, name)
            assert impl is not member, f"{cls.__name__}.{name} is missing"
            assert list(inspect.signature(impl).parameters) == list(
                inspect.signature(member).parameters), f"{cls.__name__}.{name}"
