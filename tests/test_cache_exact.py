"""The exact response cache through the whole pipeline, over real HTTP (the OpenAI
protocol fake): hits before the queue, bypass and refresh, TTL, streams, namespaces,
per-client/backend/request switches, failures never cached."""

from __future__ import annotations

import threading

import pytest
from ipfs_accelerate_openai.server import OpenAIServer

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, Request
from ipfs_accelerate_py.caching import CacheConfig, CacheHit, MemoryCacheStore
from ipfs_accelerate_py.errors import ConfigError, InvalidRequest
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import LocalServer, make_client

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}


@pytest.fixture
def server():
    with LocalServer(OpenAIServer(models=("gpt-4o-mini", "gpt-4o", "text-embedding-3-small"))) as srv:
        yield srv


def chats(server) -> int:
    return sum(1 for r in server.requests if r.path.endswith("/chat/completions"))


def client(server, cfg=None, **backend):
    return make_client("openai", server.url + "/v1", config={"cache": cfg}, **backend)


def test_hit_resolves_without_a_key_token_or_attempt(server):
    finished = []

    class Watch:
        def accelerate_on_finished(self, event):
            finished.append(event)

    with client(server, CacheConfig()) as c:
        c.add_observer(Watch())
        first = c.call("openai", "chat", CHAT)
        assert first.cache is None and first.key_id is not None
        key_before = c.stats().keys
        second = c.call("openai", "chat", CHAT)
        assert chats(server) == 1
        assert second.text == first.text and second.usage == first.usage
        assert isinstance(second.cache, CacheHit) and second.cache.kind == "exact"
        assert second.key_id is None and second.attempts == 0
        # a hit costs exactly nothing: priced at zero, never counted as "no price"
        assert first.cost is not None and first.cost > 0 and second.cost == 0
        assert c.stats().costs["total"]["unpriced"] == 0
        assert c.stats().costs["total"]["spend"] == str(first.cost.normalize())
        assert second.request_id != first.request_id
        # the key saw one request only: no slot, no limiter token, no tokens booked
        assert c.stats().keys == key_before
        assert finished[-1].usage is None and finished[-1].attempts == 0
        st = c.stats().cache
        assert (st["hits"], st["misses"], st["writes"]) == (1, 1, 1)
        assert st["store"]["entries"] == 1
        assert "cache: 1 hits" in c.stats().table()


def test_off_by_default(server):
    with client(server) as c:
        c.call("openai", "chat", CHAT)
        r = c.call("openai", "chat", CHAT)
        assert r.cache is None and chats(server) == 2
        assert c.stats().cache is None


def test_output_irrelevant_fields_share_the_entry_relevant_ones_do_not(server):
    with client(server, True) as c:
        c.call("openai", "chat", CHAT)
        assert c.call("openai", "chat", {**CHAT, "user": "u-1", "metadata": {"a": "b"}}).cache
        assert c.call("openai", "chat", {**CHAT, "temperature": 0.5}).cache is None
        assert c.call("openai", "chat", {**CHAT, "model": "gpt-4o"}).cache is None
        assert c.call("openai", "chat", {**CHAT, "seed": 4}).cache is None
        assert chats(server) == 4


def test_bypass_and_refresh_per_request(server):
    with client(server, True) as c:
        first = c.call("openai", "chat", CHAT)
        assert c.call(Request("chat", CHAT, backend="openai", cache=False)).cache is None
        assert chats(server) == 2
        server.script(ServerResponse.json({
            "id": "chatcmpl-new", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "a fresh answer"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}}))
        fresh = c.call(Request("chat", CHAT, backend="openai", cache="refresh"))
        assert fresh.cache is None and fresh.text == "a fresh answer" != first.text
        again = c.call("openai", "chat", CHAT)
        assert again.cache is not None and again.text == "a fresh answer"
        assert chats(server) == 3
        assert c.stats().cache["refreshed"] == 1


