"""Meta-tests: the hook contract is documented and exercised, and every plugin in the
repository runs its contract suite.

* every hook specification documents each parameter (``:param name:``) and, unless it
  returns None, its result (``:return:``);
* one client run with a plugin implementing *every* pipeline hook calls each of them (a
  new hook spec fails here until something exercises it); the command line's hooks
  (``accelerate_cli_*``) are exercised by ``test_cli_architecture.py``;
* every distribution under ``plugins/`` and ``contrib/`` that registers a backend has a
  test module subclassing ``BackendContract`` for each backend class, and every one that
  registers a strategy a ``StrategyContract`` subclass for each factory;
* importing a plugin's entry-point module stays cheap (no HTTP stack).
"""

from __future__ import annotations

from decimal import Decimal

import ast
import inspect
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ipfs_accelerate_py import hookspecs
from ipfs_accelerate_py.hookspecs import hookimpl

ROOT = Path(__file__).resolve().parents[1]


def hook_specs() -> dict[str, Any]:
    """name -> function, for every function in hookspecs marked as a hook spec."""
    marker = hookspecs.PROJECT + "_spec"
    return {name: fn for name, fn in vars(hookspecs).items()
            if inspect.isfunction(fn) and hasattr(fn, marker)}


# ------------------------------------------------------------------ documented
def test_there_are_hook_specs():
    assert {"accelerate_backends", "accelerate_strategies", "accelerate_make_state_store",
            "accelerate_make_observer", "accelerate_backoff",
            "accelerate_on_finished"} <= set(hook_specs())


def test_one_way_in_per_decision():
    # Keys are chosen by strategies; breakers come from the state store.
    assert not {"accelerate_select_key", "accelerate_make_breaker"} & set(hook_specs())


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_hook_spec_is_documented(name: str):
    fn = hook_specs()[name]
    doc = inspect.getdoc(fn) or ""
    assert doc.strip(), f"{name} has no docstring"
    summary = doc.strip().splitlines()[0]
    assert summary.endswith("."), f"{name}: the first line should be a one-sentence summary"
    missing = [p for p in inspect.signature(fn).parameters if f":param {p}:" not in doc]
    assert not missing, f"{name}: parameters without ':param <name>:' in the docstring: {missing}"
    returns = inspect.signature(fn).return_annotation
    if returns not in ("None", None, inspect.Signature.empty):
        assert ":return:" in doc, f"{name} returns {returns} but its docstring has no ':return:'"
    assert "Called" in doc, f"{name}: say when (and on which thread) it is called"


# ------------------------------------------------------------------ exercised
class LastKey:
    """A strategy: the last key with capacity."""

    def select(self, request: Any, candidates: Any) -> Any:
        return candidates[-1]


class Recorder:
    """Implements every hook; records each call and otherwise defers to the defaults."""

    def __init__(self) -> None:
        self.called: set[str] = set()
        self.events: list[str] = []

    @hookimpl
    def accelerate_serve_dashboard(self, client: Any, port: int, host: str,
                                   token: str | None) -> Any:
        self.called.add("accelerate_serve_dashboard")
        return {"url": f"http://{host}:{port}/"}  # stands in for a page

    @hookimpl
    def accelerate_backends(self) -> list[type]:
        from echo_backend import EchoBackend

        self.called.add("accelerate_backends")
        return [EchoBackend]

    @hookimpl
    def accelerate_strategies(self) -> dict[str, Any]:
        self.called.add("accelerate_strategies")
        return {"meta-last": LastKey}

    @hookimpl
    def accelerate_make_queue(self, config: Any) -> None:
        self.called.add("accelerate_make_queue")

    @hookimpl
    def accelerate_make_state_store(self, config: Any) -> None:
        self.called.add("accelerate_make_state_store")

    @hookimpl
    def accelerate_make_cache_store(self, url: str, config: Any) -> None:
        self.called.add("accelerate_make_cache_store")

    @hookimpl
    def accelerate_make_observer(self, name: str, options: Any, config: Any) -> Any:
        self.called.add("accelerate_make_observer")
        return self if name == "meta-recorder" else None

    @hookimpl
    def accelerate_backoff(self, request: Any, attempt: int, error: Any, policy: Any,
                           now: float, deadline: float | None, rng: Any) -> Any:
        from ipfs_accelerate_py.retry import RetryDecision

        self.called.add("accelerate_backoff")
        return RetryDecision(True, 0.0, "meta-test")

    def _event(self, hook: str, event: Any) -> None:
        self.called.add(hook)
        self.events.append(type(event).__name__)

    @hookimpl
    def accelerate_on_queued(self, event: Any) -> None:
        self._event("accelerate_on_queued", event)

    @hookimpl
    def accelerate_on_started(self, event: Any) -> None:
        self._event("accelerate_on_started", event)

    @hookimpl
    def accelerate_on_retried(self, event: Any) -> None:
        self._event("accelerate_on_retried", event)

    @hookimpl
    def accelerate_on_finished(self, event: Any) -> None:
        self._event("accelerate_on_finished", event)

    @hookimpl
    def accelerate_on_breaker_changed(self, event: Any) -> None:
        self._event("accelerate_on_breaker_changed", event)

    @hookimpl
    def accelerate_price(self, backend: str, model: str) -> Any:
        self.called.add("accelerate_price")
        return {"input": "1", "output": "1", "per_request": "0.01"} if model == "echo-1" else None

    @hookimpl
    def accelerate_on_budget(self, event: Any) -> None:
        self._event("accelerate_on_budget", event)


