"""Monitoring: hand events to the monitoring hooks, never letting one fail or lose work."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("ipfs_accelerate")

EVENT_HOOKS = ("accelerate_on_queued", "accelerate_on_started", "accelerate_on_retried",
               "accelerate_on_finished", "accelerate_on_breaker_changed")


class Monitor:
    """Calls the monitoring hooks.  ``wants[hook]`` says whether anyone listens, so the
    pipeline builds an event only when it will be delivered."""

    def __init__(self, hooks: Any) -> None:
        self._hooks = hooks
        self.wants = {name: bool(getattr(hooks, name).get_hookimpls()) for name in EVENT_HOOKS}

    def emit(self, hook: str, event: Any) -> None:
        try:
            getattr(self._hooks, hook)(event=event)
        except Exception as exc:  # a broken monitor must not lose or fail work
            log.warning("ipfs-accelerate: monitoring hook %s raised %s: %s", hook,
                        type(exc).__name__, exc)
