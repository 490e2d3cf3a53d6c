"""``start_exporter(client, port)``: serve the metrics over HTTP for Prometheus to scrape."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from .collector import ClientCollector


class Exporter:
    """A running ``/metrics`` endpoint; ``close()`` stops it and unregisters the
    client's gauges."""

    def __init__(self, server: Any, thread: Any, registry: CollectorRegistry,
                 collector: ClientCollector) -> None:
        self._server = server
        self._thread = thread
        self.registry = registry
        self.collector = collector
        self.host, self.port = server.server_address[:2]

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        try:
            self.registry.unregister(self.collector)
        except KeyError:
            pass

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def start_exporter(client: Any, port: int = 9464, addr: str = "0.0.0.0",
                   registry: CollectorRegistry = REGISTRY,
                   namespace: str = "ipfs_accelerate") -> Exporter:
    """Add ``client``'s live gauges to ``registry`` and serve it on ``addr:port``
    (``port=0`` picks a free one; see ``Exporter.url``).

    The counters and histograms come from the monitoring hooks: with this package
    installed they feed the process-wide metrics in the default registry automatically.
    One client per registry (its gauges are labelled by backend and key only).
    """
    collector = ClientCollector(client, namespace)
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except BaseException:
        registry.unregister(collector)
        raise
    return Exporter(server, thread, registry, collector)
