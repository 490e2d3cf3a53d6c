"""The HTTP transport: one pooled ``requests.Session`` per client, timeouts always set,
urllib3's own retries off (the pipeline's retry layer is the only one), TLS verified."""

from __future__ import annotations

import os
from typing import Any, Mapping
from urllib.parse import urlsplit

import attrs
import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.util.retry import Retry

from .errors import ConnectionFailed, RequestTimeout


@attrs.define
class HttpRequest:
    """What a backend wants sent.  ``url`` is absolute (backends join their base URL)."""

    method: str
    url: str
    headers: dict[str, str] = attrs.field(factory=dict)
    params: Mapping[str, Any] | None = None
    json: Any = None
    data: Any = None  # bytes, a file object or an iterator of bytes (raw body)
    stream: bool = False
    #: Override the backend's (connect, read) timeouts for this call.
    timeout: tuple[float, float] | None = None


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
                allow_redirects=False, proxies=self._proxies(req.url),
            )
        except requests.Timeout as exc:
            raise RequestTimeout(f"timed out: {type(exc).__name__}", backend=backend,
                                 request_id=request_id) from None
        except requests.ConnectionError as exc:
            raise ConnectionFailed(f"connection failed: {_short(exc)}", backend=backend,
                                   request_id=request_id) from None
        _redact(resp)
        return resp

    def close(self) -> None:
        self.session.close()


#: Request headers that carry a credential.  Responses keep a reference to the request
#: that produced them (``response.request``), and errors keep the response, so these are
#: blanked as soon as the answer arrives: the response stays reachable, the key does not.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key",
                            "x-goog-api-key", "x-amz-security-token", "cookie"})


def _redact(resp: requests.Response) -> None:
    prepared = getattr(resp, "request", None)
    headers = getattr(prepared, "headers", None)
    if not headers:
        return
    for name in list(headers):
        if name.lower() in SECRET_HEADERS:
            headers[name] = "***"


def _short(exc: BaseException) -> str:
    # Connection errors embed the URL, never headers; keep it short for log lines.
    text = str(exc)
    return text if len(text) <= 300 else text[:300] + "..."
