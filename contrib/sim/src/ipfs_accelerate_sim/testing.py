"""Test helpers for backend and strategy authors (``pip install ipfs-accelerate-sim[testing]``).

:class:`LocalServer` hosts a :class:`~ipfs_accelerate_py.server.ProtocolServer` on
127.0.0.1, records every request it receives, and can be scripted to answer the next
requests with canned responses (errors, 429s, cut streams) before falling back to the
protocol's own answers.  :class:`MemoryServer` does the same without a socket: its
:attr:`~MemoryServer.transport` hands a client's requests straight to it, through the
whole ``requests`` stack but no network (as httpx's ``MockTransport`` does).
:func:`make_client` builds the client most tests want.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPResponse
from urllib3.exceptions import ProtocolError

from ipfs_accelerate_py.http import Transport
from ipfs_accelerate_py.server import CutConnection, ServerRequest, ServerResponse

from .http_host import HttpServer

if TYPE_CHECKING:
    from ipfs_accelerate_py.client import Client
    from ipfs_accelerate_py.plugins import PluginManager

Responder = ServerResponse | Callable[[ServerRequest], ServerResponse]


class _Scripted:
    """Records requests and answers from the script first, then from the protocol."""

    def __init__(self, app: Callable[[ServerRequest], ServerResponse] | None) -> None:
        self.protocol = app
        self.requests: list[ServerRequest] = []
        self._script: deque[Responder] = deque()
        self._lock = threading.Lock()

    def script(self, *responses: Responder) -> Any:
        """Answer the next requests with these, in order (a callable gets the request)."""
        with self._lock:
            self._script.extend(responses)
        return self

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()

    @property
    def last(self) -> ServerRequest:
        with self._lock:
            return self.requests[-1]

    def _dispatch(self, req: ServerRequest) -> ServerResponse:
        with self._lock:
            self.requests.append(req)
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            return scripted(req) if callable(scripted) else scripted
        if self.protocol is None:
            return ServerResponse.json({"error": "no protocol and nothing scripted"}, 500)
        return self.protocol(req)


class LocalServer(_Scripted, HttpServer):
    """A protocol server on a real 127.0.0.1 port (started on construction)."""

    def __init__(self, app: Callable[[ServerRequest], ServerResponse] | None = None) -> None:
        _Scripted.__init__(self, app)
        HttpServer.__init__(self, self._dispatch)
        self.start()

    def __enter__(self) -> LocalServer:
        return self


# --------------------------------------------------------------------------- no sockets
class _StreamBody(io.RawIOBase):
    """A streamed ``ServerResponse`` body as a file; a cut stream reads as a broken one."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def next_piece(self, limit: int | None) -> bytes:
        """Up to ``limit`` bytes of the current server chunk (b"" at the end)."""
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return b""
            except CutConnection:
                raise ProtocolError("Connection broken: the server cut the stream") from None
        n = len(self._pending) if limit is None else min(limit, len(self._pending))
        piece, self._pending = self._pending[:n], self._pending[n:]
        return piece

    def read1(self, size: int = -1) -> bytes:
        # What has "arrived": the rest of the current server chunk, as a socket read would.
        return self.next_piece(None if size is None or size < 0 else size)

    def readinto(self, buffer: Any) -> int:
        piece = self.next_piece(len(buffer))
        buffer[:len(piece)] = piece
        return len(piece)


class _MemoryResponse(HTTPResponse):
    """Streams a streamed body chunk by chunk, as a chunked HTTP answer arrives, so a
    consumer sees the first events before a later failure."""

    def stream(self, amt: int | None = 2 ** 16, decode_content: bool | None = None) -> Any:
        body = self._fp
        if not isinstance(body, _StreamBody):
            yield from super().stream(amt, decode_content)
            return
        while piece := body.next_piece(amt):
            yield piece


class _MemoryAdapter(HTTPAdapter):
    """A ``requests`` adapter that answers from an app instead of a socket."""

    def __init__(self, app: Callable[[ServerRequest], ServerResponse]) -> None:
        super().__init__()
        self.app = app

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        split = urlsplit(request.url or "")
        body = request.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        elif not isinstance(body, (bytes, bytearray)):
            body = body.read() if hasattr(body, "read") else b"".join(body)
        req = ServerRequest(method=request.method or "GET", path=split.path,
                            query=parse_qs(split.query, keep_blank_values=True),
                            headers={k.lower(): v for k, v in request.headers.items()},
                            body=bytes(body))
        try:
            resp = self.app(req)
        except Exception as exc:  # as the socket hosts do: a fake's bug is a 500, not a hang
            resp = ServerResponse.text(f"server error: {type(exc).__name__}: {exc}", 500)
        raw_body: Any
        if isinstance(resp.body, (bytes, bytearray)):
            raw_body = io.BytesIO(bytes(resp.body))
        else:
            raw_body = _StreamBody(resp.body)
        raw = _MemoryResponse(body=raw_body, headers=dict(resp.headers), status=resp.status,
                           preload_content=False, decode_content=False,
                           request_method=request.method)
        return self.build_response(request, raw)


