"""Result.cost from each provider's real usage fields, over real HTTP against the protocol
servers: OpenAI (prompt_tokens_details.cached_tokens, completion_tokens_details.
reasoning_tokens, stream_options.include_usage), Anthropic (cache_read_input_tokens,
cache_creation_input_tokens, message_start / message_delta usage), Gemini (usageMetadata
with cachedContentTokenCount and thoughtsTokenCount).  Expected costs are worked out here
from the published per-1M-token prices, not by the code under test."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Callable

import pytest

from ipfs_accelerate_py.server import ServerRequest, ServerResponse
from ipfs_accelerate_sim import testing
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_claude.server import ClaudeServer
from ipfs_accelerate_gemini.server import GeminiServer
from ipfs_accelerate_openai.server import OpenAIServer

M = Decimal(1_000_000)
USER = [{"role": "user", "content": "What does a prompt cache save on a long document?"}]


def _objects(body: bytes, edit: Callable[[dict], None]) -> bytes:
    obj = json.loads(body)
    for o in obj if isinstance(obj, list) else [obj]:
        edit(o)
    return json.dumps(obj).encode()


def rewrite(proto: Any, edit: Callable[[dict], None]) -> Callable[[ServerRequest], ServerResponse]:
    """The protocol's own answer, with ``edit`` applied to each JSON object it carries (the
    body, or each SSE ``data:`` event of a stream): adds the usage fields the simulators
    do not report, in the provider's own shape."""

    def respond(req: ServerRequest) -> ServerResponse:
        resp = proto(req)
        if isinstance(resp.body, bytes):
            return ServerResponse(resp.status, resp.headers, _objects(resp.body, edit))
        out = []
        for event in b"".join(resp.body).split(b"\n\n"):
            lines = []
            for line in event.split(b"\n"):
                if line.startswith(b"data: ") and line[6:].strip().startswith(b"{"):
                    line = b"data: " + _objects(line[6:], edit)
                lines.append(line)
            out.append(b"\n".join(lines))
        return ServerResponse.stream([e + b"\n\n" for e in out[:-1]] + [out[-1]],
                                     headers=resp.headers)

    return respond


# ------------------------------------------------------------------------------ OpenAI
@pytest.fixture
def openai_srv():
    with LocalServer(OpenAIServer(models=("gpt-4o-mini-2024-07-18", "o3-mini"))) as srv:
        yield srv


def _openai_details(obj: dict) -> None:
    usage = obj.get("usage")
    if usage:
        usage["prompt_tokens_details"] = {"cached_tokens": 3, "audio_tokens": 0}
        usage["completion_tokens_details"] = {"reasoning_tokens": 2, "audio_tokens": 0}


def test_openai_cached_and_reasoning_tokens_price_the_result(openai_srv):
    openai_srv.script(rewrite(openai_srv.protocol, _openai_details))
    with testing.make_client("openai", openai_srv.url + "/v1") as c:
        res = c.call("openai", "chat", {"model": "gpt-4o-mini-2024-07-18", "messages": USER})
    body = json.loads(openai_srv.last.body)
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    u = res.usage
    assert (u.cached_tokens, u.reasoning_tokens) == (3, 2) and u.prompt_tokens > 3
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
    expected = ((u.prompt_tokens - 3) * Decimal("0.15") + 3 * Decimal("0.075")
                + u.completion_tokens * Decimal("0.60")) / M
    assert res.cost == expected and isinstance(res.cost, Decimal)


def test_openai_stream_usage_from_include_usage_prices_the_stream(openai_srv):
    openai_srv.script(rewrite(openai_srv.protocol, _openai_details))
    with testing.make_client("openai", openai_srv.url + "/v1") as c:
        stream = c.stream("openai", "chat", {"model": "o3-mini", "messages": USER})
        assert stream.cost is None  # known when the stream ends
        res = stream.collect()
        stats = c.stats()
    assert json.loads(openai_srv.last.body)["stream_options"] == {"include_usage": True}
    u = res.usage
    assert (u.cached_tokens, u.reasoning_tokens) == (3, 2)
    # o3-mini: $1.10 input, $0.55 cached, $4.40 output.
    expected = ((u.prompt_tokens - 3) * Decimal("1.10") + 3 * Decimal("0.55")
                + u.completion_tokens * Decimal("4.40")) / M
    assert res.cost == stream.cost == expected
    assert Decimal(stats.costs["models"]["openai/o3-mini"]["spend"]) == expected
    assert stats.costs["models"]["openai/o3-mini"]["tokens"]["reasoning"] == 2


