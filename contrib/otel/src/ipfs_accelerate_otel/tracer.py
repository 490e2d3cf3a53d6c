"""An observer that turns the pipeline's events into OpenTelemetry spans.

One CLIENT span per request, from submission to completion, named after the GenAI
conventions (``"{operation} {model}"``), with one child span per attempt.  Attributes
follow the OpenTelemetry GenAI semantic conventions (``gen_ai.system``,
``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens``, ``gen_ai.response.id``, ``gen_ai.response.model``, ``error.type``);
pipeline facts go under ``ipfs_accelerate.*`` (queue time, attempts, the key's public id,
the request's cost in dollars).
Retries are span events.  Prompt and completion content are recorded only with
``capture_content=True``; a key never appears (events carry only its ``key_id``).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ipfs_accelerate_py import hookimpl

#: Backend name -> ``gen_ai.system`` value where the conventions name the provider
#: differently; any other backend reports its own name.
GEN_AI_SYSTEMS = {"claude": "anthropic", "gemini": "gcp.gemini", "hf_tgi": "huggingface",
                  "hf_tei": "huggingface", "ovms": "openvino"}
#: Our operation names -> ``gen_ai.operation.name`` (``chat``, ``text_completion``,
#: ``embeddings``); others are reported as they are.
GEN_AI_OPERATIONS = {"chat": "chat", "complete": "text_completion", "completion": "text_completion",
                     "completions": "text_completion", "generate": "text_completion",
                     "embed": "embeddings", "embeddings": "embeddings"}
MAX_CONTENT = 16_384  # characters of prompt / completion kept when capturing content


def _ns(monotonic_t: float) -> int:
    """A ``time.monotonic()`` stamp as the Unix-epoch nanoseconds spans use."""
    return time.time_ns() - int((time.monotonic() - monotonic_t) * 1e9)


def _content(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text[:MAX_CONTENT]


class _Trace:
    __slots__ = ("span", "attempt")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.attempt: Any = None


class TracingObserver:
    """Observer emitting spans through ``tracer_provider`` (default: the global one).

    :param capture_content: also record the request payload (``gen_ai.prompt``) and the
        answer's text (``gen_ai.completion``) as span events.  Off by default: prompts and
        completions often hold personal data.
    """

    def __init__(self, tracer_provider: Any = None, *, capture_content: bool = False) -> None:
        provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer("ipfs_accelerate_otel")
        self.capture_content = capture_content
        self._lock = threading.Lock()
        self._open: dict[str, _Trace] = {}

    def _start_request(self, request_id: str, backend: str, operation: str, model: str | None,
                       t: float, attrs: dict[str, Any]) -> _Trace:
        op = GEN_AI_OPERATIONS.get(operation, operation)
        attributes = {"gen_ai.system": GEN_AI_SYSTEMS.get(backend, backend),
                      "gen_ai.operation.name": op, "ipfs_accelerate.request_id": request_id,
                      "ipfs_accelerate.backend": backend, **attrs}
        if model:
            attributes["gen_ai.request.model"] = model
        span = self._tracer.start_span(f"{op} {model}" if model else op, kind=SpanKind.CLIENT,
                                       attributes=attributes, start_time=_ns(t))
        tr = _Trace(span)
        self._open[request_id] = tr
        return tr

    # -- observer methods ---------------------------------------------------------------
    @hookimpl
    def accelerate_on_queued(self, event: Any) -> None:
        with self._lock:
            tr = self._start_request(event.request_id, event.backend, event.operation,
                                     getattr(event, "model", None), event.time,
                                     {"ipfs_accelerate.priority": event.priority,
                                      "ipfs_accelerate.queue_depth": event.queue_depth})
        payload = getattr(event, "payload", None)
        if self.capture_content and payload is not None:
            tr.span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": _content(payload)},
                              timestamp=_ns(event.time))

    @hookimpl
    def accelerate_on_started(self, event: Any) -> None:
        with self._lock:
            tr = self._open.get(event.request_id)
            if tr is None:  # queued before this observer was attached
                tr = self._start_request(event.request_id, event.backend, event.operation, None,
                                         event.time - event.queued_for, {})
            if tr.attempt is not None:  # never left open by the pipeline; close it anyway
                tr.attempt.end(end_time=_ns(event.time))
            if event.attempt == 1:
                tr.span.set_attribute("ipfs_accelerate.queue_time", event.queued_for)
            attrs: dict[str, Any] = {"ipfs_accelerate.attempt": event.attempt,
                                     "ipfs_accelerate.queued_for": event.queued_for}
            if event.key_id:
                attrs["ipfs_accelerate.key_id"] = event.key_id
            tr.attempt = self._tracer.start_span(
                f"attempt {event.attempt}", context=trace.set_span_in_context(tr.span),
                kind=SpanKind.CLIENT, attributes=attrs, start_time=_ns(event.time))

    @hookimpl
    def accelerate_on_retried(self, event: Any) -> None:
        with self._lock:
            tr = self._open.get(event.request_id)
            if tr is None:
                return
            attempt, tr.attempt = tr.attempt, None
        details: dict[str, Any] = {"ipfs_accelerate.attempt": event.attempt,
                                   "error.type": event.error_class,
                                   "ipfs_accelerate.retry_delay": event.delay}
        if event.status is not None:
            details["http.response.status_code"] = event.status
        if attempt is not None:
            attempt.set_attributes(details)
            attempt.set_status(Status(StatusCode.ERROR, event.error_class))
            attempt.end(end_time=_ns(event.time))
        tr.span.add_event("retry", details, timestamp=_ns(event.time))

    @hookimpl
    def accelerate_on_finished(self, event: Any) -> None:
        with self._lock:
            tr = self._open.pop(event.request_id, None)
        if tr is None:
            return
        end = _ns(event.time) if event.time else None
        outcome = getattr(event.outcome, "value", str(event.outcome))
        span = tr.span
        attrs: dict[str, Any] = {"ipfs_accelerate.attempts": event.attempts,
                                 "ipfs_accelerate.outcome": outcome,
                                 "ipfs_accelerate.latency": event.latency}
        if event.batch_size > 1:
            attrs["ipfs_accelerate.batch_size"] = event.batch_size
        usage = event.usage
        if usage is not None:
            attrs["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            attrs["gen_ai.usage.output_tokens"] = usage.completion_tokens
        for attr, field in (("gen_ai.response.id", "response_id"), ("gen_ai.response.model", "model")):
            value = getattr(event, field, None)
            if value:
                attrs[attr] = value
        if event.key_id:
            attrs["ipfs_accelerate.key_id"] = event.key_id
        cost = getattr(event, "cost", None)
        if cost is not None:  # dollars, from the price table (docs/costs.md)
            attrs["ipfs_accelerate.cost_usd"] = float(cost)
        span.set_attributes(attrs)
        result = getattr(event, "result", None)
        if self.capture_content and result is not None and getattr(result, "text", None):
            span.add_event("gen_ai.content.completion", {"gen_ai.completion": _content(result.text)},
                           timestamp=end)
        if outcome != "success":
            error_type = event.error_class or outcome
            span.set_attribute("error.type", error_type)
            status = Status(StatusCode.ERROR, (event.error or error_type)[:500])
            span.set_status(status)
            if tr.attempt is not None:
                tr.attempt.set_attribute("error.type", error_type)
                tr.attempt.set_status(status)
        if tr.attempt is not None:
            tr.attempt.end(end_time=end)
        span.end(end_time=end)

    def open_spans(self) -> int:
        """Requests whose span is still open (queued or in flight)."""
        with self._lock:
            return len(self._open)
