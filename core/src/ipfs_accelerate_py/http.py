"""The HTTP transport: one pooled ``requests.Session`` per client, timeouts always set,
urllib3's own retries off (the pipeline's retry layer is the only one), TLS verified.

Every answer is read under two bounds, here and nowhere else: its size after
decompression (``HttpRequest.max_body``; a stream's lines by ``max_line``) and the
attempt's ``deadline``, which caps each socket read so a server that drips its body or
never ends a stream cannot hold an attempt past it.  A redirect is never followed.
"""

from __future__ import annotations

import os
import socket
import time
from http.client import HTTPException
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit

import attrs
import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPBasicAuth
from requests.cookies import merge_cookies
from requests.hooks import default_hooks
from requests.sessions import merge_hooks, merge_setting
from requests.utils import get_auth_from_url
from requests.utils import get_environ_proxies
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from .errors import (
    ConnectionFailed,
    ProviderError,
    RequestTimeout,
    ResponseTooLarge,
    UnexpectedRedirect,
)
from .redaction import MARK, redact, redact_url

#: Request headers that carry a credential in any protocol; each backend adds its own
#: (:attr:`Backend.secret_headers`).  They are redacted wherever headers are shown, and
#: blanked on the sent request once the answer arrives (responses and errors keep a
#: reference to it).
STANDARD_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie",
                                     "x-api-key", "api-key", "x-amz-security-token"})


def _headers_repr(headers: Mapping[str, str]) -> str:
    return repr({k: (MARK if k.lower() in STANDARD_SECRET_HEADERS else v)
                 for k, v in headers.items()})


_SECRET_NAMES: dict[frozenset[str], frozenset[str]] = {}


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
        declared: frozenset[str] = getattr(self._backend, "secret_headers", frozenset())
        names = _SECRET_NAMES.get(declared)
        if names is None:  # a backend declares a handful of names, once: remember the union
            names = _SECRET_NAMES[declared] = STANDARD_SECRET_HEADERS | {h.lower() for h in declared}
        return names

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        for name, value in self._backend.auth_headers(self._key).items():
            if name not in prepared.headers:  # a header the builder set explicitly wins
                prepared.headers[name] = value
        # Credentials in the URL (``https://user:pw@host``) win, as requests applies them
        # when no other auth is given.  No "@", no credentials: spare the URL parse.
        url = prepared.url or ""
        if "@" in url:
            user, password = get_auth_from_url(url)
            if user or password:
                prepared = HTTPBasicAuth(user, password)(prepared)
        return prepared

    def __repr__(self) -> str:
        key_id = getattr(self._key, "key_id", None)
        return f"KeyAuth(backend={getattr(self._backend, 'name', '?')!r}, key_id={key_id!r})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a KeyAuth cannot be pickled")

#: Default bound of a body after decompression (``BackendConfig.max_response_bytes``).
DEFAULT_MAX_BODY = 64 * 1024 * 1024
#: Default bound of one line of a stream (``BackendConfig.max_line_bytes``).
DEFAULT_MAX_LINE = 8 * 1024 * 1024
_READ_SIZE = 64 * 1024


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
    #: Bound of the answer's size after decompression (a stream's total).  None: the
    #: backend's ``max_response_bytes``, filled in by the pipeline.  A backend that saves a
    #: large object to disk sets its own (``sys.maxsize`` lifts it).
    max_body: int | None = None
    #: Bound of one line (one SSE line, one NDJSON object) of a streamed answer.  None:
    #: the backend's ``max_line_bytes``.
    max_line: int | None = None
    #: ``time.monotonic()`` by which the attempt must end, reading included (None: only
    #: the per-read timeout bounds it).  The pipeline sets it from the request's deadline
    #: and ``BackendConfig.attempt_timeout``.
    deadline: float | None = None


    def apply_bounds(self, max_body: int, max_line: int, deadline: float | None) -> None:
        """Fill the bounds the backend left open, and the attempt's deadline."""
        if self.max_body is None:
            self.max_body = max_body
        if self.max_line is None:
            self.max_line = max_line
        if deadline is not None and (self.deadline is None or deadline < self.deadline):
            self.deadline = deadline


