"""The asyncio client: :class:`AsyncClient` drives the same pipeline stages as the
threaded ``Client``, on an event loop, with a native aiohttp transport.

Needs the ``async`` extra: ``pip install "ipfs-accelerate-core[async]"`` (aiohttp and
greenlet).  See ``docs/async.md``.
"""

from __future__ import annotations

from .client import AsyncClient, AsyncResultStream, RequestHandle
from .transport import AsyncBody, AsyncTransport

__all__ = ["AsyncBody", "AsyncClient", "AsyncResultStream", "AsyncTransport", "RequestHandle"]
