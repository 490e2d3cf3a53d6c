"""Entry point of the ``hf_tgi`` plugin: registers the backend (the fake has its own entry point)."""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_backends() -> list[Any]:
    from .backend import TGIBackend

    return [TGIBackend]
