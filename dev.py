#!/usr/bin/env python3
"""Workspace tasks.  Needs only python3 (>= 3.11: tomllib) with pip and venv.

    python3 dev.py demo     run the main job (the simulator demo)
    python3 dev.py test     lint, type-check, then run every test of every distribution
                            (extra args go to pytest)
    python3 dev.py lint     only the linter (ruff) and the type checker (mypy, the core)
    python3 dev.py setup    only create/refresh .venv
    python3 dev.py interop  install real servers into .venv and run the backends against
                            them; writes docs/interop.md (first run: ~15 min to build
                            llama-cpp-python on two cores; extra args: llama kserve moto)

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


#: The real servers of the interop suite, pinned so that docs/interop.md is reproducible.
INTEROP_PACKAGES = ["llama-cpp-python[server]==0.3.36", "gguf==0.19.0", "kserve==0.21.0",
                    "moto[server]>=5"]
#: llama.cpp built for any x86-64: a VM may report CPU instructions it cannot run.
INTEROP_CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF "
                      "-DGGML_F16C=OFF -DGGML_AVX512=OFF -DLLAMA_CURL=OFF "
                      "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF")


def interop(py: Path, rest: list[str]) -> int:
    env = {**os.environ, "CMAKE_ARGS": INTEROP_CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
    print("dev.py: installing the interop servers (llama-cpp-python builds from source)",
          flush=True)
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                    "--no-binary", "llama-cpp-python", *INTEROP_PACKAGES], check=True, env=env)
    return subprocess.call([str(py), str(ROOT / "tools" / "interop" / "run.py"), *rest], cwd=ROOT)


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
    if cmd == "interop":
        return interop(py, rest)
    if cmd == "bench":
        return subprocess.call([str(py), str(ROOT / "benchmarks" / "run.py"), *rest], cwd=ROOT)
    print(f"dev.py: unknown command {cmd!r}\n{__doc__}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
