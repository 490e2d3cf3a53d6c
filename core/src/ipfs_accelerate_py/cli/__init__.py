"""``ipfs-accelerate``: the command line.

    ipfs-accelerate plugins                      installed backends, strategies, versions
    ipfs-accelerate chat|embed|infer ...         one request to a backend
    ipfs-accelerate limits -b NAME               each key's learned rate, capacity, window
    ipfs-accelerate batch IN.jsonl -o OUT.jsonl  a resumable JSONL batch through the pipeline
    ipfs-accelerate prices                       the model price table in use (date, source)
    ipfs-accelerate sim --port 8765              the local simulator (ipfs-accelerate-sim)
    ipfs-accelerate demo                         simulator + requests, offline (the same)
    ipfs-accelerate cache stats|clear|export     look after a response cache

One module per command, each with ``register(subparsers)`` adding its parser.  Plugins
add commands (``accelerate_cli_commands``: the simulator distribution adds ``sim`` and
``demo`` that way; the core carries no simulator code), options to any command
(``accelerate_cli_options``) and batch runners (``accelerate_cli_run_batch``); see
:mod:`ipfs_accelerate_py.hookspecs`.

Keys come from environment variables (each backend's own, e.g. ``OPENAI_API_KEY``, plus
numbered variants ``OPENAI_API_KEY_1``, ``OPENAI_API_KEY_2``...) or ``--keys-file``.  They
are never printed, logged or written to the output, the errors file or the journal.
"""

from __future__ import annotations

import argparse
from typing import Sequence

from ..jobs import JobError, read_batch_input
from . import batch, cache, limits, plugins, prices, request
from .common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, REDACT, CliError, err

__all__ = ["main", "build_parser", "CliError", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE",
           "REDACT", "read_batch_input"]

#: The core's commands, in the order ``--help`` lists them.
COMMANDS = (plugins, request, limits, batch, prices, cache)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from .common import plugin_manager

    parser = argparse.ArgumentParser(
        prog="ipfs-accelerate",
        description="Call AI inference and storage services at volume through one resilient "
                    "pipeline (queue, per-key rate limits, retries, circuit breaker, stats).",
        epilog="Run `ipfs-accelerate COMMAND --help` for a command's options.  Installed "
               "plugins add commands (the simulator's `demo` tries everything offline).")
    parser.add_argument("--version", action="version", version=f"ipfs-accelerate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    hooks = plugin_manager().hooks
    hooks.accelerate_cli_commands(subparsers=sub)
    for name, p in sub.choices.items():
        hooks.accelerate_cli_options(command=name, parser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # user-fixable problems and configuration errors: one line
        from ..errors import AccelerateError

        if isinstance(exc, (JobError, AccelerateError)):
            err(f"ipfs-accelerate {args.command}: {exc}")
            return EXIT_USAGE
        raise
