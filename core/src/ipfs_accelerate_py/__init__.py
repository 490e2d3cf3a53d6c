"""ipfs-accelerate: call rate-limited AI inference and storage services at volume.

Importing this package is cheap: names are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

if TYPE_CHECKING:  # type checkers see the real names; at run time they load on first use
    from .backend import Backend
    from .client import Client
    from .config import BackendConfig, BreakerPolicy, ClientConfig, RetryPolicy
    from .hookspecs import hookimpl
    from .keys import ApiKey, Secret
    from .plugins import get_plugin_manager, list_plugins
    from .request import Priority, Request
    from .results import Result, ResultStream, StreamChunk, ToolCall, Usage
    from .stats import StatsSnapshot

__version__ = "0.1.0"

_EXPORTS = {
    "Client": ".client",
    "Request": ".request",
    "Priority": ".request",
    "Result": ".results",
    "ResultStream": ".results",
    "StreamChunk": ".results",
    "Usage": ".results",
    "ToolCall": ".results",
    "ApiKey": ".keys",
    "Secret": ".keys",
    "redact": ".redaction",
    "set_key_id_secret": ".key_id_secret",
    "BackendConfig": ".config",
    "ClientConfig": ".config",
    "RetryPolicy": ".config",
    "BreakerPolicy": ".config",
    "Backend": ".backend",
    "hookimpl": ".hookspecs",
    "get_plugin_manager": ".plugins",
    "list_plugins": ".plugins",
    "StatsSnapshot": ".stats",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS) + ["__version__"]
