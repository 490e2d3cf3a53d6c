"""Entry point of the Lingo plugin: only hook implementations, everything else lazily.

The core imports this module while it discovers plugins, so it must stay cheap: no
``requests``, no backend code until a client actually asks for the backend.
"""

from __future__ import annotations

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_backends():
    from .backend import LingoBackend

    return [LingoBackend]
