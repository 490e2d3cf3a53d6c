"""Entry point of the ``ollama`` plugin: registers the backend and its protocol server."""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_backends() -> list[Any]:
    from .backend import OllamaBackend

    return [OllamaBackend]


@hookimpl
def accelerate_protocol_servers() -> list[Any]:
    from .server import OllamaServer

    return [OllamaServer]
