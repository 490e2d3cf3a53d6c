from __future__ import annotations

from typing import Any, Sequence


class RoundRobin:
    """Rotate through the keys in configuration order, skipping those without capacity.

    The pipeline offers only keys that can take the request now; this picks the first of
    them that comes after the key picked last (wrapping around), so over time every key
    with capacity gets its turn, and a busy or rate-limited key is simply passed over.
    """

    def __init__(self) -> None:
        self._last = -1

    def select(self, request: Any, candidates: Sequence[Any]) -> Any:
        if not candidates:
            return None
        after = [c for c in candidates if c.index > self._last]
        chosen = min(after, key=lambda c: c.index) if after else min(candidates, key=lambda c: c.index)
        self._last = chosen.index
        return chosen
