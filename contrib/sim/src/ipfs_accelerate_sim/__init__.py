"""A local simulator of the providers' APIs (every installed protocol server, one port),
with per-key rate limits, latency, injected errors and outages.  See :class:`Simulator`.

The names below are imported on first use: this package is also where the ``sim`` and
``demo`` commands' plugin (:mod:`.plugin`) lives, which every process that loads plugins
imports, and that must load no server code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipfs_accelerate_py.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - the same names, typed, for type checkers
    from .config import SimConfig
    from .simulator import SimApp, Simulator, key_label, load_protocol_servers, serve_forever

_WHERE = {"SimConfig": ".config", "Simulator": ".simulator", "SimApp": ".simulator",
          "key_label": ".simulator", "load_protocol_servers": ".simulator",
          "serve_forever": ".simulator"}

__all__ = ["SimConfig", "Simulator", "SimApp", "key_label", "load_protocol_servers", "serve_forever"]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
