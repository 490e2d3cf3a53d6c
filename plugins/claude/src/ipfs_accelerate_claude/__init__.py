"""Anthropic Messages API (Claude) backend for ipfs-accelerate."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["ClaudeBackend", "ClaudeServer", "__version__"]


def __getattr__(name: str):  # lazy: importing the package stays cheap
    if name == "ClaudeBackend":
        from .backend import ClaudeBackend

        return ClaudeBackend
    if name == "ClaudeServer":
        from .server import ClaudeServer

        return ClaudeServer
    raise AttributeError(name)
