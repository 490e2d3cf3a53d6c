"""Who may import whom: the rules of docs/architecture in code.

* importing the client, or any backend (its module and its plugin entry module), loads no
  server code: no ``http.server``/``socketserver``, no protocol fake, no simulator, no test kit;
* no plugin imports another plugin (a plugin imports only the core);
* a strategy plugin imports no backend;
* every backend plugin registers its protocol fake under ``ipfs_accelerate.servers``.

Each import check runs in a fresh interpreter, so what one test imported cannot hide what
another needs.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from ipfs_accelerate_py.plugins import ENTRY_POINT_GROUP, SERVER_ENTRY_POINT_GROUP

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())

#: Modules whose presence means server code was loaded.
SERVER_MODULES = ("http.server", "socketserver", "ipfs_accelerate_py.server",
                  "ipfs_accelerate_sim", "ipfs_accelerate_sim.testing",
                  "ipfs_accelerate_py.wire.openai_server")


def _package(plugin_dir: Path) -> str:
    (pkg,) = [p.name for p in (plugin_dir / "src").iterdir() if p.name.startswith("ipfs_accelerate_")]
    return pkg


def _loaded_after(code: str) -> list[str]:
    probe = (f"{code}\nimport sys, json\n"
             f"print(json.dumps(sorted(m for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _server_code(modules: list[str]) -> list[str]:
    return [m for m in modules
            if m in SERVER_MODULES or m.startswith("ipfs_accelerate_sim.")
            or (m.startswith("ipfs_accelerate_") and m.endswith(".server"))]


def test_importing_the_client_and_building_one_loads_no_server_code():
    modules = _loaded_after("import ipfs_accelerate_py\n"
                            "from ipfs_accelerate_py.client import Client\n"
                            "from ipfs_accelerate_py.plugins import get_plugin_manager\n"
                            "get_plugin_manager().backends(); get_plugin_manager().strategies()")
    assert "ipfs_accelerate_py.client" in modules  # the probe really imported it
    assert _server_code(modules) == []


@pytest.mark.parametrize("plugin_dir", PLUGINS, ids=lambda p: p.name)
def test_importing_a_plugin_and_its_backend_loads_no_server_code(plugin_dir):
    pkg = _package(plugin_dir)
    mods = [f"{pkg}.plugin"] + ([f"{pkg}.backend"] if (plugin_dir / "src" / pkg / "backend.py").is_file() else [])
    modules = _loaded_after("\n".join(f"import {m}" for m in mods))
    assert set(mods) <= set(modules)
    assert _server_code(modules) == []


def _imported_top_levels(src: Path) -> set[str]:
    names: set[str] = set()
    for path in src.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("plugin_dir", PLUGINS, ids=lambda p: p.name)
def test_a_plugin_imports_no_other_plugin(plugin_dir):
    own = _package(plugin_dir)
    others = {_package(p) for p in PLUGINS} - {own}
    contrib = {p.name for d in (ROOT / "contrib").iterdir() if (d / "src").is_dir()
               for p in (d / "src").iterdir() if p.name.startswith("ipfs_accelerate_")}
    imported = _imported_top_levels(plugin_dir / "src")
    assert own in {p.name for p in (plugin_dir / "src").iterdir()}
    assert imported & (others | contrib) == set()


def test_strategies_import_no_backend():
    strategy_plugins = [p for p in PLUGINS if (p / "src" / _package(p) / "strategy.py").is_file()]
    assert strategy_plugins, "no strategy plugin found: the rule checks nothing"
    for plugin_dir in strategy_plugins:
        pkg = _package(plugin_dir)
        modules = _loaded_after(f"import {pkg}.plugin, {pkg}.strategy")
        assert "ipfs_accelerate_py.backend" not in modules, pkg
        assert not [m for m in modules if m.endswith(".backend")], pkg


def test_every_backend_plugin_registers_its_fake_in_the_servers_group():
    backends = {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    servers = {ep.name: ep for ep in metadata.entry_points(group=SERVER_ENTRY_POINT_GROUP)}
    for plugin_dir in PLUGINS:
        pkg = _package(plugin_dir)
        if not (plugin_dir / "src" / pkg / "server.py").is_file():
            continue
        name = plugin_dir.name
        assert name in backends and name in servers, name
        assert servers[name].value.startswith(f"{pkg}.server:")
        assert servers[name].load().name == name


def test_the_core_never_imports_the_simulator_distribution():
    # The CLI reaches the simulator through the ipfs_accelerate.simulator entry point.
    imported = _imported_top_levels(ROOT / "core" / "src")
    assert "ipfs_accelerate_sim" not in imported
    assert not any("ipfs_accelerate_sim" in p.read_text()
                   for p in (ROOT / "core" / "src").rglob("*.py"))


def test_the_core_finds_the_simulator_through_its_entry_point():
    from ipfs_accelerate_py import sim

    module = sim.simulator_module()
    assert module.__name__ == "ipfs_accelerate_sim"
    assert sim.Simulator is module.Simulator and sim.SimConfig is module.SimConfig


def test_without_the_simulator_the_cli_hook_says_what_is_missing(monkeypatch):
    from ipfs_accelerate_py import sim
    from ipfs_accelerate_py.errors import ConfigError

    monkeypatch.setattr(sim.metadata, "entry_points", lambda group: [])
    with pytest.raises(ConfigError, match="ipfs_accelerate.simulator"):
        sim.Simulator  # noqa: B018 - the attribute access is the call under test
