"""Where the CLI's ``sim`` and ``demo`` commands find the simulator.

The simulator, its HTTP host and the test kit are a distribution of their own, so that a
production install imports none of them.  It registers its module under the
``ipfs_accelerate.simulator`` entry point; the core looks it up there and never names it.
``from ipfs_accelerate_py.sim import Simulator`` therefore works only where the simulator is
installed, and says how to get it otherwise.

A stop-gap: once the CLI can take commands from plugins, the simulator distribution adds
``sim`` and ``demo`` itself and this module goes.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType
from typing import Any

from .errors import ConfigError

ENTRY_POINT_GROUP = "ipfs_accelerate.simulator"


def simulator_module() -> ModuleType:
    """The installed simulator's module (the first ``ipfs_accelerate.simulator`` entry point)."""
    eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    if not eps:
        raise ConfigError("simulator", "none installed: no distribution registers the "
                          "'ipfs_accelerate.simulator' entry point (in the development "
                          "workspace, `python3 dev.py setup` installs the simulator)")
    return importlib.import_module(eps[0].value)


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(simulator_module(), name)
