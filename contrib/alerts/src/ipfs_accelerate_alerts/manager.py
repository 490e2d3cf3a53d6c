"""The alert manager: an observer that evaluates the rules and delivers alerts, debounced.

One alert when a subject starts matching a rule, one recovery when it has stopped matching
for ``quiet`` seconds (so a value hovering at the threshold does not page every second).
Rules are evaluated on every breaker change and key rejection, and once per ``interval``
by a daemon thread (queue age, rates, budget).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Iterable

import pluggy

from ipfs_accelerate_py import hookimpl

from .notifiers import PROJECT, Alert, LogNotifier, NotifierSpec
from .rules import View, default_rules

log = logging.getLogger("ipfs_accelerate.alerts")

_AUTH = "auth"
_RATE_LIMITED = "rate_limited"


class AlertManager:
    """Observer of a client's events that raises alerts.

    :param rules: the rules (default: :func:`~.rules.default_rules`).
    :param notifiers: objects implementing ``accelerate_alert`` (default: a log line).
    :param interval: seconds between periodic evaluations.
    :param quiet: seconds a condition must stay clear before its recovery is sent.
    """

    def __init__(self, rules: Iterable[Any] | None = None, notifiers: Iterable[Any] | None = None,
                 *, interval: float = 1.0, quiet: float = 5.0, max_pending: int = 1000) -> None:
        if not interval > 0:
            raise ValueError(f"interval: must be > 0, got {interval!r}")
        if quiet < 0:
            raise ValueError(f"quiet: must be >= 0, got {quiet!r}")
        self.rules = list(default_rules() if rules is None else rules)
        self.interval = interval
        self.quiet = quiet
        self.view = View(window=max([getattr(r, "window", 0.0) for r in self.rules] + [60.0]))
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(NotifierSpec)
        for n in (notifiers if notifiers is not None else [LogNotifier()]):
            self.add_notifier(n)
        self._active: dict[tuple[str, str], Alert] = {}
        self._clear_since: dict[tuple[str, str], float] = {}
        self._eval_lock = threading.Lock()
        self._outbox: queue.Queue[Alert | None] = queue.Queue(max_pending)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self.dropped = 0
        self.delivered: list[Alert] = []  # the last alerts handed to the notifiers (bounded)

    def add_notifier(self, notifier: Any) -> None:
        self.pm.register(notifier)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> AlertManager:
        """Start the evaluation and delivery threads (done by the first event otherwise)."""
        with self._start_lock:
            if not self._threads and not self._stop.is_set():
                for target, name in ((self._tick, "alerts-eval"), (self._deliver, "alerts-deliver")):
                    t = threading.Thread(target=target, name=name, daemon=True)
                    t.start()
                    self._threads.append(t)
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Evaluate once more, deliver what is pending (up to ``timeout``), stop."""
        if self._stop.is_set():
            return
        self.evaluate()
        self._stop.set()
        try:
            self._outbox.put(None, timeout=timeout)
        except queue.Full:
            pass
        for t in self._threads:
            t.join(timeout)

    def __enter__(self) -> AlertManager:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- observer methods --------------------------------------------------------------
    @hookimpl
    def accelerate_on_queued(self, event: Any) -> None:
        self.start()
        with self.view.lock:
            self.view.waiting[event.request_id] = event.time

    @hookimpl
    def accelerate_on_started(self, event: Any) -> None:
        with self.view.lock:
            self.view.waiting.pop(event.request_id, None)
        self.view.attempt(event.backend, event.time)

    @hookimpl
    def accelerate_on_retried(self, event: Any) -> None:
        with self.view.lock:
            self.view.waiting[event.request_id] = event.time
        self._attempt_failed(event.backend, event.key_id, event.error_class, event.time)

    @hookimpl
    def accelerate_on_finished(self, event: Any) -> None:
        with self.view.lock:
            self.view.waiting.pop(event.request_id, None)
        outcome = getattr(event.outcome, "value", event.outcome)
        self.view.finish(event.backend, outcome != "success", event.time)
        if outcome == "success" and event.key_id:
            with self.view.lock:  # a key that works again is no longer rejected
                self.view.rejected.pop(f"{event.backend}/{event.key_id}", None)
        elif event.error_class:
            self._attempt_failed(event.backend, event.key_id, event.error_class, event.time)

    @hookimpl
    def accelerate_on_breaker_changed(self, event: Any) -> None:
        self.start()
        with self.view.lock:
            prev = self.view.breakers.get(event.endpoint)
            since = prev[1] if prev and prev[0] != "closed" and event.new_state != "closed" else event.time
            self.view.breakers[event.endpoint] = (event.new_state, since)
        self.evaluate()

    def _attempt_failed(self, backend: str, key_id: str | None, error_class: str, now: float) -> None:
        if error_class == _RATE_LIMITED:
            self.view.rate_limited(backend, now)
        elif error_class == _AUTH and key_id:
            with self.view.lock:
                self.view.rejected[f"{backend}/{key_id}"] = now
            self.start()
            self.evaluate()

    # -- evaluation --------------------------------------------------------------------
    def evaluate(self, now: float | None = None) -> list[Alert]:
        """Evaluate every rule once; returns (and queues for delivery) the new alerts."""
        out: list[Alert] = []
        with self._eval_lock:
            now = time.monotonic() if now is None else now  # read after waiting for the lock
            for rule in self.rules:
                try:
                    matches = rule.evaluate(self.view, now)
                except Exception as exc:  # a broken rule must not stop the others
                    log.warning("alerts: rule %s raised %s: %s", rule.name, type(exc).__name__, exc)
                    continue
                for subject, (message, value) in matches.items():
                    k = (rule.name, subject)
                    self._clear_since.pop(k, None)
                    if k not in self._active:
                        alert = Alert(rule.name, subject, "firing", rule.severity, message, value)
                        self._active[k] = alert
                        out.append(alert)
                for k in [k for k in self._active if k[0] == rule.name and k[1] not in matches]:
                    since = self._clear_since.setdefault(k, now)
                    if now - since >= self.quiet:
                        fired = self._active.pop(k)
                        self._clear_since.pop(k, None)
                        out.append(Alert(fired.rule, fired.subject, "resolved", fired.severity,
                                         "recovered", None))
            # Queued under the lock: two evaluations on two threads (the periodic one and
            # an event's) must not deliver a recovery before the alert it ends.
            for alert in out:
                try:
                    self._outbox.put_nowait(alert)
                except queue.Full:
                    self.dropped += 1
                    log.warning("alerts: delivery queue full, dropped: %s", alert.text())
        return out

    @property
    def active(self) -> list[Alert]:
        with self._eval_lock:
            return list(self._active.values())

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self.evaluate()

    def _deliver(self) -> None:
        while True:
            alert = self._outbox.get()
            if alert is None:
                # Drain what was queued before close().
                while True:
                    try:
                        rest = self._outbox.get_nowait()
                    except queue.Empty:
                        return
                    if rest is not None:
                        self._notify(rest)
            self._notify(alert)

    def _notify(self, alert: Alert) -> None:
        for impl in self.pm.hook.accelerate_alert.get_hookimpls():
            try:
                impl.function(alert=alert)
            except Exception as exc:  # one broken notifier must not silence the others
                log.warning("alerts: notifier %s failed: %s", impl.plugin_name, exc)
        self.delivered.append(alert)
        del self.delivered[:-100]