class MemoryTransport(Transport):
    """The client's transport, routing every request to ``app`` in memory: no socket, no
    thread, no port; the ``requests`` stack (bodies, params, streaming, errors) as usual."""

    def __init__(self, app: Callable[[ServerRequest], ServerResponse]) -> None:
        super().__init__(session=requests.Session())
        self.session.trust_env = False
        adapter = _MemoryAdapter(app)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)


class MemoryServer(_Scripted):
    """:class:`LocalServer` without the socket: pass :attr:`transport` to the client and
    use :attr:`url` as the base URL."""

    url = "http://memory.invalid"

    def __init__(self, app: Callable[[ServerRequest], ServerResponse] | None = None) -> None:
        super().__init__(app)
        self.transport = MemoryTransport(self._dispatch)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> MemoryServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------- clients
def make_client(backend: type | str, base_url: str | None, *, keys: Iterable[str] = ("test-key-1",),
                attempts: int = 4, concurrency: int = 4, deadline: float | None = 30.0,
                base_delay: float = 0.001, max_delay: float = 0.01, transport: Transport | None = None,
                plugin_manager: PluginManager | None = None, seed: int | None = 1,
                config: Mapping[str, Any] | None = None, **backend_fields: Any) -> Client:
    """The client a backend test wants: one backend, fast retries, the breaker out of the
    way (it is tested on its own), a fixed seed.

    ``backend`` is a Backend class (registered alone in a fresh plugin manager, so no
    installed plugin interferes) or a backend name (found through the installed plugins).
    ``config`` adds ``ClientConfig`` fields; other keyword arguments are ``BackendConfig``
    fields (``options``, ``batch_window``...).  Pass ``transport=server.transport`` of a
    :class:`MemoryServer` for a test without sockets.
    """
    from ipfs_accelerate_py.client import Client
    from ipfs_accelerate_py.config import BackendConfig, BreakerPolicy, ClientConfig, RetryPolicy
    from ipfs_accelerate_py.hookspecs import hookimpl
    from ipfs_accelerate_py.plugins import PluginManager

    if isinstance(backend, str):
        name = backend
    else:
        name = backend.name
        if plugin_manager is None:
            backend_class = backend

            class _Only:
                @staticmethod
                @hookimpl
                def accelerate_backends() -> list[type]:
                    return [backend_class]

            plugin_manager = PluginManager(load_entry_points=False)
            plugin_manager.add_plugin(_Only, name="only-" + name)
    cfg = ClientConfig(**{"max_concurrency": concurrency, "default_deadline": deadline,
                          "retry": RetryPolicy(base_delay=base_delay, max_delay=max_delay,
                                               max_attempts=attempts),
                          "breaker": BreakerPolicy(minimum_calls=1000, window_size=1000),
                          **(config or {})})
    return Client([BackendConfig(name=name, keys=list(keys), base_url=base_url, **backend_fields)],
                  cfg, plugin_manager=plugin_manager, seed=seed, transport=transport)


def hold_worker(server: _Scripted, client: Any, backend: str, operation: str,
                payload: Any = None, timeout: float = 10.0) -> threading.Event:
    """Occupy a client's only worker with one request that the server holds until the
    returned event is set, so requests submitted meanwhile queue up together (to test
    priorities or batching deterministically)."""
    release, started = threading.Event(), threading.Event()

    def held(req: ServerRequest) -> ServerResponse:
        started.set()
        release.wait(timeout)
        assert server.protocol is not None
        return server.protocol(req)

    server.script(held)
    client.submit(backend, operation, payload or {})
    if not started.wait(timeout):
        raise AssertionError("the held request never reached the server")
    return release


