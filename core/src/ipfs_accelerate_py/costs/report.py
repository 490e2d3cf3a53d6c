"""The cost section of the stats table, and the batch summary's cost line."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def dollars(value: Any) -> str:
    """``$0.0123``: four decimals, more for small amounts (three significant digits, never
    ``$0.0000`` for a non-zero spend)."""
    d = Decimal(value)
    if d == 0:
        return "$0"
    places = min(12, max(4, 2 - d.adjusted()))  # at least three significant digits
    return f"${d:.{places}f}"


def render_costs(snapshot: Any) -> str:
    costs = snapshot.costs
    head = f"{'cost by':<36} {'spend':>14} {'priced':>8} {'no price':>8} {'in tok':>10} {'out tok':>10}"
    rows = [head, "-" * len(head)]

    def row(scope: str, d: dict[str, Any] | None) -> None:
        if not d:
            return
        t = d["tokens"]
        rows.append(f"{scope[:36]:<36} {dollars(d['spend']):>14} {d['priced']:>8} "
                    f"{d['unpriced']:>8} {t['prompt']:>10} {t['completion']:>10}")

    for name in sorted(snapshot.backends):
        row(name, snapshot.backends[name].get("costs"))
    for name in sorted(snapshot.keys):
        row("  " + name, snapshot.keys[name].get("costs"))
    for name in sorted(costs.get("models", {})):
        row("model " + name, costs["models"][name])
    for name in sorted(costs.get("tags", {})):
        row("tag " + name, costs["tags"][name])
    row("total", costs.get("total"))
    for name, b in sorted(costs.get("budgets", {}).items()):
        fmt = dollars if b["unit"] == "usd" else str
        if "error" in b:
            rows.append(f"budget {name} ({b['window']}): {b['error']}")
            continue
        rows.append(f"budget {name} ({b['window']}): {fmt(b['spent'])} spent, "
                    f"{fmt(b['reserved'])} reserved of {fmt(b['limit'])}")
    return "\n".join(rows)


def summary_line(snapshot: Any) -> str:
    """``cost: $0.0123 (openai/gpt-4o-mini $0.0100, ...); 3 results without a price``."""
    costs = snapshot.costs
    total = costs.get("total") or {}
    parts = [f"{name} {dollars(d['spend'])}" for name, d in sorted(costs.get("models", {}).items())
             if d["priced"]]
    line = f"cost: {dollars(total.get('spend', 0))}"
    if parts:
        line += " (" + ", ".join(parts) + ")"
    if total.get("unpriced"):
        line += f"; {total['unpriced']} result(s) without a price"
    return line
