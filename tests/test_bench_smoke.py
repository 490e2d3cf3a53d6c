"""The comparison benchmark's harness still runs: one tiny scenario, our pipeline only,
against the simulator in its own process (numbers are the benchmark's business, not a
test's: nothing here is timed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

RUN_PY = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def _load_run():
    spec = importlib.util.spec_from_file_location("bench_run", RUN_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_run", module)
    spec.loader.exec_module(module)
    return module


def test_goodput_scenario_runs_with_zero_lost() -> None:
    run = _load_run()
    assert set(run.SCENARIOS) == {"overhead", "goodput", "outage", "priority", "flaky", "scale"}
    with run.SimProcess(rps=10.0, burst=3.0, latency=0.01) as sim:
        result = run.goodput("ours", sim, tag="smoke", n=20, threads=5, n_keys=3, rps=10.0,
                             burst=3.0, cap=60.0)
    assert result["requests"] == 20
    assert result["lost"] == 0, result
    assert result["succeeded"] == 20
    # The simulator saw this run's calls (its counters are read per key).
    assert result["calls"] >= 20


def test_plan_quick_is_smaller_than_full() -> None:
    run = _load_run()
    quick, full = run.plan(True), run.plan(False)
    assert set(quick) == set(full) == set(run.SCENARIOS)
    for name in ("overhead", "goodput", "flaky", "scale"):
        assert quick[name]["params"]["n"] < full[name]["params"]["n"]
