"""Entry point of the OpenAI plugin: registers the backend (the fake has its own entry point)."""

from __future__ import annotations

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_backends():
    from .backend import OpenAIBackend

    return [OpenAIBackend]
