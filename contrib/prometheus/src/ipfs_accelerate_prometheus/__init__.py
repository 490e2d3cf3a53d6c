"""Prometheus metrics for ipfs-accelerate (exporter fed by the monitoring hooks)."""

from __future__ import annotations

from typing import Any

__all__ = ["Metrics", "default_metrics", "ClientCollector", "start_exporter", "Exporter",
           "rules_path", "grafana_dashboard_path"]


def rules_path() -> Any:
    """The shipped Prometheus alerting rules (``rule_files`` in prometheus.yml)."""
    from importlib import resources

    return resources.files(__name__).joinpath("monitoring", "alerts.rules.yml")


def grafana_dashboard_path() -> Any:
    """The shipped Grafana dashboard (import it; it asks for the Prometheus data source)."""
    from importlib import resources

    return resources.files(__name__).joinpath("monitoring", "grafana-dashboard.json")


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
