"""The response cache stage under the asyncio driver, over real HTTP (the OpenAI protocol
fake): a hit resolves before the queue with no attempt, a stream is replayed as an async
stream, ``cache=False`` bypasses, and budgets and the cache share the same stages."""

from __future__ import annotations

import asyncio

import pytest
from ipfs_accelerate_openai.server import OpenAIServer

from ipfs_accelerate_py import BackendConfig, Request
from ipfs_accelerate_py.aio import AsyncClient
from ipfs_accelerate_py.caching import CacheConfig, CacheHit
from ipfs_accelerate_sim.testing import LocalServer

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}


@pytest.fixture
def server():
    with LocalServer(OpenAIServer(models=("gpt-4o-mini",))) as srv:
        yield srv


def chats(server) -> int:
    return sum(1 for r in server.requests if r.path.endswith("/chat/completions"))


def client(server) -> AsyncClient:
    return AsyncClient([BackendConfig("openai", keys=["test-key-1"], base_url=server.url + "/v1")],
                       cache=CacheConfig())


def test_an_async_hit_needs_no_attempt(server):
    async def main():
        async with client(server) as c:
            first = await c.call("openai", "chat", CHAT)
            second = await c.call("openai", "chat", CHAT)
            bypass = await c.call(Request("chat", CHAT, backend="openai", cache=False))
            return first, second, bypass, c.stats().cache

    first, second, bypass, stats = asyncio.run(main(), debug=True)
    assert first.cache is None and bypass.cache is None
    assert isinstance(second.cache, CacheHit) and second.cache.kind == "exact"
    assert second.text == first.text and second.attempts == 0 and second.key_id is None
    assert chats(server) == 2  # the first call and the bypass
    assert (stats["hits"], stats["writes"]) == (1, 1)


def test_an_async_stream_is_cached_whole_and_replayed(server):
    async def main():
        async with client(server) as c:
            texts = []
            for _ in range(2):
                parts = [chunk.text async for chunk in c.stream("openai", "chat", CHAT)]
                texts.append("".join(p or "" for p in parts))
            return texts

    live, replayed = asyncio.run(main(), debug=True)
    assert live and replayed == live
    assert chats(server) == 1
