"""The entry point: feeds the process-wide metrics (``prometheus_client.REGISTRY``) from
the monitoring hooks of every client.  Disable with
``IPFS_ACCELERATE_DISABLE_PLUGINS=prometheus``; for a registry of your own register a
``Metrics(registry)`` object with ``PluginManager.add_plugin`` instead."""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl


def _m() -> Any:
    from .metrics import default_metrics

    return default_metrics()


@hookimpl
def accelerate_on_queued(event: Any) -> None:
    _m().accelerate_on_queued(event)


@hookimpl
def accelerate_on_started(event: Any) -> None:
    _m().accelerate_on_started(event)


@hookimpl
def accelerate_on_retried(event: Any) -> None:
    _m().accelerate_on_retried(event)


@hookimpl
def accelerate_on_finished(event: Any) -> None:
    _m().accelerate_on_finished(event)


@hookimpl
def accelerate_on_breaker_changed(event: Any) -> None:
    _m().accelerate_on_breaker_changed(event)
