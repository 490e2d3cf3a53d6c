"""The cache stage through a real client, against a model (hypothesis stateful): every
call is a hit exactly when the model says an entry is there, a hit returns the answer that
was written, and the provider sees exactly the misses."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from ipfs_accelerate_openai.server import OpenAIServer

from ipfs_accelerate_py import Request
from ipfs_accelerate_py.caching import CacheConfig, MemoryCacheStore
from ipfs_accelerate_sim.testing import LocalServer, make_client

SERVER = None


@pytest.fixture(scope="module", autouse=True)
def _close_server():
    yield
    if SERVER is not None:
        SERVER.close()


def server() -> LocalServer:
    global SERVER
    if SERVER is None:
        SERVER = LocalServer(OpenAIServer())
    return SERVER


def payload(i: int, seed: int) -> dict:
    return {"model": "gpt-4o-mini", "seed": seed,
            "messages": [{"role": "user", "content": f"prompt {i}"}]}


class CacheThroughClient(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.srv = server()
        self.store = MemoryCacheStore(max_entries=3)
        self.client = make_client("openai", self.srv.url + "/v1",
                                  config={"cache": CacheConfig(store=self.store)})
        self.present: list[tuple[int, int]] = []  # LRU order, oldest first
        self.answers: dict[tuple[int, int], str] = {}
        self.sent = 0
        self.base = self._chats()
        self.closed = False

    def _chats(self) -> int:
        return sum(1 for r in list(self.srv.requests) if r.path.endswith("/chat/completions"))

    def _touch(self, k: tuple[int, int]) -> None:
        if k in self.present:
            self.present.remove(k)
        self.present.append(k)
        while len(self.present) > 3:
            self.present.pop(0)

    @precondition(lambda self: not self.closed)
    @rule(i=st.integers(0, 4), seed=st.integers(0, 1),
          flag=st.sampled_from([None, None, False, "refresh"]), stream=st.booleans())
    def call(self, i, seed, flag, stream):
        k = (i, seed)
        req = Request("chat", payload(i, seed), backend="openai", cache=flag, stream=stream)
        if stream:
            s = self.client.stream(req)
            text, hit = s.collect().text, s.cache
        else:
            r = self.client.call(req)
            text, hit = r.text, r.cache
        expect_hit = flag is None and k in self.present
        assert (hit is not None) == expect_hit
        if expect_hit:
            assert text == self.answers[k]
            self._touch(k)
        else:
            self.sent += 1
            if flag is not False:
                self.answers[k] = text
                self._touch(k)

    @precondition(lambda self: not self.closed and self.present)
    @rule(data=st.data())
    def invalidate_one(self, data):
        k = data.draw(st.sampled_from(self.present))
        key = self.client.call("openai", "chat", payload(*k)).cache.key  # a hit: its key
        self._touch(k)
        assert self.client.invalidate_cache(key=key) == 1
        self.present.remove(k)

    @precondition(lambda self: not self.closed)
    @rule()
    def invalidate_model(self):
        assert self.client.invalidate_cache(model="gpt-4o-mini") == len(self.present)
        self.present.clear()

    @invariant()
    def provider_saw_exactly_the_misses(self):
        if not self.closed:
            assert self._chats() - self.base == self.sent
            assert self.store.info()["entries"] == len(self.present)

    def teardown(self):
        self.closed = True
        self.client.close()


TestCacheThroughClient = CacheThroughClient.TestCase
TestCacheThroughClient.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