def test_per_backend_and_per_request_switches(server):
    with client(server, None, cache=True) as c:  # BackendConfig(cache=True) alone
        c.call("openai", "chat", CHAT)
        assert c.call("openai", "chat", CHAT).cache is not None
    server.clear()
    with client(server, CacheConfig(), cache=False) as c:  # the backend opts out
        c.call("openai", "chat", CHAT)
        assert c.call("openai", "chat", CHAT).cache is None
        assert c.call(Request("chat", CHAT, backend="openai", cache=True)).cache is None
        assert c.call(Request("chat", CHAT, backend="openai", cache=True)).cache is not None
    server.clear()
    with client(server) as c:  # nothing configured: a request asks
        c.call(Request("chat", CHAT, backend="openai", cache=True))
        assert c.call(Request("chat", CHAT, backend="openai", cache=True)).cache is not None
        assert c.call("openai", "chat", CHAT).cache is None  # others still bypass
    with client(server, CacheConfig(enabled=False)) as c:
        c.call("openai", "chat", CHAT)
        assert c.call("openai", "chat", CHAT).cache is None


def test_ttl_per_entry(server):
    now = [1_000_000.0]
    with client(server, CacheConfig(ttl=60)) as c:
        c._pipeline.cache.wall_clock = lambda: now[0]
        c.call("openai", "chat", CHAT)
        now[0] += 59
        assert c.call("openai", "chat", CHAT).cache is not None
        now[0] += 2
        assert c.call("openai", "chat", CHAT).cache is None
        assert chats(server) == 2
        assert c.call("openai", "chat", CHAT).cache is not None


def test_streams_are_cached_whole_and_replayed_as_streams(server):
    with client(server, True) as c:
        with c.stream("openai", "chat", CHAT) as s:
            pieces = [ch.text for ch in s]
        assert len(pieces) > 1 and s.cache is None
        text = "".join(pieces)
        assert c.call("openai", "chat", CHAT).text == text
        replay = c.stream("openai", "chat", CHAT)
        assert replay.cache is not None and replay.key_id is None
        assert replay.collect().text == text and replay.finish_reason == "stop"
        assert chats(server) == 1
        # a stream closed early is not a whole answer: not cached
        other = {**CHAT, "seed": 9}
        s = c.stream("openai", "chat", other)
        next(s)
        s.close()
        assert c.call("openai", "chat", other).cache is None


def test_namespaces_never_share_entries():
    store = MemoryCacheStore()
    with LocalServer(OpenAIServer()) as srv:
        a = make_client("openai", srv.url + "/v1", config={"cache": CacheConfig(store=store,
                                                                                namespace="a")})
        b = make_client("openai", srv.url + "/v1", config={"cache": CacheConfig(store=store,
                                                                                namespace="b")})
        a2 = make_client("openai", srv.url + "/v1", config={"cache": CacheConfig(store=store,
                                                                                 namespace="a")})
        with a, b, a2:
            a.call("openai", "chat", CHAT)
            assert b.call("openai", "chat", CHAT).cache is None
            assert a2.call("openai", "chat", CHAT).cache.namespace == "a"
            assert chats(srv) == 2
        assert store.info()["entries"] == 2  # a shared store object is not closed


def test_failures_and_side_effecting_operations_are_not_cached(server):
    with client(server, True) as c:
        server.script(ServerResponse.json({"error": {"message": "bad", "type": "invalid_request_error"}},
                                          400))
        with pytest.raises(InvalidRequest):
            c.call("openai", "chat", CHAT)
        assert c.call("openai", "chat", CHAT).cache is None
        c.call("openai", "models", {})
        assert c.call("openai", "models", {}).cache is None  # not a pure operation
        assert c.stats().cache["bypassed"] == 2


def test_embeddings_are_cached_per_input(server):
    with client(server, True) as c:
        first = c.call("openai", "embeddings", {"model": "text-embedding-3-small", "input": "x"})
        again = c.call("openai", "embeddings", {"model": "text-embedding-3-small", "input": "x"})
        assert again.cache is not None and again.data == first.data


def test_a_damaged_entry_is_a_miss_and_is_dropped(server):
    store = MemoryCacheStore()
    with client(server, CacheConfig(store=store)) as c:
        first = c.call("openai", "chat", CHAT)
        (entry,) = list(store.entries())
        import attrs

        bad = bytearray(entry.body)
        bad[-3] ^= 0x20
        store.put(attrs.evolve(entry, body=bytes(bad)))
        r = c.call("openai", "chat", CHAT)
        assert r.cache is None and r.text == first.text
        assert c.stats().cache["corrupt"] == 1
        assert c.call("openai", "chat", CHAT).cache is not None  # rewritten


