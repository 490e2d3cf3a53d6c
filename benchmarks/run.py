#!/usr/bin/env python3
"""Benchmarks against the tools users would pick instead (issue 8).

Runs every scenario against the simulator (its own process; all traffic on 127.0.0.1)
with every competitor (raw requests.Session, requests + tenacity, the openai SDK,
LiteLLM's Router, and our pipeline), each competitor in a worker process of its own.
Medians of 3 runs; writes docs/benchmarks/comparison.md and its PNG plots.

    python3 benchmarks/run.py [--quick] [--runs N] [--only SCENARIO,...] [--competitors A,B]
    python3 dev.py bench [--quick]

Missing competitor packages (benchmarks/requirements.txt) are installed with pip first;
one that cannot be installed or imported is reported on the page and skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from suite.competitors import COMPETITORS  # noqa: E402
from suite.scenarios import (  # noqa: E402  (re-exported: the smoke test imports them here)
    SCENARIOS, flaky, goodput, outage, overhead, priority, scale)
from suite.simproc import SimProcess  # noqa: E402

__all__ = ["SCENARIOS", "overhead", "goodput", "outage", "priority", "flaky", "scale",
           "SimProcess", "plan", "main"]

DOCS = ROOT / "docs" / "benchmarks"
REQUIREMENTS = HERE / "requirements.txt"


def requirements() -> dict[str, str]:
    """{import name: requirement line} from benchmarks/requirements.txt."""
    import re

    out = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[<>=!~\[;\s]", line, maxsplit=1)[0]
            out[name.lower().replace("-", "_")] = line
    return out


def plan(quick: bool) -> dict[str, dict[str, Any]]:
    """Each scenario's simulator settings and workload.  ``--quick`` shrinks the counts."""
    q = quick
    return {
        "overhead": {"sim": {}, "params": {"n": 400 if q else 2000, "threads": 16,
                                           "cap": 6.0 if q else 12.0},
                     "timeout": 120},
        "goodput": {"sim": {"rps": 10.0, "burst": 3.0, "latency": 0.05},
                    "params": {"n": 150 if q else 600, "threads": 50, "n_keys": 3, "rps": 10.0,
                               "burst": 3.0, "cap": 45.0 if q else 90.0},
                    "timeout": 150},
        # A fresh simulator per run: its outage window is fixed to its start.
        "outage": {"sim": {"latency": 0.02}, "outage_at": 4.5, "outage_len": 3.0,
                   "params": {"rate": 40.0, "duration": 7.0 if q else 9.0, "lead": 2.0 if q else 3.0,
                              "outage_len": 3.0, "cap": 45.0},
                   "timeout": 120},
        "priority": {"sim": {"latency": 0.05}, "params": {"normal": 200, "high": 10,
                                                          "concurrency": 2},
                     "timeout": 90},
        "flaky": {"sim": {"error_rate": 0.05, "latency": 0.01, "seed": 7},
                  "params": {"n": 200 if q else 600, "threads": 16, "n_keys": 3, "cap": 60.0},
                  "timeout": 120},
        # A fresh worker per run, so the memory numbers start from a clean process.
        "scale": {"sim": {}, "params": {"n": 1000 if q else 10_000, "n_keys": 10,
                                        "concurrency": 16, "cap": 60.0 if q else 150.0},
                  "timeout": 300, "runs": 1 if not q else None},
    }


def ensure_packages(log: list[str]) -> dict[str, str]:
    """pip-install what the competitors need, if missing.  Returns {import name: problem}
    for those still unusable."""
    reqs = requirements()
    missing = [line for mod, line in reqs.items() if importlib.util.find_spec(mod) is None]
    if missing:
        print(f"bench: installing {', '.join(missing)} (pip)", flush=True)
        for line in missing:  # one at a time: one failure must not block the others
            try:
                r = subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                                    "--disable-pip-version-check", line],
                                   capture_output=True, text=True, timeout=600)
                if r.returncode:
                    tail = (r.stderr.strip().splitlines() or ["?"])[-1]
                    log.append(f"pip install {line} failed: {tail[:200]}")
            except subprocess.TimeoutExpired:
                log.append(f"pip install {line} took more than 10 minutes")
        importlib.invalidate_caches()
    problems = {}
    for mod in reqs:
        if importlib.util.find_spec(mod) is None:
            problems[mod] = "not installed (pip install failed)"
    return problems


