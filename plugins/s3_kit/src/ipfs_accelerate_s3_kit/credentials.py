"""S3 credentials as pipeline keys.

An S3 credential is a pair (access key id, secret key) plus where it is valid (endpoint URL,
region).  Each pair is one :class:`~ipfs_accelerate_py.keys.ApiKey`::

    ApiKey(secret=<secret key>, name="east",
           extra={"access_key_id": Secret("AKIA..."), "endpoint_url": "https://...", "region": "..."})

so several endpoints or credential pairs are several keys, and the core's key strategies
(round-robin, least-loaded) choose among them: that is the original system's S3 multiplexer.
Both halves of the pair are :class:`~ipfs_accelerate_py.keys.Secret` objects, so neither
shows in a repr, a log line or an error.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import attrs
from ipfs_accelerate_py.errors import ConfigError
from ipfs_accelerate_py.keys import ApiKey, Secret

DEFAULT_REGION = "us-east-1"

#: (access key, secret key, endpoint) environment names, in order of preference.
ENV_TRIPLES: tuple[tuple[str, str, str], ...] = (
    ("S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_ENDPOINT"),
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"),
)
ENV_REGION = ("AWS_REGION", "AWS_DEFAULT_REGION")
ENV_SESSION_TOKEN = ("AWS_SESSION_TOKEN",)

# The original metadata ``s3cfg`` used either spelling (ipfs_accelerate_py / ipfs_kit_py).
_CFG_ACCESS = ("accessKey", "aws_access_key_id", "access_key_id", "access_key")
_CFG_SECRET = ("secretKey", "aws_secret_access_key", "secret_access_key", "secret_key")
_CFG_ENDPOINT = ("endpoint", "endpoint_url", "endpointUrl")
_CFG_REGION = ("region", "region_name", "aws_region")
_CFG_TOKEN = ("sessionToken", "aws_session_token", "session_token")


@attrs.frozen(repr=False)
class S3Credentials:
    """What signing needs, resolved from one key.  Never printed."""

    access_key_id: Secret
    secret_key: Secret
    session_token: Secret | None
    endpoint_url: str | None
    region: str | None

    def __repr__(self) -> str:
        return "S3Credentials(***)"

    __str__ = __repr__


def s3_key(access_key_id: str | Secret, secret_key: str | Secret, *, name: str | None = None,
           endpoint_url: str | None = None, region: str | None = None,
           session_token: str | Secret | None = None, **limits: Any) -> ApiKey:
    """One S3 credential pair (optionally bound to an endpoint and region) as a pipeline key.

    ``limits`` are :class:`ApiKey` fields (``max_concurrent``, ``requests_per_minute``...).
    """
    extra: dict[str, Any] = {"access_key_id": Secret(access_key_id)}
    if endpoint_url:
        extra["endpoint_url"] = endpoint_url
    if region:
        extra["region"] = region
    if session_token:
        extra["session_token"] = Secret(session_token)
    return ApiKey(secret=secret_key, name=name, extra=extra, **limits)


def credentials_of(key: ApiKey | None, backend: str = "s3_kit") -> S3Credentials:
    """Resolve a key to signing credentials.

    A key built by :func:`s3_key` carries the access key id in ``extra``; a plain string key
    (``BackendConfig(keys=["ACCESS:SECRET"])``) is split at its first colon.
    """
    if key is None or key.secret is None:
        raise ConfigError("keys", f"backend {backend!r} needs an S3 access key id and secret key")
    extra = key.extra or {}
    access = extra.get("access_key_id")
    if access:
        secret = key.secret
    else:
        raw = key.reveal() or ""
        if ":" not in raw:
            raise ConfigError("keys", f"key {key.key_id!r} of backend {backend!r} has no access key "
                                      "id: use s3_key(access, secret) or the 'ACCESS:SECRET' form")
        a, _, s = raw.partition(":")
        access, secret = a, Secret(s)
    token = extra.get("session_token")
    return S3Credentials(access_key_id=Secret(access), secret_key=Secret(secret),
                         session_token=Secret(token) if token else None,
                         endpoint_url=extra.get("endpoint_url") or None,
                         region=extra.get("region") or None)


def _first(mapping: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for n in names:
        if mapping.get(n):
            return mapping[n]
    return None


def keys_from_s3cfg(cfg: Any, backend: str = "s3_kit") -> list[ApiKey]:
    """Keys from the original metadata ``s3cfg``: one mapping, or a list of them (several
    endpoints / credential pairs, the multiplexer).  Entries without both halves are skipped."""
    entries = cfg if isinstance(cfg, (list, tuple)) else [cfg]
    keys: list[ApiKey] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            continue
        access, secret = _first(entry, _CFG_ACCESS), _first(entry, _CFG_SECRET)
        if not (access and secret):
            continue
        name = entry.get("name") or (f"{backend}-s3cfg" if len(entries) == 1 else f"{backend}-s3cfg-{i}")
        keys.append(s3_key(str(access), str(secret), name=str(name),
                           endpoint_url=_first(entry, _CFG_ENDPOINT),
                           region=_first(entry, _CFG_REGION),
                           session_token=_first(entry, _CFG_TOKEN)))
    return keys


def keys_from_env(environ: Mapping[str, str], backend: str = "s3_kit") -> list[ApiKey]:
    region = _first(environ, ENV_REGION)
    token = _first(environ, ENV_SESSION_TOKEN)
    for access_name, secret_name, endpoint_name in ENV_TRIPLES:
        access, secret = environ.get(access_name), environ.get(secret_name)
        if access and secret:
            endpoint = environ.get(endpoint_name) or _first(environ, ("S3_ENDPOINT", "AWS_ENDPOINT_URL"))
            return [s3_key(access, secret, name=f"{backend}-{access_name.lower()}",
                           endpoint_url=endpoint, region=region,
                           session_token=token if access_name.startswith("AWS_") else None)]
    return []


def endpoint_from(metadata: Mapping[str, Any] | None, environ: Mapping[str, str] | None) -> str | None:
    metadata = metadata or {}
    environ = os.environ if environ is None else environ
    cfg = metadata.get("s3cfg")
    if isinstance(cfg, (list, tuple)):
        cfg = cfg[0] if cfg else None
    if isinstance(cfg, Mapping) and _first(cfg, _CFG_ENDPOINT):
        return str(_first(cfg, _CFG_ENDPOINT))
    if metadata.get("s3_endpoint"):
        return str(metadata["s3_endpoint"])
    return _first(environ, ("S3_ENDPOINT", "AWS_ENDPOINT_URL"))
