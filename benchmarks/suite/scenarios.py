"""The scenarios.  Each takes a competitor's name and a running simulator (its own
process), drives a bounded workload and returns plain numbers (JSON-safe).

Every run uses API keys of its own (``tag``), and the simulator's counters are read per
key, so a straggler of an earlier run never counts in a later one.  Timestamps are
``time.monotonic()``, which on Linux is the same clock in every process: the simulator's
outage window can be placed on the client's time line exactly.
"""

from __future__ import annotations

import gc
import itertools
import resource
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import Future
from typing import Any, Callable, Sequence

from .competitors import build
from .simproc import CHAT, SimHandle

Record = tuple[float, float, bool]  # start, end, succeeded


def keys_for(tag: str, n: int) -> list[str]:
    return [f"test-key-{tag}-{i}" for i in range(n)]


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (None when empty)."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100.0 * len(s) + 0.5)) - 1))]


def _err_name(exc: BaseException) -> str:
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    return f"{type(exc).__name__}" + (f" ({status})" if status else "")


def closed_loop(fn: Callable[[], Any], n: int, threads: int, cap: float) -> tuple[list[Record], Counter, float]:
    """``threads`` threads call ``fn`` until ``n`` calls were started or ``cap`` seconds
    passed.  Returns the records, the error names and the wall time."""
    idx = itertools.count()
    records: list[Record] = []
    errors: Counter = Counter()
    lock = threading.Lock()
    t0 = time.monotonic()
    stop = t0 + cap

    def worker() -> None:
        local: list[Record] = []
        errs: Counter = Counter()
        while next(idx) < n and time.monotonic() < stop:
            s = time.monotonic()
            try:
                fn()
                ok = True
            except Exception as exc:
                ok = False
                errs[_err_name(exc)] += 1
            local.append((s, time.monotonic(), ok))
        with lock:
            records.extend(local)
            errors.update(errs)

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max(0.0, stop - time.monotonic()) + 60)
    wall = time.monotonic() - t0
    with lock:
        return list(records), errors, wall


def _collect(futs: list[tuple[float, Future]], cap_end: float) -> tuple[list[Record], Counter, int]:
    """Wait for submitted futures until ``cap_end``; returns records of the finished ones,
    error names, and how many were still unfinished."""
    records: list[Record] = []
    errors: Counter = Counter()
    unfinished = 0
    for start, f in futs:
        try:
            f.result(timeout=max(0.0, cap_end - time.monotonic()))
            ok = True
        except BaseException as exc:
            if not f.done():  # the cap passed
                unfinished += 1
                continue
            ok = False
            errors[_err_name(exc)] += 1
        # The done-callback may not have run yet when result() returns (it runs after the
        # waiters are woken); then the future has only just finished.
        records.append((start, getattr(f, "done_at", None) or time.monotonic(), ok))
    return records, errors, unfinished


def _stamp_done(f: Future) -> Future:
    def done(fut: Future) -> None:
        fut.done_at = time.monotonic()  # type: ignore[attr-defined]

    f.add_done_callback(done)
    return f


def _summary(records: list[Record], errors: Counter, n: int) -> dict[str, Any]:
    """lost = failed (ended in an error) + unfinished (not done within the cap)."""
    ok = [e - s for s, e, good in records if good]
    failed = sum(1 for _, _, good in records if not good)
    return {"requests": n, "succeeded": len(ok), "failed": failed,
            "unfinished": n - len(records), "lost": n - len(ok),
            "errors": dict(errors.most_common(4)),
            "p50": pct(ok, 50), "p99": pct(ok, 99)}


# ------------------------------------------------------------------------ overhead
def overhead(comp: str, sim: SimHandle, *, tag: str, n: int = 2000, threads: int = 16,
             cap: float = 60.0) -> dict[str, Any]:
    """No limits, no latency: throughput and latency of one call path.  A slow client
    stops at ``cap`` seconds (its throughput is over what it finished; the requests it
    never started are not failures: ``failed`` counts errors)."""
    keys = keys_for(tag, 1)
    c = build(comp, sim.openai_base, keys, pool=threads)
    try:
        closed_loop(lambda: c.call(CHAT), 4 * threads, threads, cap)  # warm-up: pools, imports
        cpu0 = time.process_time()
        records, errors, wall = closed_loop(lambda: c.call(CHAT), n, threads, cap)
        cpu = time.process_time() - cpu0
    finally:
        c.close()
    out = _summary(records, errors, n)
    out.update(wall=wall, throughput=out["succeeded"] / wall,
               cpu_per_request=cpu / max(1, len(records)), cpu_share=cpu / wall)
    return out


