"""Google Gemini (Generative Language API) backend for ipfs-accelerate."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["GeminiBackend", "GeminiServer", "__version__"]


def __getattr__(name: str):  # lazy: importing the package stays cheap
    if name == "GeminiBackend":
        from .backend import GeminiBackend

        return GeminiBackend
    if name == "GeminiServer":
        from .server import GeminiServer

        return GeminiServer
    raise AttributeError(name)
