"""The entry point: makes the ``"prometheus"`` observer, for the clients that name it.

Installed, this extra does nothing until a client is configured with it::

    Client(backends, ClientConfig(observers=("prometheus",)))          # REGISTRY
    Client(backends, ClientConfig(observers=(("prometheus", {"registry": mine}),)))

or ``IPFS_ACCELERATE_OBSERVERS=prometheus``.  Options are those of :class:`Metrics`
(``registry``, ``namespace``, ``buckets``); without options every client shares the
process-wide metrics in ``prometheus_client.REGISTRY``.  A ``Metrics`` object may also be
given directly: ``observers=(Metrics(registry),)`` or ``client.add_observer(...)``.
"""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl

NAME = "prometheus"


@hookimpl
def accelerate_make_observer(name: str, options: dict[str, Any], config: Any) -> Any:
    if name != NAME:
        return None
    from .metrics import Metrics, default_metrics

    return Metrics(**options) if options else default_metrics()
