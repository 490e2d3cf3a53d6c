"""No secret anywhere: random keys and credential-bearing base URLs pushed through every
output of the pipeline (reprs, errors, events, DEBUG logs with urllib3's, stats, the
Prometheus text, Redis keys and values, batch outputs and journal with its WAL, and
tracebacks formatted with their locals), plus one key -> one id -> one Redis bucket for the
CLI and the library."""

from __future__ import annotations

import json
import logging
import os
import socket
import string
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any
from unittest import mock

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from ipfs_accelerate_py import BackendConfig, BreakerPolicy, Client, ClientConfig, Request, RetryPolicy, hookimpl
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.plugins import PluginManager
from ipfs_accelerate_py.server import ServerResponse
from ipfs_accelerate_sim.testing import LocalServer
from ipfs_accelerate_redis import RedisStatePlugin, RedisStateStore

tokens = st.text(alphabet=string.ascii_letters + string.digits, min_size=10, max_size=30)


class Events:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl
    def accelerate_on_queued(self, event):
        self.seen.append(event)

    @hookimpl
    def accelerate_on_started(self, event):
        self.seen.append(event)

    @hookimpl
    def accelerate_on_retried(self, event):
        self.seen.append(event)

    @hookimpl
    def accelerate_on_finished(self, event):
        self.seen.append(event)

    @hookimpl
    def accelerate_on_breaker_changed(self, event):
        self.seen.append(event)


def _leaky_app(req):
    """Echoes whatever credential it was sent, and the full URL, in every error."""
    auth = req.header("authorization") or ""
    where = f"{req.path}?{'&'.join(f'{k}={v[0]}' for k, v in req.query.items())}"
    n = (req.json() or {}).get("n") if req.body else None
    if n == 1:
        return ServerResponse.json({"echo": {"n": 1}, "usage": {"total_tokens": 3}})
    if n == 2:
        return ServerResponse.json({"error": {"message": f"rejected {auth} at {where}",
                                              "code": "invalid_api_key"}}, status=401)
    if n == 3:
        return ServerResponse.text(f"upstream failure for {auth} at {where}", status=502)
    return ServerResponse.json({"error": f"not found: {where} ({auth})"}, status=404)


def _attempt(client: Client, n: int) -> Any:
    """Its own frame, so a traceback's captured locals are the pipeline's, not the test's."""
    try:
        return client.call("echo", "echo", {"n": n}, deadline=15)
    except Exception as exc:  # noqa: BLE001 - every error is inspected
        return exc


def _error_texts(exc: BaseException) -> list[str]:
    tb = traceback.TracebackException.from_exception(exc, capture_locals=True)
    return [str(exc), repr(exc), "".join(tb.format()), repr(vars(exc))]


def _dump_redis(r: redis.Redis) -> str:
    out = []
    for name in r.scan_iter(match="*", count=1000):
        kind = r.type(name).decode()
        if kind == "string":
            value: Any = r.get(name)
        elif kind == "hash":
            value = r.hgetall(name)
        elif kind == "zset":
            value = r.zrange(name, 0, -1, withscores=True)
        elif kind == "list":
            value = r.lrange(name, 0, -1)
        elif kind == "set":
            value = r.smembers(name)
        elif kind == "stream":
            value = r.xrange(name)
        else:
            value = kind
        out.append(f"{name!r} {value!r}")
    return "\n".join(out)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key_tok=tokens, pw_tok=tokens, q_tok=tokens, user_tok=tokens)
