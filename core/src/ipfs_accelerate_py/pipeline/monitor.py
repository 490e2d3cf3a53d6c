"""Monitoring: hand events to the monitoring hooks and to the client's own observers,
never letting one fail or lose work.

An observer is any object with some of the methods ``accelerate_on_queued``,
``accelerate_on_started``, ``accelerate_on_retried``, ``accelerate_on_finished`` and
``accelerate_on_breaker_changed`` (each taking one event).  Observers belong to one
client (``ClientConfig.observers``, ``Client.add_observer``); the hooks of the same names
reach every client of a plugin manager.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("ipfs_accelerate")

EVENT_HOOKS = ("accelerate_on_queued", "accelerate_on_started", "accelerate_on_retried",
               "accelerate_on_finished", "accelerate_on_breaker_changed", "accelerate_on_budget")


class Monitor:
    """``wants(hook)`` says whether anyone listens, so the pipeline builds an event only
    when it will be delivered.  Hook implementations registered after the client was
    built are noticed (the plugin manager's ``generation`` moves)."""

    def __init__(self, pm: Any, observers: tuple[Any, ...] = ()) -> None:
        self._pm = pm
        self._hooks = pm.hooks
        self._lock = threading.Lock()
        self._observers: dict[str, tuple[Any, ...]] = {name: () for name in EVENT_HOOKS}
        self._generation = -1
        self._wants: dict[str, bool] = {}
        self._hooked: dict[str, bool] = {}
        for obs in observers:
            self.add(obs)
        self._refresh()

    def add(self, observer: Any) -> None:
        methods = {name: getattr(observer, name, None) for name in EVENT_HOOKS}
        if not any(callable(m) for m in methods.values()):
            raise TypeError(f"{type(observer).__name__} has none of the observer methods "
                            f"{', '.join(EVENT_HOOKS)}")
        with self._lock:
            for name, method in methods.items():
                if callable(method):
                    self._observers[name] = self._observers[name] + (method,)
            self._generation = -1  # recompute wants

    def _refresh(self) -> None:
        gen = getattr(self._pm, "generation", 0)
        self._hooked = {name: bool(getattr(self._hooks, name).get_hookimpls())
                        for name in EVENT_HOOKS}
        self._wants = {name: self._hooked[name] or bool(self._observers[name])
                       for name in EVENT_HOOKS}
        self._generation = gen

    def wants(self, hook: str) -> bool:
        if self._generation != getattr(self._pm, "generation", 0):
            self._refresh()
        return self._wants[hook]

    def emit(self, hook: str, event: Any) -> None:
        if self._hooked.get(hook):
            try:
                getattr(self._hooks, hook)(event=event)
            except Exception as exc:  # a broken monitor must not lose or fail work
                log.warning("ipfs-accelerate: monitoring hook %s raised %s: %s", hook,
                            type(exc).__name__, exc)
        for method in self._observers[hook]:
            try:
                method(event)
            except Exception as exc:
                log.warning("ipfs-accelerate: observer %s.%s raised %s: %s",
                            type(getattr(method, "__self__", method)).__name__, hook,
                            type(exc).__name__, exc)
