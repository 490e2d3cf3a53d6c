"""The simulator's asyncio HTTP/1.1 server, over real sockets."""

from __future__ import annotations

import json
import socket
import threading
from typing import Iterator

import pytest
import requests

from ipfs_accelerate_py.server import CutConnection, ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_sim import SimConfig, Simulator


class WireServer(ProtocolServer):
    """A protocol that shows what the server received."""

    name = "wire"

    @route("POST", "/echo")
    def echo(self, req: ServerRequest) -> ServerResponse:
        return ServerResponse.json({"body": req.body.decode(), "path": req.path,
                                    "query": {k: v for k, v in req.query.items()},
                                    "key": req.bearer_token()})

    @route("GET", "/stream")
    def stream(self, req: ServerRequest) -> ServerResponse:
        n = int(req.arg("n", "3") or 3)
        cut = req.arg("cut")

        def gen() -> Iterator[bytes]:
            for i in range(n):
                if cut is not None and i >= int(cut):
                    raise CutConnection()
                yield f"data: {i}\n\n".encode()

        return ServerResponse.stream(gen())

    @route("GET", "/boom")
    def boom(self, req: ServerRequest) -> ServerResponse:
        raise RuntimeError("bug in a protocol server")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(), servers={"wire": WireServer()}) as s:
        yield s


def _raw(sim: Simulator, data: bytes, reads: int = 1) -> bytes:
    with socket.create_connection((sim.host, sim.port), timeout=5) as s:
        s.sendall(data)
        out = b""
        s.settimeout(5)
        while out.count(b"HTTP/1.1 ") < reads or not _complete(out, reads):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def _complete(out: bytes, reads: int) -> bool:
    # each response here has a Content-Length; check the last body arrived
    parts = out.split(b"HTTP/1.1 ")[1:]
    if len(parts) < reads:
        return False
    last = b"HTTP/1.1 " + parts[-1]
    head, sep, body = last.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def test_prefix_is_stripped_and_query_kept(sim: Simulator) -> None:
    r = requests.post(sim.url + "/wire/echo?a=1&b=x", data=b"hello",
                      headers={"Authorization": "Bearer test-key-1"})
    assert r.status_code == 200
    assert r.json() == {"body": "hello", "path": "/echo", "query": {"a": ["1"], "b": ["x"]},
                        "key": "test-key-1"}


def test_keep_alive_serves_sequential_requests_on_one_socket(sim: Simulator) -> None:
    with socket.create_connection((sim.host, sim.port), timeout=5) as s:
        for i in range(3):
            body = str(i).encode()
            s.sendall(b"POST /wire/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
            data = b""
            while not _complete(data, 1):
                data += s.recv(65536)
            assert json.loads(data.partition(b"\r\n\r\n")[2])["body"] == str(i)
            assert b"Connection: close" not in data


def test_chunked_request_body(sim: Simulator) -> None:
    def body() -> Iterator[bytes]:
        yield b"abc"
        yield b"defgh"

    r = requests.post(sim.url + "/wire/echo", data=body())
    assert r.json()["body"] == "abcdefgh"


def test_pipelined_requests_answered_in_order(sim: Simulator) -> None:
    reqs = b"".join(
        b"POST /wire/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(p), p)
        for p in (b"one", b"two", b"three"))
    out = _raw(sim, reqs, reads=3)
    bodies = [json.loads(part.partition(b"\r\n\r\n")[2])["body"]
              for part in out.split(b"HTTP/1.1 ")[1:]]
    assert bodies == ["one", "two", "three"]


def test_expect_continue(sim: Simulator) -> None:
    with socket.create_connection((sim.host, sim.port), timeout=5) as s:
        s.sendall(b"POST /wire/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"body")
        data = b""
        while b'"body"' not in data:
            data += s.recv(65536)
        assert b"HTTP/1.1 200 OK" in data


def test_streamed_response_is_chunked(sim: Simulator) -> None:
    r = requests.get(sim.url + "/wire/stream?n=4", stream=True)
    assert r.headers["Transfer-Encoding"] == "chunked"
    assert r.content == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n"


def test_cut_stream_drops_the_connection(sim: Simulator) -> None:
    r = requests.get(sim.url + "/wire/stream?n=5&cut=2", stream=True)
    got = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in r.iter_content(None):
            got += chunk
    assert got == b"data: 0\n\ndata: 1\n\n"


def test_connection_close_and_http10(sim: Simulator) -> None:
    out = _raw(sim, b"POST /wire/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    b"Content-Length: 1\r\n\r\nz")
    assert b"Connection: close" in out
    out = _raw(sim, b"POST /wire/echo HTTP/1.0\r\nContent-Length: 1\r\n\r\nq")
    assert out.startswith(b"HTTP/1.1 200 OK") and b'"body":"q"' in out


def test_malformed_request_gets_400(sim: Simulator) -> None:
    out = _raw(sim, b"NONSENSE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")


def test_protocol_bug_is_a_500_not_a_hang(sim: Simulator) -> None:
    r = requests.get(sim.url + "/wire/boom", timeout=5)
    assert r.status_code == 500
    assert "RuntimeError" in r.text
    assert sim.stats()["protocol_server_errors"] >= 1


def test_unknown_mount_is_404_json(sim: Simulator) -> None:
    r = requests.get(sim.url + "/nope/v1/x")
    assert r.status_code == 404
    assert "wire" in r.json()["error"]["message"]


def test_many_concurrent_clients(sim: Simulator) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with requests.Session() as s:
                for i in range(20):
                    assert s.post(sim.url + "/wire/echo", data=f"{n}-{i}").json()["body"] == f"{n}-{i}"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_large_body_arriving_in_pieces(sim: Simulator) -> None:
    body = b"x" * (3 * 1024 * 1024)

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(body), 4096):
            yield body[i:i + 4096]

    r = requests.post(sim.url + "/wire/echo", data=body)
    assert len(r.json()["body"]) == len(body)
    r = requests.post(sim.url + "/wire/echo", data=pieces())  # chunked, 768 chunks
    assert len(r.json()["body"]) == len(body)
