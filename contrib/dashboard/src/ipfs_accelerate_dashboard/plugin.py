"""The entry point: makes the ``dashboard`` observer when a client's configuration names
it (``ClientConfig(observers=("dashboard",))``).  Installed, it observes nothing by itself."""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_make_observer(name: str, options: Any, config: Any) -> Any:
    if name != "dashboard":
        return None
    from .recorder import DashboardRecorder

    opts = dict(options or {})
    return DashboardRecorder(**{k: opts[k] for k in ("latency_window", "history") if k in opts})


@hookimpl
def accelerate_serve_dashboard(client: Any, port: int, host: str, token: str | None) -> Any:
    """Serve the page for ``Client.serve_dashboard(port)`` (a firstresult hook, so the core
    never imports this package): returns the running :class:`~.server.Dashboard`."""
    from .server import serve_dashboard

    return serve_dashboard(client, port, host=host, token=token)


@hookimpl
def accelerate_cli_options(command: str, parser: Any) -> None:
    """``--dashboard PORT`` (and its host and token) for ``batch`` and ``demo``."""
    if command in ("batch", "demo"):
        from .cli import add_options

        add_options(parser)


@hookimpl
def accelerate_cli_client_ready(command: str, args: Any, client: Any, progress: Any) -> Any:
    """Start the page when the command was given ``--dashboard``; the CLI closes it."""
    if command not in ("batch", "demo"):
        return None
    from .cli import start_from_args

    return start_from_args(client, args, progress)
