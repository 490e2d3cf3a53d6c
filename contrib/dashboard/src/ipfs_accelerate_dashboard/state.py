"""The dashboard's data: one point per second of history plus the current gauges.

:class:`DashboardState` polls ``Client.stats()`` (it works with any client, events or not)
and turns the cumulative counters into rates.  Messages are compact JSON: the page gets
the whole history once, then one small update per second.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Mapping

from .recorder import DashboardRecorder

#: ``progress()`` returns {"done": int, "total": int, "failed": int} (or None: no batch).
ProgressSource = Callable[[], "Mapping[str, int] | None"]


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000.0, 2)


def _totals(backends: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    out = {"requests": 0.0, "ok": 0.0, "retries": 0.0, "rate_limited": 0.0, "tokens": 0.0}
    for b in backends.values():
        out["requests"] += b.get("requests", 0)
        out["ok"] += b.get("outcomes", {}).get("success", 0)
        out["retries"] += b.get("retries", 0)
        out["rate_limited"] += b.get("rate_limited", 0)
        out["tokens"] += (b.get("tokens") or {}).get("total", 0)
    out["failed"] = out["requests"] - out["ok"]
    return out


def _spend(backends: Mapping[str, Mapping[str, Any]], snap_dict: Mapping[str, Any]) -> Any:
    """Cost figures when cost tracking puts them in the stats (``spend``/``cost``)."""
    if snap_dict.get("spend") is not None:
        return snap_dict["spend"]
    costs = {n: b["cost"] for n, b in backends.items() if b.get("cost") is not None}
    return costs or None


class DashboardState:
    """Samples a client once per :meth:`sample` call and keeps ``history`` points."""

    def __init__(self, client: Any, recorder: DashboardRecorder, *,
                 progress: ProgressSource | None = None, history: int = 300) -> None:
        self.client = client
        self.recorder = recorder
        self.progress = progress
        self._points: deque[dict[str, Any]] = deque(maxlen=history)
        self._progress_marks: deque[tuple[float, int]] = deque(maxlen=15)
        self._prev: tuple[float, dict[str, float]] | None = None
        self._lock = threading.Lock()
        self.current: dict[str, Any] = {}
        self.started = time.time()

    def sample(self) -> dict[str, Any]:
        """Take one sample; returns the update message (the new point and the gauges)."""
        now_m, now_w = time.monotonic(), time.time()
        snap = self.client.stats()
        snap_dict = snap.to_dict()
        totals = _totals(snap.backends)
        point: dict[str, Any] = {"t": round(now_w, 3), "queue": snap.queue_depth,
                                 "in_flight": snap.in_flight}
        if self._prev is not None:
            dt = max(1e-3, now_m - self._prev[0])
            prev = self._prev[1]
            for name in ("ok", "failed", "retries", "rate_limited", "tokens"):
                # A reset_stats() makes counters fall: count from zero again.
                point[name] = round(max(0.0, totals[name] - prev[name]) / dt, 2)
        self._prev = (now_m, totals)
        windowed = self.recorder.latency_percentiles(now_m)
        backends = []
        lat_source = windowed
        events = self.recorder.events_seen
        for name, b in sorted(snap.backends.items()):
            state = b.get("breaker")
            last = self.recorder.last_breaker_state(name)
            if state is not None and last is not None and state != last and not events:
                # No observer attached: the history is what the samples saw.  With events,
                # they alone write it (a sample may race a transition, or show a breaker
                # whose open interval ran out before its next transition).
                self.recorder.record_transition(name, last, state, now_w)
            elif state is not None and last is None:
                self.recorder.record_transition(name, "-", state, now_w, source="initial")
            backends.append({
                "name": name, "breaker": state, "queue": b.get("queue_depth", 0),
                "in_flight": b.get("in_flight", 0), "ok": b["outcomes"].get("success", 0),
                "failed": b["requests"] - b["outcomes"].get("success", 0),
                "retries": b["retries"], "rate_limited": b["rate_limited"],
                "p50": _ms(b["latency_p50"]), "p95": _ms(b["latency_p95"]),
                "p99": _ms(b["latency_p99"]), "tokens": (b.get("tokens") or {}).get("total", 0)})
        if lat_source is None and snap.backends:  # no events: the stats' own sample window
            first = next(iter(sorted(snap.backends.items())))[1]
            lat_source = {"p50": first["latency_p50"], "p95": first["latency_p95"],
                          "p99": first["latency_p99"]}
        for q in ("p50", "p95", "p99"):
            point[q] = _ms((lat_source or {}).get(q))
        keys = []
        for scope, k in sorted(snap.keys.items()):
            backend, _, key_id = scope.partition("/")
            lim = k.get("limiter") or {}
            keys.append({
                "backend": backend, "key_id": key_id, "headroom": k.get("headroom"),
                "in_flight": k.get("in_flight", 0), "max_concurrent": k.get("max_concurrent"),
                "rpm": lim.get("requests_per_minute"), "tpm": lim.get("tokens_per_minute"),
                "learned": bool(lim.get("learned")), "cooldown": lim.get("cooldown"),
                "healthy": k.get("healthy", True), "ok": k["outcomes"].get("success", 0),
                "rate_limited": k.get("rate_limited", 0)})
        current = {"time": round(now_w, 3), "totals": totals, "backends": backends, "keys": keys,
                   "queue": snap.queue_depth, "in_flight": snap.in_flight,
                   "oldest_queued": self.recorder.oldest_waiting(now_m),
                   "latency_windowed": windowed is not None, "spend": _spend(snap.backends, snap_dict),
                   "progress": self._progress(now_m), "breaker_version": self.recorder.version}
        with self._lock:
            self._points.append(point)
            self.current = current
        return {"point": point, "current": current}

    def _progress(self, now: float) -> dict[str, Any] | None:
        if self.progress is None:
            return None
        try:
            p = self.progress()
        except Exception:  # a broken progress source must not stop the page
            return None
        if not p:
            return None
        done, total, failed = int(p.get("done", 0)), int(p.get("total", 0)), int(p.get("failed", 0))
        self._progress_marks.append((now, done))
        rate = None
        if len(self._progress_marks) >= 2:
            (t0, d0), (t1, d1) = self._progress_marks[0], self._progress_marks[-1]
            rate = (d1 - d0) / (t1 - t0) if t1 > t0 else None
        remaining = max(0, total - done)
        eta = (remaining / rate) if rate and rate > 0 else (0.0 if remaining == 0 else None)
        return {"done": done, "total": total, "failed": failed,
                "rate": None if rate is None else round(rate, 2),
                "eta": None if eta is None else round(eta, 1)}

    def full(self) -> dict[str, Any]:
        """The message a new page gets first: every point kept, the gauges, breaker history."""
        with self._lock:
            points, current = list(self._points), dict(self.current)
        return {"history": points, "current": current, "breakers": self.recorder.transitions(),
                "started": self.started}
