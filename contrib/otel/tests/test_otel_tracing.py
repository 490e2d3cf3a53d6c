"""Tracing, read back from the OpenTelemetry SDK's in-memory exporter."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, Request, RetryPolicy
from ipfs_accelerate_py.events import Outcome, RequestFinished, RequestQueued, RequestStarted
from ipfs_accelerate_py.plugins import PluginManager
from ipfs_accelerate_py.results import Result, Usage
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import LocalServer

from ipfs_accelerate_otel import TracingObserver
from ipfs_accelerate_otel import plugin as otel_plugin

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
import echo_backend  # noqa: E402

SECRET = "test-key-1-do-not-leak"


@pytest.fixture
def traced():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _client(provider, server, **observer_kw):
    tracing = TracingObserver(provider, **observer_kw)
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(echo_backend, name="echo")
    pm.add_plugin(tracing, name="otel")
    client = Client([BackendConfig("echo", keys=[SECRET], base_url=server.url)],
                    ClientConfig(max_concurrency=2, retry=RetryPolicy(base_delay=0.001)),
                    plugin_manager=pm)
    return client, tracing


def _all_values(spans) -> str:
    parts = []
    for s in spans:
        parts += [str(v) for v in s.attributes.values()]
        for e in s.events:
            parts += [e.name] + [str(v) for v in e.attributes.values()]
        parts.append(str(s.status.description))
    return " ".join(parts)


def test_a_span_per_request_with_a_child_per_attempt_and_retry_events(traced):
    provider, exporter = traced
    server = LocalServer(echo_backend.EchoServer())
    server.script(ServerResponse.json({"error": {"message": "overloaded"}}, 503),
                  ServerResponse.json({"error": {"message": "slow down"}}, 429,
                                      headers={"retry-after": "0"}))
    try:
        client, tracing = _client(provider, server)
        with client:
            req = Request("echo", {"n": 1, "usage": {"total_tokens": 3}}, backend="echo")
            assert client.call(req).text
    finally:
        server.close()
    spans = exporter.get_finished_spans()
    [root] = [s for s in spans if s.parent is None]
    attempts = sorted((s for s in spans if s.parent is not None), key=lambda s: s.start_time)
    assert [s.name for s in attempts] == ["attempt 1", "attempt 2", "attempt 3"]
    assert all(s.parent.span_id == root.context.span_id for s in attempts)
    assert all(s.context.trace_id == root.context.trace_id for s in attempts)
    assert root.name == "echo"  # no model reported: the operation alone
    a = root.attributes
    assert a["gen_ai.system"] == "echo" and a["gen_ai.operation.name"] == "echo"
    assert a["ipfs_accelerate.request_id"] == req.request_id
    assert a["ipfs_accelerate.attempts"] == 3 and a["ipfs_accelerate.outcome"] == "success"
    assert a["ipfs_accelerate.queue_time"] >= 0
    assert root.status.status_code is not StatusCode.ERROR
    retries = [e for e in root.events if e.name == "retry"]
    assert [(e.attributes["error.type"], e.attributes["http.response.status_code"]) for e in retries] \
        == [("transient", 503), ("rate_limited", 429)]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[0].attributes["error.type"] == "transient"
    assert attempts[2].status.status_code is not StatusCode.ERROR
    # Spans nest in time: each attempt inside the request.
    assert all(root.start_time <= s.start_time <= s.end_time <= root.end_time for s in attempts)
    # Never the key (only its public id), never content by default.
    assert SECRET not in _all_values(spans)
    assert a["ipfs_accelerate.key_id"] and a["ipfs_accelerate.key_id"] != SECRET
    assert not any(e.name.startswith("gen_ai.content") for s in spans for e in s.events)
    assert tracing.open_spans() == 0


def test_a_failed_request_has_an_error_status_and_type(traced):
    from ipfs_accelerate_py.errors import NotFound

    provider, exporter = traced
    server = LocalServer(echo_backend.EchoServer())
    server.script(ServerResponse.json({"error": {"message": "no such thing"}}, 404))
    try:
        client, _ = _client(provider, server)
        with client:
            with pytest.raises(NotFound):
                client.call(Request("echo", {"n": 1}, backend="echo"))
    finally:
        server.close()
    [root] = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["error.type"] == "not_found"
    assert root.attributes["ipfs_accelerate.outcome"] == "error"


def _events(model="gpt-4o-mini", **finished_kw):
    t = time.monotonic()
    queued = RequestQueued("r-1", "openai", "chat", 1, 1, t, model=model,
                           payload={"model": model, "messages": [{"role": "user",
                                                                  "content": "Say hello"}]})
    started = RequestStarted("r-1", "openai", "chat", "key-a", 1, 0.25, t + 0.25)
    finished = RequestFinished("r-1", "openai", "chat", Outcome.SUCCESS, 0.5, "key-a", 1,
                               usage=Usage.of(12, 5), time=t + 0.5, model=model + "-2024",
                               response_id="chatcmpl-123",
                               result=Result(text="Hello there", model=model), **finished_kw)
    return queued, started, finished


@pytest.mark.parametrize("capture", [False, True])
def test_gen_ai_attributes_and_content_only_when_enabled(traced, capture):
    provider, exporter = traced
    obs = TracingObserver(provider, capture_content=capture)
    q, s, f = _events()
    obs.accelerate_on_queued(q)
    obs.accelerate_on_started(s)
    obs.accelerate_on_finished(f)
    spans = exporter.get_finished_spans()
    [root] = [x for x in spans if x.parent is None]
    assert root.name == "chat gpt-4o-mini"
    a = root.attributes
    assert (a["gen_ai.system"], a["gen_ai.operation.name"], a["gen_ai.request.model"]) == (
        "openai", "chat", "gpt-4o-mini")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12, 5)
    assert a["gen_ai.response.id"] == "chatcmpl-123"
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024"
    assert a["ipfs_accelerate.queue_time"] == 0.25
    # Span times come from the events' clock.
    assert (root.end_time - root.start_time) == pytest.approx(0.5e9, abs=2e6)
    content = "Say hello" in _all_values(spans) or "Hello there" in _all_values(spans)
    assert content is capture
    if capture:
        names = [e.name for e in root.events]
        assert names == ["gen_ai.content.prompt", "gen_ai.content.completion"]


def test_the_request_cost_is_an_attribute_when_priced(traced):
    from decimal import Decimal

    provider, exporter = traced
    obs = TracingObserver(provider)
    for cost in (Decimal("0.000123"), None):
        q, s, f = _events(cost=cost)
        obs.accelerate_on_queued(q)
        obs.accelerate_on_started(s)
        obs.accelerate_on_finished(f)
    roots = [x for x in exporter.get_finished_spans() if x.parent is None]
    assert [r.attributes.get("ipfs_accelerate.cost_usd") for r in roots] == [0.000123, None]


def test_system_names_follow_the_conventions(traced):
    provider, exporter = traced
    obs = TracingObserver(provider)
    t = time.monotonic()
    obs.accelerate_on_queued(RequestQueued("r-2", "claude", "chat", 1, 1, t))
    obs.accelerate_on_finished(RequestFinished("r-2", "claude", "chat", Outcome.CANCELLED, 0.1,
                                               None, 0, time=t + 0.1))
    [span] = exporter.get_finished_spans()
    assert span.attributes["gen_ai.system"] == "anthropic"
    assert span.attributes["error.type"] == "cancelled"


def test_make_observer_hook(traced):
    provider, _ = traced
    obs = otel_plugin.accelerate_make_observer(
        name="otel", options={"tracer_provider": provider, "capture_content": True},
        config=ClientConfig())
    assert isinstance(obs, TracingObserver) and obs.capture_content
    assert otel_plugin.accelerate_make_observer(name="alerts", options={}, config=None) is None
