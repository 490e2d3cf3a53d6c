"""Smooth weighted round-robin (the algorithm nginx uses for upstream weights).

Each key has a weight, ``ApiKey.extra["weight"]`` (default 1): a key with weight 3 carries
three times the requests of a key with weight 1, interleaved (a, a, b, a, ... not
a, a, a, b), so no key gets a burst.  Only the keys the pipeline offers take part: a key
that is busy or rate limited right now is skipped without losing its place.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from ipfs_accelerate_py.errors import ConfigError

DEFAULT_WEIGHT = 1.0


def weight_of(candidate: Any) -> float:
    """The key's weight; a weight that is not a finite number > 0 is a configuration error
    (naming the key by its public id, never the secret)."""
    raw = candidate.key.extra.get("weight", DEFAULT_WEIGHT)
    try:
        weight = float(raw)
    except (TypeError, ValueError):
        weight = math.nan
    if not (weight > 0 and math.isfinite(weight)):
        raise ConfigError("weight", f"key {candidate.key_id!r}: must be a number > 0, got {raw!r}")
    return weight


class Weighted:
    """One instance per backend of a client; ``select`` runs under the pipeline's lock."""

    def __init__(self) -> None:
        self._current: dict[str, float] = {}  # key_id -> running score

    def select(self, request: Any, candidates: Sequence[Any]) -> Any:
        if not candidates:
            return None
        total = 0.0
        best, best_score = None, -math.inf
        for c in candidates:
            w = weight_of(c)
            total += w
            score = self._current.get(c.key_id, 0.0) + w
            self._current[c.key_id] = score
            if score > best_score:  # ties: the first in configuration order
                best, best_score = c, score
        self._current[best.key_id] -= total
        return best
