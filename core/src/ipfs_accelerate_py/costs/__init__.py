"""Cost tracking and budgets: prices, the cost of each result, spend in the stats, and
budgets reserved before dispatch and settled when a request ends.  See ``docs/costs.md``."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from ..errors import ConfigError
from .budgets import Budget, BudgetExceeded, MemoryLedger
from .prices import PICO, Price, PriceBook, PriceTable, backend_prices, default_table, to_dollars, to_units, user_table
from .stats import CostStats
from .tracker import BudgetWarning, CostTracker


def make_tracker(config: Any, pm: Any, backends: Iterable[Any], store: Any, emit: Any,
                 clock: Callable[[], float]) -> CostTracker:
    """A client's tracker: its price book (``ClientConfig.prices``, each backend's
    ``options["prices"]``, the ``accelerate_price`` hook, the default table) and its
    budgets, kept in the state store's ledger when it has one (shared by processes)."""
    own = {}
    for b in backends:
        found = backend_prices(b.config.options, b.name)
        if found:
            own[b.name] = found
    hook = pm.hooks.accelerate_price if pm.hooks.accelerate_price.get_hookimpls() else None
    book = PriceBook(user_table(config.prices), hook, own)
    budgets = tuple(config.budgets)
    for b in budgets:
        if not isinstance(b, Budget):
            raise ConfigError("budgets", f"expected Budget objects, got {type(b).__name__}")
    ledger = None
    if budgets:
        make = getattr(store, "budget_ledger", None)
        ledger = make() if callable(make) else MemoryLedger()
    return CostTracker(book, budgets, ledger, emit=emit, clock=clock)


__all__ = ["PICO", "Budget", "BudgetExceeded", "BudgetWarning", "CostStats", "CostTracker",
           "MemoryLedger", "Price", "PriceBook", "PriceTable", "default_table", "make_tracker",
           "to_dollars", "to_units"]
