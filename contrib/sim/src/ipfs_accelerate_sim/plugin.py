"""The simulator distribution's plugin: it adds the ``sim`` and ``demo`` commands to
``ipfs-accelerate`` (``accelerate_cli_commands``), so the core carries no simulator code.

Registered under the ``ipfs_accelerate`` entry point group, it is loaded with every
plugin, by clients too: it imports nothing of the simulator until a command runs.
"""

from __future__ import annotations

from typing import Any

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_cli_commands(subparsers: Any) -> None:
    from . import cli_demo, cli_sim

    cli_sim.register(subparsers)
    cli_demo.register(subparsers)
