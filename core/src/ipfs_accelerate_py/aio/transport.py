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
from typing import Any, Iterator

import aiohttp
import requests
from requests import compat as _compat
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_encoding_from_headers
from requests.utils import select_proxy

from ..errors import (
    AccelerateError,
    ConnectionFailed,
    RequestCancelled,
    RequestTimeout,
    ResponseTooLarge,
)
from ..http import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_LINE,
    BodyCut,
    EnvironProxies,
    HttpRequest,
    _BodyBounds,
    _redact,
    attempt_timeouts,
    environ_ca_bundle,
    prepare,
)
from .bridge import await_

_READ_SIZE = 64 * 1024
complexjson = _compat.json  # the JSON module requests encodes bodies with
#: aiohttp decodes these; a server must not answer in an encoding we cannot read.
_ACCEPT_ENCODING = "gzip, deflate"


def _ssl_context() -> ssl.SSLContext:
    bundle = environ_ca_bundle() or DEFAULT_CA_BUNDLE_PATH
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
        self._environ_proxies = EnvironProxies() if trust_env else None
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
        if self._environ_proxies is None:
            return None
        proxies = self._environ_proxies.for_url(url)  # no_proxy honoured
        return select_proxy(url, proxies) if proxies else None

    # ------------------------------------------------------------------ sending
    def send(self, req: HttpRequest, timeout: tuple[float, float], *,
             backend: str | None = None, request_id: str | None = None) -> requests.Response:
        """The sync transport's ``send``, awaited on the loop (see the class docs)."""
        return await_(self.asend(req, timeout, backend=backend, request_id=request_id))

    async def asend(self, req: HttpRequest, timeout: tuple[float, float], *,
                    backend: str | None = None, request_id: str | None = None
                    ) -> requests.Response:
        connect, read, left = attempt_timeouts(req, timeout, backend, request_id)
        # the attempt's deadline on the loop's clock
        cut_at = None if left is None else asyncio.get_running_loop().time() + left
        prepared = prepare(self._prep, req)
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


class AsyncBody(_BodyBounds):
    """Stands in for ``response.raw`` of a streamed answer: each read awaits the next
    piece that arrived (aiohttp's ``readany``) on the loop, through the bridge, under the
    sync transport's bounds (shared with :class:`~ipfs_accelerate_py.http.BoundedBody`):
    the time left before the attempt's ``deadline`` (the read timeout applies per read
    too), decoded bytes against ``max_body``, a cut body or a corrupt encoding as
    :class:`~ipfs_accelerate_py.http.BodyCut`."""

    def __init__(self, resp: aiohttp.ClientResponse, *, max_body: int | None,
                 deadline: float | None, backend: str | None, request_id: str | None) -> None:
        self._resp = resp
        super().__init__(max_body=max_body, deadline=deadline, backend=backend,
                         request_id=request_id)

    def _status(self) -> int:
        return self._resp.status

    def _drop(self) -> None:
        self._resp.close()

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
            failure = self._timed_out()
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            failure = self._cut(exc)
        self._resp.close()
        raise failure

    def stream(self, amt: int | None = None, decode_content: bool | None = True
               ) -> Iterator[bytes]:
        while True:
            data = await_(self._next_piece())
            if not data:
                self._resp.release()
                return
            self._count(data)
            yield data

    def close(self) -> None:
        self._resp.close()

    def release_conn(self) -> None:
        self._resp.release()

    @property
    def closed(self) -> bool:
        return self._resp.closed


__all__ = ["AsyncBody", "AsyncTransport"]