# ------------------------------------------------------------------------ goodput
def goodput(comp: str, sim: SimHandle, *, tag: str, n: int = 600, threads: int = 50,
            n_keys: int = 3, rps: float = 10.0, burst: float = 3.0, cap: float = 90.0) -> dict[str, Any]:
    """The simulator limits each key to ``rps`` (burst ``burst``): how close to the ideal
    n / (keys * rps) seconds does each client finish, and how many 429s does it draw?"""
    keys = keys_for(tag, n_keys)
    ours = {"burst": burst, "max_concurrent_per_key": 8}
    c = build(comp, sim.openai_base, keys, pool=16, rpm=rps * 60, ours=ours)
    try:
        records, errors, wall = closed_loop(lambda: c.call(CHAT), n, threads, cap)
    finally:
        c.close()
    s = sim.key_stats(keys)
    ideal = n / (n_keys * rps)
    out = _summary(records, errors, n)
    out.update(wall=wall, ideal=ideal, ratio=wall / ideal, http_429=s["rate_limited"],
               share_429=s["rate_limited"] / n, calls=s["requests"],
               attempts_per_request=s["requests"] / n, capped=wall >= cap)
    return out


# ------------------------------------------------------------------------ outage
OUTAGE_BIN = 0.25
#: Our breaker for the outage: trips after a few failures, then one probe per 0.7 s
#: (at most ~1.4 calls/s while open; the first success within 0.7 s of recovery).
OUTAGE_BREAKER = {"window_size": 10, "minimum_calls": 4, "failure_rate_threshold": 0.5,
                  "open_interval": 0.7, "interval_multiplier": 1.0, "max_open_interval": 0.7,
                  "half_open_trials": 1}
WARM = 4  # warm-up requests before the timed load


def outage(comp: str, sim: SimHandle, *, tag: str, outage_at: float, outage_len: float = 3.0,
           lead: float = 3.0, rate: float = 40.0, duration: float = 9.0, n_keys: int = 3,
           cap: float = 60.0) -> dict[str, Any]:
    """Open-loop arrivals at ``rate``/s for ``duration`` s; the simulator answers 503 from
    ``outage_at`` to ``outage_at + outage_len`` (seconds since it started), placed
    ``lead`` seconds into the load.  Counts lost requests, the calls that hit the outage,
    and the time from the end of the outage to the first success."""
    assert sim.epoch is not None
    keys = keys_for(tag, n_keys)
    n = int(rate * duration)
    changes: list[tuple[float, str]] = []
    ours = {"breaker": dict(OUTAGE_BREAKER),
            "on_breaker": lambda t, state: changes.append((t, state)),
            "queue_size": n + 10}
    c = build(comp, sim.openai_base, keys, pool=min(n, 512), ours=ours)
    down = sim.epoch + outage_at
    up = down + outage_len
    try:
        for f in [c.submit(CHAT) for _ in range(WARM)]:  # imports, pools, worker threads
            f.result()
        start = max(time.monotonic(), down - lead)
        time.sleep(max(0.0, start - time.monotonic()))
        futs: list[tuple[float, Future]] = []
        for i in range(n):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futs.append((time.monotonic(), _stamp_done(c.submit(CHAT))))
        records, errors, unfinished = _collect(futs, time.monotonic() + cap)
    finally:
        c.close()
    s = sim.key_stats(keys)
    out = _summary(records, errors, n)
    ok_after = [e for _, e, good in records if good and e >= up]
    out["first_success_after_recovery"] = (min(ok_after) - up) if ok_after else None
    out["outage_calls"] = s["outage_calls"]
    out["outage_calls_per_s"] = s["outage_calls"] / outage_len
    times = [sim.epoch + t for t in s["outage_times"]]
    settle = 0.5
    out["outage_calls_per_s_after_first_0.5s"] = (
        sum(1 for t in times if down + settle <= t < up) / (outage_len - settle))
    out["calls"] = s["requests"] - WARM
    out["load_offset"] = start - (down - lead)
    # Time line for the plot: successes and outage calls per bin, from the load start.
    nb = int((duration + 6.0) / OUTAGE_BIN)
    ok_bins = [0] * nb
    outage_bins = [0] * nb
    for _, e, good in records:
        b = int((e - start) / OUTAGE_BIN)
        if good and 0 <= b < nb:
            ok_bins[b] += 1
    for t in times:
        b = int((t - start) / OUTAGE_BIN)
        if 0 <= b < nb:
            outage_bins[b] += 1
    out["timeline"] = {"bin": OUTAGE_BIN, "ok": ok_bins, "outage_calls": outage_bins,
                       "down": down - start, "up": up - start}
    if comp == "ours":
        out.update(_breaker_numbers(changes, times, up))
    return out