def environ_ca_bundle() -> str | None:
    """The CA bundle the environment names (``REQUESTS_CA_BUNDLE``, then
    ``CURL_CA_BUNDLE``, as requests reads them); None: the library's default."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")


class EnvironProxies:
    """Each origin's proxies from the environment (``no_proxy`` honoured), read on the
    origin's first request instead of on every call as requests does."""

    def __init__(self) -> None:
        self._by_origin: dict[str, dict[str, str]] = {}

    def for_url(self, url: str) -> dict[str, str]:
        split = urlsplit(url)
        origin = f"{split.scheme}://{split.netloc}"
        proxies = self._by_origin.get(origin)
        if proxies is None:
            proxies = self._by_origin[origin] = get_environ_proxies(origin)
        return proxies

    def __iter__(self) -> Iterator[str]:
        """The origins read so far."""
        return iter(self._by_origin)


def attempt_timeouts(req: HttpRequest, timeout: tuple[float, float], backend: str | None,
                     request_id: str | None) -> tuple[float, float, float | None]:
    """``(connect, read, seconds left)`` for one attempt: the read timeout cut to what is
    left of its deadline (None: no deadline).  A deadline already passed is a
    :class:`RequestTimeout`: nothing is sent."""
    connect, read = req.timeout or timeout
    if req.deadline is None:
        return connect, read, None
    left = req.deadline - time.monotonic()
    if left <= 0:
        raise RequestTimeout("the attempt's deadline passed before it was sent",
                             backend=backend, request_id=request_id)
    return connect, max(0.001, min(read, left)), left


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
        self._environ_proxies: EnvironProxies | None = None
        if own:
            self.session.verify = environ_ca_bundle() or True
            if self.session.trust_env:
                self.session.trust_env = False
                self._environ_proxies = EnvironProxies()

    def _proxies(self, url: str) -> dict[str, str] | None:
        if self._environ_proxies is None:
            return None
        return self._environ_proxies.for_url(url) or None

    def send(self, req: HttpRequest, timeout: tuple[float, float], *,
             backend: str | None = None, request_id: str | None = None) -> requests.Response:
        """Send ``req``; return the response with its body read (bounded), or, for a
        streamed request, with a body that reads under the same bounds.  Network faults
        become :class:`RequestTimeout` / :class:`ConnectionFailed`, an oversized body
        :class:`ResponseTooLarge`; a 3xx is returned, never followed (the pipeline makes it
        :func:`redirect_error`).  The errors carry no chained ``requests`` exception: that
        one holds the sent headers."""
        connect, read, _ = attempt_timeouts(req, timeout, backend, request_id)
        failure: ProviderError | None = None
        try:
            # Always streamed underneath: the body is read here, in bounded pieces.
            if self._environ_proxies is not None and not self.session.trust_env:
                resp = self._send_own(req, (connect, read))
            else:  # an application's session: requests merges its settings per call
                resp = self.session.request(
                    req.method, req.url, headers=req.headers, params=req.params, json=req.json,
                    data=req.data, stream=True, timeout=(connect, read),
                    allow_redirects=False, proxies=self._proxies(req.url), auth=req.auth,
                )
        except requests.Timeout as exc:
            failure = RequestTimeout(f"timed out: {type(exc).__name__}", backend=backend,
                                     request_id=request_id)
        except requests.ConnectionError as exc:
            failure = ConnectionFailed(f"connection failed: {_short(exc)}", backend=backend,
                                       request_id=request_id)
        if failure is not None:
            raise failure  # outside the except block: no __context__ holding the headers
        _redact(resp.request, req.auth)
        body = BoundedBody(resp, max_body=req.max_body or DEFAULT_MAX_BODY, deadline=req.deadline,
                           read_timeout=read, backend=backend, request_id=request_id)
        resp.raw = body  # requests' iter_content/iter_lines now read through the bounds
        if not req.stream:
            try:
                resp._content = body.read_all()  # read whole: the connection is pooled again
            except BaseException:
                resp.close()
                raise
            resp._content_consumed = True
        else:
            # read by iter_bounded_lines
            resp.max_line = req.max_line or DEFAULT_MAX_LINE  # type: ignore[attr-defined]
        return resp

    def _send_own(self, req: HttpRequest, timeout: tuple[float, float]) -> requests.Response:
        """``Session.request`` for our own session, which reads no environment per call:
        the same prepared request (the session's headers, params, auth, cookies and hooks
        merged as requests merges them) and the same ``Session.send``, without re-merging
        seven settings through requests' generic helpers on every call (a fifth of a small
        request's CPU)."""
        session = self.session
        prepared = prepare(session, req)
        proxies = self._proxies(req.url)
        if session.proxies:
            proxies = merge_setting(proxies, session.proxies)
        return session.send(prepared, stream=True, timeout=timeout, allow_redirects=False,
                            proxies=proxies or {}, verify=session.verify, cert=session.cert)

    def close(self) -> None:
        self.session.close()


