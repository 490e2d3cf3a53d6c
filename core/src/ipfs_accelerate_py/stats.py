"""Counters per backend and per key, and the snapshot users read.

Keys appear only by their public ``key_id``.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Mapping

import attrs

from .events import Outcome
from .results import Usage


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, int(-(-q * len(sorted_values) // 100)))  # ceil(q/100 * n)
    return sorted_values[min(rank, len(sorted_values)) - 1]


class _Series:
    __slots__ = ("outcomes", "retries", "rate_limited", "attempts", "latencies", "prompt_tokens",
                 "completion_tokens", "total_tokens")

    def __init__(self, samples: int) -> None:
        self.outcomes: dict[str, int] = {}
        self.retries = 0
        self.rate_limited = 0
        self.attempts = 0
        self.latencies: deque[float] = deque(maxlen=samples)
        self.prompt_tokens = self.completion_tokens = self.total_tokens = 0

    def to_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "requests": sum(self.outcomes.values()),
            "outcomes": dict(self.outcomes),
            "attempts": self.attempts,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "latency_p50": percentile(lat, 50),
            "latency_p95": percentile(lat, 95),
            "latency_p99": percentile(lat, 99),
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens,
                       "total": self.total_tokens},
        }


class StatsCollector:
    """Thread-safe accumulation of what happened; gauges are added at snapshot time."""

    def __init__(self, samples: int = 10_000) -> None:
        self._samples = samples
        self._lock = threading.Lock()
        self._backends: dict[str, _Series] = {}
        self._keys: dict[tuple[str, str], _Series] = {}

    def _series(self, backend: str, key_id: str | None) -> tuple[_Series, _Series | None]:
        b = self._backends.get(backend)
        if b is None:
            b = self._backends[backend] = _Series(self._samples)
        if key_id is None:
            return b, None
        k = self._keys.get((backend, key_id))
        if k is None:
            k = self._keys[(backend, key_id)] = _Series(self._samples)
        return b, k

    def retried(self, backend: str, key_id: str | None, rate_limited: bool) -> None:
        with self._lock:
            for s in self._series(backend, key_id):
                if s is not None:
                    s.retries += 1
                    s.rate_limited += rate_limited

    def rate_limited(self, backend: str, key_id: str | None) -> None:
        """A 429 that was not retried (final)."""
        with self._lock:
            for s in self._series(backend, key_id):
                if s is not None:
                    s.rate_limited += 1

    def finished(self, backend: str, key_id: str | None, outcome: Outcome, latency: float,
                 attempts: int, usage: Usage | None) -> None:
        with self._lock:
            for s in self._series(backend, key_id):
                if s is None:
                    continue
                s.outcomes[outcome.value] = s.outcomes.get(outcome.value, 0) + 1
                s.attempts += attempts
                s.latencies.append(latency)
                if usage is not None:
                    s.prompt_tokens += usage.prompt_tokens
                    s.completion_tokens += usage.completion_tokens
                    s.total_tokens += usage.total_tokens

    def reset(self) -> None:
        with self._lock:
            self._backends.clear()
            self._keys.clear()

    def snapshot(self, gauges: Mapping[str, Any]) -> StatsSnapshot:
        """``gauges``: {"backends": {name: {...}}, "keys": {(backend, key_id): {...}}}."""
        with self._lock:
            backends = {n: s.to_dict() for n, s in self._backends.items()}
            keys = {f"{b}/{k}": s.to_dict() for (b, k), s in self._keys.items()}
        for name, g in gauges.get("backends", {}).items():
            backends.setdefault(name, _Series(1).to_dict()).update(g)
        for (b, k), g in gauges.get("keys", {}).items():
            keys.setdefault(f"{b}/{k}", _Series(1).to_dict()).update(g)
        return StatsSnapshot(backends=backends, keys=keys, queue_depth=gauges.get("queue_depth", 0),
                             in_flight=gauges.get("in_flight", 0))


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


@attrs.frozen
class StatsSnapshot:
    """A point-in-time copy of the client's statistics."""

    backends: dict[str, dict[str, Any]]
    keys: dict[str, dict[str, Any]]
    queue_depth: int = 0
    in_flight: int = 0
    #: Spend and tokens per model and tag, the total, and each budget's window
    #: (``ipfs_accelerate_py.costs``; per backend and key they are under ``"costs"``).
    #: Dollars are exact decimal strings: the snapshot stays JSON data.
    costs: dict[str, Any] = attrs.field(factory=dict)
    #: The response cache's counters (hits, misses, semantic hits and their similarity,
    #: writes, store size), or None for a client without a cache.
    cache: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"backends": self.backends, "keys": self.keys, "queue_depth": self.queue_depth,
               "in_flight": self.in_flight, "costs": self.costs,
               "spend": (self.costs.get("total") or {}).get("spend")}
        if self.cache is not None:
            out["cache"] = self.cache
        return out

    def total(self, outcome: str = "success") -> int:
        return sum(b["outcomes"].get(outcome, 0) for b in self.backends.values())

    def table(self) -> str:
        """A readable fixed-width table: one row per backend, then one per key; then,
        when any key has a limit, each key's rate, capacity and window and where they
        came from (:func:`~ipfs_accelerate_py.limits_report.render_limits`)."""
        head = (f"{'scope':<28} {'ok':>7} {'failed':>7} {'retries':>7} {'429s':>6} "
                f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'tokens':>9} {'inflight':>8} "
                f"{'queued':>6} {'state':>10}")
        rows = [head, "-" * len(head)]

        def row(scope: str, d: dict[str, Any], state: str) -> str:
            ok = d["outcomes"].get("success", 0)
            failed = d["requests"] - ok
            return (f"{scope[:28]:<28} {ok:>7} {failed:>7} {d['retries']:>7} {d['rate_limited']:>6} "
                    f"{_fmt_ms(d['latency_p50']):>8} {_fmt_ms(d['latency_p95']):>8} "
                    f"{_fmt_ms(d['latency_p99']):>8} {d['tokens']['total']:>9} "
                    f"{d.get('in_flight', 0):>8} {d.get('queue_depth', ''):>6} {state:>10}")

        for name in sorted(self.backends):
            d = self.backends[name]
            rows.append(row(name, d, str(d.get("breaker", ""))))
        for name in sorted(self.keys):
            d = self.keys[name]
            hr = d.get("headroom")
            state = ("disabled" if d.get("healthy") is False else
                     (f"hr {hr:.0%}" if isinstance(hr, float) else ""))
            rows.append(row("  " + name, d, state))
        if any((d.get("limiter") or {}).get("requests") or (d.get("limiter") or {}).get("tokens")
               for d in self.keys.values()):
            from .limits_report import render_limits

            rows += ["", render_limits(self.keys)]
        if self.costs.get("total", {}).get("priced") or self.costs.get("total", {}).get("unpriced"):
            from .costs.report import render_costs

            rows += ["", render_costs(self)]
        if self.cache is not None:
            c = self.cache
            store = c.get("store") or {}
            rows += ["", f"cache: {c['hits']} hits, {c['semantic_hits']} semantic hits, "
                         f"{c['misses']} misses, {c['writes']} writes; "
                         f"{store.get('store', '?')} store: {store.get('entries', '?')} entries"]
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()
