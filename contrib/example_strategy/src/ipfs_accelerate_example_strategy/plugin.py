"""Entry point: registers the ``weighted`` strategy (imported only when asked for)."""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_strategies() -> dict[str, Any]:
    from .strategy import Weighted

    return {"weighted": Weighted}
