#!/usr/bin/env python3
"""Workspace tasks.  Needs only python3 (>= 3.11: tomllib) with pip and venv.

    python3 dev.py demo     run the main job (the simulator demo)
    python3 dev.py test     lint, type-check, then run every test of every distribution
                            (extra args go to pytest)
    python3 dev.py lint     only the linter (ruff) and the type checker (mypy, the core)
    python3 dev.py setup    only create/refresh .venv

The first run creates .venv/ and installs every workspace member editable plus the
development tools; later runs reinstall only when a pyproject.toml changed.
"""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".dev-stamp"


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def members() -> list[Path]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ipfs-accelerate"]["workspace"]
    found: list[Path] = []
    for pattern in cfg["members"]:
        for d in sorted(glob.glob(str(ROOT / pattern))):
            if (Path(d) / "pyproject.toml").is_file():
                found.append(Path(d))
    # The core first: every other member depends on it.
    return sorted(found, key=lambda p: (p.name != "core", str(p)))


def _fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in [ROOT / "pyproject.toml", *(m / "pyproject.toml" for m in paths)]:
        h.update(str(p).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def setup() -> Path:
    py = _python()
    if not py.exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    mems = members()
    fp = _fingerprint(mems)
    if STAMP.exists() and STAMP.read_text() == fp:
        return py
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ipfs-accelerate"]["workspace"]
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    print("dev.py: installing development tools", flush=True)
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *cfg["dev-dependencies"]], check=True)
    print(f"dev.py: installing {len(mems)} workspace members (editable)", flush=True)
    args: list[str] = []
    for m in mems:
        args += ["-e", str(m)]
    subprocess.run([*pip, "--no-build-isolation", *args], check=True)
    STAMP.write_text(fp)
    return py


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "setup":
        setup()
        return 0
    py = setup()
    if cmd in ("test", "lint"):
        # Both read their configuration from pyproject.toml ([tool.ruff], [tool.mypy]).
        for check in (["-m", "ruff", "check", "."], ["-m", "mypy"]):
            rc = subprocess.call([str(py), *check], cwd=ROOT)
            if rc:
                return rc
        if cmd == "lint":
            return 0
        return subprocess.call([str(py), "-m", "pytest", *rest], cwd=ROOT)
    if cmd == "demo":
        return subprocess.call([str(py), "-m", "ipfs_accelerate_py.cli", "demo", *rest], cwd=ROOT)
    if cmd == "bench":
        return subprocess.call([str(py), str(ROOT / "benchmarks" / "run.py"), *rest], cwd=ROOT)
    print(f"dev.py: unknown command {cmd!r}\n{__doc__}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
