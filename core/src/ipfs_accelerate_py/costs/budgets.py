"""Budgets: a limit in dollars or tokens over a window, and the ledger that enforces it.

A request reserves its worst case before it is sent and settles to its real cost when it
ends (or gives the reservation back when it fails unsent).  A reservation is refused
when ``settled + reserved + amount > limit``, so while calls cost no more than their
reservation the settled spend never passes the limit; when one costs more (its input
was underestimated) the overshoot is at most what was in flight.

Amounts are integers: pico-dollars (10**-12 USD) for money, tokens for tokens.
"""

from __future__ import annotations

import calendar
import math
import threading
import time
from decimal import Decimal
from typing import Any, Callable, Mapping, Sequence

import attrs

from ..errors import AccelerateError, ConfigError
from .prices import PICO, dollar_text, to_dollars, to_units

WINDOWS = ("day", "month", "total")


class BudgetExceeded(AccelerateError):
    """A budget would be exceeded by this request: it was not sent (never retried).

    ``budget`` names the budget, ``window`` its current window (``2026-12-05``,
    ``2026-12``, ``total``); ``spent``, ``reserved`` and ``limit`` are in its unit
    (dollars as Decimal, or tokens); ``needed`` is the request's worst case.
    """

    retryable = False

    def __init__(self, message: str, *, budget: str, window: str, unit: str, limit: Any,
                 spent: Any, reserved: Any, needed: Any, request_id: str | None = None) -> None:
        super().__init__(message)
        self.budget = budget
        self.window = window
        self.unit = unit
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.needed = needed
        self.request_id = request_id


def _choice(options: Sequence[str]) -> Callable[[Any, Any, Any], None]:
    def check(_inst: Any, attribute: Any, value: Any) -> None:
        if value not in options:
            raise ConfigError(attribute.name, f"must be one of {', '.join(options)}, got {value!r}")

    return check


def _thresholds(value: Any) -> tuple[float, ...]:
    try:
        out = tuple(sorted(float(v) for v in value))
    except (TypeError, ValueError):
        raise ConfigError("thresholds", f"must be fractions such as (0.5, 0.8, 1.0), got "
                                        f"{value!r}") from None
    if any(not 0 < v <= 1 for v in out):
        raise ConfigError("thresholds", f"each must be within (0, 1], got {value!r}")
    return out


