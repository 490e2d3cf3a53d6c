"""Alert rules and the event-fed view they read.

A rule looks at the :class:`View` and returns the subjects (a backend, a key) whose
condition holds *now*, each with a message and a value; the manager turns a subject that
starts or stops matching into one alert or one recovery.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Protocol

import attrs

Matches = dict[str, tuple[str, float | None]]  # subject -> (message, value)


class View:
    """What the rules see, kept from the monitoring events (thread-safe)."""

    def __init__(self, window: float = 300.0) -> None:
        self.window = window
        self.lock = threading.Lock()
        self.breakers: dict[str, tuple[str, float]] = {}  # endpoint -> (state, left closed at)
        self.rejected: dict[str, float] = {}  # "backend/key_id" -> when
        self.attempts: dict[str, deque[tuple[float, bool]]] = {}  # backend -> (t, was a 429)
        self.finished: dict[str, deque[tuple[float, bool]]] = {}  # backend -> (t, failed)
        self.waiting: dict[str, float] = {}  # request id -> queued at

    def _trim(self, d: deque[tuple[float, bool]], now: float) -> None:
        while d and d[0][0] < now - self.window:
            d.popleft()

    def attempt(self, backend: str, now: float) -> None:
        with self.lock:
            d = self.attempts.setdefault(backend, deque())
            d.append((now, False))
            self._trim(d, now)

    def rate_limited(self, backend: str, now: float) -> None:
        with self.lock:
            d = self.attempts.setdefault(backend, deque())
            d.append((now, True))  # counted as a 429 answer, not a new attempt
            self._trim(d, now)

    def finish(self, backend: str, failed: bool, now: float) -> None:
        with self.lock:
            d = self.finished.setdefault(backend, deque())
            d.append((now, failed))
            self._trim(d, now)

    def share(self, series: dict[str, deque[tuple[float, bool]]], window: float,
              now: float) -> dict[str, tuple[int, int]]:
        """backend -> (flagged, total) over the last ``window`` seconds."""
        out = {}
        with self.lock:
            for backend, d in series.items():
                flagged = total = 0
                for t, flag in reversed(d):
                    if t < now - window:
                        break
                    flagged += flag
                    total += 1
                out[backend] = (flagged, total)
        return out


class Rule(Protocol):
    name: str
    severity: str

    def evaluate(self, view: View, now: float) -> Matches: ...


@attrs.frozen
class BreakerOpen:
    """An endpoint's breaker left CLOSED (open or probing) for at least ``min_open`` s.
    ``min_open=0`` alerts at once; e.g. 60 alerts only for an outage that lasts."""

    min_open: float = 0.0
    name: str = "breaker_open"
    severity: str = "critical"

    def evaluate(self, view: View, now: float) -> Matches:
        out: Matches = {}
        with view.lock:
            items = list(view.breakers.items())
        for endpoint, (state, since) in items:
            # An event stamped after this evaluation's clock reading counts as "just now".
            open_for = max(0.0, now - since)
            if state != "closed" and open_for >= self.min_open:
                out[endpoint] = (f"circuit breaker {state} for {open_for:.0f} s: requests "
                                 f"wait in the queue", open_for)
        return out


@attrs.frozen
class KeyRejected:
    """The provider rejected a key (an auth error): it is out of rotation."""

    name: str = "key_rejected"
    severity: str = "critical"

    def evaluate(self, view: View, now: float) -> Matches:
        with view.lock:
            return {k: ("the provider rejected this key; it is out of rotation", None)
                    for k in view.rejected}


@attrs.frozen
class RateLimitShare:
    """More than ``threshold`` of the attempts in the last ``window`` s were answered 429
    (counted from ``min_attempts`` attempts on)."""

    threshold: float = 0.25
    window: float = 60.0
    min_attempts: int = 20
    name: str = "rate_limited_share"
    severity: str = "warning"

    def evaluate(self, view: View, now: float) -> Matches:
        out: Matches = {}
        for backend, (n429, total) in view.share(view.attempts, self.window, now).items():
            attempts = total - n429
            if attempts >= self.min_attempts and n429 / attempts > self.threshold:
                share = n429 / attempts
                out[backend] = (f"{share:.0%} of attempts answered 429 in the last "
                                f"{self.window:g} s", share)
        return out


@attrs.frozen
class ErrorRate:
    """More than ``threshold`` of the requests finished in the last ``window`` s failed."""

    threshold: float = 0.1
    window: float = 60.0
    min_requests: int = 20
    name: str = "error_rate"
    severity: str = "warning"

    def evaluate(self, view: View, now: float) -> Matches:
        out: Matches = {}
        for backend, (failed, total) in view.share(view.finished, self.window, now).items():
            if total >= self.min_requests and failed / total > self.threshold:
                out[backend] = (f"{failed / total:.0%} of requests failed in the last "
                                f"{self.window:g} s", failed / total)
        return out


@attrs.frozen
class QueueAge:
    """The oldest request still waiting in the queue has waited more than ``max_age`` s."""

    max_age: float = 60.0
    name: str = "queue_age"
    severity: str = "warning"

    def evaluate(self, view: View, now: float) -> Matches:
        with view.lock:
            oldest = min(view.waiting.values(), default=None)
        if oldest is None or now - oldest <= self.max_age:
            return {}
        return {"queue": (f"the oldest queued request has waited {now - oldest:.0f} s",
                          now - oldest)}


@attrs.frozen
class BudgetThreshold:
    """Spending crossed ``share`` of a budget.  ``read()`` returns ``(spent, limit)`` or
    None; wire it to whatever tracks cost (a budget plugin, a provider's billing API)."""

    read: Callable[[], tuple[float, float] | None]
    share: float = 0.8
    subject: str = "budget"
    name: str = "budget"
    severity: str = "warning"

    def evaluate(self, view: View, now: float) -> Matches:
        got = self.read()
        if not got:
            return {}
        spent, limit = got
        if limit > 0 and spent / limit >= self.share:
            return {self.subject: (f"spent {spent:g} of {limit:g} ({spent / limit:.0%})",
                                   spent / limit)}
        return {}


def default_rules() -> list[Any]:
    """Breaker open, key rejected, 429 share > 25 %, error rate > 10 %, queue age > 60 s."""
    return [BreakerOpen(), KeyRejected(), RateLimitShare(), ErrorRate(), QueueAge()]