def prepare(session: requests.Session, req: HttpRequest) -> requests.PreparedRequest:
    """``req`` prepared as ``session.prepare_request`` would (the session's headers,
    params, auth and cookies merged as requests merges them; the same wire format), for a
    session that reads no environment per call -- without re-merging seven settings
    through requests' generic helpers (a fifth of a small request's CPU)."""
    headers = requests.structures.CaseInsensitiveDict(session.headers)
    for name, value in req.headers.items():
        if value is None:  # requests' rule: None removes a session header
            headers.pop(name, None)
        else:
            headers[name] = value
    params = req.params
    if session.params:
        params = merge_setting(params, session.params)
    cookies = None  # an empty jar; copy the session's only when it holds cookies
    if session.cookies:
        cookies = merge_cookies(requests.cookies.RequestsCookieJar(), session.cookies)
    prepared = requests.PreparedRequest()
    prepared.prepare(method=req.method.upper(), url=req.url, headers=headers,
                     data=req.data or {}, json=req.json, params=params or {},
                     auth=req.auth if req.auth is not None else session.auth,
                     cookies=cookies, hooks=merge_hooks(default_hooks(), session.hooks))
    return prepared


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


class BodyCut(ConnectionFailed, ProtocolError):
    """A body cut mid-way or corruptly encoded: a :class:`ConnectionFailed` (retried).  It
    is also a urllib3 ``ProtocolError`` so that a backend reading a raw stream, which
    catches the transport's own errors to classify them itself, still does."""


def redirect_error(error: ProviderError, response: requests.Response) -> UnexpectedRedirect:
    """The backend's classification of a 3xx answer (its message and code kept), as the
    non-retried :class:`UnexpectedRedirect` naming the ``Location``: a redirect is never
    followed (the key would go elsewhere) and is no passing fault."""
    location = response.headers.get("location")
    location = redact_url(location) if location else None  # a Location may carry credentials
    message = (f"HTTP {response.status_code} redirect to {location or '(no Location)'} not "
               f"followed; check the base URL: {error.message}")
    err = UnexpectedRedirect(message, status=response.status_code, code=error.code,
                             location=location, backend=error.backend,
                             request_id=error.request_id, response=response,
                             provider_request_id=error.provider_request_id)
    return err


class _BodyBounds:
    """What every bounded body shares: the size bound on decoded bytes, the errors it
    raises (carrying status, backend and request id) and ``read``.  A subclass gives
    :meth:`stream` (pieces as they arrive, each passed through :meth:`_count`), the
    status and how to drop the connection."""

    def __init__(self, *, max_body: int | None, deadline: float | None, backend: str | None,
                 request_id: str | None) -> None:
        self.max_body = max_body
        self.deadline = deadline
        self.backend = backend
        self.request_id = request_id
        self.received = 0

    def _status(self) -> int:
        raise NotImplementedError

    def _drop(self) -> None:
        raise NotImplementedError

    def stream(self, amt: int | None = None, decode_content: bool | None = True
               ) -> Iterator[bytes]:
        raise NotImplementedError

    def _error(self, cls: type[ProviderError], message: str, **extra: Any) -> ProviderError:
        return cls(message, status=self._status(), backend=self.backend,
                   request_id=self.request_id, **extra)

    def _timed_out(self) -> ProviderError:
        late = self.deadline is not None and time.monotonic() >= self.deadline
        return self._error(RequestTimeout, (
            "the attempt's deadline passed while reading the answer" if late
            else "timed out reading the answer") + f" ({self.received} bytes received)")

    def _cut(self, exc: BaseException) -> ProviderError:
        # A cut body (a reset, an incomplete read) or a corrupt encoding: the network's
        # fault, worth another attempt.
        return self._error(BodyCut, "answer cut or corrupt after "
                           f"{self.received} bytes: {type(exc).__name__}")

    def _count(self, data: bytes) -> None:
        self.received += len(data)
        if self.max_body is not None and self.received > self.max_body:
            self._drop()
            raise self._error(ResponseTooLarge,
                              f"answer larger than max_response_bytes={self.max_body}",
                              limit=self.max_body)

    def read(self, amt: int | None = None, decode_content: bool | None = True,
             cache_content: bool = False) -> bytes:
        if amt is None:
            return self.read_all()
        for data in self.stream(amt, decode_content):
            return data
        return b""

    def read_all(self) -> bytes:
        # One growing buffer, not a list of pieces: a fast reader gets many small pieces,
        # and their per-object overhead would multiply the memory held near the bound.
        buf = bytearray()
        for data in self.stream():
            buf += data
        return bytes(buf)