def _tags(value: Any) -> Mapping[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("tags", f"must be a mapping such as {{'team': 'search'}}, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


@attrs.frozen
class Budget:
    """A spending limit.  Give exactly one of ``usd`` (dollars) or ``tokens``.

    It applies to the requests that match every filter given: ``backend``, ``key`` (a key's
    name), ``model`` and ``tags`` (each ``Request.tags[k] == v``); none given: every
    request.  ``window`` is ``"day"`` or ``"month"`` (UTC calendar) or ``"total"``.  When a
    request's worst case does not fit, ``on_exceed="fail"`` fails it with
    :class:`BudgetExceeded`; ``"hold"`` keeps it queued until the window turns (its
    deadline still bounds the wait).  ``output_tokens`` is the output a request is assumed
    to produce when it sets no ``max_tokens``.  Crossing each of ``thresholds`` (fractions
    of the limit, by settled spend) is reported once per window to the
    ``accelerate_on_budget`` monitoring hook.
    """

    name: str
    usd: Decimal | None = attrs.field(default=None)
    tokens: int | None = attrs.field(default=None)
    window: str = attrs.field(default="total", validator=_choice(WINDOWS))
    backend: str | None = None
    key: str | None = None
    model: str | None = None
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=_tags)
    on_exceed: str = attrs.field(default="fail", validator=_choice(("fail", "hold")))
    thresholds: tuple[float, ...] = attrs.field(default=(0.5, 0.8, 1.0), converter=_thresholds)
    output_tokens: int = 4096
    #: The limit in ledger units (pico-dollars or tokens).
    limit: int = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or any(
                c.isspace() for c in self.name):
            raise ConfigError("budget", f"a budget needs a name without spaces, got {self.name!r}")
        if (self.usd is None) == (self.tokens is None):
            raise ConfigError("budget", f"budget {self.name!r}: give exactly one of usd= or tokens=")
        if self.usd is not None:
            limit = to_units(self.usd, f"budget {self.name!r} usd")
            object.__setattr__(self, "usd", to_dollars(limit))
        else:
            if isinstance(self.tokens, bool) or not isinstance(self.tokens, int):
                raise ConfigError("budget", f"budget {self.name!r}: tokens must be a whole "
                                            f"number, got {self.tokens!r}")
            limit = self.tokens
        if limit <= 0:
            raise ConfigError("budget", f"budget {self.name!r}: the limit must be > 0")
        if self.on_exceed == "hold" and self.window == "total":
            raise ConfigError("budget", f"budget {self.name!r}: a total budget never turns; "
                                        f"hold needs window='day' or 'month'")
        if isinstance(self.output_tokens, bool) or not isinstance(self.output_tokens, int) \
                or self.output_tokens < 0:
            raise ConfigError("budget", f"budget {self.name!r}: output_tokens must be >= 0")
        object.__setattr__(self, "limit", limit)

    @property
    def unit(self) -> str:
        return "usd" if self.usd is not None else "tokens"

    def show(self, units: int) -> Any:
        """Ledger units in the budget's own unit (dollars as Decimal, or tokens)."""
        return to_dollars(units) if self.usd is not None else units

    def text(self, units: int) -> Any:
        """As :meth:`show`, JSON-safe: dollars as an exact decimal string."""
        return dollar_text(units) if self.usd is not None else units

    def matches(self, backend: str, key: str | None, model: str | None,
                tags: Mapping[str, Any]) -> bool:
        if self.backend is not None and self.backend != backend:
            return False
        if self.key is not None and self.key != key:
            return False
        if self.model is not None and self.model != model:
            return False
        for k, v in self.tags.items():
            if str(tags.get(k)) != v:
                return False
        return True

    def window_id(self, wall: float) -> str:
        if self.window == "total":
            return "total"
        t = time.gmtime(wall)
        return f"{t.tm_year:04d}-{t.tm_mon:02d}" + (f"-{t.tm_mday:02d}" if self.window == "day" else "")

    def seconds_to_turn(self, wall: float) -> float:
        """Seconds until the window turns (inf for a total budget)."""
        if self.window == "total":
            return math.inf
        t = time.gmtime(wall)
        if self.window == "day":
            start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
            return start + 86400 - wall
        year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        return calendar.timegm((year, month, 1, 0, 0, 0)) - wall


class MemoryLedger:
    """Spend per ``budget:window`` in this process.  Thread-safe; every method is atomic
    across the entries it is given (all reserved, or none)."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled: dict[str, int] = {}
        self._reserved: dict[str, int] = {}

    def reserve(self, entries: Sequence[tuple[str, int, int]]) -> int | None:
        """Reserve ``amount`` under each ``(ledger_key, amount, limit)``; None when all
        fit, else the index of the first entry that does not (nothing reserved)."""
        with self._lock:
            for i, (k, amount, limit) in enumerate(entries):
                if self._settled.get(k, 0) + self._reserved.get(k, 0) + amount > limit:
                    return i
            for k, amount, _ in entries:
                self._reserved[k] = self._reserved.get(k, 0) + amount
        return None

    def settle(self, entries: Sequence[tuple[str, int, int]]) -> list[tuple[int, int]]:
        """Turn each ``(ledger_key, reserved, actual)`` reservation into spend; returns
        each key's settled spend before and after."""
        out = []
        with self._lock:
            for k, reserved, actual in entries:
                self._reserved[k] = self._reserved.get(k, 0) - reserved
                before = self._settled.get(k, 0)
                self._settled[k] = before + actual
                out.append((before, before + actual))
        return out

    def usage(self, key: str) -> tuple[int, int]:
        """(settled, reserved) under ``key``."""
        with self._lock:
            return self._settled.get(key, 0), self._reserved.get(key, 0)

    def close(self) -> None:
        return None


__all__ = ["Budget", "BudgetExceeded", "MemoryLedger", "PICO", "WINDOWS"]
