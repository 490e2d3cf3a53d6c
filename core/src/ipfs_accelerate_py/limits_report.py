"""What each key's limiter believes, and why: the ``limits`` report.

Rendered from a stats snapshot's ``keys[...]["limiter"]`` (see
:meth:`ipfs_accelerate_py.limiter.KeyLimiter.snapshot`), so it works for any limiter
that reports the same shape.  Used by :meth:`StatsSnapshot.table` and the
``ipfs-accelerate limits`` command.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["limit_rows", "render_limits"]

_HEAD = (f"{'key':<28} {'unit':<8} {'rate/s':>9} {'per min':>9} {'capacity':>9} "
         f"{'window s':>9} {'level':>9}  {'rate from':<34} capacity from")


def _num(v: Any, fmt: str = ".3g") -> str:
    return "-" if v is None else format(float(v), fmt)


def limit_rows(keys: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per key and unit (requests, tokens) with a known or stated limit."""
    rows = []
    for name in sorted(keys):
        snap = keys[name].get("limiter") or {}
        for unit in ("requests", "tokens"):
            d = snap.get(unit)
            if d:
                rows.append({"key": name, "unit": unit, **d})
        if snap.get("cooldown"):
            rows.append({"key": name, "unit": "cooldown", "window": snap["cooldown"],
                         "rate_source": snap.get("cooldown_source")})
    return rows


def render_limits(keys: Mapping[str, Mapping[str, Any]]) -> str:
    """A fixed-width table: each key's current rate, capacity and window (capacity /
    rate: how long an empty bucket takes to fill), and where each came from
    (``configured``, ``headers: ...``, ``... lowered by 429s``)."""
    rows = limit_rows(keys)
    if not rows:
        return "no limits configured or learned yet (send a request, or configure "\
               "requests_per_minute / tokens_per_minute)"
    out = [_HEAD, "-" * len(_HEAD)]
    for r in rows:
        out.append(f"{r['key'][:28]:<28} {r['unit']:<8} {_num(r.get('rate_per_second')):>9} "
                   f"{_num(r.get('per_minute'), '.4g'):>9} {_num(r.get('capacity'), '.4g'):>9} "
                   f"{_num(r.get('window')):>9} {_num(r.get('level')):>9}  "
                   f"{str(r.get('rate_source') or '-')[:34]:<34} {r.get('capacity_source') or '-'}")
    return "\n".join(out)


def probe_limits(client: Any, backend: str, operation: str, payload: Mapping[str, Any],
                 probes: int = 3) -> tuple[str, list[str]]:
    """Send ``probes`` small requests through ``client`` (so the limiters read the
    server's headers), then render what each key learned.  Returns (report, errors):
    a failed probe is reported, not raised -- a 429 teaches the limiter too."""
    errors: list[str] = []
    for _ in range(max(0, probes)):
        try:
            client.call(backend, operation, dict(payload))
        except Exception as exc:  # the report is still worth printing
            errors.append(f"{type(exc).__name__}: {exc}")
    keys = client.stats().to_dict()["keys"]
    return render_limits({k: v for k, v in keys.items() if k.startswith(backend + "/")}), errors
