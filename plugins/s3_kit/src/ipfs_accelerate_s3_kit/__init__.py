"""S3-compatible object storage for ipfs-accelerate: every operation a pipeline request.

Names load on first use, so importing the plugin's entry point stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "S3KitBackend": ".backend",
    "S3Server": ".server",
    "S3Kit": ".kit",
    "MultipartUploadError": ".kit",
    "s3_key": ".credentials",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ipfs_accelerate_s3_kit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = sorted(_EXPORTS) + ["__version__"]
