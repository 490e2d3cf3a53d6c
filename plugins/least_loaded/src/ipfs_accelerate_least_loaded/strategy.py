from __future__ import annotations

from typing import Any, Sequence


class LeastLoaded:
    """The key with the fewest requests in flight; ties go to the most rate-limit
    headroom, then to the key used least often so far, then configuration order.

    The dispatch count in the tie-break keeps an idle pool fair: with one request at a
    time every key would otherwise tie at zero in flight and the first would take all.
    """

    def select(self, request: Any, candidates: Sequence[Any]) -> Any:
        if not candidates:
            return None
        return min(candidates, key=lambda c: (c.in_flight, -c.headroom, c.dispatched, c.index))
