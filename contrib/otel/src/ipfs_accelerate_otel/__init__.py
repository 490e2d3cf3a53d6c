"""OpenTelemetry tracing for ipfs-accelerate (an observer)."""

from __future__ import annotations

from typing import Any

__all__ = ["TracingObserver"]


def __getattr__(name: str) -> Any:  # lazy: the entry point must import cheaply
    if name == "TracingObserver":
        from .tracer import TracingObserver

        return TracingObserver
    raise AttributeError(name)
