"""Entry point of the ``gemini`` backend (group ``ipfs_accelerate``)."""

from __future__ import annotations

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_backends():
    from .backend import GeminiBackend

    return [GeminiBackend]
