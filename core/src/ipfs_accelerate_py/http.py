"""The HTTP transport: one pooled ``requests.Session`` per client, timeouts always set,
urllib3's own retries off (the pipeline's retry layer is the only one), TLS verified."""

from __future__ import annotations

import os
from typing import Any, Mapping
from urllib.parse import urlsplit

import attrs
import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPBasicAuth
from requests.utils import get_auth_from_url
from requests.utils import get_environ_proxies
from urllib3.util.retry import Retry

from .errors import ConnectionFailed, RequestTimeout
from .redaction import MARK, redact

#: Request headers that carry a credential in any protocol; each backend adds its own
#: (:attr:`Backend.secret_headers`).  They are redacted wherever headers are shown, and
#: blanked on the sent request once the answer arrives (responses and errors keep a
#: reference to it).
STANDARD_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie",
                                     "x-api-key", "api-key", "x-amz-security-token"})


def _headers_repr(headers: Mapping[str, str]) -> str:
    return repr({k: (MARK if k.lower() in STANDARD_SECRET_HEADERS else v)
                 for k, v in headers.items()})


class KeyAuth(AuthBase):
    """Applies a backend's credential when the transport prepares the request (the way
    requests' and httpx's ``Auth`` objects do), so no printable object holds the key: this
    object keeps the :class:`~ipfs_accelerate_py.keys.ApiKey` (which never prints itself)
    and asks the backend for the headers at send time."""

    __slots__ = ("_backend", "_key")

    def __init__(self, backend: Any, key: Any) -> None:
        self._backend = backend
        self._key = key

    @property
    def secret_headers(self) -> frozenset[str]:
        declared = getattr(self._backend, "secret_headers", frozenset())
        return STANDARD_SECRET_HEADERS | {h.lower() for h in declared}

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        for name, value in self._backend.auth_headers(self._key).items():
            if name not in prepared.headers:  # a header the builder set explicitly wins
                prepared.headers[name] = value
        # Credentials in the URL (``https://user:pw@host``) win, as requests applies them
        # when no other auth is given.
        user, password = get_auth_from_url(prepared.url or "")
        if user or password:
            prepared = HTTPBasicAuth(user, password)(prepared)
        return prepared

    def __repr__(self) -> str:
        key_id = getattr(self._key, "key_id", None)
        return f"KeyAuth(backend={getattr(self._backend, 'name', '?')!r}, key_id={key_id!r})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a KeyAuth cannot be pickled")


@attrs.define
class HttpRequest:
    """What a backend wants sent.  ``url`` is absolute (backends join their base URL).
    The credential is not in ``headers``: ``auth`` applies it at send time."""

    method: str
    url: str = attrs.field(repr=lambda u: repr(redact(u)))
    headers: dict[str, str] = attrs.field(factory=dict, repr=_headers_repr)
    params: Mapping[str, Any] | None = None
    json: Any = None
    data: Any = None  # bytes, a file object or an iterator of bytes (raw body)
    stream: bool = False
    #: Override the backend's (connect, read) timeouts for this call.
    timeout: tuple[float, float] | None = None
    #: Applies the credential when the request is prepared (see :class:`KeyAuth`).
    auth: AuthBase | None = None


class Transport:
    """Sends :class:`HttpRequest` objects and turns network failures into classified errors."""

    def __init__(self, pool_size: int = 16, session: requests.Session | None = None) -> None:
        own = session is None
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=max(1, pool_size),
                              max_retries=Retry(total=0, connect=0, read=0, redirect=0,
                                                status=0, raise_on_status=False),
                              pool_block=False)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # requests re-reads the environment (proxies, no_proxy, netrc, CA bundle) on every
        # call -- about a quarter of a small request's CPU.  Our own session reads it once:
        # the CA bundle now, each origin's proxies on its first request.
        self._environ_proxies: dict[str, dict[str, str]] | None = None
        if own:
            self.session.verify = (os.environ.get("REQUESTS_CA_BUNDLE")
                                   or os.environ.get("CURL_CA_BUNDLE") or True)
            if self.session.trust_env:
                self.session.trust_env = False
                self._environ_proxies = {}

    def _proxies(self, url: str) -> dict[str, str] | None:
        cache = self._environ_proxies
        if cache is None:
            return None
        split = urlsplit(url)
        origin = f"{split.scheme}://{split.netloc}"
        proxies = cache.get(origin)
        if proxies is None:
            proxies = cache[origin] = get_environ_proxies(origin)  # honours no_proxy
        return proxies or None

    def send(self, req: HttpRequest, timeout: tuple[float, float], *,
             backend: str | None = None, request_id: str | None = None) -> requests.Response:
        try:
            resp = self.session.request(
                req.method, req.url, headers=req.headers, params=req.params, json=req.json,
                data=req.data, stream=req.stream, timeout=req.timeout or timeout,
                allow_redirects=False, proxies=self._proxies(req.url), auth=req.auth,
            )
        except requests.Timeout as exc:
            _redact(exc.request, req.auth)  # the exception stays reachable as __context__
            raise RequestTimeout(f"timed out: {type(exc).__name__}", backend=backend,
                                 request_id=request_id) from None
        except requests.ConnectionError as exc:
            _redact(exc.request, req.auth)
            raise ConnectionFailed(f"connection failed: {_short(exc)}", backend=backend,
                                   request_id=request_id) from None
        _redact(resp.request, req.auth)
        return resp

    def close(self) -> None:
        self.session.close()


def _redact(prepared: Any, auth: AuthBase | None) -> None:
    """Blank the credential headers of a sent request: responses and exceptions keep a
    reference to it, so the answer stays reachable and the key does not."""
    headers = getattr(prepared, "headers", None)
    if not headers:
        return
    names = auth.secret_headers if isinstance(auth, KeyAuth) else STANDARD_SECRET_HEADERS
    for name in list(headers):
        if name.lower() in names:
            headers[name] = MARK


def _short(exc: BaseException) -> str:
    # Connection errors embed the URL, never headers; keep it short for log lines.
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "..."
