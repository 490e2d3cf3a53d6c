"""Prometheus metrics for ipfs-accelerate (exporter fed by the monitoring hooks)."""

from __future__ import annotations

from typing import Any

__all__ = ["Metrics", "default_metrics", "ClientCollector", "start_exporter", "Exporter"]


def __getattr__(name: str) -> Any:  # lazy: the entry point must import cheaply
    if name in ("Metrics", "default_metrics"):
        from . import metrics

        return getattr(metrics, name)
    if name == "ClientCollector":
        from .collector import ClientCollector

        return ClientCollector
    if name in ("start_exporter", "Exporter"):
        from . import exporter

        return getattr(exporter, name)
    raise AttributeError(name)
