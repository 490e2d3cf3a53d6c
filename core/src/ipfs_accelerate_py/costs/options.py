"""Cost settings from command-line options (``--budget``, ``--budget-tokens``,
``--prices``), for :func:`~ipfs_accelerate_py.jobs.client_config_from_options`."""

from __future__ import annotations

from typing import Any

from .budgets import Budget

#: The name of the budget ``--budget`` / ``--budget-tokens`` set.  Through a shared state
#: store (Redis) every process of a job with the same name shares it.
CLI_BUDGET = "batch"


def cost_config(options: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    budgets = []
    usd = getattr(options, "budget", None)
    if usd is not None:
        budgets.append(Budget(CLI_BUDGET, usd=usd))
    tokens = getattr(options, "budget_tokens", None)
    if tokens is not None:
        budgets.append(Budget(CLI_BUDGET + "-tokens", tokens=tokens))
    if budgets:
        out["budgets"] = tuple(budgets)
    prices = getattr(options, "prices", None)
    if prices is not None:
        out["prices"] = prices
    return out
