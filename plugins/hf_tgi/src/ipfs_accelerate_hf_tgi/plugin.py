"""Entry point of the ``hf_tgi`` plugin: registers the backend and its protocol server."""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_backends() -> list[Any]:
    from .backend import TGIBackend

    return [TGIBackend]


@hookimpl
def accelerate_protocol_servers() -> list[Any]:
    from .server import TGIServer

    return [TGIServer]