def check_litellm() -> str | None:
    """Import LiteLLM in a child process (it is slow and chatty): None if usable."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from suite.competitors import import_litellm\n"
            "import_litellm(); from litellm import Router\n") % str(HERE)
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300)
    except subprocess.TimeoutExpired:
        return "importing litellm took more than 300 s"
    if r.returncode:
        return "import failed: " + (r.stderr.strip().splitlines() or ["?"])[-1][:300]
    return None


def run_all(args: argparse.Namespace, comps: list[str], scenarios: list[str]) -> dict[str, Any]:
    from suite.worker import WorkerProcess

    p = plan(args.quick)
    logdir = Path(args.logs)
    workers = {c: WorkerProcess(c, logdir / f"worker-{c}.log") for c in comps}
    results: dict[str, Any] = {}
    started = time.monotonic()
    try:
        for sc in scenarios:
            spec = p[sc]
            sc_comps = ["ours", "ours-fifo"] if sc == "priority" else comps
            sc_comps = [c for c in sc_comps if c.split("-")[0] in comps]
            results[sc] = {c: [] for c in sc_comps}
            t_sc = time.monotonic()
            sim = None if sc == "outage" else SimProcess(**spec["sim"])
            try:
                n_runs = min(args.runs, spec.get("runs") or args.runs)
                for run in range(n_runs):
                    # Rotate the order each run: no client always goes first (cold
                    # caches, a burst of background load) or last.
                    k = run % len(sc_comps)
                    for comp in sc_comps[k:] + sc_comps[:k]:
                        try:
                            res = _one(sc, spec, comp, run, sim, workers, logdir)
                        except Exception as exc:  # e.g. a simulator that would not start
                            res = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                        results[sc][comp].append(res)
                        brief = res.get("error") or _brief(sc, res)
                        print(f"bench: {sc:<8} run {run + 1}/{n_runs} {comp:<9} {brief}",
                              flush=True)
            finally:
                if sim is not None:
                    sim.close()
            print(f"bench: {sc} took {time.monotonic() - t_sc:.0f} s", flush=True)
            if args.json:  # partial results survive an interrupted run
                Path(args.json).write_text(json.dumps({"partial": results}, default=str))
    finally:
        for w in workers.values():
            w.close()
    results["_elapsed"] = time.monotonic() - started
    return results


def _one(sc: str, spec: dict[str, Any], comp: str, run: int, sim: SimProcess | None,
         workers: dict[str, Any], logdir: Path) -> dict[str, Any]:
    """One run of one client in one scenario."""
    from suite.worker import WorkerProcess

    params = dict(spec["params"], tag=f"{sc}-{comp}-{run}-{os.getpid()}")
    if comp == "ours-fifo":
        params["fifo"] = True
    name = comp.split("-")[0]
    if sc == "outage":  # a fresh simulator: its outage window is fixed to its start
        at = spec["outage_at"]
        params["outage_at"] = at
        with SimProcess(outages=[(at, at + spec["outage_len"])], **spec["sim"]) as osim:
            return workers[name].run(sc, osim.to_dict(), params, spec["timeout"])
    assert sim is not None
    if sc == "scale":  # a clean process for clean memory numbers
        w = WorkerProcess(name, logdir / f"worker-{name}-scale.log")
        try:
            return w.run(sc, sim.to_dict(), params, spec["timeout"])
        finally:
            w.close()
    return workers[name].run(sc, sim.to_dict(), params, spec["timeout"])


def _brief(sc: str, r: dict[str, Any]) -> str:
    def f(v: Any, fmt: str = "{:.3g}") -> str:
        return "-" if v is None else fmt.format(v)

    if sc == "overhead":
        return (f"{f(r.get('throughput'), '{:.0f}')} req/s, p50 {f(r.get('p50'))} s, "
                f"failed {r.get('failed')}")
    if sc == "goodput":
        return (f"wall {f(r.get('wall'))} s ({f(r.get('ratio'))}x ideal), 429s {r.get('http_429')}, "
                f"lost {r.get('lost')}")
    if sc == "outage":
        late = r.get("load_offset") or 0.0
        return (f"lost {r.get('lost')}, outage calls {r.get('outage_calls')}, first ok after "
                f"recovery {f(r.get('first_success_after_recovery'))} s"
                + (f" (load started {late:.2f} s late)" if late > 0.05 else ""))
    if sc == "priority":
        return f"high p50 {f(r.get('high_p50'))} s, normal p50 {f(r.get('normal_p50'))} s"
    if sc == "flaky":
        return f"lost {r.get('lost')}, attempts/request {f(r.get('attempts_per_request'))}"
    if sc == "scale":
        return (f"{f(r.get('cpu_per_request', 0) * 1e3)} ms CPU/req, "
                f"{f(r.get('rss_per_request', 0) / 1024)} KiB/req, lost {r.get('lost')}")
    return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small counts, one run: a smoke run")
    ap.add_argument("--runs", type=int, help="runs per scenario and competitor (default 3; 1 with --quick)")
    ap.add_argument("--only", help="comma-separated scenarios (default: all)")
    ap.add_argument("--competitors", help=f"comma-separated, of {','.join(COMPETITORS)}")
    ap.add_argument("--out", default=str(DOCS), help="where the page and plots go")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--from-json", help="only render the page from saved raw results")
    ap.add_argument("--logs", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "ipfs-accelerate-bench"),
                    help="worker logs (stderr of each competitor's process)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        from suite.worker import main as worker_main

        worker_main(args.worker)
        return 0
    from suite import report

    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        report.write(data, Path(args.out))
        return 0
    args.runs = args.runs or (1 if args.quick else 3)
    comps = args.competitors.split(",") if args.competitors else list(COMPETITORS)
    scenarios = args.only.split(",") if args.only else list(SCENARIOS)
    notes: list[str] = []
    machine_before = report.machine()
    problems = ensure_packages(notes)
    if "litellm" in comps and "litellm" not in problems:
        why = check_litellm()
        if why:
            problems["litellm"] = why
    unusable = {m for m in problems if m in comps}
    if "tenacity" in problems:
        unusable.add("tenacity")
    comps = [c for c in comps if c not in unusable]
    print(f"bench: competitors {', '.join(comps)}; scenarios {', '.join(scenarios)}; "
          f"{args.runs} run(s)", flush=True)
    results = run_all(args, comps, scenarios)
    data = {"results": results, "plan": plan(args.quick), "quick": args.quick, "runs": args.runs,
            "competitors": comps, "problems": problems, "notes": notes,
            "machine": report.machine(before=machine_before),
            "command": "python3 benchmarks/run.py" + (" --quick" if args.quick else "")
            + (f" --runs {args.runs}" if args.runs != (1 if args.quick else 3) else "")
            + (f" --only {args.only}" if args.only else "")
            + (f" --competitors {args.competitors}" if args.competitors else "")}
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
    if "matplotlib" in problems:
        notes.append("matplotlib is missing: no plots")
    report.write(data, Path(args.out))
    print(f"bench: wrote {Path(args.out) / 'comparison.md'} ({results['_elapsed']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
