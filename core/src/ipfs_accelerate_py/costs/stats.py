"""Spend and tokens per backend, key, model and caller tag."""

from __future__ import annotations

import threading
from typing import Any, Mapping

from ..results import Usage
from .prices import dollar_text

_MAX_SERIES = 10_000  # model names and tag values come from outside: bound the memory


class _Spend:
    __slots__ = ("units", "priced", "unpriced", "prompt", "completion", "cached", "reasoning")

    def __init__(self) -> None:
        self.units = self.priced = self.unpriced = 0
        self.prompt = self.completion = self.cached = self.reasoning = 0

    def to_dict(self) -> dict[str, Any]:
        return {"spend": dollar_text(self.units), "priced": self.priced,
                "unpriced": self.unpriced,
                "tokens": {"prompt": self.prompt, "completion": self.completion,
                           "cached": self.cached, "reasoning": self.reasoning}}


class CostStats:
    """Thread-safe.  ``spend`` is an exact decimal string of dollars (JSON-safe;
    ``Decimal(spend)`` to compute with) over the priced results;
    ``unpriced`` counts the results that had no price (an unknown model, no usage)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Spend] = {}
        self._total = _Spend()

    def record(self, backend: str, key_id: str | None, model: str | None,
               tags: Mapping[str, Any], units: int | None, usage: Usage | None) -> None:
        scopes = [("backend", backend), ("key", f"{backend}/{key_id}"),
                  ("model", f"{backend}/{model or '?'}")]
        for k, v in tags.items():
            scopes.append(("tag", f"{k}={v}"))
        with self._lock:
            for scope in scopes:
                s = self._series.get(scope)
                if s is None:
                    if len(self._series) >= _MAX_SERIES:
                        continue
                    s = self._series[scope] = _Spend()
                _add(s, units, usage)
            _add(self._total, units, usage)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {"total": self._total.to_dict(), "backends": {}, "keys": {},
                                   "models": {}, "tags": {}}
            for (scope, name), s in self._series.items():
                out[scope + "s"][name] = s.to_dict()
        return out

    def reset(self) -> None:
        with self._lock:
            self._series.clear()
            self._total = _Spend()


def _add(s: _Spend, units: int | None, usage: Usage | None) -> None:
    if units is None:
        s.unpriced += 1
    else:
        s.priced += 1
        s.units += units
    if usage is not None:
        s.prompt += usage.prompt_tokens
        s.completion += usage.completion_tokens
        s.cached += usage.cached_tokens
        s.reasoning += usage.reasoning_tokens
