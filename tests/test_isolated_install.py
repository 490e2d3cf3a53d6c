"""Proof that the distributions install alone, from wheels, into fresh virtual environments.

The development environment has every workspace member installed editable, so nothing
there can show that a user who runs ``pip install ipfs-accelerate-core
ipfs-accelerate-openai`` gets a working, isolated set-up.  Here:

1. wheels of the core and of ONE backend plugin (openai) are built from the working tree
   with ``pip wheel --no-deps --no-build-isolation``;
2. their declared dependencies are fetched as wheels once (``pip download``, cached across
   runs under ``~/.cache/ipfs-accelerate/test-wheels``; ``IPFS_ACCELERATE_TEST_WHEELS``
   overrides the place);
3. fresh venvs (no system site-packages, so no editable member leaks in) get them with
   ``pip install --no-index --find-links``: one with the core alone, one with the core and
   the plugin, and a probe script runs in each with ``python -I``.

The probes report facts as JSON; the tests below assert on them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "openai"  # the one plugin installed beside the core
PLUGIN_DIR = ROOT / "plugins" / PLUGIN
OTHER = "claude"  # a backend that is NOT installed in the venvs
BIN = "Scripts" if os.name == "nt" else "bin"


def _pip(*args: str, python: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    if python is not None:
        cmd += ["--python", python]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"pip {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _core_requirements() -> list[str]:
    """The core's declared dependencies, pinned to what this environment runs with."""
    pins = []
    for req in metadata.requires("ipfs-accelerate-core") or []:
        if "extra ==" in req:
            continue
        name = req.split(";")[0].split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip()
        pins.append(f"{name}=={metadata.version(name)}")
    return sorted(pins)