def test_an_unknown_model_has_no_cost_and_is_counted(openai_srv):
    with LocalServer(OpenAIServer(models=("gpt-sim-unknown",))) as srv:
        with testing.make_client("openai", srv.url + "/v1") as c:
            res = c.call("openai", "chat", {"model": "gpt-sim-unknown", "messages": USER})
            stats = c.stats()
    assert res.usage is not None and res.cost is None
    assert stats.costs["total"]["unpriced"] == 1 and stats.costs["total"]["priced"] == 0
    assert stats.backends["openai"]["costs"]["unpriced"] == 1
    assert "no price" in stats.table()


def test_a_backend_option_overrides_the_default_price(openai_srv):
    prices = {"gpt-4o-mini": {"input": "1", "output": "2", "per_request": "0.001"}}
    with testing.make_client("openai", openai_srv.url + "/v1", options={"prices": prices}) as c:
        res = c.call("openai", "chat", {"model": "gpt-4o-mini-2024-07-18", "messages": USER})
    u = res.usage
    assert res.cost == (u.prompt_tokens * 1 + u.completion_tokens * 2) / M + Decimal("0.001")


# ------------------------------------------------------------------------------ Anthropic
CLAUDE = "claude-3-5-haiku-20241022"


def _claude_cache(obj: dict) -> None:
    message = obj.get("message", obj)
    usage = message.get("usage") if isinstance(message, dict) else None
    if usage is not None and "input_tokens" in usage:
        usage.update(cache_read_input_tokens=100, cache_creation_input_tokens=40)


def _claude_expected(input_tokens: int, output_tokens: int) -> Decimal:
    # claude-3-5-haiku: $0.80 input, $0.08 cache read, $1.00 cache write, $4.00 output.
    return (input_tokens * Decimal("0.80") + 100 * Decimal("0.08") + 40 * Decimal("1.00")
            + output_tokens * Decimal("4.00")) / M


def test_claude_cache_reads_and_writes_price_the_message():
    proto = ClaudeServer(models=[CLAUDE])
    with LocalServer(proto) as srv:
        srv.script(rewrite(proto, _claude_cache))
        with testing.make_client("claude", srv.url) as c:
            res = c.call("claude", "messages", {"model": CLAUDE, "max_tokens": 50,
                                                "messages": USER})
    raw = res.raw["usage"]
    assert raw["cache_read_input_tokens"] == 100
    u = res.usage
    # Anthropic's input_tokens leave the cache out; Usage counts it in the prompt.
    assert u.prompt_tokens == raw["input_tokens"] + 140
    assert (u.cached_tokens, u.cache_write_tokens) == (100, 40)
    assert res.cost == _claude_expected(raw["input_tokens"], raw["output_tokens"])


def test_claude_stream_takes_cache_counts_from_message_start_and_output_from_message_delta():
    proto = ClaudeServer(models=[CLAUDE])
    message = proto.generate({"model": CLAUDE, "max_tokens": 30, "messages": USER})
    message["usage"].update(cache_read_input_tokens=100, cache_creation_input_tokens=40)
    events = proto.stream_events(message)
    assert b"cache_read_input_tokens" not in events[-2]  # message_delta: output only
    with LocalServer(proto) as srv:
        srv.script(ServerResponse.stream(events))
        with testing.make_client("claude", srv.url) as c:
            res = c.stream("claude", "messages", {"model": CLAUDE, "max_tokens": 30,
                                                  "messages": USER}).collect()
    usage = message["usage"]
    assert res.usage.completion_tokens == usage["output_tokens"]
    assert res.cost == _claude_expected(usage["input_tokens"], usage["output_tokens"])


# ------------------------------------------------------------------------------ Gemini
GEMINI = "gemini-2.5-flash"


def _gemini_meta(obj: dict) -> None:
    meta = obj.get("usageMetadata")
    if meta and "candidatesTokenCount" in meta:
        meta.update(cachedContentTokenCount=4, thoughtsTokenCount=7,
                    totalTokenCount=meta["totalTokenCount"] + 7)


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_usage_metadata_with_cache_and_thoughts(stream):
    proto = GeminiServer(models=(GEMINI,))
    with LocalServer(proto) as srv:
        srv.script(rewrite(proto, _gemini_meta))
        with testing.make_client("gemini", srv.url) as c:
            payload = {"model": GEMINI, "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
            res = (c.stream("gemini", "generate", payload).collect() if stream
                   else c.call("gemini", "generate", payload))
    u = res.usage
    # Thoughts are billed as output and are not in candidatesTokenCount: Usage adds them.
    assert (u.cached_tokens, u.reasoning_tokens) == (4, 7)
    candidates = u.completion_tokens - 7
    assert candidates > 0 and u.total_tokens == u.prompt_tokens + u.completion_tokens
    # gemini-2.5-flash: $0.30 input, $0.075 cached, $2.50 output (thinking included).
    expected = ((u.prompt_tokens - 4) * Decimal("0.30") + 4 * Decimal("0.075")
                + (candidates + 7) * Decimal("2.50")) / M
    assert res.cost == expected