class BoundedBody(_BodyBounds):
    """Stands in for ``response.raw`` (a urllib3 response): every read goes through
    :meth:`stream`, which reads what has arrived (``read1``, so a dripping server cannot
    make one read wait for a full buffer), caps each socket wait at the time left before
    ``deadline``, counts decoded bytes against ``max_body`` (so a gzip bomb is stopped
    after at most one read's worth past the bound), and turns a cut body or a corrupt
    encoding into :class:`ConnectionFailed` -- a transient fault the pipeline retries."""

    def __init__(self, resp: requests.Response, *, max_body: int | None,
                 deadline: float | None, read_timeout: float, backend: str | None,
                 request_id: str | None) -> None:
        self._raw = resp.raw
        self._resp = resp
        self.read_timeout = read_timeout
        super().__init__(max_body=max_body, deadline=deadline, backend=backend,
                         request_id=request_id)

    def __getattr__(self, name: str) -> Any:  # close(), release_conn(), headers...
        if name == "_raw":  # not set yet (a copy being made): no endless recursion
            raise AttributeError(name)
        return getattr(self._raw, name)

    def _status(self) -> int:
        return self._resp.status_code

    def _drop(self) -> None:
        self._raw.close()

    def _cap_socket_wait(self) -> None:
        if self.deadline is None:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            self._raw.close()
            raise self._error(RequestTimeout, "the attempt's deadline passed while reading "
                                              f"the answer ({self.received} bytes received)")
        sock = _socket_of(self._raw)
        if sock is not None:
            try:
                sock.settimeout(max(0.001, min(self.read_timeout, left)))
            except OSError:
                pass

    def stream(self, amt: int | None = None, decode_content: bool | None = True
               ) -> Iterator[bytes]:
        """Decoded pieces as they arrive (``amt`` is an upper bound of one piece)."""
        size = amt if amt and amt > 0 else _READ_SIZE
        while True:
            self._cap_socket_wait()
            failure: ProviderError | None = None
            try:
                data = self._raw.read1(size, decode_content=decode_content)
            except (ReadTimeoutError, socket.timeout, TimeoutError):
                failure = self._timed_out()
            except (Urllib3Error, HTTPException, OSError, ValueError) as exc:
                failure = self._cut(exc)  # ProtocolError, IncompleteRead, DecodeError...
            if failure is not None:
                self._raw.close()
                raise failure
            if not data:
                return
            self._count(data)
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self._raw.close()
                raise self._error(RequestTimeout, "the attempt's deadline passed while "
                                  f"reading the answer ({self.received} bytes received)")
            yield data


def iter_bounded_lines(response: requests.Response) -> Iterator[bytes]:
    """The lines of a streamed answer (without their ``\n``/``\r\n``), as they arrive.
    A line longer than the request's ``max_line`` raises :class:`ResponseTooLarge` instead
    of growing without end (``requests``' ``iter_lines`` has no such bound)."""
    limit = getattr(response, "max_line", None)
    pending = bytearray()
    for piece in response.iter_content(chunk_size=_READ_SIZE):
        *done, rest = piece.split(b"\n")
        if done:
            pending += done[0]
            yield _strip_cr(bytes(pending))
            for line in done[1:]:
                yield _strip_cr(line)
            pending = bytearray(rest)
        else:
            pending += rest
        if limit is not None and len(pending) > limit:
            response.close()
            raw = response.raw
            raise ResponseTooLarge(f"a stream line longer than max_line_bytes={limit}",
                                   status=response.status_code, limit=limit,
                                   backend=getattr(raw, "backend", None),
                                   request_id=getattr(raw, "request_id", None))
    if pending:
        yield _strip_cr(bytes(pending))


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def _socket_of(raw: Any) -> socket.socket | None:
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        return sock
    fp = getattr(getattr(raw, "_fp", None), "fp", None)  # http.client's buffered reader
    return getattr(getattr(fp, "raw", None), "_sock", None)
