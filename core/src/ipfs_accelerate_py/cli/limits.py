"""``ipfs-accelerate limits``: probe a backend with a few tiny requests, then show each
key's rate, capacity and window and where each came from (configured, response headers,
429s).  The report itself is :mod:`ipfs_accelerate_py.limits_report`."""

from __future__ import annotations

import argparse
from typing import Any

from ..jobs import client_config_from_options
from .common import (EXIT_FAILED, EXIT_OK, CliError, add_key_options, add_pipeline_options,
                     err, parse_base_urls, positive_int)
from .keys import backend_config, read_keys_file
from .request import CHAT_OPS, INFER_OPS, _one_backend, _payload_for


def register(sub: Any) -> None:
    p = sub.add_parser("limits", help="probe a backend and show each key's learned limits",
                       description="Send a few tiny requests, then print each key's rate, "
                                   "capacity and window and where each came from (configured, "
                                   "response headers, 429s).")
    p.add_argument("--backend", "-b", required=True)
    p.add_argument("--base-url")
    p.add_argument("--model", "-m")
    p.add_argument("--operation", help="the probe's operation (default: chat-like)")
    p.add_argument("--probes", type=positive_int, default=3, metavar="N",
                   help="(default: %(default)s)")
    add_key_options(p)
    add_pipeline_options(p)
    p.set_defaults(func=run, text=["ping"], max_tokens=1, system=None, payload=None)


def run(args: argparse.Namespace) -> int:
    from ..client import Client
    from ..limits_report import probe_limits

    name, cls = _one_backend(args)
    op = args.operation or next((o for o in CHAT_OPS + INFER_OPS if o in cls.operations), None)
    if op is None or op not in cls.operations:
        raise CliError(f"backend {name!r}: choose a probe operation with --operation; its "
                       f"operations: {', '.join(cls.operations)}")
    keys_file = read_keys_file(args.keys_file) if args.keys_file else None
    base = parse_base_urls([args.base_url] if args.base_url else None, [name]).get(name)
    cfg = backend_config(name, cls, args, keys_file, base)
    with Client([cfg], client_config_from_options(args)) as client:
        report, errors = probe_limits(client, name, op, _payload_for("chat", op, args, cls),
                                      args.probes)
    for e in errors:
        err(f"probe failed: {e}")
    print(report)
    return EXIT_OK if len(errors) < args.probes else EXIT_FAILED
