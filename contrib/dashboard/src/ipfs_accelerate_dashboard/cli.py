"""What the command line needs: the ``--dashboard`` options and starting the page for a
command's client (``batch --dashboard PORT``, ``demo --dashboard PORT``).

    add_options(parser)                                # in accelerate_cli_options
    dash = start_from_args(client, args, progress)     # None without --dashboard
    ...
    if dash: dash.close()
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from ipfs_accelerate_py.errors import ConfigError

from .server import Dashboard, serve_dashboard

TOKEN_ENV = "IPFS_ACCELERATE_DASHBOARD_TOKEN"


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--dashboard PORT``, ``--dashboard-host HOST``, ``--dashboard-token TOKEN``."""
    group = parser.add_argument_group("live dashboard (ipfs-accelerate-dashboard)")
    group.add_argument("--dashboard", type=int, metavar="PORT",
                       help="serve a live page on this port while the command runs (0 picks one)")
    group.add_argument("--dashboard-host", default="127.0.0.1", metavar="HOST",
                       help="address to bind (default: %(default)s, this machine only); any "
                            "other needs --dashboard-token")
    group.add_argument("--dashboard-token", metavar="TOKEN",
                       help=f"token the page's data needs (default: ${TOKEN_ENV})")


def progress_source(progress: Any) -> Any:
    """A progress callable from an object with ``done``/``total``/``failed`` attributes
    (the command line's progress line), a callable, or None."""
    if progress is None or callable(progress):
        return progress
    return lambda: {"done": progress.done, "total": progress.total,
                    "failed": getattr(progress, "failed", 0)}


def start_from_args(client: Any, args: argparse.Namespace, progress: Any = None, *,
                    recorder: Any = None, stream: TextIO | None = None) -> Dashboard | None:
    """Start the dashboard when ``args.dashboard`` is set, and print where it is.

    :raises ConfigError: a bad port, or a non-loopback host without a token.
    """
    port = getattr(args, "dashboard", None)
    if port is None:
        return None
    if not 0 <= port <= 65535:
        raise ConfigError("--dashboard", f"port must be within 0..65535, got {port}")
    token = getattr(args, "dashboard_token", None) or os.environ.get(TOKEN_ENV) or None
    dash = serve_dashboard(client, port, host=getattr(args, "dashboard_host", "127.0.0.1"),
                           token=token, recorder=recorder, progress=progress_source(progress))
    print(dash.notice, file=stream or sys.stderr, flush=True)
    return dash
