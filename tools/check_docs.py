#!/usr/bin/env python3
"""Check the documentation: the docs "build" step of CI.

    python3 tools/check_docs.py        # prints every problem; exit 1 if there is any

Checks, over docs/**/*.md, README.md, CONTRIBUTING.md and every plugins/*/README.md and
contrib/*/README.md:

* every relative link resolves to a file or folder in the repository, and every
  ``#anchor`` (in the same page or another .md page) to a heading of that page;
* every ```python block in docs/ compiles;
* every dotted reference to our code (``ipfs_accelerate_py.x.y``, or a plugin package's
  ``ipfs_accelerate_<name>.x``) names something that exists: the module imports and the
  attribute path resolves;
* docs/hooks.md is what tools/gen_hook_reference.py generates from the hook specs;
* docs/configuration.md mentions every field of the configuration classes;
* every backend a workspace plugin registers has a page docs/backends/<name>.md, and
  docs/index.md links to it.

Needs the workspace installed (``python3 dev.py setup``): references are checked by
importing them.
"""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterable, Iterator

ROOT = Path(__file__).resolve().parents[1]

#: The configuration classes configuration.md documents, field by field.
CONFIG_CLASSES = (
    "ipfs_accelerate_py.config.ClientConfig",
    "ipfs_accelerate_py.config.BackendConfig",
    "ipfs_accelerate_py.config.RetryPolicy",
    "ipfs_accelerate_py.config.BreakerPolicy",
    "ipfs_accelerate_py.keys.ApiKey",
)

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_LINK = re.compile(r"(?<!\\)!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_REFERENCE = re.compile(r"(?<![\w./-])(ipfs_accelerate_[a-z0-9_]*[a-z0-9](?:\.[A-Za-z_]\w*)+)")


# ------------------------------------------------------------------ files
def doc_files() -> list[Path]:
    files = sorted((ROOT / "docs").rglob("*.md"))
    files += [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    files += sorted(ROOT.glob("plugins/*/README.md")) + sorted(ROOT.glob("contrib/*/README.md"))
    return [f for f in files if f.is_file()]


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


# ------------------------------------------------------------------ anchors
def slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower-cased, punctuation dropped
    (word characters, spaces and hyphens kept), spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> their text
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = path.read_text(encoding="utf-8")
    for _, line in prose_lines(text):
        m = _HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        found.update(_HTML_ANCHOR.findall(line))
    return found


# ------------------------------------------------------------------ links
def links(path: Path) -> Iterator[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    for n, line in prose_lines(text):
        stripped = _CODE_SPAN.sub("", line)
        for m in _INLINE_LINK.finditer(stripped):
            yield n, m.group(1)
        m = _REF_DEF.match(stripped)
        if m:
            yield n, m.group(1)


def check_links(files: Iterable[Path], root: Path = ROOT) -> list[str]:
    problems: list[str] = []
    cache: dict[Path, set[str]] = {}
    for path in files:
        for n, target in links(path):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, mailto: ...
                continue
            where = f"{_rel(path)}:{n}"
            file_part, _, fragment = target.partition("#")
            dest = path if not file_part else (path.parent / file_part).resolve()
            if file_part and not dest.exists():
                problems.append(f"{where}: broken link {target!r} (no {_rel(dest)})")
                continue
            if file_part and not dest.resolve().is_relative_to(root):
                problems.append(f"{where}: link {target!r} leaves the repository")
                continue
            if fragment:
                if dest.is_dir() or dest.suffix != ".md":
                    problems.append(f"{where}: anchor on a non-Markdown target {target!r}")
                    continue
                if dest not in cache:
                    cache[dest] = anchors(dest)
                if fragment not in cache[dest]:
                    problems.append(f"{where}: no heading for anchor #{fragment} in {_rel(dest)}")
    return problems


# ------------------------------------------------------------------ code references
def resolve(dotted: str) -> bool:
    """Does ``a.b.c.d`` name a module or an attribute reachable from one?"""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def references(path: Path) -> Iterator[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    for n, line in enumerate(text.splitlines(), 1):
        for m in _REFERENCE.finditer(line):
            ref = m.group(1)
            end = m.end(1)
            if line[end:end + 1] == "/" or line[end:end + 3] in (".py", ".md"):
                continue  # a file path (src/ipfs_accelerate_x/plugin.py), not a name
            yield n, ref


def check_references(files: Iterable[Path]) -> list[str]:
    problems: list[str] = []
    known: dict[str, bool] = {}
    for path in files:
        for n, ref in references(path):
            if ref not in known:
                known[ref] = resolve(ref)
            if not known[ref]:
                problems.append(f"{_rel(path)}:{n}: {ref} does not exist (import failed or no such attribute)")
    return problems


# ------------------------------------------------------------------ code blocks
_PY_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def check_code_blocks(files: Iterable[Path]) -> list[str]:
    """Every ```python block compiles (excerpts may elide with ``...``, which is Python)."""
    problems: list[str] = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for m in _PY_BLOCK.finditer(text):
            start = text[:m.start()].count("\n") + 2  # the first line of code
            try:
                compile(m.group(1), str(path), "exec")
            except SyntaxError as exc:
                problems.append(f"{_rel(path)}:{start + (exc.lineno or 1) - 1}: python block does "
                                f"not compile: {exc.msg}")
    return problems


# ------------------------------------------------------------------ generated and required pages
def check_hook_reference() -> list[str]:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_hook_reference
    finally:
        sys.path.pop(0)
    page = ROOT / "docs" / "hooks.md"
    if not page.exists() or page.read_text(encoding="utf-8") != gen_hook_reference.render():
        return ["docs/hooks.md is not what tools/gen_hook_reference.py generates from the hook "
                "specs: run python3 tools/gen_hook_reference.py"]
    return []


def _type_text(field: Any) -> str:
    text = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    return "`" + text.replace("|", "\\|") + "`"


def _default_text(field: Any) -> str:
    """How configuration.md spells a field's default."""
    import enum

    import attrs

    value = field.default
    if value is attrs.NOTHING:
        return "required"
    if isinstance(value, attrs.Factory):  # type: ignore[arg-type]
        factory = value.factory
        return {tuple: "`()`", dict: "`{}`", list: "`[]`"}.get(factory, f"`{factory.__name__}()`")
    if isinstance(value, frozenset):
        names = sorted(v.value if isinstance(v, enum.Enum) else str(v) for v in value)
        return ", ".join(f"`{n}`" for n in names)
    return f"`{value!r}`"


def config_fields() -> dict[str, list[tuple[str, str, str]]]:
    """class name -> [(field, type text, default text)] from the attrs classes."""
    import attrs

    out: dict[str, list[tuple[str, str, str]]] = {}
    for dotted in CONFIG_CLASSES:
        module, _, name = dotted.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        out[name] = [(f.name, _type_text(f), _default_text(f)) for f in attrs.fields(cls)]
    return out


def check_configuration() -> list[str]:
    page = ROOT / "docs" / "configuration.md"
    if not page.exists():
        return ["docs/configuration.md is missing"]
    text = page.read_text(encoding="utf-8")
    problems = []
    sections = {s.split("\n", 1)[0].strip().strip("`"): s for s in re.split(r"^## ", text, flags=re.M)[1:]}
    for cls, fields in config_fields().items():
        section = sections.get(cls)
        if section is None:
            problems.append(f"docs/configuration.md has no '## `{cls}`' section")
            continue
        rows = {}
        for line in section.splitlines():
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)]
            if len(cells) >= 5 and cells[1].startswith("`"):
                rows[cells[1].strip("`")] = cells[2:4]
        for name, type_text, default_text in fields:
            if name not in rows:
                problems.append(f"docs/configuration.md: {cls}.{name} is not in the {cls} table")
                continue
            documented_type, documented_default = rows[name]
            if documented_type != type_text:
                problems.append(f"docs/configuration.md: {cls}.{name} type is {type_text}, "
                                f"documented {documented_type}")
            if documented_default != default_text:
                problems.append(f"docs/configuration.md: {cls}.{name} default is {default_text}, "
                                f"documented {documented_default}")
        for name in sorted(set(rows) - {f[0] for f in fields}):
            problems.append(f"docs/configuration.md: {cls}.{name} is documented but no such field")
    return problems


def workspace_backends() -> dict[str, tuple[str, Any]]:
    """backend name -> (distribution folder, class), for every backend a workspace plugin
    registers."""
    out: dict[str, tuple[str, Any]] = {}
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")) + sorted(ROOT.glob("contrib/*/pyproject.toml")):
        meta = tomllib.loads(pyproject.read_text())
        eps = meta.get("project", {}).get("entry-points", {}).get("ipfs_accelerate", {})
        for value in eps.values():
            module = importlib.import_module(value.split(":")[0])
            hook = getattr(module, "accelerate_backends", None)
            for cls in (hook() if callable(hook) else None) or ():
                out[cls.name] = (_rel(pyproject.parent), cls)
    return out


def check_backend_pages() -> list[str]:
    """A page per backend, linked from the index, stating what the code says: every
    operation (and whether it streams), the key and base-URL environment variables and
    the default base URL."""
    problems = []
    index = ROOT / "docs" / "index.md"
    index_links = {t.split("#")[0] for _, t in links(index)} if index.exists() else set()
    for name, (folder, cls) in sorted(workspace_backends().items()):
        rel = f"docs/backends/{name}.md"
        page = ROOT / rel
        if not page.exists():
            problems.append(f"{rel} is missing (backend {name!r} of {folder})")
            continue
        if f"backends/{name}.md" not in index_links:
            problems.append(f"docs/index.md does not link backends/{name}.md")
        text = page.read_text(encoding="utf-8")
        rows = {}
        for line in text.splitlines():
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)]
            if len(cells) >= 4 and re.fullmatch(r"`\w+`", cells[1]):
                rows[cells[1].strip("`")] = cells[2]
        for op in cls.operations:
            if op not in rows:
                problems.append(f"{rel}: operation {op!r} is not in the operations table")
            elif (rows[op] == "yes") != (op in cls.streaming_operations):
                problems.append(f"{rel}: operation {op!r} streams: "
                                f"{op in cls.streaming_operations}, the page says otherwise")
        for op in sorted(set(rows) - set(cls.operations) - {"name"}):
            problems.append(f"{rel}: operation {op!r} is documented but {cls.__name__} has none")
        for var in (*cls.env_keys, *cls.env_base_url):
            if f"`{var}`" not in text:
                problems.append(f"{rel}: environment variable {var} is not mentioned")
        if cls.default_base_url and f"`{cls.default_base_url}`" not in text:
            problems.append(f"{rel}: the default base URL {cls.default_base_url} is not mentioned")
    return problems


def run() -> list[str]:
    files = doc_files()
    docs = [f for f in files if f.is_relative_to(ROOT / "docs")]
    return (check_links(files) + check_references(files) + check_code_blocks(docs)
            + check_hook_reference() + check_configuration() + check_backend_pages())


def main() -> int:
    problems = run()
    for p in problems:
        print(p)
    if problems:
        print(f"check_docs: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_docs: {len(doc_files())} files OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
