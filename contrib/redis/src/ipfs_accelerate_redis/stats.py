"""Cluster-wide request statistics and in-flight counts, fed by the monitoring hooks.

Register a :class:`RedisSharedStats` (with ``PluginManager.add_plugin``, before building
clients) to keep, in the store's Redis, counters every process adds to::

    requests/<backend>/<key_id>/<outcome>     requests completed
    retries/<backend>/<key_id>                attempts retried
    rate_limited/<backend>/<key_id>           429s (retried or final)
    in_flight/<backend>/<key_id>              attempts in flight now

Read them with ``store.counters()``.  Each event costs one INCRBY on the thread that
emits it (never under the client's lock).  An attempt is counted in flight from its
``started`` event until the ``retried`` or ``finished`` event of the same request; a
process killed mid-request leaves its in-flight counts behind (they are gauges of live
processes, not a ledger).
"""

from __future__ import annotations

import threading
from typing import Any

from ipfs_accelerate_py import hookimpl

_RATE_LIMITED = "rate_limited"


class RedisSharedStats:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._flying: dict[str, str] = {}  # request_id -> counter name
        self._lock = threading.Lock()

    def _c(self, name: str) -> Any:
        return self.store.counter(name)

    def _landed(self, request_id: str) -> None:
        with self._lock:
            name = self._flying.pop(request_id, None)
        if name is not None:
            self._c(name).decr()

    @hookimpl
    def accelerate_on_started(self, event: Any) -> None:
        name = f"in_flight/{event.backend}/{event.key_id}"
        with self._lock:
            self._flying[event.request_id] = name
        self._c(name).incr()

    @hookimpl
    def accelerate_on_retried(self, event: Any) -> None:
        self._landed(event.request_id)
        self._c(f"retries/{event.backend}/{event.key_id}").incr()
        if event.error_class == _RATE_LIMITED:
            self._c(f"rate_limited/{event.backend}/{event.key_id}").incr()

    @hookimpl
    def accelerate_on_finished(self, event: Any) -> None:
        self._landed(event.request_id)
        outcome = getattr(event.outcome, "value", str(event.outcome))
        self._c(f"requests/{event.backend}/{event.key_id or 'none'}/{outcome}").incr()
        if event.error_class == _RATE_LIMITED:
            self._c(f"rate_limited/{event.backend}/{event.key_id}").incr()
