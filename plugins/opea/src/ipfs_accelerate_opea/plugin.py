"""Entry point of the OPEA plugin: registers the backend and its protocol server."""

from __future__ import annotations

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_backends():
    from .backend import OPEABackend

    return [OPEABackend]


@hookimpl
def accelerate_protocol_servers():
    from .server import OPEAServer

    return [OPEAServer]