def test_no_secret_in_any_output(key_tok, pw_tok, q_tok, user_tok, redis_url, namespace,
                                 echo_backend_module, caplog, capsys, tmp_path_factory) -> None:
    from ipfs_accelerate_prometheus import plugin as prom_plugin
    from ipfs_accelerate_prometheus.collector import ClientCollector

    key, pw, qv, user = f"test-key-{key_tok}", f"pw-{pw_tok}", f"qv-{q_tok}", f"user-{user_tok}"
    secrets = [key, pw, qv, user]
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "ipfs_accelerate", "ipfs_accelerate.redis"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    texts: list[str] = []
    store = RedisStateStore(redis_url, namespace=namespace, socket_timeout=5.0)
    events = Events()
    pm = PluginManager(load_entry_points=False)
    pm.add_plugin(echo_backend_module, name="echo")
    pm.add_plugin(RedisStatePlugin(store=store), name="redis")
    pm.add_plugin(prom_plugin, name="prometheus")
    pm.add_plugin(events, name="events")
    with LocalServer(_leaky_app) as srv:
        port = srv.url.rsplit(":", 1)[1]
        bases = [f"http://{user}:{pw}@127.0.0.1:{port}",          # user info (Basic auth)
                 srv.url,                                          # the key as a bearer
                 f"http://127.0.0.1:{port}/v1?token={qv}",         # a query credential
                 f"http://{user}:{pw}@127.0.0.1:{_closed_port()}/x?key={qv}"]  # unreachable
        for base in bases:
            cfg = BackendConfig("echo", keys=[ApiKey(key)], base_url=base,
                                requests_per_minute=6000)
            client = Client([cfg], ClientConfig(
                retry=RetryPolicy(max_attempts=2, base_delay=0.001), default_deadline=20,
                breaker=BreakerPolicy(minimum_calls=1000), state_store=store), plugin_manager=pm)
            with client:
                outcomes = [_attempt(client, n) for n in (1, 2, 3, 4)]
                backend = client.backends["echo"]
                http = backend.build_request(Request("echo", {"n": 1}, backend="echo"), ApiKey(key))
                texts += [repr(client), str(client), repr(backend), backend.endpoint_id(),
                          repr(cfg), str(cfg), repr(http), str(http), repr(http.auth),
                          json.dumps(client.stats().to_dict(), default=str),
                          client.stats().table()]
                registry = CollectorRegistry()
                registry.register(ClientCollector(client))
                texts += [generate_latest(registry).decode(), generate_latest(REGISTRY).decode()]
            for o in outcomes:
                texts += _error_texts(o) if isinstance(o, BaseException) else [repr(o), str(o.raw)]
        assert any(isinstance(o, BaseException) for o in outcomes)
    texts += [repr(e) for e in events.seen]
    texts.append(_dump_redis(store.redis))
    store.close()
    texts += batch_outputs(key, tmp_path_factory.mktemp("batch"), redis_url, capsys)
    texts.append(caplog.text)
    assert "urllib3.connectionpool" in caplog.text or "Starting new HTTP" in caplog.text
    blob = "\n".join(texts)
    for s in secrets:
        assert s not in blob, s
    assert "***" in blob  # the leaky server's echoes were redacted, not avoided