def _dependency_wheels() -> Path:
    pins = _core_requirements()
    base = Path(os.environ.get("IPFS_ACCELERATE_TEST_WHEELS")
                or Path.home() / ".cache" / "ipfs-accelerate" / "test-wheels")
    tag = hashlib.sha256((sys.version + "\n".join(pins)).encode()).hexdigest()[:16]
    target = base / tag
    if target.is_dir() and any(target.glob("*.whl")):
        return target
    partial = base / f"{tag}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _pip("download", "--only-binary", ":all:", "--dest", str(partial), *pins)
    try:
        partial.rename(target)
    except OSError:  # another run finished first
        shutil.rmtree(partial, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(our wheels, dependency wheels)."""
    ours = tmp_path_factory.mktemp("wheels")
    build = tmp_path_factory.mktemp("build")
    copies = []
    for src in (ROOT / "core", PLUGIN_DIR):
        # Build from a copy: an in-tree build would leave build/ and *.egg-info behind.
        copies.append(build / src.name)
        shutil.copytree(src, copies[-1], ignore=shutil.ignore_patterns(
            "build", "*.egg-info", "__pycache__", "tests", ".pytest_cache"))
    _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(ours), *map(str, copies))
    names = sorted(p.name for p in ours.glob("*.whl"))
    assert len(names) == 2 and names[0].startswith("ipfs_accelerate_core-"), names
    return ours, _dependency_wheels()


def _make_venv(path: Path, wheelhouse: tuple[Path, Path], *requirements: str) -> Path:
    venv.EnvBuilder(with_pip=False, clear=True, system_site_packages=False).create(path)
    python = path / BIN / ("python.exe" if os.name == "nt" else "python")
    ours, deps = wheelhouse
    _pip("install", "--no-index", "--find-links", str(ours), "--find-links", str(deps),
         *requirements, python=str(python))
    return python


def _run_probe(python: Path, code: str, tmp: Path) -> dict[str, Any]:
    script = tmp / "probe.py"
    script.write_text(textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")
           and not k.startswith("IPFS_ACCELERATE")}
    proc = subprocess.run([str(python), "-I", str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp, env=env)
    assert proc.returncode == 0, f"probe failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


COMMON = """
    import importlib.util, json, sys
    from importlib import metadata
    import ipfs_accelerate_py
    from ipfs_accelerate_py import BackendConfig, Client, list_plugins
    from ipfs_accelerate_py.errors import UnknownPluginError

    facts = {"prefix": sys.prefix, "core_file": ipfs_accelerate_py.__file__,
             "plugins": [[p.name, p.distribution] for p in list_plugins()],
             "entry_points": sorted(ep.name for ep in metadata.entry_points(group="ipfs_accelerate")),
             "dists": sorted(d.metadata["Name"] for d in metadata.distributions()
                             if d.metadata["Name"].startswith("ipfs-accelerate"))}

    def unknown(name):
        try:
            Client([BackendConfig(name, keys=["test-key-1"])])
        except UnknownPluginError as exc:
            return {"type": type(exc).__name__, "message": str(exc)}
        except Exception as exc:
            return {"type": type(exc).__name__, "message": str(exc)}
        return None
"""


@pytest.fixture(scope="session")
def core_alone(wheelhouse: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("core-alone")
    python = _make_venv(tmp / "venv", wheelhouse, "ipfs-accelerate-core")
    facts = _run_probe(python, COMMON + f"""
    facts["unknown_backend"] = unknown("{PLUGIN}")
    print(json.dumps(facts))
    """, tmp)
    facts["cli"] = _cli_plugins(python, tmp)
    return facts


def _cli_plugins(python: Path, cwd: Path) -> dict[str, Any]:
    """``ipfs-accelerate plugins --json`` through the venv's console script."""
    cli = subprocess.run([str(python.parent / "ipfs-accelerate"), "plugins", "--json"],
                         capture_output=True, text=True, timeout=120, cwd=cwd)
    assert cli.returncode == 0, cli.stderr[-2000:]
    return json.loads(cli.stdout)


@pytest.fixture(scope="session")
def with_plugin(wheelhouse: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("with-plugin")
    python = _make_venv(tmp / "venv", wheelhouse, "ipfs-accelerate-core",
                        f"ipfs-accelerate-{PLUGIN}")
    facts = _run_probe(python, COMMON + f"""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from ipfs_accelerate_py.plugins import get_plugin_manager
    from ipfs_accelerate_py.server import ServerRequest

    facts["other_importable"] = importlib.util.find_spec("ipfs_accelerate_{OTHER}") is not None
    facts["unknown_backend"] = unknown("{OTHER}")
    try:
        from ipfs_accelerate_py.api_backends import {OTHER}
        {OTHER}(metadata={{"{OTHER}_api_key": "test-key-1"}})
        facts["compat_error"] = None
    except ImportError as exc:
        facts["compat_error"] = str(exc)

    # A request through the installed plugin, against its own protocol fake (found through
    # its entry point; the simulator distribution and its hosts are not installed here, so
    # the standard library hosts it).
    server_cls = get_plugin_manager().protocol_server("{PLUGIN}")
    seen = []
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *args):
            pass
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            req = ServerRequest(self.command, self.path,
                                headers={{k.lower(): v for k, v in self.headers.items()}}, body=body)
            seen.append({{"method": req.method, "path": req.path,
                          "auth": req.header("authorization")}})
            resp = server_cls().handle(req)
            self.send_response(resp.status)
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{{httpd.server_address[1]}}"
    try:
        with Client([BackendConfig("{PLUGIN}", keys=["test-key-1"], base_url=url + "/v1")]) as c:
            res = c.call("{PLUGIN}", "chat", {{"model": "gpt-4o-mini",
                                               "messages": [{{"role": "user", "content": "hi"}}]}})
    finally:
        httpd.shutdown()
        httpd.server_close()
    facts["result"] = {{"text": res.text, "backend": res.backend, "attempts": res.attempts}}
    facts["seen"] = seen
    facts["plugin_file"] = importlib.util.find_spec("ipfs_accelerate_{PLUGIN}").origin
    print(json.dumps(facts))
    """, tmp)
    facts["cli"] = _cli_plugins(python, tmp)
    return facts


def _inside(path: str, prefix: str) -> bool:
    return Path(path).resolve().is_relative_to(Path(prefix).resolve())


# ------------------------------------------------------------------ the core alone
def test_core_alone_installs_and_imports_from_the_venv(core_alone):
    assert _inside(core_alone["core_file"], core_alone["prefix"])
    assert not _inside(core_alone["core_file"], str(ROOT))
    assert core_alone["dists"] == ["ipfs-accelerate-core"]
    assert core_alone["plugins"] == [] and core_alone["entry_points"] == []
    assert core_alone["cli"]["backends"] == {}
    assert "first-available" in core_alone["cli"]["strategies"]


def test_core_alone_names_the_package_to_install(core_alone):
    err = core_alone["unknown_backend"]
    assert err["type"] == "UnknownPluginError"
    assert f"unknown backend '{PLUGIN}'" in err["message"]
    assert "installed: none" in err["message"]
    assert f"pip install ipfs-accelerate-{PLUGIN}" in err["message"]


# ------------------------------------------------------------------ core + one plugin
def test_only_the_installed_plugin_is_discovered(with_plugin):
    assert with_plugin["dists"] == ["ipfs-accelerate-core", f"ipfs-accelerate-{PLUGIN}"]
    assert with_plugin["plugins"] == [[PLUGIN, f"ipfs-accelerate-{PLUGIN}"]]
    assert with_plugin["entry_points"] == [PLUGIN]
    assert _inside(with_plugin["plugin_file"], with_plugin["prefix"])
    assert sorted(with_plugin["cli"]["backends"]) == [PLUGIN]


def test_another_backend_fails_naming_its_package(with_plugin):
    assert with_plugin["other_importable"] is False
    err = with_plugin["unknown_backend"]
    assert err["type"] == "UnknownPluginError"
    assert f"installed: {PLUGIN}" in err["message"]
    assert f"pip install ipfs-accelerate-{OTHER}" in err["message"]
    assert f"pip install ipfs-accelerate-{OTHER}" in with_plugin["compat_error"]


def test_a_request_through_the_installed_plugin_succeeds(with_plugin):
    assert with_plugin["result"]["backend"] == PLUGIN
    assert with_plugin["result"]["text"]
    assert with_plugin["result"]["attempts"] == 1
    assert with_plugin["seen"] == [{"method": "POST", "path": "/v1/chat/completions",
                                    "auth": "Bearer test-key-1"}]
