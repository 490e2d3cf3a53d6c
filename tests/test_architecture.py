"""Who may import whom: the rules of docs/architecture in code.

* importing the client, or any backend (its module and its plugin entry module), loads no
  server code: no ``http.server``/``socketserver``, no protocol fake, no simulator, no test kit;
* no plugin imports another plugin (a plugin imports only the core);
* a strategy plugin imports no backend;
* every backend plugin registers its protocol fake under ``ipfs_accelerate.servers`` (the
  one way to register one);
* the core carries no simulator code: ``sim`` and ``demo`` come from the simulator
  distribution through the CLI hooks.

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
                  "ipfs_accelerate_sim.testing", "ipfs_accelerate_py.wire.openai_server")
#: The simulator distribution's CLI plugin and its (lazy) package: loaded with every
#: plugin, they import no server code until a command runs.
SIM_PLUGIN_MODULES = ("ipfs_accelerate_sim", "ipfs_accelerate_sim.plugin")


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
            if m in SERVER_MODULES
            or (m.startswith("ipfs_accelerate_sim.") and m not in SIM_PLUGIN_MODULES)
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


def test_protocol_servers_are_registered_one_way_the_servers_entry_point():
    import echo_backend

    from ipfs_accelerate_py import hookspecs
    from ipfs_accelerate_py.backend import Backend
    from ipfs_accelerate_py.plugins import PluginManager

    assert not hasattr(hookspecs, "accelerate_protocol_servers")
    assert not hasattr(Backend, "server_class")
    alone = PluginManager(load_entry_points=False)
    alone.add_plugin(echo_backend, name="echo_backend")  # a backend plugin with a fake
    assert "echo" in alone.backends() and alone.protocol_servers() == {}
    installed = {ep.name for ep in metadata.entry_points(group=SERVER_ENTRY_POINT_GROUP)}
    assert set(PluginManager().protocol_servers()) == installed


def test_the_core_never_imports_the_simulator_distribution():
    imported = _imported_top_levels(ROOT / "core" / "src")
    assert "ipfs_accelerate_sim" not in imported
    assert not any("ipfs_accelerate_sim" in p.read_text()
                   for p in (ROOT / "core" / "src").rglob("*.py"))


def test_the_core_carries_no_simulator_shim():
    # The `sim` and `demo` commands come from the simulator distribution through the CLI
    # hooks: no module of the core stands in for the simulator, by path or entry point.
    core = ROOT / "core" / "src" / "ipfs_accelerate_py"
    assert not (core / "sim.py").exists() and not (core / "sim").exists()
    assert not [p.name for p in (core / "cli").glob("*.py") if p.stem in ("sim", "demo")]
    assert not any("ipfs_accelerate.simulator" in p.read_text() for p in core.rglob("*.py"))
    assert not metadata.entry_points(group="ipfs_accelerate.simulator")


def _commands(pm, monkeypatch) -> dict:
    from ipfs_accelerate_py import cli, plugins

    monkeypatch.setattr(plugins, "_default", pm)  # the CLI asks the process-wide manager
    (sub,) = [a for a in cli.build_parser()._actions if a.dest == "command"]
    return dict(sub.choices)


def test_sim_and_demo_come_from_the_simulator_distribution_through_the_cli_hook(monkeypatch):
    from ipfs_accelerate_py.plugins import PluginManager

    bare = _commands(PluginManager(load_entry_points=False), monkeypatch)
    assert "sim" not in bare and "demo" not in bare and "batch" in bare
    installed = _commands(PluginManager(), monkeypatch)
    for name in ("sim", "demo"):
        run = installed[name].get_default("func")
        assert run.__module__.startswith("ipfs_accelerate_sim."), (name, run.__module__)
    (ep,) = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "sim"]
    assert ep.value == "ipfs_accelerate_sim.plugin" and ep.dist.name == "ipfs-accelerate-sim"


def test_loading_the_simulator_plugin_loads_no_server_code():
    # Every process that loads plugins imports it (clients too): it must stay light.
    modules = _loaded_after("import ipfs_accelerate_sim.plugin")
    assert "ipfs_accelerate_sim.plugin" in modules
    assert _server_code(modules) == []
