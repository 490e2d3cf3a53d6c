"""Where the command line finds keys: ``--keys-file`` or the backend's environment
variables, through the core's one key source."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Mapping

from .common import CliError


def read_keys_file(path: str) -> dict[str, list[str]] | list[str]:
    """A JSON object ``{"openai": ["k1", "k2"], "claude": "k3"}`` (or ``{name: key}``
    per backend), a JSON list of keys, or plain text with one key per line (``#``
    comments).  A plain list applies to every backend of the command."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read keys file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"keys file {path} is not UTF-8 text") from None
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            data = json.loads(stripped)
        except (ValueError, RecursionError):
            raise CliError(f"keys file {path} is not valid JSON") from None
        if isinstance(data, list):
            return [str(k) for k in data if k]
        out: dict[str, list[str]] = {}
        for backend, value in data.items():
            if isinstance(value, str):
                out[backend] = [value]
            elif isinstance(value, list):
                out[backend] = [str(v) for v in value if v]
            elif isinstance(value, dict):
                out[backend] = [f"{name}\x00{v}" for name, v in value.items() if v]
            else:
                raise CliError(f"keys file {path}: {backend!r} must map to a key, a list or an object")
        return out
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def env_keys(cls: Any, environ: Mapping[str, str] | None = None) -> list[Any]:
    """Keys for a backend class from the environment: the core's one key source
    (:meth:`Backend.keys_from`, numbered variants included), as the library reads them."""
    return list(cls.keys_from(environ=os.environ if environ is None else environ))


def keys_for(backend: str, cls: Any, keys_file: Any) -> list[Any]:
    """The keys of one backend: from the keys file when it names any, else the
    environment.  Every key registers itself with the core redactor as it is made."""
    from ..key_source import keys_from_values

    if keys_file is not None:
        raw = keys_file if isinstance(keys_file, list) else keys_file.get(backend, [])
        items = [tuple(item.split("\x00", 1)) if "\x00" in item else item for item in raw]
        keys = keys_from_values(items, "--keys-file")
        if keys:
            return keys
    return env_keys(cls)


def backend_config(name: str, cls: Any, args: argparse.Namespace, keys_file: Any,
                   base_url: str | None) -> Any:
    """A backend's config: its keys (refusing a backend that needs one and has none) and
    the command line's limits."""
    from ..jobs import backend_config_from_options

    keys = keys_for(name, cls, keys_file)
    if not keys and cls.key_required and not cls.keys_from():
        hint = " or ".join(cls.env_keys) or "a keys file"
        raise CliError(f"backend {name!r} needs an API key: set {hint}, or pass --keys-file")
    return backend_config_from_options(name, keys, args, base_url or cls.base_url_from() or None)
