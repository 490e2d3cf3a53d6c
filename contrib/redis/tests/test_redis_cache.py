"""The response cache in a real redis-server: found through the hook by its URL, shared
by clients and processes, bounded, invalidated, damaged entries are misses."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from ipfs_accelerate_openai import plugin as openai_plugin
from ipfs_accelerate_openai.server import OpenAIServer

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig
from ipfs_accelerate_py.caching import CacheConfig
from ipfs_accelerate_py.caching.entry import CacheEntry, decode_body, encode_result
from ipfs_accelerate_py.plugins import PluginManager
from ipfs_accelerate_py.results import Result
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_redis import plugin as redis_plugin
from ipfs_accelerate_redis.cache import RedisCacheStore

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}


def _client(url: str, cache, pm=None) -> Client:
    if pm is None:
        pm = PluginManager(load_entry_points=False)
        pm.add_plugin(openai_plugin, name="openai")
        pm.add_plugin(redis_plugin, name="redis")
    return Client([BackendConfig("openai", keys=["test-key-1"], base_url=url + "/v1")],
                  ClientConfig(cache=cache), plugin_manager=pm)


def _entry(ns: str, key: str, text: str = "t", model: str = "m", created: float = 1.0):
    return CacheEntry(ns, key, "openai", "chat", model, created, None,
                      encode_result(ns, key, Result(text=text)))


def test_a_redis_url_finds_the_store_through_the_hook(monkeypatch, redis_url, namespace):
    monkeypatch.setenv("IPFS_ACCELERATE_REDIS_NAMESPACE", namespace)
    with LocalServer(OpenAIServer()) as srv:
        with _client(srv.url, redis_url) as a, _client(srv.url, redis_url) as b:
            assert isinstance(a._pipeline.cache.store, RedisCacheStore)
            first = a.call("openai", "chat", CHAT)
            hit = b.call("openai", "chat", CHAT)  # another client, another connection
            assert hit.cache is not None and hit.cache.store == "redis"
            assert hit.text == first.text and len(srv.requests) == 1
            assert b.stats().cache["store"]["entries"] == 1


def test_shared_across_processes(redis_url, namespace):
    with LocalServer(OpenAIServer()) as srv:
        child = textwrap.dedent(f"""
            from ipfs_accelerate_py import BackendConfig, Client, ClientConfig
            from ipfs_accelerate_py.caching import CacheConfig
            from ipfs_accelerate_redis.cache import RedisCacheStore
            store = RedisCacheStore({redis_url!r}, prefix={namespace!r})
            with Client([BackendConfig("openai", keys=["test-key-2"], base_url={srv.url + '/v1'!r})],
                        ClientConfig(cache=CacheConfig(store=store))) as c:
                print(c.call("openai", "chat", {CHAT!r}).text)
        """)
        out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                             timeout=120, env={**os.environ})
        assert out.returncode == 0, out.stderr
        store = RedisCacheStore(redis_url, prefix=namespace)
        with _client(srv.url, CacheConfig(store=store)) as c:
            hit = c.call("openai", "chat", CHAT)
        assert hit.cache is not None and hit.text == out.stdout.strip()
        assert len(srv.requests) == 1
        store.close()


def test_bounds_evict_least_recently_used(redis_url, namespace):
    store = RedisCacheStore(redis_url, prefix=namespace, max_entries=3)
    for k in "abc":
        store.put(_entry("n", k))
    assert store.get("n", "a", 2.0) is not None  # a is used again
    store.put(_entry("n", "d"))
    assert store.get("n", "b", 0.0) is None
    assert {e.key for e in store.entries()} == {"a", "c", "d"}
    info = store.info()
    assert (info["entries"], info["evictions"]) == (3, 1)
    assert info["bytes"] == sum(e.size for e in store.entries())
    small = RedisCacheStore(redis_url, prefix=namespace + "b", max_bytes=3 * _entry("n", "x").size)
    for k in "vwxyz":
        small.put(_entry("n", k))
    assert small.info()["entries"] == 3
    store.close()
    small.close()


def test_invalidate_and_damaged_entries(redis_url, namespace):
    store = RedisCacheStore(redis_url, prefix=namespace)
    store.put(_entry("a", "1", model="m1", created=10))
    store.put(_entry("a", "2", model="m2", created=20))
    store.put(_entry("b", "1", model="m1", created=30))
    assert store.invalidate(model="m1", namespace="a") == 1
    assert store.invalidate(created_before=25) == 1
    assert [(e.namespace, e.key) for e in store.entries()] == [("b", "1")]
    store.redis.hset(store.prefix + "e:b\n1", "body", b"IAC1 garbage")
    assert decode_body("b", "1", store.get("b", "1", 0.0).body) is None
    store.redis.hdel(store.prefix + "e:b\n1", "created")
    assert decode_body("b", "1", store.get("b", "1", 0.0).body) is None
    assert store.invalidate() == 1 and store.info() ["entries"] == 0
    store.close()


def test_a_damaged_entry_through_the_client_is_a_miss(redis_url, namespace):
    store = RedisCacheStore(redis_url, prefix=namespace)
    with LocalServer(OpenAIServer()) as srv, _client(srv.url, CacheConfig(store=store)) as c:
        first = c.call("openai", "chat", CHAT)
        (e,) = list(store.entries())
        store.redis.hset(store.prefix + f"e:default\n{e.key}", "body", e.body[:-5])
        again = c.call("openai", "chat", CHAT)
        assert again.cache is None and again.text == first.text
        assert c.call("openai", "chat", CHAT).cache is not None
    store.close()


def test_redis_down_is_a_miss_not_an_error(own_redis, namespace):
    store = RedisCacheStore(own_redis.url, prefix=namespace, socket_timeout=0.5)
    with LocalServer(OpenAIServer()) as srv, _client(srv.url, CacheConfig(store=store)) as c:
        c.call("openai", "chat", CHAT)
        own_redis.kill()
        r = c.call("openai", "chat", CHAT)
        assert r.cache is None and r.text
        assert c.stats().cache["errors"] >= 1
    store.close()
