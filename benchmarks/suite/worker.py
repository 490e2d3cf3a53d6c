"""A worker process: runs scenarios for one competitor, commanded by JSON lines.

Each competitor runs in a process of its own, so one client's imports, threads and
global state (LiteLLM's above all) never slow another down; the orchestrator sits idle
while a worker runs, and the simulator has its own process too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
RUN_PY = HERE.parent / "run.py"


def serve(comp: str, inp: TextIO, out: TextIO) -> None:
    """The worker's loop: one command per line in, one result per line out."""
    from .scenarios import SCENARIOS
    from .simproc import SimHandle

    for line in inp:
        cmd = json.loads(line)
        try:
            sim = SimHandle(cmd["sim"]["url"], cmd["sim"].get("epoch"))
            result: dict[str, Any] = SCENARIOS[cmd["scenario"]](comp, sim, **cmd["params"])
        except BaseException as exc:  # report, keep serving
            result = {"error": f"{type(exc).__name__}: {exc}"[:500],
                      "traceback": traceback.format_exc()[-2000:]}
        out.write(json.dumps(result) + "\n")
        out.flush()


def main(comp: str) -> None:
    # Keep the protocol channel clean: whatever a library prints goes to stderr.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(comp, sys.stdin, proto)


class WorkerProcess:
    """The orchestrator's end of a worker."""

    def __init__(self, comp: str, log: Path) -> None:
        self.comp = comp
        self.log = log
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            err = open(self.log, "a")
            self.proc = subprocess.Popen([sys.executable, str(RUN_PY), "--worker", self.comp],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True, bufsize=1)
            err.close()
        return self.proc

    def run(self, scenario: str, sim: dict[str, Any], params: dict[str, Any],
            timeout: float) -> dict[str, Any]:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"scenario": scenario, "sim": sim, "params": params}) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            self.close()
            return {"error": f"worker exited (see {self.log})"}
        import select

        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            return {"error": f"timed out after {timeout:.0f} s"}
        line = proc.stdout.readline()
        if not line:
            self.close()
            return {"error": f"worker exited (see {self.log})"}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(5)
        except (subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None