def test_a_failing_store_is_a_miss_never_an_error(server):
    class Broken(MemoryCacheStore):
        def get(self, *a):
            raise OSError("disk on fire")

        def put(self, entry):
            raise OSError("disk on fire")

    with client(server, CacheConfig(store=Broken())) as c:
        assert c.call("openai", "chat", CHAT).text
        assert c.call("openai", "chat", CHAT).cache is None
        assert c.stats().cache["errors"] == 4


def test_bad_cache_settings_are_named():
    with pytest.raises(ConfigError, match="cache"):
        Request("chat", CHAT, cache="sometimes")
    with pytest.raises(ConfigError, match="cache.store"):
        CacheConfig(store="nowhere")
    with pytest.raises(ConfigError, match="cache.ttl"):
        CacheConfig(ttl=0)


def test_unknown_store_scheme_is_a_clear_error(server):
    with pytest.raises(ConfigError, match="no installed plugin makes a cache store for ftp"):
        Client([BackendConfig("openai", keys=["test-key-1"], base_url=server.url + "/v1")],
               ClientConfig(cache="ftp://somewhere"))


def test_many_threads_one_answer_each(server):
    with client(server, True, max_concurrent_per_key=8) as c:
        prompts = [{**CHAT, "messages": [{"role": "user", "content": f"p{i % 20}"}]}
                   for i in range(200)]
        out: list = []
        lock = threading.Lock()

        def run(chunk):
            got = [c.call("openai", "chat", p) for p in chunk]
            with lock:
                out.extend(zip(chunk, got))

        threads = [threading.Thread(target=run, args=(prompts[i::8],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(out) == 200
        by_prompt: dict = {}
        for p, r in out:
            by_prompt.setdefault(p["messages"][0]["content"], set()).add(r.text)
        assert all(len(v) == 1 for v in by_prompt.values())  # never a wrong answer
        st = c.stats().cache
        assert st["hits"] + st["misses"] == 200 and st["store"]["entries"] == 20


def test_invalidate_by_key_model_age_and_namespace(server):
    now = [5_000_000.0]
    store = MemoryCacheStore()
    with client(server, CacheConfig(store=store, namespace="mine")) as c, \
            client(server, CacheConfig(store=store, namespace="theirs")) as other:
        c._pipeline.cache.wall_clock = other._pipeline.cache.wall_clock = lambda: now[0]
        first = c.call("openai", "chat", CHAT)
        now[0] += 100
        c.call("openai", "chat", {**CHAT, "model": "gpt-4o"})
        other.call("openai", "chat", CHAT)
        key = c.call("openai", "chat", CHAT).cache.key
        assert c.invalidate_cache(older_than=150) == 0
        assert c.invalidate_cache(older_than=50) == 1  # the first entry, this namespace only
        assert c.call("openai", "chat", CHAT).cache is None and first.text
        assert c.invalidate_cache(key=key) == 1
        assert c.invalidate_cache(model="gpt-4o") == 1
        assert other.call("openai", "chat", CHAT).cache is not None  # untouched
        assert c.invalidate_cache(all_namespaces=True) == 1
        assert store.info()["entries"] == 0
    with client(server) as c:
        assert c.invalidate_cache() == 0


def test_nothing_about_the_api_key_is_stored(server, tmp_path):
    path = tmp_path / "c.sqlite3"
    secret = "test-key-cache-9f8e7d6c5b4a"
    with make_client("openai", server.url + "/v1", keys=[secret],
                     config={"cache": f"sqlite://{path}"}) as c:
        c.call("openai", "chat", CHAT)
        c.stream("openai", "chat", {**CHAT, "seed": 1}).collect()
        key_id = c.stats().keys and next(iter(c.stats().keys)).split("/", 1)[1]
        assert c.call("openai", "chat", CHAT).cache is not None
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in blob and key_id.encode() not in blob
    assert b"Hello there" not in blob  # nor the request: only its hash and the answer


def test_a_store_url_password_never_shows_in_a_repr():
    cfg = ClientConfig(cache="redis://:hunter2-secret@cache.example:6379/0")
    assert "hunter2-secret" not in repr(cfg) and "cache.example" in repr(cfg)
