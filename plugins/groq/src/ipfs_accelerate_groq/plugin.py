"""Entry point of the Groq plugin: registers the backend and its protocol server."""

from __future__ import annotations

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_backends():
    from .backend import GroqBackend

    return [GroqBackend]


@hookimpl
def accelerate_protocol_servers():
    from .server import GroqServer

    return [GroqServer]