class ManualClock:
    """A clock that moves only when told, for ``Client(clock=...)``: the pipeline's
    deadlines, backoffs, breaker intervals and rate limits then follow ``advance`` and
    tests need no sleeps.  The client subscribes so that ``advance`` wakes its workers."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._listeners: list[Any] = []

    def __call__(self) -> float:
        return self._now

    def subscribe(self, callback: Any) -> None:
        with self._lock:
            self._listeners.append(callback)

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        with self._lock:
            self._now += seconds
            listeners = list(self._listeners)
        for wake in listeners:
            wake()
        return self._now


def fake_key(n: int = 1) -> str:
    """An obviously fake key for tests."""
    return f"test-key-{n}"


__all__ = ["LocalServer", "ManualClock", "MemoryServer", "MemoryTransport", "fake_key",
           "hold_worker", "make_client"]


# --------------------------------------------------------------------------- contracts
import json as _json
import subprocess as _subprocess
import sys as _sys
import threading as _threading
from typing import Any as _Any, ClassVar as _ClassVar

from ipfs_accelerate_py.server import CutConnection as _Cut


def _cut_after(response: ServerResponse, parts: int) -> ServerResponse:
    """The same streamed answer, with the connection dropped after ``parts`` chunks."""
    body = response.body
    if isinstance(body, (bytes, bytearray)):
        raise AssertionError("the protocol server did not stream this request")

    def gen() -> _Any:
        for i, chunk in enumerate(body):
            if i >= parts:
                raise _Cut()
            yield chunk

    return ServerResponse(response.status, dict(response.headers), gen())


class BackendContract:
    """The contract every backend plugin passes.  Subclass it in a test module and fill in
    the class attributes; pytest collects the inherited tests::

        class TestOpenAIContract(BackendContract):
            backend_class = OpenAIBackend
            server_class = OpenAIServer
            base_path = "/v1"
            samples = {"chat": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                       "models": {}}
            stream_sample = ("chat", {"model": "m", "messages": [...]})

    Every operation in ``samples`` must succeed against ``server_class``; ``stream_sample``
    (when the backend streams) must stream at least three chunks.  The suite checks, over
    real HTTP: each operation round-trips; the key is sent; a 429 in the provider's format
    is classified as rate limited and retried; a 5xx, an HTML page from a proxy, an empty
    body and malformed JSON are transient and retried; an auth error is not retried; a
    stream cut midway raises ``StreamError`` with the partial text; the key never shows in
    a repr or an error; importing the plugin module stays cheap.
    """

    backend_class: _ClassVar[type]
    server_class: _ClassVar[type]
    base_path: _ClassVar[str] = ""
    samples: _ClassVar[dict[str, dict]] = {}
    stream_sample: _ClassVar[tuple[str, dict] | None] = None
    keys: _ClassVar[tuple[str, ...]] = ("test-key-1",)
    options: _ClassVar[dict[str, _Any]] = {}
    #: The module holding the plugin's hooks (its entry point), checked for import cost.
    plugin_module: _ClassVar[str | None] = None
    #: Streamed operations (``{operation: payload}``) whose complete JSON answer -- from a
    #: server or proxy that does not stream -- must come back as a one-chunk stream, sent
    #: once and never retried.  None: ``stream_sample``'s operation alone.  ``{}`` declares
    #: that no streamed operation has a non-streamed answer (no ``parse_<operation>``).
    complete_json_samples: _ClassVar[dict[str, dict] | None] = None

    # -- fixtures --------------------------------------------------------------------
    import pytest as _pytest

    @_pytest.fixture
    def server(self) -> _Any:
        srv = LocalServer(self.server_class())
        yield srv
        srv.close()

    @_pytest.fixture
    def client(self, server: LocalServer) -> _Any:
        c = make_client(self.backend_class, server.url + self.base_path, keys=self.keys,
                        options=dict(self.options))
        yield c
        c.close(wait=False)

    def _first_sample(self) -> tuple[str, dict]:
        assert self.samples, "fill in BackendContract.samples"
        return next(iter(self.samples.items()))

    def _protocol_answer(self, req: ServerRequest) -> ServerResponse:
        return self.server_class().handle(req)

    def complete_json_answer(self, operation: str, whole: _Any) -> ServerResponse:
        """What a server that does not stream answers a streamed ``operation`` with: the
        non-streamed answer ``whole`` (a :class:`Result`) as it came.  Override where the
        protocol puts part of it in headers."""
        return ServerResponse.json(whole.raw)

    # -- tests -----------------------------------------------------------------------
    def test_declares_its_operations(self) -> None:
        cls = self.backend_class
        assert cls.name and cls.operations, "a backend needs a name and operations"
        for op in cls.operations:
            assert hasattr(cls, "build_" + op) or cls.build_request is not _base_build(), op
        for op in cls.streaming_operations:
            assert op in cls.operations, f"streaming operation {op!r} not in operations"
        assert set(self.samples) <= set(cls.operations)

    def test_every_sample_round_trips(self, client: _Any, server: LocalServer) -> None:
        from ipfs_accelerate_py.results import Result

        for op, payload in self.samples.items():
            server.clear()
            res = client.call(self.backend_class.name, op, payload)
            assert isinstance(res, Result), op
            assert res.attempts == 1 and res.backend == self.backend_class.name
            assert len(server.requests) >= 1, op

    def test_key_is_sent(self, client: _Any, server: LocalServer) -> None:
        op, payload = self._first_sample()
        client.call(self.backend_class.name, op, payload)
        sent = " ".join(server.last.headers.values()) + " " + " ".join(
            v for vs in server.last.query.values() for v in vs)
        assert self.keys[0] in sent

    def test_rate_limit_is_classified_and_retried(self, client: _Any, server: LocalServer) -> None:
        from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo

        op, payload = self._first_sample()
        proto = self.server_class()
        info = RateLimitInfo(limit_requests=60, remaining_requests=0, reset_requests=0.01,
                             retry_after=0.01)
        server.script(lambda req: proto.rate_limited(req, info))
        res = client.call(self.backend_class.name, op, payload)
        assert res.attempts == 2
        assert client.stats().backends[self.backend_class.name]["rate_limited"] == 1

    def test_bad_answers_are_transient_and_retried(self, client: _Any, server: LocalServer) -> None:
        op, payload = self._first_sample()
        bad = [
            lambda req: self.server_class().error(req, 503, "service unavailable"),
            ServerResponse.text("<html><body>502 Bad Gateway</body></html>", 502, "text/html"),
            ServerResponse(200, {"Content-Type": "application/json"}, b""),
            ServerResponse(200, {"Content-Type": "application/json"}, b'{"truncated": '),
        ]
        for answer in bad:
            server.clear()
            server.script(answer)
            res = client.call(self.backend_class.name, op, payload)
            assert res.attempts == 2, answer

    def test_auth_error_is_not_retried(self, client: _Any, server: LocalServer) -> None:
        from ipfs_accelerate_py.errors import AuthError

        op, payload = self._first_sample()
        server.script(lambda req: self.server_class().error(req, 401, "invalid api key"))
        with self._pytest.raises(AuthError) as info:
            client.call(self.backend_class.name, op, payload)
        assert len(server.requests) == 1
        for text in (str(info.value), repr(info.value)):
            for key in self.keys:
                assert key not in text

    def test_stream_round_trips_and_cut_raises(self, client: _Any, server: LocalServer) -> None:
        from ipfs_accelerate_py.errors import StreamError

        if self.stream_sample is None:
            self._assert_does_not_stream(client, server)
            return
        op, payload = self.stream_sample
        whole = client.stream(self.backend_class.name, op, payload).collect()
        assert whole.text
        server.script(lambda req: _cut_after(self._protocol_answer(req), 2))
        stream = client.stream(self.backend_class.name, op, payload)
        with self._pytest.raises(StreamError) as info:
            for _ in stream:
                pass
        assert whole.text.startswith(info.value.partial_text)
        assert len(info.value.partial_text) < len(whole.text)

    def _assert_does_not_stream(self, client: _Any, server: LocalServer) -> None:
        """Without ``stream_sample`` the backend must say it streams nothing, and asking it
        to stream must fail with a typed error before anything is sent."""
        from ipfs_accelerate_py.errors import InvalidRequest

        assert not self.backend_class.streaming_operations, "set stream_sample"
        op, payload = self._first_sample()
        with self._pytest.raises(InvalidRequest, match="does not stream"):
            client.stream(self.backend_class.name, op, payload).collect()
        assert server.requests == []

    def test_a_complete_json_answer_to_a_stream_is_one_chunk(self, client: _Any,
                                                             server: LocalServer) -> None:
        if self.stream_sample is None:
            self._assert_does_not_stream(client, server)
            return
        samples = (self.complete_json_samples if self.complete_json_samples is not None
                   else dict([self.stream_sample]))
        if not samples:
            from ipfs_accelerate_py.backend import Backend

            for op in self.backend_class.streaming_operations:
                parse = getattr(self.backend_class, "parse_" + op, None)
                assert parse is None or parse is getattr(Backend, "parse_" + op, None), (
                    f"{op!r} has a non-streamed answer: name it in complete_json_samples")
            return
        name = self.backend_class.name
        for op, payload in samples.items():
            server.clear()
            whole = client.call(name, op, payload)
            assert whole.text, op
            server.script(self.complete_json_answer(op, whole))
            stream = client.stream(name, op, payload)
            chunks = list(stream)
            streamed = stream.collect()
            assert _asked_to_stream(server.last) and not _asked_to_stream(server.requests[0]), op
            assert len(server.requests) == 2, op  # the streamed request went out once
            assert len(chunks) == 1 and chunks[0].raw == whole.raw, op
            assert (streamed.text, streamed.usage) == (whole.text, whole.usage), op
            assert streamed.finish_reason == (whole.finish_reason or "stop"), op
            assert streamed.attempts == 1, op

    def test_stream_failure_before_first_chunk_is_retried(self, client: _Any, server: LocalServer) -> None:
        if self.stream_sample is None:
            self._assert_does_not_stream(client, server)
            return
        op, payload = self.stream_sample
        server.script(lambda req: self.server_class().error(req, 503, "unavailable"))
        stream = client.stream(self.backend_class.name, op, payload)
        assert stream.attempts == 2
        assert stream.collect().text

    def test_secrets_never_shown(self, client: _Any) -> None:
        backend = client.backends[self.backend_class.name]
        shown = repr(backend) + repr(client) + _json.dumps(client.stats().to_dict(), default=str)
        for key in self.keys:
            assert key not in shown

    def test_plugin_import_is_cheap(self) -> None:
        if not self.plugin_module:
            # Only a backend that is no installed plugin (a test's own) may leave it out.
            from importlib import metadata

            installed = {ep.name for ep in metadata.entry_points(group="ipfs_accelerate")}
            assert self.backend_class.name not in installed, "set plugin_module"
            return
        code = (f"import sys; import {self.plugin_module}; "
                "print(','.join(m for m in ('requests', 'urllib3') if m in sys.modules))")
        out = _subprocess.run([_sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, check=True).stdout.strip()
        assert out == "", f"importing {self.plugin_module} pulled in {out}"


def _asked_to_stream(req: ServerRequest) -> bool:
    """Whether a request asked for a stream: ``"stream": true`` in its body, or a
    streaming route (``:streamGenerateContent``...)."""
    try:
        body = _json.loads(req.body) if req.body else {}
    except ValueError:
        body = {}
    return (isinstance(body, dict) and body.get("stream") is True) or "stream" in req.path


def _base_build() -> _Any:
    from ipfs_accelerate_py.backend import Backend

    return Backend.build_request


class StrategyContract:
    """The contract every key-selection strategy passes.  Subclass it and set
    ``strategy_factory`` (what the plugin registers)."""

    strategy_factory: _ClassVar[_Any]

    @staticmethod
    def _candidates(n: int, in_flight: list[int] | None = None) -> list[_Any]:
        from ipfs_accelerate_py.keys import ApiKey
        from ipfs_accelerate_py.selection import KeyCandidate

        class _Limiter:
            def headroom(self, now: float) -> float:
                return 1.0

        out = []
        for i in range(n):
            c = KeyCandidate(ApiKey(secret=f"test-key-{i}", name=f"k{i}"), i, 4, _Limiter())
            c.in_flight = (in_flight or [0] * n)[i]
            out.append(c)
        return out

    def test_picks_only_among_candidates(self) -> None:
        from ipfs_accelerate_py.request import Request

        s = self.strategy_factory()
        all_keys = self._candidates(5)
        for subset in ([all_keys[1]], all_keys[2:4], all_keys):
            for _ in range(10):
                assert s.select(Request("op"), subset) in subset

    def test_fair_over_time(self) -> None:
        from ipfs_accelerate_py.request import Request

        s = self.strategy_factory()
        keys = self._candidates(4)
        counts = {k.key_id: 0 for k in keys}
        for _ in range(400):
            k = s.select(Request("op"), keys)
            k.dispatched += 1
            counts[k.key_id] += 1
        assert max(counts.values()) - min(counts.values()) <= 4, counts

    def test_thread_safe(self) -> None:
        """``select`` called from 8 threads at once, released together by a barrier, with
        the interpreter switching threads as often as it can: every answer must still be
        one of the candidates and no call may raise."""
        from ipfs_accelerate_py.request import Request

        s = self.strategy_factory()
        keys = self._candidates(3)
        errors: list[BaseException] = []
        picked = [0] * 8
        start = _threading.Barrier(8)

        def run(i: int) -> None:
            try:
                start.wait(10)
                for _ in range(2000):
                    assert s.select(Request("op"), keys) in keys
                    picked[i] += 1
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        old = _sys.getswitchinterval()
        _sys.setswitchinterval(1e-6)
        try:
            threads = [_threading.Thread(target=run, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            _sys.setswitchinterval(old)
        assert not errors, errors[:3]
        assert not any(t.is_alive() for t in threads)
        assert picked == [2000] * 8


__all__ += ["BackendContract", "StrategyContract"]
