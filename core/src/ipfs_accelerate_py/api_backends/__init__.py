"""The original system's API, for people migrating from it.

    from ipfs_accelerate_py.api_backends import openai_api, claude, ApiKeyMultiplexer

Every class delegates to the real pipeline (:class:`ipfs_accelerate_py.Client`).
Importing this package never fails; instantiating a class whose backend plugin is not
installed raises ImportError naming the pip package (``pip install ipfs-accelerate-groq``).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "openai_api": ".providers", "claude": ".providers", "groq": ".providers",
    "gemini": ".providers", "hf_tgi": ".providers", "hf_tei": ".providers",
    "ollama": ".providers", "llvm": ".providers", "ovms": ".providers", "opea": ".providers",
    "s3_kit": ".providers", "ApiKeyMultiplexer": ".multiplexer", "CompatBackend": ".base",
}

PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW = 0, 1, 2


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS) + ["PRIORITY_HIGH", "PRIORITY_NORMAL", "PRIORITY_LOW"]
