"""The command line's architecture: the core names no plugin, plugins name no other
plugin, and the command line's hooks (commands, options, batch runners) work."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from ipfs_accelerate_py.hookspecs import hookimpl

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core" / "src" / "ipfs_accelerate_py"


def distributions() -> dict[str, tuple[str, Path]]:
    """import package -> (distribution name, package directory), for every distribution
    under plugins/ and contrib/."""
    import tomllib

    out: dict[str, tuple[str, Path]] = {}
    for toml in sorted([*ROOT.glob("plugins/*/pyproject.toml"), *ROOT.glob("contrib/*/pyproject.toml")]):
        dist = tomllib.loads(toml.read_text())["project"]["name"]
        for pkg in sorted((toml.parent / "src").glob("*/__init__.py")):
            out[pkg.parent.name] = (dist, pkg.parent)
    return out


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def references(path: Path) -> Iterator[tuple[int, str]]:
    """(line, name) of every module a file imports, and every string in its code (not its
    docstrings) -- ``importlib.import_module("x")`` and messages count as naming."""
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value


def offending(files: list[Path], banned: dict[str, str]) -> list[str]:
    found = []
    for path in files:
        for line, ref in references(path):
            for pkg, dist in banned.items():
                if ref == pkg or ref.startswith(pkg + ".") or pkg + "." in ref or dist in ref \
                        or f"import {pkg}" in ref:
                    found.append(f"{path.relative_to(ROOT)}:{line}: {ref[:80]!r} names {dist}")
    return found


def test_the_reference_scan_finds_what_it_must() -> None:
    """The scanner itself: an import, a from-import, a dynamic import string and a
    message naming the distribution are found; a docstring is not."""
    sample = ROOT / "tests" / "_arch_sample.py"
    sample.write_text('"""Mentions ipfs_accelerate_redis in prose only."""\n'
                      "import ipfs_accelerate_redis.batch\n"
                      "from ipfs_accelerate_redis import plugin\n"
                      "import importlib\n"
                      "importlib.import_module('ipfs_accelerate_redis.batch')\n"
                      "print('pip install ipfs-accelerate-redis')\n")
    try:
        hits = offending([sample], {"ipfs_accelerate_redis": "ipfs-accelerate-redis"})
    finally:
        sample.unlink()
    assert [h.split(":")[1] for h in hits] == ["2", "3", "5", "6"]


def test_the_core_imports_and_names_no_plugin_or_contrib_distribution() -> None:
    dists = distributions()
    assert {"ipfs_accelerate_redis", "ipfs_accelerate_openai"} <= set(dists)
    banned = {pkg: dist for pkg, (dist, _) in dists.items()}
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 30 and CORE / "cli" / "batch.py" in files
    assert offending(files, banned) == []


@pytest.mark.parametrize("pkg", sorted(distributions()))
def test_a_plugin_imports_no_other_plugin(pkg: str) -> None:
    dists = distributions()
    banned = {other: dist for other, (dist, _) in dists.items() if other != pkg}
    files = sorted(dists[pkg][1].rglob("*.py"))
    assert files
    hits = [h for h in offending(files, banned)
            if "import" in h or "ipfs_accelerate_" in h]  # prose may compare with others
    assert hits == []


# ------------------------------------------------------------------ the CLI hooks
class CliPlugin:
    """Adds a command, an option to two commands, and a batch runner."""

    def __init__(self) -> None:
        self.jobs: list[Any] = []
        self.option_calls: list[str] = []

    @hookimpl
    def accelerate_cli_commands(self, subparsers: Any) -> None:
        p = subparsers.add_parser("hello", help="say hello")
        p.add_argument("name")
        p.set_defaults(func=lambda args: print(("HELLO " if args.shout else "hello ")
                                               + args.name) or 0)

    @hookimpl
    def accelerate_cli_options(self, command: str, parser: Any) -> None:
        self.option_calls.append(command)
        if command in ("hello", "batch"):
            parser.add_argument("--shout", action="store_true")

    @hookimpl
    def accelerate_cli_run_batch(self, job: Any) -> int | None:
        if not job.options.shout:
            return None
        self.jobs.append(job)
        lines, bad = job.read_input()
        with open(job.output_path, "w") as f:
            for ln in lines:
                f.write(json.dumps({"id": ln.id, "ok": True}) + "\n")
        return 0


@pytest.fixture
def cli_plugin() -> Iterator[CliPlugin]:
    from ipfs_accelerate_py.plugins import get_plugin_manager

    pm = get_plugin_manager()
    plugin = CliPlugin()
    pm.add_plugin(plugin, name="test-cli-plugin")
    try:
        yield plugin
    finally:
        pm.unregister(plugin)


def test_a_plugin_adds_a_command_and_options(cli_plugin: CliPlugin,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from ipfs_accelerate_py.cli import main

    assert main(["hello", "world", "--shout"]) == 0
    assert capsys.readouterr().out == "HELLO world\n"
    # every command, the core's and the plugin's, was offered to the options hook
    assert {"plugins", "chat", "embed", "infer", "batch", "sim", "demo", "hello"} <= set(
        cli_plugin.option_calls)


def test_a_batch_runner_hook_takes_the_job_or_leaves_it(cli_plugin: CliPlugin, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from test_cli_helpers import write_requests

    from ipfs_accelerate_py.cli import main

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_requests(inp, 3)
    assert main(["batch", str(inp), "-o", str(out), "--shout", "--concurrency", "3"]) == 0
    [job] = cli_plugin.jobs
    assert job.options.concurrency == 3 and job.input_path == inp
    assert job.errors_path == Path(f"{out}.errors.jsonl")
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ids
    assert not job.journal_path.exists()  # the core's runner never ran
    # without --shout the plugin declines; the core's runner runs (and needs a key)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out2 = tmp_path / "out2.jsonl"
    assert main(["batch", str(inp), "-o", str(out2)]) == 2
    assert "needs an API key" in capsys.readouterr().err
    assert len(cli_plugin.jobs) == 1


def test_the_redis_plugin_adds_its_batch_options_through_the_hook() -> None:
    from ipfs_accelerate_py.cli import build_parser

    parser = build_parser()
    batch = parser._subparsers._group_actions[0].choices["batch"]  # type: ignore[union-attr]
    options = {o for a in batch._actions for o in a.option_strings}
    assert {"--redis", "--job", "--claim-timeout"} <= options
    chat = parser._subparsers._group_actions[0].choices["chat"]  # type: ignore[union-attr]
    assert "--redis" not in {o for a in chat._actions for o in a.option_strings}
