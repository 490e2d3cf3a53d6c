"""The asyncio client: :class:`AsyncClient` drives the same pipeline stages as the
threaded ``Client``, on an event loop, with a native aiohttp transport.

Needs the ``async`` extra: ``pip install "ipfs-accelerate-core[async]"`` (aiohttp and
greenlet).  See ``docs/async.md``.
"""

from __future__ import annotations

try:
    import aiohttp  # noqa: F401
    import greenlet  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(f"ipfs_accelerate_py.aio needs the async extra ({exc.name} is missing): "
                      'pip install "ipfs-accelerate-core[async]"') from exc

from .client import AsyncClient, AsyncResultStream, RequestHandle
from .transport import AsyncBody, AsyncTransport

__all__ = ["AsyncBody", "AsyncClient", "AsyncResultStream", "AsyncTransport", "RequestHandle"]
