"""``serve_dashboard(client, port)``: the page, its assets and a server-sent event stream.

Served by the standard library's ``ThreadingHTTPServer`` (one thread per open page).  It
binds to loopback unless told otherwise, and any other address needs a token, which the
data endpoints (``/events``, ``/api/state``) check; the static assets hold no data.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from ipfs_accelerate_py.errors import ConfigError

from .recorder import DashboardRecorder
from .state import DashboardState, ProgressSource

log = logging.getLogger("ipfs_accelerate.dashboard")

_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
MAX_STREAMS = 16  # open pages at once; each holds a thread
_TOKEN_IN_URL = re.compile(r"token=[^&\s\"]*")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class _Hub:
    """The latest message and a condition the streaming threads wait on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.seq = 0
        self.message = b""
        self.closed = False
        self.streams = 0

    def publish(self, data: bytes) -> None:
        with self.cond:
            self.seq += 1
            self.message = data
            self.cond.notify_all()

    def wait(self, seen: int, timeout: float) -> tuple[int, bytes | None]:
        with self.cond:
            self.cond.wait_for(lambda: self.seq != seen or self.closed, timeout)
            if self.closed or self.seq == seen:
                return seen, None
            return self.seq, self.message

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def _sse(event: str, payload: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


class Dashboard:
    """A running dashboard.  ``url`` (with the token, if any), ``close()``; a context manager."""

    def __init__(self, client: Any, host: str, port: int, token: str | None,
                 recorder: DashboardRecorder, progress: ProgressSource | None,
                 interval: float) -> None:
        self.client = client
        self.recorder = recorder
        self.state = DashboardState(client, recorder, progress=progress)
        self.interval = interval
        self._token = token
        self._hub = _Hub()
        self._stop = threading.Event()
        self._sent_version = -1
        self.state.sample()  # the first page load has numbers at once
        try:
            self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        except OSError as exc:  # port taken, address not on this machine...
            raise ConfigError("port", f"cannot serve the dashboard on {host}:{port}: "
                                      f"{exc.strerror or exc}") from None
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._serve = threading.Thread(target=self._httpd.serve_forever, name="dashboard-http",
                                       daemon=True)
        self._sampler = threading.Thread(target=self._run_sampler, name="dashboard-sampler",
                                         daemon=True)
        self._serve.start()
        self._sampler.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        base = f"http://{host}:{self.port}/"
        return base + (f"?token={quote(self._token)}" if self._token else "")

    @property
    def notice(self) -> str:
        """One line saying where it is and who can reach it (for the command line)."""
        base = self.url.split("?", 1)[0]
        if is_loopback(self.host):
            return (f"dashboard: {base} (bound to {self.host}: reachable from this machine "
                    f"only; another host needs a token)")
        return f"dashboard: {base} (bound to {self.host}, token required: ?token=...)"

    def set_progress(self, source: ProgressSource | None) -> None:
        """Show a batch's progress: ``source()`` returns {"done", "total", "failed"}."""
        self.state.progress = source

    # -- sampling -----------------------------------------------------------------------
    def _run_sampler(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                msg = self.state.sample()
            except Exception as exc:  # a failing stats() must not kill the page
                log.warning("dashboard: sampling failed: %s: %s", type(exc).__name__, exc)
                continue
            if self.recorder.version != self._sent_version:
                self._sent_version = self.recorder.version
                msg["breakers"] = self.recorder.transitions()
            self._hub.publish(_sse("update", msg))

    # -- HTTP ---------------------------------------------------------------------------
    def _authorized(self, query: str, headers: Any) -> bool:
        if self._token is None:
            return True
        given = parse_qs(query).get("token", [""])[0]
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:]
        return hmac.compare_digest(given.encode(), self._token.encode())

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        dash = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "ipfs-accelerate-dashboard"
            timeout = 30  # a page that stops reading is dropped, never blocks a thread forever

            def log_message(self, fmt: str, *args: Any) -> None:
                if log.isEnabledFor(logging.DEBUG):  # the request line may carry the token
                    log.debug("dashboard: %s", _TOKEN_IN_URL.sub("token=***", fmt % args))

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)
                if parts.path in _ASSETS:
                    name, ctype = _ASSETS[parts.path]
                    self._send(200, _asset(name), ctype)
                    return
                if parts.path not in ("/events", "/api/state"):
                    self._send(404, b"not found\n", "text/plain")
                    return
                if not dash._authorized(parts.query, self.headers):
                    self._send(401, b"token required\n", "text/plain")
                    return
                if parts.path == "/api/state":
                    body = json.dumps(dash.state.full(), separators=(",", ":")).encode()
                    self._send(200, body, "application/json")
                    return
                self._stream()

            def _stream(self) -> None:
                hub = dash._hub
                with hub.cond:
                    if hub.streams >= MAX_STREAMS:
                        busy = True
                    else:
                        busy = False
                        hub.streams += 1
                if busy:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"too many open pages\n", "text/plain")
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    seen = hub.seq
                    self.wfile.write(b"retry: 2000\n\n" + _sse("full", dash.state.full()))
                    self.wfile.flush()
                    while not hub.closed:
                        seen, data = hub.wait(seen, 15.0)
                        self.wfile.write(data if data is not None else b": keep-alive\n\n")
                        self.wfile.flush()
                except OSError:  # the page went away
                    pass
                finally:
                    with hub.cond:
                        hub.streams -= 1
                    self.close_connection = True

        return Handler

    def close(self) -> None:
        """Stop sampling, end the open streams and the server (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._hub.close()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._serve.join(timeout=5)
        self._sampler.join(timeout=5)

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Dashboard {self.url.split('?', 1)[0]}>"


def attach(client: Any, observer: Any) -> bool:
    """Attach ``observer`` to a running client where the client can (``add_observer``)."""
    add = getattr(client, "add_observer", None)
    if add is None:
        return False
    add(observer)
    return True


def serve_dashboard(client: Any, port: int = 0, host: str = "127.0.0.1", token: str | None = None,
                    *, recorder: DashboardRecorder | None = None,
                    progress: ProgressSource | None = None, interval: float = 1.0) -> Dashboard:
    """Serve a live page about ``client`` on ``host:port`` (``port=0`` picks a free one).

    :param host: loopback by default; any other address also needs ``token``.
    :param token: required on the data endpoints (``?token=`` or ``Authorization: Bearer``).
    :param recorder: the :class:`DashboardRecorder` already observing the client (registered
        before it was built); without one, a new recorder is attached through
        ``client.add_observer`` where the client has it.  Without events the page still
        shows everything from ``client.stats()``; breaker history is then sampled.
    :param progress: a callable returning {"done", "total", "failed"} for a batch's progress
        and ETA (or call ``set_progress`` later).
    :param interval: seconds between updates (the page's traffic is one small message each).
    :raises ConfigError: a non-loopback host without a token, or a bad interval.
    """
    if not is_loopback(host) and not token:
        raise ConfigError("host", f"binding the dashboard to {host!r} (not loopback) needs a token")
    if token is not None and not token.strip():
        raise ConfigError("token", "must not be empty")
    if not interval > 0:
        raise ConfigError("interval", f"must be > 0, got {interval!r}")
    if recorder is None:
        recorder = DashboardRecorder()
        attach(client, recorder)
    return Dashboard(client, host, port, token, recorder, progress, interval)


__all__ = ["Dashboard", "serve_dashboard", "is_loopback", "attach"]
