"""The simulator in its own process (so it never competes with the client for the GIL),
and a handle to read its counters over HTTP from any process."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any, Iterable

import requests

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


def key_label(key: str) -> str:
    """How the simulator names a key in its stats (never the key itself)."""
    from ipfs_accelerate_sim import key_label as label

    return label(key)


class SimHandle:
    """A running simulator, by URL.  ``epoch`` is its start on this machine's monotonic
    clock (CLOCK_MONOTONIC is system-wide, so it is comparable across processes)."""

    def __init__(self, url: str, epoch: float | None = None) -> None:
        self.url = url
        self.epoch = epoch
        self._session = requests.Session()

    @property
    def openai_base(self) -> str:
        return self.url + "/openai/v1"

    def stats(self) -> dict[str, Any]:
        r = self._session.get(self.url + "/_sim/stats", timeout=10)
        r.raise_for_status()
        return r.json()

    def key_stats(self, keys: Iterable[str]) -> dict[str, Any]:
        """The simulator's counters summed over ``keys`` (a run uses keys of its own, so a
        straggler of an earlier run never counts), plus the times of every call answered
        with the outage's 503 (seconds since the simulator started; not per key)."""
        s = self.stats()
        labels = {f"openai/{key_label(k)}" for k in keys}
        out = {"requests": 0, "ok": 0, "rate_limited": 0, "errors_injected": 0, "outage_calls": 0}
        for name, c in s["keys"].items():
            if name in labels:
                for f in out:
                    out[f] += c[f]
        out["outage_times"] = s.get("outage_times", [])
        out["uptime"] = s["uptime"]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "epoch": self.epoch}


class SimProcess(SimHandle):
    """``ipfs-accelerate sim`` on a free port, OpenAI protocol only."""

    def __init__(self, *, rps: float | None = None, burst: float | None = None,
                 latency: float = 0.0, jitter: float = 0.0, error_rate: float = 0.0,
                 outages: Iterable[tuple[float, float]] = (), seed: int = 0) -> None:
        cmd = [sys.executable, "-m", "ipfs_accelerate_py.cli", "sim", "--port", "0",
               "--backends", "openai", "--latency", str(latency), "--jitter", str(jitter),
               "--error-rate", str(error_rate), "--seed", str(seed)]
        if rps is not None:
            cmd += ["--rps", str(rps)]
        if burst is not None:
            cmd += ["--burst", str(burst)]
        for a, b in outages:
            cmd += ["--outage", f"{a}:{b}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        try:
            url = None
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("simulator listening on "):
                    url = line.split()[-1]
                if "/_sim/stats" in line:  # the last line it prints: safe to stop reading
                    break
            if url is None:
                raise RuntimeError(f"simulator did not start (exit {self.proc.poll()})")
            super().__init__(url)
            self.proc.stdout.close()
            self.epoch = self._measure_epoch()
        except BaseException:
            self.close()  # never leave a simulator behind
            raise

    def _measure_epoch(self, tries: int = 7) -> float:
        """The simulator's start on our clock, from the round trip with the smallest
        delay (error at most half of it, well under a millisecond on loopback)."""
        best = None
        for _ in range(tries):
            t0 = time.monotonic()
            uptime = self.stats()["uptime"]
            t1 = time.monotonic()
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, (t0 + t1) / 2 - uptime)
        assert best is not None
        return best[1]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
