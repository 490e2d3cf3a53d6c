"""The original system's API, for people migrating from it.

    from ipfs_accelerate_py.api_backends import openai_api, claude, ApiKeyMultiplexer

Every class delegates to the real pipeline (:class:`ipfs_accelerate_py.Client`).
Importing this package never fails; instantiating a class whose backend plugin is not
installed raises ImportError naming the pip package (``pip install ipfs-accelerate-groq``).
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "openai_api": ".providers", "claude": ".providers", "groq": ".providers",
    "gemini": ".providers", "hf_tgi": ".providers", "hf_tei": ".providers",
    "ollama": ".providers", "llvm": ".providers", "ovms": ".providers", "opea": ".providers",
    "s3_kit": ".providers", "ApiKeyMultiplexer": ".multiplexer", "CompatBackend": ".base",
}

PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW = 0, 1, 2


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS) + ["PRIORITY_HIGH", "PRIORITY_NORMAL", "PRIORITY_LOW"]
