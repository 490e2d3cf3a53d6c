"""Connection health shared by every object of one store: detect an outage, fall back,
probe again every ``retry_interval`` seconds, and say so once per outage."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("ipfs_accelerate.redis")


class RedisStateWarning(UserWarning):
    """Redis became unreachable (limits fall back to this process) or came back."""


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable Redis URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Health:
    """Up or down; when down, whether it is time to try Redis again."""

    def __init__(self, url_safe: str, retry_interval: float) -> None:
        self.url_safe = url_safe
        self.retry_interval = retry_interval
        self.ok = True
        self.outages = 0
        self.recoveries = 0
        self._next_probe = 0.0
        self._lock = threading.Lock()

    def usable(self) -> bool:
        """Should the next operation go to Redis?"""
        return self.ok or time.monotonic() >= self._next_probe

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
        msg = (f"ipfs-accelerate: Redis at {self.url_safe} is unreachable "
               f"({type(exc).__name__}); {fallback} until it is back")
        log.warning(msg)
        warnings.warn(msg, RedisStateWarning, stacklevel=4)

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
