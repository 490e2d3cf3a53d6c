"""The native asyncio transport: aiohttp, with the sync transport's rules.

Same as :class:`ipfs_accelerate_py.http.Transport`: the request is prepared by
``requests`` (the same JSON encoding, headers and credential application through
:class:`~ipfs_accelerate_py.http.KeyAuth`), connect and read timeouts always set, TLS
verified against the same CA bundle (``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` /
certifi), proxies from the environment by the same function (``no_proxy`` honoured),
redirects never followed, bodies read in pieces under ``max_body`` (after
decompression) and cut at the attempt's deadline, credential headers blanked on the sent
request.  The answer is handed to the backend as a ``requests.Response`` -- fully read for
a plain call; for a stream, with a body whose reads await on the loop (through
:func:`.bridge.await_`) under the same bounds, read line by line by the same bounded line
reader (``max_line_bytes``) -- so a backend written for the sync client parses it unchanged.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit

import aiohttp
import requests
from requests import compat as _compat
from requests.models import RequestEncodingMixin
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_encoding_from_headers
from requests.utils import get_environ_proxies, select_proxy

from ..errors import (
    AccelerateError,
    ConnectionFailed,
    ProviderError,
    RequestCancelled,
    RequestTimeout,
    ResponseTooLarge,
)
from ..http import DEFAULT_MAX_BODY, DEFAULT_MAX_LINE, BodyCut, HttpRequest, _redact
from .bridge import await_

_READ_SIZE = 64 * 1024
complexjson = _compat.json  # the JSON module requests encodes bodies with
#: aiohttp decodes these; a server must not answer in an encoding we cannot read.
_ACCEPT_ENCODING = "gzip, deflate"


def _ssl_context() -> ssl.SSLContext:
    bundle = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
              or DEFAULT_CA_BUNDLE_PATH)
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


class AsyncTransport:
    """Sends :class:`~ipfs_accelerate_py.http.HttpRequest` objects on one pooled
    ``aiohttp.ClientSession`` (made on first use, on the running loop).

    ``send`` is the pipeline's synchronous entry point: it may only be called from code
    the :class:`~ipfs_accelerate_py.aio.AsyncClient` drives (it awaits through the
    bridge); ``asend`` is the coroutine."""

    def __init__(self, pool_size: int = 100, *, trust_env: bool = True) -> None:
        self.pool_size = max(1, pool_size)
        self._session: aiohttp.ClientSession | None = None
        # Prepares requests exactly as the sync transport's session does; never sends.
        self._prep = requests.Session()
        self._prep.trust_env = False
        self._trust_env = trust_env
        self._environ_proxies: dict[str, dict[str, str]] = {}
        self._ssl = _ssl_context()

    # ------------------------------------------------------------------ plumbing
    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=self.pool_size, limit_per_host=0,
                                             ssl=self._ssl)
            session = self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, auto_decompress=True,
                timeout=aiohttp.ClientTimeout(total=None))
        return session

    def _proxy(self, url: str) -> str | None:
        if not self._trust_env:
            return None
        split = urlsplit(url)
        origin = f"{split.scheme}://{split.netloc}"
        proxies = self._environ_proxies.get(origin)
        if proxies is None:
            proxies = self._environ_proxies[origin] = get_environ_proxies(origin)  # no_proxy too
        return select_proxy(url, proxies) if proxies else None

    # ------------------------------------------------------------------ sending
    def _prepare(self, req: HttpRequest) -> requests.PreparedRequest:
        """The request as ``requests`` prepares it (the sync transport's wire format).  A
        JSON or raw body takes a short path: ``Session.prepare_request`` re-merges
        session settings and re-parses the URL on every call, about 0.4 ms."""
        if isinstance(req.data, Mapping) or isinstance(req.data, (list, tuple)):
            return self._prep.prepare_request(requests.Request(  # form fields: requests' way
                req.method, req.url, headers=req.headers, params=req.params, json=req.json,
                data=req.data, auth=req.auth))
        p = requests.PreparedRequest()
        p.method = req.method.upper()
        url = req.url
        if req.params:
            query = RequestEncodingMixin._encode_params(req.params)
            url = f"{url}{'&' if '?' in url else '?'}{query}"
        p.url = url
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        headers._store = self._prep.headers._store.copy()  # requests' defaults
        for name, value in req.headers.items():
            headers[name] = value
        body: Any = req.data
        if not body and req.json is not None:
            body = complexjson.dumps(req.json, allow_nan=False).encode("utf-8")
            if "content-type" not in headers:
                headers["Content-Type"] = "application/json"
        p.headers = headers  # type: ignore[assignment]
        p.body = body
        p._cookies = None  # type: ignore[attr-defined]
        if req.auth is not None:
            p = req.auth(p)
        return p

    def send(self, req: HttpRequest, timeout: tuple[float, float], *,
             backend: str | None = None, request_id: str | None = None) -> requests.Response:
        """The sync transport's ``send``, awaited on the loop (see the class docs)."""
        return await_(self.asend(req, timeout, backend=backend, request_id=request_id))

    async def asend(self, req: HttpRequest, timeout: tuple[float, float], *,
                    backend: str | None = None, request_id: str | None = None
                    ) -> requests.Response:
        connect, read = req.timeout or timeout
        loop = asyncio.get_running_loop()
        cut_at = None  # the attempt's deadline on the loop's clock
        if req.deadline is not None:
            left = req.deadline - time.monotonic()
            if left <= 0:
                raise RequestTimeout("the attempt's deadline passed before it was sent",
                                     backend=backend, request_id=request_id)
            read = max(0.001, min(read, left))
            cut_at = loop.time() + left
        prepared = self._prepare(req)
        headers: dict[str, Any] = dict(prepared.headers)
        if "Accept-Encoding" not in req.headers:
            headers["Accept-Encoding"] = _ACCEPT_ENCODING
        body: Any = prepared.body
        if body is not None and not isinstance(body, (bytes, str)) and not hasattr(body, "read"):
            body = _aiter(body)  # an iterator of bytes (a raw upload)
        failure: AccelerateError | None = None
        resp: aiohttp.ClientResponse | None = None
        out: requests.Response | None = None
        max_body = req.max_body or DEFAULT_MAX_BODY
        try:
            async with asyncio.timeout_at(cut_at):
                resp = await self._get_session().request(
                    prepared.method or "GET", prepared.url or "", headers=headers, data=body,
                    allow_redirects=False, proxy=self._proxy(prepared.url or ""),
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect,
                                                  sock_read=read))
                out = _response(resp, prepared)
                if not req.stream:
                    buf = bytearray()
                    while True:
                        piece = await resp.content.readany()
                        if not piece:
                            break
                        buf += piece
                        if len(buf) > max_body:
                            failure = ResponseTooLarge(
                                f"answer larger than max_response_bytes={max_body}",
                                status=resp.status, limit=max_body, backend=backend,
                                request_id=request_id)
                            break
                    out._content = bytes(buf)
                    out._content_consumed = True
        except asyncio.CancelledError:
            failure = RequestCancelled("the request was cancelled while its attempt was in "
                                       "flight")
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            late = req.deadline is not None and time.monotonic() >= req.deadline
            what = ("the attempt's deadline passed" if late else f"timed out: {type(exc).__name__}")
            failure = RequestTimeout(what + ("" if out is None else " while reading the answer"),
                                     status=None if resp is None else resp.status,
                                     backend=backend, request_id=request_id)
        except aiohttp.ClientPayloadError as exc:  # cut mid-way, or a corrupt encoding
            failure = BodyCut(f"answer cut or corrupt: {type(exc).__name__}",
                              status=None if resp is None else resp.status, backend=backend,
                              request_id=request_id)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # Never chained: aiohttp's exceptions keep the request's headers (the key).
            failure = ConnectionFailed(f"connection failed: {_no_headers(exc)[:300]}",
                                       backend=backend, request_id=request_id)
        _redact(prepared, req.auth)
        if failure is not None:
            if resp is not None:
                resp.close()
            raise failure  # outside the except block: no __context__ holding the headers
        assert resp is not None and out is not None
        if not req.stream:
            resp.release()  # the connection goes back to the pool
        else:
            out.raw = AsyncBody(resp, max_body=max_body, deadline=req.deadline, backend=backend,
                                request_id=request_id)
            out.max_line = req.max_line or DEFAULT_MAX_LINE  # type: ignore[attr-defined]
        return out

    def close(self) -> None:
        """Close without waiting: on a running loop the session closes in a task (use
        :meth:`aclose` to wait for it)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            try:
                asyncio.get_running_loop().create_task(session.close())
            except RuntimeError:
                pass  # no running loop: the sockets close with the session
        self._prep.close()

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        self._prep.close()


def _response(resp: aiohttp.ClientResponse, prepared: requests.PreparedRequest) -> requests.Response:
    """The answer as the ``requests.Response`` every backend parses."""
    out = requests.Response()
    out.status_code = resp.status
    out.reason = resp.reason or ""
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    for name, value in resp.headers.items():  # repeated headers joined, as urllib3 does
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    out.headers = headers
    out.url = prepared.url or ""
    out.encoding = get_encoding_from_headers(headers)
    out.request = prepared
    return out


def _no_headers(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}: {exc.status} {exc.message}"
    return f"{type(exc).__name__}: {exc}"


async def _aiter(it: Any) -> Any:
    for piece in it:
        yield piece


class AsyncBody:
    """Stands in for ``response.raw`` of a streamed answer: each read awaits the next
    piece that arrived (aiohttp's ``readany``) on the loop, through the bridge, with the
    sync transport's bounds: the time left before the attempt's ``deadline`` (the read
    timeout applies per read too), decoded bytes against ``max_body``, a cut body or a
    corrupt encoding as :class:`~ipfs_accelerate_py.http.BodyCut`."""

    def __init__(self, resp: aiohttp.ClientResponse, *, max_body: int | None,
                 deadline: float | None, backend: str | None, request_id: str | None) -> None:
        self._resp = resp
        self.max_body = max_body
        self.deadline = deadline
        self.backend = backend
        self.request_id = request_id
        self.received = 0

    def _error(self, cls: type[ProviderError], message: str, **extra: Any) -> ProviderError:
        return cls(message, status=self._resp.status, backend=self.backend,
                   request_id=self.request_id, **extra)

    async def _next_piece(self) -> bytes:
        failure: BaseException | None = None
        cut_at = None
        if self.deadline is not None:
            cut_at = asyncio.get_running_loop().time() + (self.deadline - time.monotonic())
        try:
            async with asyncio.timeout_at(cut_at):
                return await self._resp.content.readany()
        except asyncio.CancelledError:
            failure = RequestCancelled("the stream was cancelled while reading")
        except (TimeoutError, aiohttp.ServerTimeoutError):
            late = self.deadline is not None and time.monotonic() >= self.deadline
            failure = self._error(RequestTimeout, (
                "the attempt's deadline passed while reading the answer" if late
                else "timed out reading the answer") + f" ({self.received} bytes received)")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            failure = self._error(BodyCut, "answer cut or corrupt after "
                                  f"{self.received} bytes: {type(exc).__name__}")
        self._resp.close()
        raise failure

    def stream(self, amt: int | None = None, decode_content: bool | None = True
               ) -> Iterator[bytes]:
        while True:
            data = await_(self._next_piece())
            if not data:
                self._resp.release()
                return
            self.received += len(data)
            if self.max_body is not None and self.received > self.max_body:
                self._resp.close()
                raise self._error(ResponseTooLarge,
                                  f"answer larger than max_response_bytes={self.max_body}",
                                  limit=self.max_body)
            yield data

    def read(self, amt: int | None = None, decode_content: bool | None = True,
             cache_content: bool = False) -> bytes:
        if amt is None:
            buf = bytearray()
            for data in self.stream():
                buf += data
            return bytes(buf)
        for data in self.stream(amt, decode_content):
            return data
        return b""

    def close(self) -> None:
        self._resp.close()

    def release_conn(self) -> None:
        self._resp.release()

    @property
    def closed(self) -> bool:
        return self._resp.closed


__all__ = ["AsyncBody", "AsyncTransport"]
