"""S3-compatible object storage for ipfs-accelerate: every operation a pipeline request.

Names load on first use, so importing the plugin's entry point stays cheap.
"""

from __future__ import annotations

from ipfs_accelerate_py.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "S3KitBackend": ".backend",
    "S3Server": ".server",
    "S3Kit": ".kit",
    "MultipartUploadError": ".kit",
    "s3_key": ".credentials",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS) + ["__version__"]
