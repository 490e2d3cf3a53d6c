"""What the dashboard learns from the monitoring events (an observer).

Counters and gauges come from ``Client.stats()`` (see :mod:`.state`); the events add what a
once-a-second poll cannot see: every breaker transition (a half-open flap lasts
milliseconds), latency percentiles over the last seconds rather than since the start, and
the age of the oldest request still waiting.  Keys appear only by their ``key_id``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from ipfs_accelerate_py import hookimpl
from ipfs_accelerate_py.stats import percentile


def wall_time(monotonic_t: float) -> float:
    """An event's ``time.monotonic()`` stamp as Unix time (for display)."""
    return time.time() - (time.monotonic() - monotonic_t)


def backend_of(endpoint: str) -> str:
    """``openai@https://...`` -> ``openai`` (breakers are per endpoint, stats per backend)."""
    return endpoint.split("@", 1)[0]


class DashboardRecorder:
    """Observer of one client's events.  Thread-safe; every method is O(1) amortised.

    :param latency_window: seconds of latency samples the percentiles cover.
    :param history: breaker transitions kept.
    """

    def __init__(self, latency_window: float = 10.0, history: int = 200) -> None:
        self.latency_window = latency_window
        self._lock = threading.Lock()
        self._latencies: deque[tuple[float, float]] = deque()  # (monotonic time, seconds)
        self._transitions: deque[dict[str, Any]] = deque(maxlen=history)
        self._breaker: dict[str, str] = {}
        self._waiting: dict[str, float] = {}  # request id -> when it (re)entered the queue
        self.version = 0  # bumped on every breaker transition (the page refreshes its table)
        self.events_seen = False

    # -- observer methods ---------------------------------------------------------------
    @hookimpl
    def accelerate_on_queued(self, event: Any) -> None:
        with self._lock:
            self.events_seen = True
            self._waiting[event.request_id] = event.time

    @hookimpl
    def accelerate_on_started(self, event: Any) -> None:
        with self._lock:
            self._waiting.pop(event.request_id, None)

    @hookimpl
    def accelerate_on_retried(self, event: Any) -> None:
        with self._lock:  # back in the queue until its next attempt starts
            self._waiting[event.request_id] = event.time

    @hookimpl
    def accelerate_on_finished(self, event: Any) -> None:
        with self._lock:
            self.events_seen = True
            self._waiting.pop(event.request_id, None)
            self._latencies.append((event.time, event.latency))
            self._trim(event.time)

    @hookimpl
    def accelerate_on_breaker_changed(self, event: Any) -> None:
        self.events_seen = True
        self.record_transition(backend_of(event.endpoint), event.old_state, event.new_state,
                               wall_time(event.time), source="event")

    # -- reading ------------------------------------------------------------------------
    def record_transition(self, backend: str, old: str, new: str, when: float,
                          source: str = "sampled") -> None:
        with self._lock:
            self._breaker[backend] = new
            self._transitions.append({"time": when, "backend": backend, "from": old, "to": new,
                                      "source": source})
            self.version += 1

    def last_breaker_state(self, backend: str) -> str | None:
        with self._lock:
            return self._breaker.get(backend)

    def transitions(self, limit: int = 30) -> list[dict[str, Any]]:
        """The newest ``limit`` transitions, newest first."""
        with self._lock:
            items = list(self._transitions)[-limit:]
        return items[::-1]

    def _trim(self, now: float) -> None:
        cutoff = now - self.latency_window
        lat = self._latencies
        while lat and lat[0][0] < cutoff:
            lat.popleft()

    def latency_percentiles(self, now: float | None = None) -> dict[str, float | None] | None:
        """p50/p95/p99 (seconds) of requests finished in the window; None without events."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self.events_seen:
                return None
            self._trim(now)
            values = sorted(v for _, v in self._latencies)
        return {f"p{q}": percentile(values, q) for q in (50, 95, 99)}

    def oldest_waiting(self, now: float | None = None) -> float | None:
        """Seconds the longest-waiting queued request has waited (None: none / no events)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self._waiting:
                return None
            return max(0.0, now - min(self._waiting.values()))
