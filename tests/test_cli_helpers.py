"""Shared helpers of the CLI tests (no tests here): run ``ipfs-accelerate`` in a subprocess,
or in this process with its output captured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

CLI = [sys.executable, "-m", "ipfs_accelerate_py.cli"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without any real provider key, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not any(t in k for t in ("API_KEY", "API_TOKEN", "HF_TOKEN", "S3_", "AWS_"))}
    env.update(extra or {})
    return env


def run_cli(args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60,
            **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=clean_env(env), **kw)


def write_requests(path: Path, n: int, *, model: str = "gpt-4o-mini", prefix: str = "r") -> list[str]:
    ids = []
    with open(path, "w") as f:
        for i in range(n):
            rid = f"{prefix}{i}"
            ids.append(rid)
            f.write(json.dumps({"id": rid, "backend": "openai", "operation": "chat",
                                "priority": ["HIGH", "NORMAL", "LOW"][i % 3],
                                "payload": {"model": model, "messages": [
                                    {"role": "user", "content": f"request {i}"}]}}) + "\n")
    return ids


def read_out(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def main_in_process(args: list[str], capsys: Any) -> tuple[int, str, str]:
    """``ipfs-accelerate ARGS`` in this process: (exit code, stdout, stderr)."""
    from ipfs_accelerate_py.cli import main

    try:
        code = main(args)
    except SystemExit as exc:  # argparse's --help and usage errors
        code = int(exc.code or 0)
    got = capsys.readouterr()
    return code, got.out, got.err
