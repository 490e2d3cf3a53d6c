"""Key selection: the live state of each key, and the strategy interface.

The pipeline offers a strategy only the keys that can take the request *now* (below their
concurrency limit, admitted by their rate limiter, not disabled); a strategy only chooses
among them, so it can never pick a key without capacity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

from .keys import ApiKey

if TYPE_CHECKING:  # pragma: no cover
    from .request import Request


class KeyCandidate:
    """One key of a backend with its live state (read-only for strategies).

    ``index`` is the key's position in the configuration; ``in_flight`` the requests it is
    carrying; ``max_concurrent`` its limit; ``headroom`` the share (0..1) of its request
    rate budget available now; ``healthy`` False once the provider rejected the key.
    """

    __slots__ = ("key", "key_id", "index", "in_flight", "max_concurrent", "limiter", "healthy",
                 "disabled_reason", "dispatched", "_now")

    def __init__(self, key: ApiKey, index: int, max_concurrent: int, limiter: Any) -> None:
        self.key = key
        self.key_id = key.key_id
        self.index = index
        self.in_flight = 0
        self.max_concurrent = max_concurrent
        self.limiter = limiter
        self.healthy = True
        self.disabled_reason: str | None = None
        self.dispatched = 0  # attempts sent through this key, ever
        self._now = 0.0

    @property
    def headroom(self) -> float:
        return float(self.limiter.headroom(self._now))

    def __repr__(self) -> str:
        return (f"KeyCandidate({self.key_id!r}, in_flight={self.in_flight}/{self.max_concurrent}, "
                f"healthy={self.healthy})")


class Strategy(Protocol):
    """What a strategy plugin's factory returns.  One instance serves one backend of one
    client; ``select`` runs under the pipeline's lock, so it need not lock itself unless it
    shares state across instances."""

    def select(self, request: Request, candidates: Sequence[KeyCandidate]) -> KeyCandidate | None:
        ...


class FirstAvailable:
    """The core's built-in default: the first key, in configuration order, that has
    capacity now.  Deterministic; install ``ipfs-accelerate-round-robin`` or
    ``ipfs-accelerate-least-loaded`` for load spreading."""

    def select(self, request: Request, candidates: Sequence[KeyCandidate]) -> KeyCandidate | None:
        return candidates[0] if candidates else None


BUILTIN_STRATEGIES = {"first-available": FirstAvailable}
