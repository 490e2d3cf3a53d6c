"""``ipfs-accelerate cache stats|clear|export``: look after a response cache.

The cache is named by ``--cache`` (a SQLite file path, or a URL: ``sqlite:///path``,
``redis://host:6379/0`` with the Redis extra) or the ``IPFS_ACCELERATE_CACHE`` variable.
``clear`` deletes by namespace, key, model and/or age (all entries when nothing is
given); ``export`` writes one JSON line per intact entry (a damaged one is skipped and
counted).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .common import EXIT_OK, REDACT, CliError, err, plugin_manager, positive_float


def register(sub: Any) -> None:
    p = sub.add_parser("cache", help="response cache: stats, clear, export",
                       description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", metavar="PATH|URL",
                        help="the cache (default: $IPFS_ACCELERATE_CACHE)")
    common.add_argument("--namespace", help="only this namespace (default: every one)")
    actions.add_parser("stats", parents=[common], help="entries, bytes and evictions")
    clear = actions.add_parser("clear", parents=[common],
                               help="delete entries (all, or by key, model, age)")
    clear.add_argument("--key", help="one entry by its key (64 hex digits)")
    clear.add_argument("--model", help="entries of this model")
    clear.add_argument("--older-than", type=positive_float, metavar="SECONDS",
                       help="entries written more than SECONDS ago")
    export = actions.add_parser("export", parents=[common], help="entries as JSON lines")
    export.add_argument("-o", "--output", metavar="PATH", help="(default: stdout)")
    p.set_defaults(func=run)


def open_cache(location: str | None) -> Any:
    from ..caching import CacheConfig
    from ..caching.resolve import CACHE_ENV, cache_url, open_store, sqlite_path

    location = location or os.environ.get(CACHE_ENV)
    if not location:
        raise CliError(f"name the cache: --cache PATH|URL or {CACHE_ENV}")
    url = cache_url(location)
    if url.startswith("sqlite://") and not Path(sqlite_path(url)).is_file():
        raise CliError(f"no cache file at {sqlite_path(url)}")
    try:
        return open_store(url, CacheConfig(store=url, max_entries=10 ** 12,
                                           max_bytes=10 ** 15), plugin_manager())
    except CliError:
        raise
    except Exception as exc:  # a damaged file, an unreachable server: one line
        from ..errors import ConfigError

        if isinstance(exc, ConfigError):
            raise CliError(str(exc)) from None
        raise CliError(f"cannot open the cache {location}: {type(exc).__name__}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    store = open_cache(args.cache)
    try:
        if args.action == "stats":
            info = store.info()
            if args.namespace:
                info["namespace"] = args.namespace
                info["namespace_entries"] = sum(1 for _ in store.entries(args.namespace))
            print(json.dumps(info, indent=2))
        elif args.action == "clear":
            before = None if args.older_than is None else time.time() - args.older_than
            n = store.invalidate(namespace=args.namespace, key=args.key, model=args.model,
                                 created_before=before)
            print(f"deleted {n} entries")
        else:
            _export(store, args)
    finally:
        store.close()
    return EXIT_OK


def _export(store: Any, args: argparse.Namespace) -> None:
    from ..caching.entry import decode_body

    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    written = damaged = 0
    try:
        for e in store.entries(args.namespace):
            doc = decode_body(e.namespace, e.key, e.body)
            if doc is None:
                damaged += 1
                continue
            result = {k: v for k, v in doc.items() if k not in ("ns", "k") and v not in (None, [])}
            out.write(REDACT(json.dumps({"namespace": e.namespace, "key": e.key,
                                         "backend": e.backend, "operation": e.operation,
                                         "model": e.model, "created": e.created,
                                         "expires": e.expires, "result": result},
                                        ensure_ascii=False)) + "\n")
            written += 1
    finally:
        if out is not sys.stdout:
            out.close()
    err(f"exported {written} entries" + (f" ({damaged} damaged, skipped)" if damaged else ""))
