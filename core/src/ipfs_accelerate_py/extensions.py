"""Which extensions a client uses: its state store and its observers, named in
``ClientConfig`` (or the environment) and resolved through hooks.  An installed extra
does nothing until a configuration names it."""

from __future__ import annotations

import os
from typing import Any

from .config import ClientConfig
from .errors import ConfigError

STATE_STORE_ENV = "IPFS_ACCELERATE_STATE_STORE"
OBSERVERS_ENV = "IPFS_ACCELERATE_OBSERVERS"


def resolve_state_store(config: ClientConfig, pm: Any) -> tuple[Any, bool]:
    """The client's store, and whether the client owns it (made it, so closes it).

    A store object in the config is shared and never closed by the client; a URL (from the
    config or ``IPFS_ACCELERATE_STATE_STORE``), or nothing, asks
    ``accelerate_make_state_store``, whose store the client owns."""
    configured = config.state_store
    if configured is not None and not isinstance(configured, str):
        return configured, False
    url = configured or os.environ.get(STATE_STORE_ENV) or None
    store = pm.hooks.accelerate_make_state_store(url=url, config=config)
    if store is None:  # the core's default answers memory:// and None; someone said None
        raise ConfigError("state_store", f"no installed plugin makes a state store for {url!r}")
    return store, not getattr(store, "shared", False)


def resolve_observers(config: ClientConfig, pm: Any) -> list[Any]:
    """Observer objects for the names, pairs and objects in ``config.observers`` and the
    names in ``IPFS_ACCELERATE_OBSERVERS``."""
    wanted = list(config.observers)
    named = {w for w in wanted if isinstance(w, str)} | {w[0] for w in wanted if isinstance(w, tuple)}
    for name in os.environ.get(OBSERVERS_ENV, "").split(","):
        name = name.strip()
        if name and name not in named:
            wanted.append(name)
            named.add(name)
    out = []
    for item in wanted:
        if isinstance(item, str):
            item = (item, {})
        if isinstance(item, tuple):
            name, options = item
            obs = pm.hooks.accelerate_make_observer(name=name, options=dict(options), config=config)
            if obs is None:
                raise ConfigError("observers", f"no installed plugin makes an observer named "
                                  f"{name!r} (is its extra installed?)")
            item = obs
        out.append(item)
    return out
