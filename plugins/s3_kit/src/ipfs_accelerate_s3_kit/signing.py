"""Addressing (path-style / virtual-host URLs) and AWS Signature V4 through botocore.

We sign with botocore's own signer classes (``S3SigV4Auth`` for headers, ``S3SigV4QueryAuth``
for presigned URLs) and send with the pipeline's ``requests`` session: botocore computes the
signature, never the transport.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Mapping
from urllib.parse import quote, urlsplit

from botocore.auth import UNSIGNED_PAYLOAD, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .credentials import S3Credentials

__all__ = ["UNSIGNED_PAYLOAD", "build_url", "sign", "presign", "encode_query"]

_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def aws_endpoint(region: str) -> str:
    """AWS's own endpoint for a region (botocore's convention for S3)."""
    return "https://s3.amazonaws.com" if region == "us-east-1" else f"https://s3.{region}.amazonaws.com"


def _is_ip_or_local(host: str) -> bool:
    host = host.split(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def use_virtual_host(endpoint: str, bucket: str, style: str) -> bool:
    """``style``: "path", "virtual" or "auto" (virtual on AWS endpoints for DNS-safe buckets,
    path-style for custom endpoints: MinIO, Ceph, moto... usually want that)."""
    if style == "path" or not bucket:
        return False
    split = urlsplit(endpoint)
    dns_ok = bool(_DNS_BUCKET.match(bucket)) and not (split.scheme == "https" and "." in bucket)
    if style == "virtual":
        return True
    return dns_ok and not _is_ip_or_local(split.netloc) and split.netloc.endswith("amazonaws.com")


def encode_query(params: Mapping[str, str | int | None]) -> str:
    """An S3 query string; a value of ``None`` is a bare sub-resource (``?uploads``)."""
    parts = []
    for name, value in params.items():
        if value is None:
            parts.append(quote(name, safe="-_.~"))
        else:
            parts.append(f"{quote(name, safe='-_.~')}={quote(str(value), safe='-_.~')}")
    return "&".join(parts)


def build_url(endpoint: str, bucket: str = "", key: str = "", *, style: str = "auto",
              query: Mapping[str, str | int | None] | None = None) -> str:
    """The request URL for a bucket/key on an endpoint (which may carry a base path)."""
    split = urlsplit(endpoint.rstrip("/"))
    base_path = split.path.rstrip("/")
    netloc = split.netloc
    quoted_key = quote(key, safe="/~") if key else ""
    if bucket and use_virtual_host(endpoint, bucket, style):
        netloc = f"{bucket}.{netloc}"
        path = f"{base_path}/{quoted_key}"
    elif bucket:
        path = f"{base_path}/{quote(bucket, safe='')}" + (f"/{quoted_key}" if key else "")
    else:
        path = f"{base_path}/"
    url = f"{split.scheme}://{netloc}{path}"
    if query:
        url += "?" + encode_query(query)
    return url


def _botocore_credentials(creds: S3Credentials) -> Credentials:
    token = creds.session_token.reveal() if creds.session_token is not None else None
    return Credentials(creds.access_key_id.reveal(), creds.secret_key.reveal(), token)


class _HeaderSigner(S3SigV4Auth):
    """botocore's S3 header signer with the payload hash decided by the caller (a real
    SHA-256 for in-memory bodies, UNSIGNED-PAYLOAD for streamed ones)."""

    def __init__(self, credentials: Credentials, region: str, payload_hash: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


def sign(method: str, url: str, headers: Mapping[str, str], payload_hash: str,
         creds: S3Credentials, region: str) -> dict[str, str]:
    """Return ``headers`` plus the SigV4 ``Authorization``, ``X-Amz-Date``,
    ``X-Amz-Content-SHA256`` (and security token) headers for this request."""
    req = AWSRequest(method=method, url=url, headers=dict(headers))
    _HeaderSigner(_botocore_credentials(creds), region, payload_hash).add_auth(req)
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in req.headers.items()}


def presign(method: str, url: str, creds: S3Credentials, region: str, expires_in: int = 3600,
            headers: Mapping[str, str] | None = None) -> str:
    """A presigned URL (query-string SigV4, botocore's ``S3SigV4QueryAuth``).  Headers given
    here (a Content-Type for a PUT) are signed, so the caller must send them unchanged."""
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    S3SigV4QueryAuth(_botocore_credentials(creds), "s3", region, expires=int(expires_in)).add_auth(req)
    return req.url
