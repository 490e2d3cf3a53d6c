"""A recording, fault-injecting HTTP proxy in front of the real S3 server (moto).

It is a LocalServer (so it records every request it receives) whose app forwards to moto,
except where a rule says otherwise: answer with an S3 error instead, cut the body midway,
or corrupt a byte.  Rules match on the request and fire a limited number of times.
"""

from __future__ import annotations

import threading
from typing import Callable
from urllib.parse import quote

import requests
from ipfs_accelerate_py.server import ServerRequest, ServerResponse, iter_chunks
from ipfs_accelerate_sim.testing import LocalServer

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
        "accept-encoding", "te", "upgrade"}

Match = Callable[[ServerRequest], bool]


def s3_error(status: int, code: str, message: str = "injected") -> ServerResponse:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>INJECTED{status}</RequestId></Error>")
    return ServerResponse(status, {"Content-Type": "application/xml",
                                   "x-amz-request-id": f"INJECTED{status}"}, body.encode())


class S3Proxy(LocalServer):
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self._session = requests.Session()
        self._rules: list[list] = []  # [match, action, remaining]
        self._rules_lock = threading.Lock()
        super().__init__(self._forward)

    # -- rules -------------------------------------------------------------------------
    def on(self, match: Match, action: Callable[[ServerRequest], ServerResponse],
           times: int = 1) -> S3Proxy:
        with self._rules_lock:
            self._rules.append([match, action, times])
        return self

    def fail(self, match: Match, response: ServerResponse, times: int = 1) -> S3Proxy:
        return self.on(match, lambda req: response, times)

    def cut_body(self, match: Match, keep: int, times: int = 1, declared: bool = True) -> S3Proxy:
        """Forward, then send only ``keep`` body bytes and drop the connection.  With
        ``declared`` the full Content-Length is announced; otherwise chunked and cut."""
        def action(req: ServerRequest) -> ServerResponse:
            upstream = self._upstream(req)
            if declared:
                upstream.headers["Content-Length"] = str(len(upstream.body))
                upstream.headers["Connection"] = "close"
                upstream.body = upstream.body[:keep]
                return upstream
            upstream.headers.pop("Content-Length", None)
            body = upstream.body
            upstream.body = iter_chunks([body[:keep], body[keep:]], cut_after=1)
            return upstream
        return self.on(match, action, times)

    def corrupt_body(self, match: Match, times: int = 1) -> S3Proxy:
        def action(req: ServerRequest) -> ServerResponse:
            upstream = self._upstream(req)
            body = bytearray(upstream.body)
            body[len(body) // 2] ^= 0xFF
            upstream.body = bytes(body)
            return upstream
        return self.on(match, action, times)

    # -- forwarding --------------------------------------------------------------------
    def _forward(self, req: ServerRequest) -> ServerResponse:
        with self._rules_lock:
            for rule in self._rules:
                if rule[2] > 0 and rule[0](req):
                    rule[2] -= 1
                    action = rule[1]
                    break
            else:
                action = None
        if action is not None:
            return action(req)
        return self._upstream(req)

    def _upstream(self, req: ServerRequest) -> ServerResponse:
        query = "&".join(quote(k, safe="-_.~") + ("=" + quote(v, safe="-_.~") if v else "")
                         for k, vs in req.query.items() for v in vs)
        url = self.target + req.path + ("?" + query if query else "")  # path arrives encoded
        headers = {k: v for k, v in req.headers.items() if k not in _HOP}
        resp = self._session.request(req.method, url, headers=headers, data=req.body,
                                     stream=True, allow_redirects=False)
        body = resp.raw.read(decode_content=False) if req.method != "HEAD" else b""
        out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
        if req.method == "HEAD" and "Content-Length" in resp.headers:
            out["Content-Length"] = resp.headers["Content-Length"]
        resp.close()
        return ServerResponse(resp.status_code, out, body)

    def close(self) -> None:
        super().close()
        self._session.close()


def is_op(method: str, *, query: str | None = None, path_contains: str | None = None) -> Match:
    def match(req: ServerRequest) -> bool:
        return (req.method == method and (query is None or query in req.query)
                and (path_contains is None or path_contains in req.path))
    return match


def is_part(number: int) -> Match:
    def match(req: ServerRequest) -> bool:
        return req.method == "PUT" and req.query.get("partNumber") == [str(number)]
    return match
