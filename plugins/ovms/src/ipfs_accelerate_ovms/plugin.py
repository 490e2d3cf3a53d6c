"""Entry point of the ``ovms`` plugin: hook implementations only (imports are lazy)."""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_backends() -> list[Any]:
    from .backend import OvmsBackend

    return [OvmsBackend]