def batch_outputs(key: str, tmp: Path, redis_url: str, capsys) -> list[str]:
    """The single-process batch (output, errors file, journal and its WAL) and the
    distributed batch used as a library, against a server that quotes the key."""
    from ipfs_accelerate_openai.server import OpenAIServer
    from ipfs_accelerate_py.cli import main
    from ipfs_accelerate_redis.batch import run_distributed_batch

    class Leaky(OpenAIServer):
        def _authenticate(self, req):  # type: ignore[override]
            body = req.json() if req.body else {}
            if body.get("model") == "leak":
                return ServerResponse.json({"error": {"message": f"bad key {self.key_of(req)}",
                                                      "type": "invalid_request_error",
                                                      "code": "invalid_api_key"}}, 401)
            return super()._authenticate(req)

    inp = tmp / "in.jsonl"
    lines = [{"id": f"r{i}", "backend": "openai", "operation": "chat",
              "payload": {"model": "leak" if i % 2 else "gpt-4o-mini",
                          "messages": [{"role": "user", "content": f"hi {i}"}]}} for i in range(4)]
    inp.write_text("".join(json.dumps(x) + "\n" for x in lines))
    texts = []
    with LocalServer(Leaky()) as srv, mock.patch.dict(os.environ, {"OPENAI_API_KEY": key}):
        out = tmp / "out.jsonl"
        code = main(["batch", str(inp), "-o", str(out), "--base-url", srv.url + "/v1",
                     "--no-progress"] if _has_flag("--no-progress") else
                    ["batch", str(inp), "-o", str(out), "--base-url", srv.url + "/v1"])
        assert code == 1  # the leaking lines failed, the others succeeded
        cap = capsys.readouterr()
        texts += [cap.out, cap.err]
        for p in tmp.iterdir():  # output, errors file, journal, -wal, -shm
            texts.append(p.read_bytes().decode("utf-8", "replace"))
        client = Client([BackendConfig("openai", keys=[ApiKey(key)], base_url=srv.url + "/v1")],
                        ClientConfig(retry=RetryPolicy(max_attempts=1)))
        out2 = tmp / "dist.jsonl"
        run_distributed_batch(inp, out2, redis_url, client=client, show_progress=False)
        client.close()
        texts.append(out2.read_text())
        texts.append(_dump_redis(redis.Redis.from_url(redis_url)))
        cap = capsys.readouterr()
        texts += [cap.out, cap.err]
    assert any('"ok": true' in t for t in texts) and any("bad key ***" in t for t in texts)
    return texts


def _has_flag(flag: str) -> bool:
    from ipfs_accelerate_py import cli

    return flag in Path(cli.__file__).read_text()


def test_cli_and_library_give_one_key_one_id_and_one_redis_bucket(
        redis_url, namespace, tmp_path) -> None:
    """A key in OPENAI_API_KEY_2 for the CLI and passed directly to the library: one id,
    hence one limiter bucket in the shared Redis."""
    from ipfs_accelerate_openai.server import OpenAIServer

    key = "test-key-shared-bucket-1"
    env = {k: v for k, v in os.environ.items() if "API_KEY" not in k}
    env.update({"OPENAI_API_KEY_2": key, "IPFS_ACCELERATE_STATE_STORE": redis_url,
                "IPFS_ACCELERATE_REDIS_NAMESPACE": namespace,
                "IPFS_ACCELERATE_KEY_ID_SECRET": "deployment-secret-1"})
    with LocalServer(OpenAIServer()) as srv, mock.patch.dict(os.environ, {
            "IPFS_ACCELERATE_KEY_ID_SECRET": "deployment-secret-1"}):
        inp = tmp_path / "in.jsonl"
        inp.write_text(json.dumps({"id": "a", "backend": "openai", "operation": "chat", "payload": {
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}) + "\n")
        r = subprocess.run([sys.executable, "-m", "ipfs_accelerate_py.cli", "batch", str(inp),
                            "-o", str(tmp_path / "out.jsonl"), "--base-url", srv.url + "/v1",
                            "--rpm", "600"], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        conn = redis.Redis.from_url(redis_url)
        cli_limiters = {k.decode() for k in conn.scan_iter(match=f"{namespace}:limiter:*")}
        assert cli_limiters and all(key not in k for k in cli_limiters)
        store = RedisStateStore(redis_url, namespace=namespace, socket_timeout=5.0)
        pm = PluginManager()
        pm.add_plugin(RedisStatePlugin(store=store), name="redis-test")
        with Client([BackendConfig("openai", keys=[key], base_url=srv.url + "/v1",
                                   requests_per_minute=600)], ClientConfig(state_store=store),
                    plugin_manager=pm) as client:
            client.call("openai", "chat", {"model": "gpt-4o-mini",
                                           "messages": [{"role": "user", "content": "hi"}]})
            (scope,) = client.stats().keys
        store.close()
        lib_limiters = {k.decode() for k in conn.scan_iter(match=f"{namespace}:limiter:*")}
        assert lib_limiters == cli_limiters  # the library used the CLI's bucket, made no other
        assert any(k.endswith(scope) for k in lib_limiters), (scope, lib_limiters)
        assert scope == "openai/" + ApiKey(key).key_id
