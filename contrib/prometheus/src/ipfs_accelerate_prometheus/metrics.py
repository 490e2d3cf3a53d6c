"""Counters and histograms fed by the pipeline's monitoring hooks.

A :class:`Metrics` object is an observer (its methods take the events): a client names it
with ``ClientConfig(observers=("prometheus",))`` (the process-wide metrics in
``prometheus_client.REGISTRY``), ``(("prometheus", {"registry": r}),)`` or
``observers=(Metrics(r),)``, or adds it with ``Client.add_observer``.  Registered with
``PluginManager.add_plugin`` it watches every client of that manager.  Keys appear only by their public ``key_id`` (events never carry
the key).
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from ipfs_accelerate_py import hookimpl

#: Request latency buckets (seconds): from a local model's milliseconds to a long
#: generation's minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0)
_RATE_LIMITED = "rate_limited"
_PRIORITIES = {0: "high", 1: "normal", 2: "low"}


def _key(key_id: str | None) -> str:
    return key_id if key_id else "none"


class Metrics:
    """The event-fed metrics (names under ``namespace``, default ``ipfs_accelerate``)."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY,
                 namespace: str = "ipfs_accelerate",
                 buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        kw: dict[str, Any] = {"namespace": namespace, "registry": registry}
        self.registry = registry
        self.queued = Counter("queued", "Requests submitted to the queue.",
                              ["backend", "operation", "priority"], **kw)
        self.requests = Counter("requests", "Requests completed, by outcome (success, error, "
                                "deadline, cancelled, plugin_error).",
                                ["backend", "operation", "key_id", "outcome"], **kw)
        self.errors = Counter("request_errors", "Requests that ended in an error, by error class.",
                              ["backend", "key_id", "error_class"], **kw)
        self.duration = Histogram("request_duration_seconds",
                                  "Time from submission to completion (queueing and retries "
                                  "included).", ["backend", "operation", "outcome"],
                                  buckets=buckets, **kw)
        self.queue_wait = Histogram("queue_wait_seconds",
                                    "Time from submission to the first attempt.",
                                    ["backend", "operation"], buckets=buckets, **kw)
        self.attempts = Counter("attempts", "Attempts sent to a backend (retries included).",
                                ["backend", "key_id"], **kw)
        self.retries = Counter("retries", "Failed attempts that will be retried, by error class.",
                               ["backend", "key_id", "error_class"], **kw)
        self.rate_limited = Counter("rate_limited", "429 (rate limited) answers, retried or final.",
                                    ["backend", "key_id"], **kw)
        self.tokens = Counter("tokens", "Tokens reported by the provider (prompt, completion, "
                              "total).",
                              ["backend", "key_id", "kind"], **kw)
        self.cost = Counter("cost_dollars", "What completed requests cost, in US dollars, from "
                            "the provider's usage and the price table.",
                            ["backend", "key_id", "model"], **kw)
        self.unpriced = Counter("unpriced_results", "Completed requests without a price (an "
                                "unknown model, or no usage reported).",
                                ["backend", "model"], **kw)
        self.budget_warnings = Counter("budget_warnings", "A budget crossed a threshold "
                                       "(fraction of its limit), or refused a request.",
                                       ["budget", "threshold", "refused"], **kw)
        self.breaker_transitions = Counter("breaker_transitions",
                                           "Circuit breaker state changes per endpoint.",
                                           ["endpoint", "from_state", "to_state"], **kw)

    # -- hook implementations (called on the pipeline's threads; prometheus_client
    #    metrics are thread-safe) -----------------------------------------------------
    @hookimpl
    def accelerate_on_queued(self, event: Any) -> None:
        prio = _PRIORITIES.get(event.priority, str(event.priority))
        self.queued.labels(event.backend, event.operation, prio).inc()

    @hookimpl
    def accelerate_on_started(self, event: Any) -> None:
        self.attempts.labels(event.backend, _key(event.key_id)).inc()
        if event.attempt == 1:
            self.queue_wait.labels(event.backend, event.operation).observe(event.queued_for)

    @hookimpl
    def accelerate_on_retried(self, event: Any) -> None:
        key = _key(event.key_id)
        self.retries.labels(event.backend, key, event.error_class).inc()
        if event.error_class == _RATE_LIMITED:
            self.rate_limited.labels(event.backend, key).inc()

    @hookimpl
    def accelerate_on_finished(self, event: Any) -> None:
        key = _key(event.key_id)
        outcome = getattr(event.outcome, "value", str(event.outcome))
        self.requests.labels(event.backend, event.operation, key, outcome).inc()
        self.duration.labels(event.backend, event.operation, outcome).observe(event.latency)
        if event.error_class:
            self.errors.labels(event.backend, key, event.error_class).inc()
            if event.error_class == _RATE_LIMITED:
                self.rate_limited.labels(event.backend, key).inc()
        usage = event.usage
        if usage is not None:
            if usage.prompt_tokens:
                self.tokens.labels(event.backend, key, "prompt").inc(usage.prompt_tokens)
            if usage.completion_tokens:
                self.tokens.labels(event.backend, key, "completion").inc(usage.completion_tokens)
            if usage.total_tokens:
                self.tokens.labels(event.backend, key, "total").inc(usage.total_tokens)
            if getattr(usage, "cached_tokens", 0):
                self.tokens.labels(event.backend, key, "cached").inc(usage.cached_tokens)
            if getattr(usage, "reasoning_tokens", 0):
                self.tokens.labels(event.backend, key, "reasoning").inc(usage.reasoning_tokens)
        cost = getattr(event, "cost", None)
        model = event.model or "unknown"
        if cost is not None:
            self.cost.labels(event.backend, key, model).inc(float(cost))
        elif outcome == "success":
            self.unpriced.labels(event.backend, model).inc()

    @hookimpl
    def accelerate_on_budget(self, event: Any) -> None:
        self.budget_warnings.labels(event.budget, f"{event.threshold:g}",
                                    "true" if event.refused else "false").inc()

    @hookimpl
    def accelerate_on_breaker_changed(self, event: Any) -> None:
        self.breaker_transitions.labels(event.endpoint, event.old_state, event.new_state).inc()


_default: Metrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> Metrics:
    """The process-wide metrics in ``prometheus_client.REGISTRY`` (created on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Metrics(REGISTRY)
    return _default
