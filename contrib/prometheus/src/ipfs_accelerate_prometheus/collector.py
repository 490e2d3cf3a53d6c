"""Gauges read from ``Client.stats()`` at scrape time: queue depth, in flight, breaker
state, limiter headroom, cooldown and learned limits, key health."""

from __future__ import annotations

import weakref
from typing import Any, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

BREAKER_STATES = ("closed", "open", "half_open")


class ClientCollector(Collector):
    """Live gauges of one client.  Holds it weakly: a closed, dropped client stops
    reporting instead of being kept alive by the registry."""

    def __init__(self, client: Any, namespace: str = "ipfs_accelerate") -> None:
        self._client = weakref.ref(client)
        self._ns = namespace

    def _g(self, name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{self._ns}_{name}", doc, labels=labels)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families().values())

    def _families(self) -> dict[str, GaugeMetricFamily]:
        kb = ["backend", "key_id"]
        return {
            "queue": self._g("queue_depth", "Requests waiting in the queue.", ["backend"]),
            "bif": self._g("backend_in_flight", "Attempts in flight per backend.", ["backend"]),
            "breaker": self._g("breaker_state", "Circuit breaker state per backend (1 for the "
                               "current state).", ["backend", "state"]),
            "kif": self._g("in_flight", "Attempts in flight per key.", kb),
            "kmax": self._g("key_max_concurrent", "Concurrency limit per key.", kb),
            "healthy": self._g("key_healthy", "1 while the key is in rotation, 0 once the "
                               "provider rejected it.", kb),
            "headroom": self._g("limiter_headroom", "Share (0..1) of the key's request bucket "
                                "available now; 0 while cooling down.", kb),
            "cooldown": self._g("limiter_cooldown_seconds", "Seconds left of a 429 or "
                                "exhausted-window cooldown.", kb),
            "rpm": self._g("limiter_requests_per_minute", "The key's request limit, configured "
                           "or learned from rate-limit headers.", kb),
            "tpm": self._g("limiter_tokens_per_minute", "The key's token limit, configured or "
                           "learned.", kb),
            "degraded": self._g("limiter_degraded", "1 while a shared state store (Redis) is "
                                "unreachable and the key's limits are kept locally; reported "
                                "by stores that share state only.", kb),
        }

    def collect(self) -> Iterator[GaugeMetricFamily]:
        f = self._families()
        client = self._client()
        if client is None:
            return iter(())
        snap = client.stats()
        for name, b in snap.backends.items():
            f["queue"].add_metric([name], float(b.get("queue_depth", 0)))
            f["bif"].add_metric([name], float(b.get("in_flight", 0)))
            state = b.get("breaker")
            if state is not None:
                for s in BREAKER_STATES:
                    f["breaker"].add_metric([name, s], 1.0 if state == s else 0.0)
        for scope, k in snap.keys.items():
            backend, _, key_id = scope.partition("/")
            labels = [backend, key_id]
            if "in_flight" in k:
                f["kif"].add_metric(labels, float(k["in_flight"]))
            if "max_concurrent" in k:
                f["kmax"].add_metric(labels, float(k["max_concurrent"]))
            if "healthy" in k:
                f["healthy"].add_metric(labels, 1.0 if k["healthy"] else 0.0)
            if k.get("headroom") is not None:
                f["headroom"].add_metric(labels, float(k["headroom"]))
            lim = k.get("limiter") or {}
            if lim.get("cooldown") is not None:
                f["cooldown"].add_metric(labels, float(lim["cooldown"]))
            if lim.get("requests_per_minute") is not None:
                f["rpm"].add_metric(labels, float(lim["requests_per_minute"]))
            if lim.get("tokens_per_minute") is not None:
                f["tpm"].add_metric(labels, float(lim["tokens_per_minute"]))
            if lim.get("degraded") is not None:
                f["degraded"].add_metric(labels, 1.0 if lim["degraded"] else 0.0)
        return iter(f.values())
