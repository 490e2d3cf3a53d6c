"""The results page (docs/benchmarks/comparison.md) and its plots."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from .competitors import LABELS
from .scenarios import OUTAGE_BREAKER

ORDER = ("raw", "tenacity", "openai", "litellm", "ours", "ours-fifo")
LABELS = {**LABELS, "ours-fifo": "ipfs-accelerate, all NORMAL (FIFO reference)"}
COLORS = {"raw": "#999999", "tenacity": "#e69f00", "openai": "#56b4e9", "litellm": "#cc79a7",
          "ours": "#009e73", "ours-fifo": "#7fcfb8"}


# ------------------------------------------------------------------------ machine
def machine(before: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the numbers were measured on, including how busy the machine was."""
    cpu = platform.processor() or platform.machine()
    mem = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    versions = {}
    for dist in ("ipfs-accelerate-core", "requests", "tenacity", "openai", "litellm", "matplotlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    now = {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "core": core_source(),
           "python": platform.python_version(), "system": f"{platform.system()} {platform.release()}",
           "versions": versions, "loadavg": os.getloadavg(),
           "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if before is not None:
        now["core"] = before["core"]  # what was imported when the run started
        now["loadavg_before"] = before["loadavg"]
        now["started"] = before["time"]
    return now


def core_source() -> str:
    """Which pipeline code was measured: the repository's commit, and whether the core was
    imported from its (possibly edited) working tree or from elsewhere (a snapshot)."""
    import subprocess

    import ipfs_accelerate_py

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        head = ""
    where = Path(ipfs_accelerate_py.__file__).resolve()
    if root in where.parents:
        try:
            dirty = subprocess.run(["git", "status", "--porcelain", "--", "core/src"], cwd=root,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            dirty = ""
        return f"commit {head or '?'}" + (" with uncommitted core changes" if dirty else "")
    return f"commit {head or '?'} (core imported from {where.parent})"


# ------------------------------------------------------------------------ numbers
def runs(data: dict[str, Any], sc: str, comp: str) -> list[dict[str, Any]]:
    return [r for r in data["results"].get(sc, {}).get(comp, []) if "error" not in r]


def errors_of(data: dict[str, Any], sc: str, comp: str) -> list[str]:
    return [r["error"] for r in data["results"].get(sc, {}).get(comp, []) if "error" in r]


def med(rs: list[dict[str, Any]], field: str) -> float | None:
    vals = [r[field] for r in rs if isinstance(r.get(field), (int, float))]
    return statistics.median(vals) if vals else None


def total(rs: list[dict[str, Any]], field: str) -> int | None:
    vals = [r[field] for r in rs if isinstance(r.get(field), (int, float))]
    return int(sum(vals)) if vals else None


def paired(data: dict[str, Any], sc: str, comp: str, ref: str,
           fn: Callable[[dict[str, Any], dict[str, Any]], float | None]) -> float | None:
    """Median over runs of fn(comp's run i, ref's run i): runs were interleaved, so a
    pair saw the same background load."""
    a = data["results"].get(sc, {}).get(comp, [])
    b = data["results"].get(sc, {}).get(ref, [])
    vals = []
    for x, y in zip(a, b):
        if "error" in x or "error" in y:
            continue
        v = fn(x, y)
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else None


def fmt(v: Any, spec: str = "{:.2f}", none: str = "–") -> str:
    if v is None:
        return none
    return spec.format(v)


def comps_of(data: dict[str, Any], sc: str) -> list[str]:
    present = data["results"].get(sc, {})
    return [c for c in ORDER if c in present]


# ------------------------------------------------------------------------ targets
def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what was measured for our pipeline and whether it was met."""
    out = []
    R = data["results"]
    if "overhead" in R and runs(data, "overhead", "ours") and runs(data, "overhead", "raw"):
        ratio = paired(data, "overhead", "ours", "raw", lambda o, r: o["throughput"] / r["throughput"])
        out.append({"id": "overhead", "target": "throughput >= 0.90x raw requests.Session",
                    "value": f"{ratio:.2f}x", "met": ratio >= 0.90,
                    "miss": None if ratio >= 0.90 else f"{(0.90 - ratio) / 0.90:.0%} short"})
    if "goodput" in R and runs(data, "goodput", "ours"):
        rs = runs(data, "goodput", "ours")
        ratio, share = med(rs, "ratio"), med(rs, "share_429")
        lost = total(rs, "lost")
        ok_t, ok_s = ratio <= 1.05, share < 0.01
        miss = []
        if not ok_t:
            miss.append(f"wall time {ratio:.2f}x ideal, {(ratio / 1.05 - 1):.0%} over the 1.05x target")
        if not ok_s:
            miss.append(f"429s {share:.1%} of requests (target < 1 %)")
        out.append({"id": "goodput", "target": "wall time <= 1.05x ideal, 429s < 1 % of requests",
                    "value": f"{ratio:.3f}x ideal, 429s {share:.1%}, lost {lost}",
                    "met": ok_t and ok_s, "miss": "; ".join(miss) or None})
    if "outage" in R and runs(data, "outage", "ours"):
        rs = runs(data, "outage", "ours")
        lost = total(rs, "lost")
        rate = med(rs, "calls_per_s_while_open")
        first = [r["first_success_after_recovery"] for r in rs
                 if r.get("first_success_after_recovery") is not None]
        worst = max(first) if first else None
        ok = lost == 0 and rate is not None and rate <= 2.0 and worst is not None and worst <= 1.0
        miss = []
        if lost:
            miss.append(f"{lost} lost")
        if rate is None or rate > 2.0:
            miss.append(f"{fmt(rate)} calls/s while open")
        if worst is None or worst > 1.0:
            miss.append(f"first success {fmt(worst)} s after recovery")
        out.append({"id": "outage",
                    "target": "zero lost, <= 2 calls/s while the breaker is open, first success <= 1 s after recovery",
                    "value": f"lost {lost}, {fmt(rate)} calls/s while open, first success "
                             f"{fmt(med(rs, 'first_success_after_recovery'))} s (worst {fmt(worst)} s)",
                    "met": ok, "miss": "; ".join(miss) or None})
    if "priority" in R and runs(data, "priority", "ours"):
        ratio = med(runs(data, "priority", "ours"), "ratio")
        out.append({"id": "priority", "target": "high-priority p50 <= 10 % of normal p50",
                    "value": f"{ratio:.1%}", "met": ratio <= 0.10,
                    "miss": None if ratio <= 0.10 else f"{ratio - 0.10:.1%} points over"})
    if "flaky" in R and runs(data, "flaky", "ours"):
        lost = total(runs(data, "flaky", "ours"), "lost")
        out.append({"id": "flaky", "target": "zero lost at 5 % random 500s",
                    "value": f"lost {lost}", "met": lost == 0,
                    "miss": None if lost == 0 else f"{lost} lost"})
    return out


# ------------------------------------------------------------------------ plots
def plots(data: dict[str, Any], out: Path) -> list[str]:
    """Write the PNGs; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    R = data["results"]

    def bars(ax: Any, sc: str, field: str, scale: float = 1.0, comps: list[str] | None = None) -> None:
        cs = comps or comps_of(data, sc)
        vals = [(med(runs(data, sc, c), field) or 0.0) * scale for c in cs]
        ax.bar(range(len(cs)), vals, color=[COLORS[c] for c in cs])
        ax.set_xticks(range(len(cs)), [LABELS[c].replace(" ", "\n", 1) for c in cs], fontsize=7)
        for i, v in enumerate(vals):
            ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=7)

    if "overhead" in R:
        fig, axs = plt.subplots(1, 2, figsize=(10, 3.6))
        bars(axs[0], "overhead", "throughput")
        raw = med(runs(data, "overhead", "raw"), "throughput")
        if raw:
            axs[0].axhline(0.9 * raw, color="k", ls="--", lw=0.8, label="0.90x raw (target)")
            axs[0].legend(fontsize=7)
        axs[0].set_title("Overhead: throughput (req/s, higher is better)", fontsize=9)
        cs = comps_of(data, "overhead")
        x = range(len(cs))
        p50 = [(med(runs(data, "overhead", c), "p50") or 0) * 1e3 for c in cs]
        p99 = [(med(runs(data, "overhead", c), "p99") or 0) * 1e3 for c in cs]
        axs[1].bar([i - 0.2 for i in x], p50, 0.4, label="p50", color=[COLORS[c] for c in cs])
        axs[1].bar([i + 0.2 for i in x], p99, 0.4, label="p99", color=[COLORS[c] for c in cs],
                   alpha=0.5, hatch="//")
        axs[1].set_xticks(list(x), [LABELS[c].replace(" ", "\n", 1) for c in cs], fontsize=7)
        axs[1].set_title("Overhead: latency (ms; solid p50, hatched p99)", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "comparison_overhead.png", dpi=110)
        plt.close(fig)
        made.append("comparison_overhead.png")
    if "goodput" in R:
        fig, axs = plt.subplots(1, 2, figsize=(10, 3.6))
        bars(axs[0], "goodput", "ratio")
        axs[0].axhline(1.05, color="k", ls="--", lw=0.8, label="1.05x ideal (target)")
        axs[0].axhline(1.0, color="k", lw=0.5)
        axs[0].legend(fontsize=7)
        axs[0].set_title("Goodput: wall time / ideal (lower is better;\nraw and SDKs that lose "
                         "requests finish early)", fontsize=9)
        bars(axs[1], "goodput", "http_429")
        axs[1].set_yscale("symlog")
        axs[1].set_title("Goodput: 429s the server sent (600 requests)", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "comparison_goodput.png", dpi=110)
        plt.close(fig)
        made.append("comparison_goodput.png")
    if "outage" in R:
        cs = [c for c in comps_of(data, "outage") if runs(data, "outage", c)]
        if cs:
            fig, axs = plt.subplots(len(cs), 1, figsize=(10, 1.5 * len(cs) + 0.6), sharex=True)
            axs = axs if len(cs) > 1 else [axs]
            for ax, c in zip(axs, cs):
                tl = runs(data, "outage", c)[0]["timeline"]
                b = tl["bin"]
                xs = [i * b for i in range(len(tl["ok"]))]
                ax.bar(xs, [v / b for v in tl["ok"]], b, align="edge", color=COLORS[c],
                       label="successes/s")
                ax.bar(xs, [v / b for v in tl["outage_calls"]], b, align="edge", color="#d55e00",
                       alpha=0.8, label="calls hitting the outage/s")
                ax.axvspan(tl["down"], tl["up"], color="#d55e00", alpha=0.08)
                ax.set_ylabel(LABELS[c].replace(" ", "\n", 1), fontsize=7)
                ax.tick_params(labelsize=7)
            axs[0].legend(fontsize=7, loc="upper right")
            axs[0].set_title("Outage (shaded: the service answers 503): successes and calls into "
                             "the outage per second, first run", fontsize=9)
            axs[-1].set_xlabel("seconds since the load started", fontsize=8)
            fig.tight_layout()
            fig.savefig(out / "comparison_outage.png", dpi=110)
            plt.close(fig)
            made.append("comparison_outage.png")
    if "priority" in R:
        cs = comps_of(data, "priority")
        fig, ax = plt.subplots(figsize=(6, 3.4))
        x = range(len(cs))
        n50 = [(med(runs(data, "priority", c), "normal_p50") or 0) * 1e3 for c in cs]
        h50 = [(med(runs(data, "priority", c), "high_p50") or 0) * 1e3 for c in cs]
        ax.bar([i - 0.2 for i in x], n50, 0.4, label="the 200 queued first", color="#999999")
        ax.bar([i + 0.2 for i in x], h50, 0.4, label="the 10 submitted last", color="#009e73")
        ax.set_xticks(list(x), ["HIGH priority", "NORMAL (FIFO)"][:len(cs)], fontsize=8)
        ax.set_ylabel("p50 latency (ms)", fontsize=8)
        ax.legend(fontsize=7)
        ax.set_title("Priority: 200 queued, then 10 more", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "comparison_priority.png", dpi=110)
        plt.close(fig)
        made.append("comparison_priority.png")
    if "flaky" in R or "scale" in R:
        fig, axs = plt.subplots(1, 3, figsize=(12, 3.4))
        if "flaky" in R:
            bars(axs[0], "flaky", "lost")
            axs[0].set_title("Flaky (5 % 500s): requests lost", fontsize=9)
        if "scale" in R:
            bars(axs[1], "scale", "cpu_per_request", 1e3)
            axs[1].set_title("Scale: client CPU ms per request", fontsize=9)
            bars(axs[2], "scale", "rss_per_request", 1 / 1024)
            axs[2].set_title("Scale: peak memory added, KiB per request", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "comparison_flaky_scale.png", dpi=110)
        plt.close(fig)
        made.append("comparison_flaky_scale.png")
    return made


# ------------------------------------------------------------------------ page
def _errors_cell(rs: list[dict[str, Any]]) -> str:
    seen: dict[str, int] = {}
    for r in rs:
        for k, v in (r.get("errors") or {}).items():
            seen[k] = seen.get(k, 0) + v
    return ", ".join(f"{k} x{v}" for k, v in sorted(seen.items(), key=lambda kv: -kv[1])[:2]) or "–"


def _table(data: dict[str, Any], sc: str, cols: list[tuple[str, Callable[[list[dict[str, Any]], str], str]]]) -> list[str]:
    lines = ["| client | " + " | ".join(h for h, _ in cols) + " |",
             "|---|" + "|".join("---:" for _ in cols) + "|"]
    for c in comps_of(data, sc):
        rs = runs(data, sc, c)
        errs = errors_of(data, sc, c)
        if not rs:
            lines.append(f"| {LABELS[c]} | " + " | ".join("–" for _ in cols)
                         + f" |  *(failed: {errs[0] if errs else '?'})*")
            continue
        lines.append(f"| {LABELS[c]} | " + " | ".join(f(rs, c) for _, f in cols) + " |")
    return lines


def _m(field: str, spec: str = "{:.2f}", scale: float = 1.0) -> Callable[[list[dict[str, Any]], str], str]:
    def cell(rs: list[dict[str, Any]], c: str) -> str:
        v = med(rs, field)
        return fmt(None if v is None else v * scale, spec)
    return cell


def _sum(field: str) -> Callable[[list[dict[str, Any]], str], str]:
    return lambda rs, c: fmt(total(rs, field), "{:d}")


def _lost(rs: list[dict[str, Any]], c: str) -> str:
    """Median per run, and the total over all runs in brackets when there are several."""
    m, t = med(rs, "lost"), total(rs, "lost")
    if m is None:
        return "–"
    return f"{m:.0f}" + (f" ({t})" if len(rs) > 1 else "")


def write(data: dict[str, Any], out: Path, notes: dict[str, str] | None = None) -> None:
    """Render the page (and plots) from the raw results."""
    from .notes import NOTES

    notes = notes or NOTES
    out.mkdir(parents=True, exist_ok=True)
    try:
        pngs = plots(data, out)
    except ImportError:
        pngs = []
    m = data["machine"]
    p = data["plan"]
    R = data["results"]
    L: list[str] = ["# Comparison benchmarks: ipfs-accelerate against the tools users would pick instead", ""]
    L += [f"Command: `{data['command']}` (or `python3 dev.py bench`). "
          f"{'**Quick smoke run: small counts, one run — not the published numbers.** ' if data.get('quick') else ''}"
          f"Medians of {data['runs']} run{'s' if data['runs'] != 1 else ''} per scenario and client; the runs "
          "of all clients were interleaved (run 1 of every client, then run 2, ...), so each "
          "client saw the same background load. All traffic on 127.0.0.1: the simulator "
          "(`ipfs-accelerate sim`, OpenAI protocol, its per-key rate limits giving the "
          "provider's 429s) runs in its own process, and each client in a worker process of its "
          "own, so neither competes with the other for the GIL.", ""]
    mem = f", {m['memory'] / 2**30:.1f} GiB RAM" if m.get("memory") else ""
    la_b = m.get("loadavg_before")
    L += [f"Machine: {m['cpu']}, {m['cores']} cores{mem}, Python {m['python']}, {m['system']}. "
          f"Run {m.get('started', '?')} to {m['time']} ({R.get('_elapsed', 0) / 60:.1f} min). "
          f"Load average (1/5/15 min) {'before ' + '/'.join(f'{x:.1f}' for x in la_b) + ', ' if la_b else ''}"
          f"after {'/'.join(f'{x:.1f}' for x in m['loadavg'])}: "
          + ("other work was running on this 2-core machine at the same time (other engineers' "
             "test suites), so absolute numbers are noisy; ratios between clients measured in "
             "the same interleaved round are the meaningful part."
             if (la_b or m["loadavg"])[0] > 1.0 else
             "the machine was quiet when the run started; the load during it is mostly the "
             "benchmark itself (simulator and client on 2 cores), though other engineers' "
             "work shares the machine and can start at any time, so single rounds still vary."),
          "",
          f"Code measured: {m.get('core', '?')}"
          + (" — a snapshot of that commit's core, so that edits others made to the shared "
             "working tree during the run could not change what was measured"
             if "imported from" in m.get("core", "") else "")
          + ". Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".", ""]
    if data.get("problems"):
        for mod, why in data["problems"].items():
            L.append(f"- **{mod} could not be used here: {why}.** It is left out of every table.")
        L.append("")
    L += [notes["competitors"], ""]

    # -- targets
    T = targets(data)
    L += ["## Targets (our pipeline)", "", "| scenario | target | measured (median) | met? |",
          "|---|---|---|---|"]
    for t in T:
        L.append(f"| {t['id']} | {t['target']} | {t['value']} | "
                 f"{'**yes**' if t['met'] else '**no** — ' + (t['miss'] or '')} |")
    L.append("")
    for t in T:
        key = t["id"] + (".met" if t["met"] else ".missed")
        if notes.get(key):
            L += [f"- **{t['id']}** — " + notes[key].format(**_note_vars(data)), ""]

    # -- every client at a glance
    L += ["## At a glance", "", "Medians per run. Goodput: wall time against the ideal and requests "
          "lost; a client that loses requests finishes early. Outage: requests lost and calls "
          "sent into the dead service.", "",
          "| client | overhead: x raw | goodput: x ideal / lost | outage: lost / calls into it "
          "| flaky: lost | scale: CPU ms / KiB per request |", "|---|---:|---:|---:|---:|---:|"]
    for c in [c for c in ORDER if c != "ours-fifo"]:
        if not any(c in R.get(sc, {}) for sc in ("overhead", "goodput", "outage", "flaky", "scale")):
            continue
        ov = paired(data, "overhead", c, "raw", lambda a, b: a["throughput"] / b["throughput"])
        g, o, fl, sc_ = (runs(data, x, c) for x in ("goodput", "outage", "flaky", "scale"))
        cpu, kib = med(sc_, "cpu_per_request"), med(sc_, "rss_per_request")
        L.append(f"| {LABELS[c]} | {fmt(ov, '{:.2f}')} | {fmt(med(g, 'ratio'), '{:.2f}')} / "
                 f"{fmt(med(g, 'lost'), '{:.0f}')} | {fmt(med(o, 'lost'), '{:.0f}')} / "
                 f"{fmt(med(o, 'outage_calls'), '{:.0f}')} | {fmt(med(fl, 'lost'), '{:.0f}')} | "
                 f"{fmt(None if cpu is None else cpu * 1e3, '{:.2f}')} / "
                 f"{fmt(None if kib is None else kib / 1024, '{:.1f}')} |")
    L.append("")

    # -- scenarios
    if "overhead" in R:
        n = p["overhead"]["params"]["n"]
        cap = p["overhead"]["params"].get("cap")
        L += ["## Overhead", "", f"No limits, no latency; 16 threads send {n} chat requests per "
              f"run over one key (after a warm-up; a run stops after {cap:.0f} s, so a slow client "
              "is measured on what it finished). Latency is per request as the caller sees it.", ""]

        def rel(rs: list[dict[str, Any]], c: str) -> str:
            return fmt(paired(data, "overhead", c, "raw", lambda a, b: a["throughput"] / b["throughput"]), "{:.2f}x")

        def added(q: str) -> Callable[[list[dict[str, Any]], str], str]:
            return lambda rs, c: fmt(paired(data, "overhead", c, "raw",
                                            lambda a, b: (a[q] - b[q]) * 1e3), "{:+.2f}")
        L += _table(data, "overhead", [("req/s", _m("throughput", "{:.0f}")), ("vs raw", rel),
                                       ("client CPU ms / request", _m("cpu_per_request", "{:.2f}", 1e3)),
                                       ("p50 ms", _m("p50", "{:.1f}", 1e3)),
                                       ("p99 ms", _m("p99", "{:.1f}", 1e3)),
                                       ("added p50 ms", added("p50")), ("added p99 ms", added("p99")),
                                       ("failed", _sum("failed"))])
        L += ["", notes["overhead"], ""]
        if "comparison_overhead.png" in pngs:
            L += ["![overhead](comparison_overhead.png)", ""]
    if "goodput" in R:
        gp = p["goodput"]["params"]
        ideal = gp["n"] / (gp["n_keys"] * gp["rps"])
        L += ["## Goodput under rate limits", "",
              f"The simulator allows each of {gp['n_keys']} keys {gp['rps']:.0f} requests/s "
              f"(burst {gp['burst']:.0f}) and answers after 50 ms; {gp['n']} requests from "
              f"{gp['threads']} threads. Ideal wall time {gp['n']} / {gp['n_keys'] * gp['rps']:.0f} "
              f"= {ideal:.0f} s. 429s are counted by the simulator; lost = requests that ended in "
              "an error. Our pipeline: `ApiKey(requests_per_minute=600, burst=3)` per key.", ""]
        L += _table(data, "goodput", [("wall s", _m("wall", "{:.1f}")), ("x ideal", _m("ratio", "{:.3f}")),
                                      ("429s sent", _m("http_429", "{:.0f}")),
                                      ("429s / request", _m("share_429", "{:.1%}")),
                                      ("attempts / request", _m("attempts_per_request", "{:.2f}")),
                                      ("lost per run (all runs)", _lost),
                                      ("why lost (all runs)", lambda rs, c: _errors_cell(rs))])
        L += ["", notes["goodput"], ""]
        if "comparison_goodput.png" in pngs:
            L += ["![goodput](comparison_goodput.png)", ""]
    if "outage" in R:
        op = p["outage"]
        L += ["## Outage", "",
              f"Requests arrive at {op['params']['rate']:.0f}/s for {op['params']['duration']:.0f} s "
              f"(open loop) over 3 keys; {op['params']['lead']:.0f} s in, the service answers 503 "
              f"to everything for {op['outage_len']:.0f} s. A fresh simulator per run (its outage "
              "window is fixed to its start). Calls into the outage are counted by the simulator; "
              "\"first success\" is the time from the end of the outage to the first successful "
              "answer. Our pipeline: `BreakerPolicy("
              + ", ".join(f"{k}={v}" for k, v in OUTAGE_BREAKER.items())
              + ")`; its requests wait in the queue while the breaker is open.", ""]
        L += _table(data, "outage", [("lost per run (all runs)", _lost),
                                     ("calls into outage", _m("outage_calls", "{:.0f}")),
                                     ("per s", _m("outage_calls_per_s", "{:.1f}")),
                                     ("per s after its first 0.5 s", _m("outage_calls_per_s_after_first_0.5s", "{:.1f}")),
                                     ("first success after recovery, s", _m("first_success_after_recovery", "{:.3f}")),
                                     ("p99 latency s", _m("p99", "{:.2f}")),
                                     ("why lost (all runs)", lambda rs, c: _errors_cell(rs))])
        rs = runs(data, "outage", "ours")
        if rs:
            L += ["", f"Our breaker: open (or half-open) {fmt(med(rs, 'breaker_open_seconds'))} s per "
                  f"run, {fmt(med(rs, 'calls_while_open'), '{:.0f}')} calls while open = "
                  f"**{fmt(med(rs, 'calls_per_s_while_open'))} calls/s**; closed again "
                  f"{fmt(med(rs, 'breaker_closed_after_recovery'), '{:.3f}')} s after the service "
                  "recovered (medians)."]
        L += ["", notes["outage"], ""]
        if "comparison_outage.png" in pngs:
            L += ["![outage](comparison_outage.png)", ""]
    if "priority" in R:
        pp = p["priority"]["params"]
        L += ["## Priority", "",
              f"{pp['normal']} NORMAL requests are queued at once, then {pp['high']} HIGH ones; "
              f"{pp['concurrency']} requests in flight at a time, 50 ms each. Latency is from "
              "submission to the answer. **Only our pipeline has a priority queue**: requests "
              "handed to the other clients through a thread pool are served first-in first-out, "
              "which is what the FIFO row (our pipeline with every request NORMAL) shows: the late "
              "requests wait behind the whole backlog.", ""]
        L += _table(data, "priority", [("first 200 p50 ms", _m("normal_p50", "{:.0f}", 1e3)),
                                       ("first 200 p99 ms", _m("normal_p99", "{:.0f}", 1e3)),
                                       ("last 10 p50 ms", _m("high_p50", "{:.0f}", 1e3)),
                                       ("last 10 p99 ms", _m("high_p99", "{:.0f}", 1e3)),
                                       ("last / first p50", _m("ratio", "{:.1%}")),
                                       ("lost per run (all runs)", _lost)])
        L += ["", notes["priority"], ""]
        if "comparison_priority.png" in pngs:
            L += ["![priority](comparison_priority.png)", ""]
    if "flaky" in R:
        fp = p["flaky"]["params"]
        L += ["## Flaky service", "",
              f"The simulator answers 5 % of requests with a 500 (seeded); {fp['n']} requests from "
              f"{fp['threads']} threads over 3 keys, 10 ms latency.", ""]
        L += _table(data, "flaky", [("lost per run (all runs)", _lost),
                                    ("attempts / request", _m("attempts_per_request", "{:.3f}")),
                                    ("wall s", _m("wall", "{:.2f}")),
                                    ("p99 ms", _m("p99", "{:.0f}", 1e3)),
                                    ("why lost (all runs)", lambda rs, c: _errors_cell(rs))])
        L += ["", notes["flaky"], ""]
    if "scale" in R:
        sp = p["scale"]["params"]
        L += ["## Scale", "",
              f"{sp['n']:,} requests handed over at once (to our queue; to a {sp['concurrency']}-thread "
              f"pool for the others) over {sp['n_keys']} keys, no limits, no latency, each run in a "
              "fresh worker process. CPU is the client process's user+system time divided by the "
              "requests; memory is the peak resident set during the run minus the resident set "
              "before it (sampled every 20 ms), divided by the requests.", ""]
        L += _table(data, "scale", [("CPU ms / request", _m("cpu_per_request", "{:.2f}", 1e3)),
                                    ("peak MiB added", _m("peak_rss_added", "{:.1f}", 1 / 2**20)),
                                    ("KiB / request", _m("rss_per_request", "{:.2f}", 1 / 1024)),
                                    ("req/s", _m("throughput", "{:.0f}")),
                                    ("lost", _lost)])
        L += ["", notes["scale"], ""]
    if "comparison_flaky_scale.png" in pngs:
        L += ["![flaky and scale](comparison_flaky_scale.png)", ""]
    L += [notes["sizes"].format(**_note_vars(data)), ""]
    if data.get("notes"):
        L += [f"- {n}" for n in data["notes"]] + [""]
    raw = {k: v for k, v in data.items() if k != "results"}
    slim = {sc: {c: [{k: v for k, v in r.items() if k not in ("timeline", "traceback")} for r in rs]
                 for c, rs in comps.items()} for sc, comps in R.items() if isinstance(comps, dict)}
    L += ["<details><summary>Raw results (every run)</summary>", "", "```json",
          json.dumps({**raw, "results": slim}, indent=1, default=str), "```", "", "</details>", ""]
    (out / "comparison.md").write_text("\n".join(L))


def _note_vars(data: dict[str, Any]) -> dict[str, Any]:
    """Numbers the explanatory notes may quote."""
    v: dict[str, Any] = {"runs": data["runs"]}
    for t in targets(data):
        v[t["id"]] = t["value"]
    gp = runs(data, "goodput", "ours")
    v["goodput_ratio"] = fmt(med(gp, "ratio"), "{:.3f}")
    v["goodput_429"] = fmt(med(gp, "http_429"), "{:.0f}")
    v["goodput_wall"] = fmt(med(gp, "wall"), "{:.1f}")
    pr = runs(data, "priority", "ours")
    v["prio_ratio"] = fmt(med(pr, "ratio"), "{:.1%}")
    ov = paired(data, "overhead", "ours", "raw", lambda o, r: o["throughput"] / r["throughput"])
    v["overhead_ratio"] = fmt(ov, "{:.2f}")
    per_run = [o["throughput"] / r["throughput"] for o, r in zip(
        data["results"].get("overhead", {}).get("ours", []), data["results"].get("overhead", {}).get("raw", []))
        if "error" not in o and "error" not in r]
    v["overhead_range"] = (f"{min(per_run):.2f}x to {max(per_run):.2f}x" if per_run else "?")
    v["overhead_short"] = fmt(None if ov is None else (0.90 - ov) / 0.90, "{:.0%}")
    gpr = med(gp, "ratio")
    v["goodput_over"] = fmt(None if gpr is None else gpr / 1.05 - 1, "{:.0%}")
    gpp = data["plan"]["goodput"]["params"]
    v["goodput_ideal"] = f"{gpp['n'] / (gpp['n_keys'] * gpp['rps']):.0f}"
    for c in ("ours", "raw"):
        for sc in ("scale", "overhead"):
            cpu = med(runs(data, sc, c), "cpu_per_request")
            v[f"{sc}_cpu_{c}"] = fmt(None if cpu is None else cpu * 1e3, "{:.2f}", "?")
    oc = paired(data, "overhead", "raw", "ours", lambda r, o: r["cpu_per_request"] / o["cpu_per_request"]
                if r.get("cpu_per_request") and o.get("cpu_per_request") else None)
    v["overhead_cpu_ratio"] = fmt(oc, "{:.2f}", "?")
    return v
