"""The documentation "builds": tools/check_docs.py finds no problem.

Each check runs as its own test so a failure says which kind of problem it is; the last
test runs the script itself, exactly as a contributor would.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_docs_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_docs = _load("check_docs")
gen_hook_reference = _load("gen_hook_reference")


def _report(problems: list[str]) -> str:
    return "\n" + "\n".join(problems)


def test_every_relative_link_and_anchor_resolves():
    problems = check_docs.check_links(check_docs.doc_files())
    assert not problems, _report(problems)


def test_every_code_reference_exists():
    problems = check_docs.check_references(check_docs.doc_files())
    assert not problems, _report(problems)


def test_every_python_block_in_docs_compiles():
    docs = [f for f in check_docs.doc_files() if f.is_relative_to(ROOT / "docs")]
    problems = check_docs.check_code_blocks(docs)
    assert not problems, _report(problems)


def test_a_python_block_that_does_not_compile_is_reported(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("# T\n\n```python\nx = [...]\n```\n\ntext\n\n```python\nok = 1\ndef f(:\n```\n")
    problems = check_docs.check_code_blocks([page])
    assert len(problems) == 1 and problems[0].startswith(f"{page}:11:"), problems


def test_hook_reference_is_generated_from_the_hookspecs():
    page = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    assert page == gen_hook_reference.render(), "run python3 tools/gen_hook_reference.py"


def test_configuration_page_lists_every_field_with_its_type_and_default():
    problems = check_docs.check_configuration()
    assert not problems, _report(problems)


def test_every_backend_has_a_page_true_to_its_class():
    problems = check_docs.check_backend_pages()
    assert not problems, _report(problems)


def test_the_docs_check_sees_the_pages_it_should():
    files = {str(p.relative_to(ROOT)) for p in check_docs.doc_files()}
    assert {"README.md", "CONTRIBUTING.md", "docs/index.md", "docs/hooks.md",
            "docs/configuration.md", "plugins/openai/README.md",
            "contrib/example_backend/README.md"} <= files


# ------------------------------------------------------------------ the checker catches problems
@pytest.fixture
def page(tmp_path: Path) -> Path:
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading\n\n## Dup\n\n## Dup\n")
    return tmp_path / "page.md"


def test_broken_links_and_anchors_are_reported(page: Path):
    page.write_text(
        "# Title\n\n"
        "[ok](other.md) [ok](other.md#a-code-heading) [ok](#title) [ok](other.md#dup-1)\n"
        "[web](https://example.org/x) `[not a link](nowhere.md)`\n"
        "```\n[in a fence](nowhere.md)\n```\n"
        "[bad](missing.md) [bad](other.md#no-such) [bad](#nope)\n")
    problems = check_docs.check_links([page], root=page.parent)
    assert len(problems) == 3, problems
    assert "missing.md" in problems[0] and "#no-such" in problems[1] and "#nope" in problems[2]


def test_references_to_missing_code_are_reported(page: Path):
    page.write_text("Use `ipfs_accelerate_py.config.ClientConfig` and ipfs_accelerate_py.errors.\n"
                    "See src/ipfs_accelerate_example_backend/plugin.py.\n"
                    "But not ipfs_accelerate_py.config.NoSuchThing or ipfs_accelerate_nothere.x.\n")
    problems = check_docs.check_references([page])
    assert [p.split(": ", 1)[1].split()[0] for p in problems] == [
        "ipfs_accelerate_py.config.NoSuchThing", "ipfs_accelerate_nothere.x"]


def test_github_anchor_slugs():
    assert check_docs.slug("The `Client` & its *pipeline*") == "the-client--its-pipeline"
    assert check_docs.slug("`accelerate_select_key`") == "accelerate_select_key"
    assert check_docs.slug("[Link](x.md) text") == "link-text"


def test_check_docs_script_passes():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "check_docs.py")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
