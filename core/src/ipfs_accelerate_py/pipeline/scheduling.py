"""The scheduling state every stage shares, apart from whatever waits on I/O.

One lock guards the queue, the key slots and the counters.  Nothing here blocks: a
driver (the threaded :class:`~ipfs_accelerate_py.client.Client`, later an asyncio one)
waits on its own primitives and tells the stages the time through ``clock``; the stages
tell the driver when there is work or queue space through the ``wake_*`` callbacks, which
they call with the lock held.
"""

from __future__ import annotations

import itertools
import random
import threading
from typing import Any, Callable

from ..config import ClientConfig
from ..stats import StatsCollector
from .jobs import BackendState
from .monitor import Monitor


def _nothing() -> None:
    return None


class Scheduling:
    """Shared state of one client's pipeline.  Fields change only under ``lock``."""

    def __init__(self, config: ClientConfig, hooks: Any, clock: Callable[[], float],
                 seed: int | None, monitor: Monitor) -> None:
        self.config = config
        self.hooks = hooks
        self.clock = clock
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.seq = itertools.count()
        self.stats = StatsCollector(config.latency_samples)
        self.costs: Any = None  # the CostTracker, set by the pipeline once backends are known
        self.monitor = monitor
        self.queue: Any = None  # set by the pipeline (the queue hook may need the config)
        self.backends: dict[str, BackendState] = {}
        self.groups: dict[str, BackendState] = {}
        self.in_flight = 0  # attempts holding a concurrency slot, client-wide
        self.closing = False  # no new requests
        self.stopped = False  # nothing more runs; requeued work is failed
        self.space_waiting = 0  # submitters waiting for queue space
        # When (pipeline clock) the driver's reaper looks at the queue again; a request due
        # before then wakes it.  inf: a driver that does not say -- wake it for every one.
        self.reaper_due = float("inf")
        # Set by the driver; called with ``lock`` held.
        self.wake_work: Callable[[], None] = _nothing  # a request may be runnable now
        self.wake_all: Callable[[], None] = _nothing  # capacity or state changed broadly
        self.wake_space: Callable[[], None] = _nothing  # queue space freed
        self.wake_reaper: Callable[[], None] = _nothing  # a deadline to watch

    def plugin_name(self, hook: str) -> str:
        impls = getattr(self.hooks, hook).get_hookimpls()
        return impls[-1].plugin_name if impls else "?"
