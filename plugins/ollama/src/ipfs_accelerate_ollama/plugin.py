"""Entry point of the ``ollama`` plugin: registers the backend (the fake has its own entry point)."""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_backends() -> list[Any]:
    from .backend import OllamaBackend

    return [OllamaBackend]