def _breaker_numbers(changes: list[tuple[float, str]], times: list[float], up: float) -> dict[str, Any]:
    """Calls made while the breaker was not closed (open or half-open), and its rate."""
    spans: list[tuple[float, float]] = []
    opened = None
    for t, state in sorted(changes):
        if state != "closed" and opened is None:
            opened = t
        elif state == "closed" and opened is not None:
            spans.append((opened, t))
            opened = None
    if opened is not None:
        spans.append((opened, time.monotonic()))
    open_time = sum(b - a for a, b in spans)
    calls = sum(1 for t in times if any(a <= t < b for a, b in spans))
    return {"breaker_open_seconds": open_time, "calls_while_open": calls,
            "calls_per_s_while_open": calls / open_time if open_time > 0 else None,
            "breaker_closed_after_recovery": (spans[-1][1] - up) if spans else None,
            "breaker_trips": sum(1 for _, s in changes if s == "open")}


# ------------------------------------------------------------------------ priority
def priority(comp: str, sim: SimHandle, *, tag: str, normal: int = 200, high: int = 10,
             concurrency: int = 4, fifo: bool = False, cap: float = 60.0) -> dict[str, Any]:
    """``normal`` requests queued, then ``high`` ones: their latency against the normal
    ones.  Only our pipeline has a priority queue; ``fifo`` submits the late ones as
    NORMAL too, which is what every FIFO client (a thread pool) does to them."""
    if comp != "ours":
        raise ValueError("priority: only our pipeline has a priority queue")
    keys = keys_for(tag, 1)
    c = build(comp, sim.openai_base, keys, pool=concurrency,
              ours={"queue_size": normal + high + 10, "max_concurrent_per_key": concurrency})
    try:
        late = "NORMAL" if fifo else "HIGH"
        fn = [(time.monotonic(), _stamp_done(c.submit(CHAT))) for _ in range(normal)]
        fh = [(time.monotonic(), _stamp_done(c.submit(CHAT, priority=late))) for _ in range(high)]
        end = time.monotonic() + cap
        rn, en, un = _collect(fn, end)
        rh, eh, uh = _collect(fh, end)
    finally:
        c.close()
    ln = [e - s for s, e, ok in rn if ok]
    lh = [e - s for s, e, ok in rh if ok]
    p50n, p50h = pct(ln, 50), pct(lh, 50)
    return {"normal_p50": p50n, "high_p50": p50h, "normal_p99": pct(ln, 99),
            "high_p99": pct(lh, 99), "ratio": (p50h / p50n) if p50n and p50h is not None else None,
            "lost": (normal - len(ln)) + (high - len(lh))}


# ------------------------------------------------------------------------ flaky
def flaky(comp: str, sim: SimHandle, *, tag: str, n: int = 600, threads: int = 16,
          n_keys: int = 3, cap: float = 90.0) -> dict[str, Any]:
    """The simulator answers a share of requests with a 500: requests lost, attempts each."""
    keys = keys_for(tag, n_keys)
    c = build(comp, sim.openai_base, keys, pool=threads)
    try:
        records, errors, wall = closed_loop(lambda: c.call(CHAT), n, threads, cap)
    finally:
        c.close()
    s = sim.key_stats(keys)
    out = _summary(records, errors, n)
    out.update(wall=wall, calls=s["requests"], errors_injected=s["errors_injected"],
               attempts_per_request=s["requests"] / n)
    return out


# ------------------------------------------------------------------------ scale
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def scale(comp: str, sim: SimHandle, *, tag: str, n: int = 10_000, n_keys: int = 10,
          concurrency: int = 16, cap: float = 240.0) -> dict[str, Any]:
    """``n`` requests handed over at once (our queue; a thread pool for the others), over
    ``n_keys`` keys: CPU time and peak memory per request in this process."""
    keys = keys_for(tag, n_keys)
    c = build(comp, sim.openai_base, keys, pool=concurrency, ours={"queue_size": n + 10})
    # Warm up (imports, connection pools) so the numbers are per request, not start-up.
    for f in [c.submit(CHAT) for _ in range(2 * concurrency)]:
        f.result()
    payloads = [dict(CHAT) for _ in range(n)]  # the caller's data, not the client's cost
    gc.collect()
    peak = base = _rss()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.02):
            peak = max(peak, _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    try:
        futs = [(time.monotonic(), _stamp_done(c.submit(p))) for p in payloads]
        records, errors, unfinished = _collect(futs, t0 + cap)
    finally:
        wall = time.monotonic() - t0
        cpu = time.process_time() - cpu0
        stop.set()
        sampler.join()
        peak = max(peak, _rss())
        c.close()
    out = _summary(records, errors, n)
    done = max(1, len(records))  # capped: CPU over what finished; memory held all n
    out.update(wall=wall, throughput=out["succeeded"] / wall, cpu_per_request=cpu / done,
               cpu_seconds=cpu, peak_rss_added=peak - base, rss_per_request=(peak - base) / n)
    return out


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "overhead": overhead, "goodput": goodput, "outage": outage, "priority": priority,
    "flaky": flaky, "scale": scale,
}


def median_of(runs: list[dict[str, Any]], field: str) -> Any:
    vals = [r[field] for r in runs if isinstance(r.get(field), (int, float))]
    return statistics.median(vals) if vals else None
