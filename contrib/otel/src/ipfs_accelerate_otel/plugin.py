"""The entry point: makes the ``otel`` observer when a client's configuration names it
(``ClientConfig(observers=("otel",))`` or ``(("otel", {"capture_content": True}),)``).
Spans go to the global tracer provider unless ``options["tracer_provider"]`` gives one.
Installed, it observes nothing by itself."""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_make_observer(name: str, options: Any, config: Any) -> Any:
    if name != "otel":
        return None
    from .tracer import TracingObserver

    opts = dict(options or {})
    return TracingObserver(opts.get("tracer_provider"),
                           capture_content=bool(opts.get("capture_content", False)))
