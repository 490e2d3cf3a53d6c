"""Where API keys come from: one rule for the library and the CLI.

A backend's keys are, in order: the original system's metadata keys (``openai_api_key``),
else its environment variables (``OPENAI_API_KEY``) with their numbered variants
(``OPENAI_API_KEY_1``, ``OPENAI_API_KEY_2``, ...).  A key found twice is kept once.  Keys
get no name from where they were found: their id is the keyed fingerprint of the key
(``key-1a2b3c4d``), so one key has one id -- hence one limiter scope and one Redis bucket
-- whichever process, entry point or variable it came from.  Each key is validated as it
is loaded (surrounding whitespace stripped, a control character refused naming its source).
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping, Sequence

from .keys import ApiKey, Secret


def numbered_variables(bases: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The variables of ``environ`` named by ``bases`` or their ``_<n>`` variants, each base
    first then its variants in numeric order."""
    found: list[str] = []
    for base in bases:
        pattern = re.compile(re.escape(base) + r"(?:_(\d+))?$")
        matches = [(int(m.group(1) or 0), name) for name in environ
                   if (m := pattern.match(name)) is not None]
        found.extend(name for _, name in sorted(matches))
    return found


def _unique(keys: Iterable[ApiKey]) -> list[ApiKey]:
    out: list[ApiKey] = []
    seen: set[str] = set()
    for key in keys:
        value = key.reveal() or ""
        if value and value not in seen:
            seen.add(value)
            out.append(key)
    return out


def keys_from_environment(bases: Sequence[str], environ: Mapping[str, str] | None = None
                          ) -> list[ApiKey]:
    """Keys from the variables ``bases`` and their numbered variants (empty ones skipped)."""
    environ = os.environ if environ is None else environ
    keys = []
    for name in numbered_variables(bases, environ):
        value = environ[name]
        if value and value.strip():
            keys.append(ApiKey(secret=Secret(value, source=f"environment variable {name}")))
    return _unique(keys)


def keys_from_metadata(names: Sequence[str], metadata: Mapping[str, Any] | None) -> list[ApiKey]:
    """The first non-empty metadata key of ``names`` (the original system took one)."""
    for name in names:
        value = (metadata or {}).get(name)
        if value and str(value).strip():
            return [ApiKey(secret=Secret(str(value), source=f"metadata {name!r}"))]
    return []


def backend_keys(metadata_names: Sequence[str], env_names: Sequence[str],
                 metadata: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None) -> list[ApiKey]:
    """What :meth:`Backend.keys_from` returns by default: metadata first, else environment."""
    return keys_from_metadata(metadata_names, metadata) or keys_from_environment(env_names, environ)


def keys_from_values(values: Iterable[str | tuple[str, str]], source: str) -> list[ApiKey]:
    """Keys from a list (a keys file): plain values get the fingerprint id, ``(name, value)``
    pairs keep the name the user gave."""
    keys = []
    for i, item in enumerate(values, 1):
        name, value = item if isinstance(item, tuple) else (None, item)
        where = f"{source} entry {name or i}"
        if value and str(value).strip():
            keys.append(ApiKey(secret=Secret(str(value), source=where), name=name))
    return _unique(keys)


__all__ = ["backend_keys", "keys_from_environment", "keys_from_metadata", "keys_from_values",
           "numbered_variables"]
