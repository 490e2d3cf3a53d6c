"""API keys that never show themselves.

:class:`Secret` holds the secret string; its ``repr``/``str``/``format`` print a redacted
marker, it refuses to be pickled, and the only way to the value is :meth:`Secret.reveal`,
which backends call when they build the request headers.  :class:`ApiKey` pairs a secret
with a short public id (``key_id``) that logs, stats and errors use instead.

Every secret registers itself with the core redactor (:mod:`ipfs_accelerate_py.redaction`)
when it is made, so any text a provider echoes it in is redacted wherever it is written.
The public id is a *keyed* hash (HMAC-SHA-256 with the deployment's id secret, see
:mod:`ipfs_accelerate_py.key_id_secret`): holding a candidate key is not enough to confirm
it against a published id.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from typing import Any

import attrs

from .key_id_secret import key_id_secret
from .redaction import REDACTOR

_REDACTED = "Secret('***')"


def key_fingerprint(value: str) -> str:
    """The public fingerprint of a key: 8 hex digits of HMAC-SHA-256 under the deployment's
    id secret.  The simulator uses it too, so its per-key stats match the client's ids."""
    return hmac.new(key_id_secret(), value.encode("utf-8"), hashlib.sha256).hexdigest()[:8]


def clean_key(value: str, source: str = "key") -> str:
    """``value`` without surrounding whitespace; a key with a control character inside is
    refused naming ``source`` (the variable, file or field), never echoing the key."""
    from .errors import ConfigError

    if not isinstance(value, str):
        raise ConfigError(source, f"an API key must be a str, got {type(value).__name__}")
    value = value.strip()
    for i, ch in enumerate(value):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") or (ch.isspace() and ch != " "):
            raise ConfigError(source, f"the API key contains a control character at position "
                                      f"{i} ({unicodedata.name(ch, hex(ord(ch)))}); "
                                      f"remove it (the key is not shown)")
    return value


class Secret:
    """A string that refuses to print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret, source: str = "key") -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError("Secret value must be a str")
        value = clean_key(value, source)
        REDACTOR.add(value)
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """The secret itself.  Call only to put it on the wire."""
        return self._value

    def fingerprint(self) -> str:
        """A short, stable, non-reversible id (8 hex digits of a keyed HMAC-SHA-256)."""
        return key_fingerprint(self._value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return _REDACTED

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return _REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):
        raise TypeError("a Secret cannot be pickled; pass keys to each process by configuration")

    def __getstate__(self):
        raise TypeError("a Secret cannot be pickled; pass keys to each process by configuration")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict) -> Secret:
        return self


def _to_secret(value: str | Secret | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


def _check_positive(field: str, whole: bool = False):
    """None, or a finite number > 0 (a whole one when ``whole``); never a bool or a string."""
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        import math
        import numbers

        from .errors import ConfigError

        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(field, f"must be a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value) or not value > 0:
            raise ConfigError(field, f"must be a finite number > 0, got {value!r}")
        if whole and not float(value).is_integer():
            raise ConfigError(field, f"must be a whole number, got {value!r}")

    return check


@attrs.frozen(repr=False)
class ApiKey:
    """One credential of a backend, with its own limits.

    ``secret`` may be ``None`` for services that need no key (a local server); such a key
    still gets its own concurrency and rate limits.  ``name`` is the public id shown in
    stats, limiter scopes and Redis names; when omitted it is ``key-`` plus the secret's
    keyed fingerprint, so the same key gets the same id from every source and process of
    one deployment.
    """

    secret: Secret | None = attrs.field(converter=_to_secret, default=None)
    name: str | None = None
    max_concurrent: int | None = attrs.field(default=None, validator=_check_positive("max_concurrent", whole=True))
    requests_per_minute: float | None = attrs.field(
        default=None, validator=_check_positive("requests_per_minute"))
    tokens_per_minute: float | None = attrs.field(
        default=None, validator=_check_positive("tokens_per_minute"))
    burst: float | None = attrs.field(default=None, validator=_check_positive("burst"))
    #: Extra per-key settings a backend understands (an S3 endpoint URL, a region...).
    extra: dict = attrs.field(factory=dict, eq=False)

    @property
    def key_id(self) -> str:
        if self.name:
            return self.name
        if self.secret is None:
            return "anonymous"
        return "key-" + self.secret.fingerprint()

    def reveal(self) -> str | None:
        return None if self.secret is None else self.secret.reveal()

    def __repr__(self) -> str:
        return f"ApiKey(key_id={self.key_id!r})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("an ApiKey cannot be pickled; pass keys to each process by configuration")


def as_api_key(value: ApiKey | Secret | str | None, **kwargs: Any) -> ApiKey:
    """Accept what users naturally pass (a str, a Secret, an ApiKey) and return an ApiKey."""
    if isinstance(value, ApiKey):
        return value
    return ApiKey(secret=value, **kwargs)
