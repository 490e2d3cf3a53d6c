"""``ipfs-accelerate prices``: the price table in use, with its date and source, and the
overrides of a ``--prices`` file.  Also the cost options other commands take
(``--budget``, ``--budget-tokens``, ``--prices``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import EXIT_OK, CliError, positive_int


def register(sub: Any) -> None:
    p = sub.add_parser("prices", help="show the model price table in use (date and source)",
                       description="Print the prices costs are computed from: the default "
                                   "table shipped with the package (its date and source), "
                                   "overridden by --prices FILE.  Dollars per 1M tokens.")
    p.add_argument("--backend", "-b", action="append", help="only this backend (repeatable)")
    p.add_argument("--prices", metavar="FILE", help="a JSON price file overriding the defaults")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def add_cost_options(p: argparse.ArgumentParser) -> None:
    """``--budget USD``, ``--budget-tokens N`` and ``--prices FILE`` (read by
    :func:`~ipfs_accelerate_py.jobs.client_config_from_options`)."""
    p.add_argument("--budget", type=_dollars, metavar="USD",
                   help="stop sending requests once this many dollars would be spent "
                        "(requests that would pass it fail with BudgetExceeded)")
    p.add_argument("--budget-tokens", type=positive_int, metavar="N",
                   help="the same, in tokens")
    p.add_argument("--prices", metavar="FILE", help="a JSON price file overriding the defaults")


def _dollars(text: str) -> str:
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected an amount of dollars, got {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return text


def run(args: argparse.Namespace) -> int:
    from ..costs import PriceBook, default_table, user_table
    from ..errors import ConfigError

    try:
        book = PriceBook(user_table(args.prices))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    table = default_table()
    rows = book.rows(set(args.backend) if args.backend else None)
    if args.json:
        print(json.dumps({"as_of": table.as_of, "source": table.source, "prices": [
            {"backend": b, "model": m, "from": p.source, **{
                f: str(getattr(p, f)) for f in ("input", "output", "cached_input", "cache_write",
                                                "per_request") if getattr(p, f) is not None}}
            for b, m, p in rows]}, indent=2))
        return EXIT_OK
    print(f"default table as of {table.as_of}; source: {table.source}")
    if args.prices:
        print(f"overridden by {args.prices}")
    print("dollars per 1M tokens; cached = prompt-cache reads, write = prompt-cache writes")
    head = (f"{'backend':<8} {'model':<28} {'input':>8} {'cached':>8} {'write':>8} "
            f"{'output':>8} {'/request':>9}  from")
    print(head)
    print("-" * len(head))
    for b, m, p in rows:
        def f(v: Any) -> str:
            return "-" if v is None else str(v)

        print(f"{b:<8} {m:<28} {f(p.input):>8} {f(p.cached_input):>8} {f(p.cache_write):>8} "
              f"{f(p.output):>8} {f(p.per_request):>9}  {p.source}")
    return EXIT_OK
