"""Server side of the S3 protocol (placeholder, filled in below)."""

from __future__ import annotations

from ipfs_accelerate_py.server import ProtocolServer


class S3Server(ProtocolServer):
    name = "s3_kit"
