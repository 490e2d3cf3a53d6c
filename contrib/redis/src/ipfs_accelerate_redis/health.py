"""Connection health shared by every object of one store: detect an outage, fall back,
and say so once per outage.  While down, a background thread PINGs Redis every
``retry_interval`` seconds, so the pipeline (which calls the store under its lock) never
waits on a dead or hung Redis; the first successful PING switches back to Redis."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Callable

from ipfs_accelerate_py.redaction import redact_url as core_redact_url

log = logging.getLogger("ipfs_accelerate.redis")


class RedisStateWarning(UserWarning):
    """Redis became unreachable (limits fall back to this process) or came back."""


def redact_url(url: str) -> str:
    """The URL without user info, password or query (the core's one URL redactor)."""
    return core_redact_url(url)


class Health:
    """Up or down; when down, whether it is time to try Redis again."""

    def __init__(self, url_safe: str, retry_interval: float,
                 probe: Callable[[], object] | None = None) -> None:
        self.url_safe = url_safe
        self.retry_interval = retry_interval
        self.probe = probe
        self.ok = True
        self.outages = 0
        self.recoveries = 0
        self._next_probe = 0.0
        self._lock = threading.Lock()
        self._prober: threading.Thread | None = None
        self._closed = threading.Event()

    def usable(self) -> bool:
        """Should the next operation go to Redis?  (Without a probe function, callers
        probe themselves: every ``retry_interval`` one call is let through.)"""
        if self.ok:
            return True
        return self.probe is None and time.monotonic() >= self._next_probe

    def retry_in(self) -> float:
        """Seconds until the next probe (0.0 when up)."""
        return 0.0 if self.ok else max(0.0, self._next_probe - time.monotonic())

    def failed(self, exc: BaseException, fallback: str) -> None:
        with self._lock:
            self._next_probe = time.monotonic() + self.retry_interval
            if not self.ok:
                return
            self.ok = False
            self.outages += 1
            if self.probe is not None and not self._closed.is_set():
                self._prober = threading.Thread(target=self._probe_loop, daemon=True,
                                                name="ipfs-accelerate-redis-probe")
                self._prober.start()
        msg = (f"ipfs-accelerate: Redis at {self.url_safe} is unreachable "
               f"({type(exc).__name__}); {fallback} until it is back")
        log.warning(msg)
        warnings.warn(msg, RedisStateWarning, stacklevel=4)

    def _probe_loop(self) -> None:
        while not self.ok and not self._closed.wait(self.retry_interval):
            self._next_probe = time.monotonic() + self.retry_interval
            try:
                self.probe()  # type: ignore[misc]
            except Exception:  # still down (or failing): try again later
                continue
            self.succeeded()

    def succeeded(self) -> None:
        if self.ok:
            return
        with self._lock:
            if self.ok:
                return
            self.ok = True
            self.recoveries += 1
        log.warning("ipfs-accelerate: Redis at %s is reachable again; shared limits resumed",
                    self.url_safe)

    def close(self) -> None:
        self._closed.set()
