"""A live dashboard page for ipfs-accelerate (``serve_dashboard(client, port)``)."""

from __future__ import annotations

from typing import Any

__all__ = ["serve_dashboard", "Dashboard", "DashboardRecorder"]


def __getattr__(name: str) -> Any:  # lazy: the entry point must import cheaply
    if name in ("serve_dashboard", "Dashboard"):
        from . import server

        return getattr(server, name)
    if name == "DashboardRecorder":
        from .recorder import DashboardRecorder

        return DashboardRecorder
    raise AttributeError(name)
