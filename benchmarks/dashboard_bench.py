"""The dashboard's own traffic: bytes per second a page receives while a simulated workload
runs (three keys, injected errors, a one-second outage).

    .venv/bin/python benchmarks/dashboard_bench.py [--seconds 20]

Prints a Markdown table row for docs/benchmarks/dashboard.md.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contrib" / "dashboard" / "tests"))
from test_dashboard import Workload  # noqa: E402  (the browser test's workload)

from ipfs_accelerate_dashboard import serve_dashboard  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    w = Workload()
    try:
        with serve_dashboard(w.client, 0, recorder=w.recorder, progress=w.snapshot_progress) as d:
            conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
            conn.request("GET", "/events")
            resp = conn.getresponse()
            first = None
            sizes: list[int] = []
            start = time.monotonic()
            while time.monotonic() - start < args.seconds:
                line = resp.fp.readline()
                if not line.strip():
                    continue
                if first is None:  # "retry:" then the full message
                    if line.startswith(b"data: "):
                        first = len(line)
                        start = time.monotonic()
                    continue
                sizes.append(len(line))
            elapsed = time.monotonic() - start
            conn.close()
    finally:
        w.close()
    print("| first message (history) B | updates | mean update B | max update B | B/s |")
    print("|---|---|---|---|---|")
    total = sum(sizes)  # every byte of the stream, event names included
    data = [s for s in sizes if s > 40]  # the "data:" lines
    print(f"| {first} | {len(data)} | {sum(data) / max(1, len(data)):.0f} | {max(data)} | "
          f"{total / elapsed:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