def test_every_hook_is_called_by_a_client_run(echo_server):
    from ipfs_accelerate_py import BackendConfig, BreakerPolicy, Client, ClientConfig
    from ipfs_accelerate_py.plugins import PluginManager
    from ipfs_accelerate_py.server import ServerResponse

    rec = Recorder()
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(rec, name="meta-recorder")
    down = ServerResponse.json({"error": "down"}, 503)
    # Request 1 fails once (backoff, retried); request 2 fails twice, which trips the
    # breaker (window of 2, all failures), waits out the open interval and closes again.
    echo_server.script(down, lambda req: echo_server.protocol(req), down, down)
    from ipfs_accelerate_py.costs import Budget

    # Two requests at $0.01 each (the price hook's per-request fee) cross half the budget.
    cfg = ClientConfig(max_concurrency=1, strategy="meta-last", observers=("meta-recorder",),
                       budgets=[Budget("meta", usd="0.03")],
                       cache="memory://",  # the cache store hook (echo is not cached)
                       breaker=BreakerPolicy(window_size=2, minimum_calls=2,
                                             failure_rate_threshold=1.0, open_interval=0.01))
    with Client([BackendConfig("echo", keys=["test-key-1", "test-key-2"],
                               base_url=echo_server.url)], cfg, plugin_manager=pm) as client:
        first = client.call("echo", "echo", {"n": 1, "model": "echo-1"})
        second = client.call("echo", "echo", {"n": 2, "model": "echo-1"})
        assert client.serve_dashboard(0) == {"url": "http://127.0.0.1:0/"}
    assert (first.attempts, second.attempts) == (2, 3)
    # the recorder's strategy (last candidate) chose the key
    assert echo_server.requests[0].bearer_token() == "test-key-2"
    pipeline_hooks = {n for n in hook_specs() if not n.startswith("accelerate_cli_")}
    assert not pipeline_hooks - rec.called, f"hooks never called: {pipeline_hooks - rec.called}"
    assert {"BreakerChanged", "RequestRetried", "RequestFinished", "BudgetWarning"} <= set(rec.events)
    assert first.cost == second.cost == Decimal("0.01")  # no tokens: the fee alone


# ------------------------------------------------------------------ plugins run their contracts
def distributions() -> list[Path]:
    return sorted(p.parent for pattern in ("plugins/*/pyproject.toml", "contrib/*/pyproject.toml")
                  for p in ROOT.glob(pattern))


def entry_points(dist: Path) -> dict[str, str]:
    meta = tomllib.loads((dist / "pyproject.toml").read_text())
    return dict(meta.get("project", {}).get("entry-points", {}).get("ipfs_accelerate", {}))


def registered(dist: Path) -> tuple[list[str], list[str]]:
    """(backend class names, strategy factory names) the distribution's plugins register."""
    import importlib

    backends: list[str] = []
    strategies: list[str] = []
    for module_name in entry_points(dist).values():
        module = importlib.import_module(module_name.split(":")[0])
        if callable(getattr(module, "accelerate_backends", None)):
            backends += [cls.__name__ for cls in module.accelerate_backends() or ()]
        if callable(getattr(module, "accelerate_strategies", None)):
            strategies += [f.__name__ for f in (module.accelerate_strategies() or {}).values()]
    return backends, strategies


def contract_subjects(dist: Path, contract: str, attribute: str) -> set[str]:
    """Names assigned to ``attribute`` in classes of the distribution's tests that list
    ``contract`` among their bases (found by reading the sources, not importing them)."""
    found: set[str] = set()
    for path in sorted((dist / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", None) for b in node.bases}
            if contract not in bases:
                continue
            for stmt in node.body:
                if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                    if any(isinstance(t, ast.Name) and t.id == attribute for t in targets):
                        value = stmt.value
                        name = value.id if isinstance(value, ast.Name) else getattr(value, "attr", None)
                        if name:
                            found.add(name)
    return found


def test_the_repository_has_plugins_of_both_kinds():
    names = {d.name for d in distributions()}
    assert {"round_robin", "least_loaded", "example_backend", "example_strategy"} <= names
    assert {"openai", "claude"} <= names


@pytest.mark.parametrize("dist", distributions(), ids=lambda d: f"{d.parent.name}/{d.name}")
def test_plugin_runs_its_contract_suite(dist: Path):
    eps = entry_points(dist)
    if not eps:
        return  # registers no plugin: nothing to run
    backends, strategies = registered(dist)
    problems = []
    tested = contract_subjects(dist, "BackendContract", "backend_class")
    for cls in backends:
        if cls not in tested:
            problems.append(f"backend {cls} has no test class subclassing BackendContract "
                            f"(with backend_class = {cls}) under {dist.relative_to(ROOT)}/tests")
    tested = contract_subjects(dist, "StrategyContract", "strategy_factory")
    for factory in strategies:
        if factory not in tested:
            problems.append(f"strategy {factory} has no test class subclassing StrategyContract "
                            f"(with strategy_factory = {factory}) under {dist.relative_to(ROOT)}/tests")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module", sorted({m.split(":")[0] for d in distributions()
                                           for m in entry_points(d).values()}))
def test_importing_a_plugin_entry_point_is_cheap(module: str):
    """The core imports every entry point while it discovers plugins: a plugin module
    must not pull in the HTTP stack (or anything heavy) before it is used."""
    code = (f"import sys; import {module}; "
            "print(','.join(m for m in ('requests', 'urllib3', 'botocore', 'boto3', 'redis') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"importing {module} pulled in {out.stdout.strip()}"
