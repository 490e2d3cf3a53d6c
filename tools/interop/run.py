"""Run the backends against real servers on 127.0.0.1 and write ``docs/interop.md``.

Servers (installed from PyPI into .venv by ``python3 dev.py interop``):

- llama-cpp-python's OpenAI-compatible server (``llama-cpp-python[server]``, built without
  native CPU flags) with a tiny GGUF model of ours (``tiny_gguf.py``);
- KServe's ``ModelServer`` (``kserve``) with a tiny model of ours (``kserve_model.py``);
- moto's S3 server (``moto[server]``).

Each backend operation is called through the public ``Client``; a row records the server,
its version, the backend, the operation and the result (``pass`` or the error).
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import requests

from ipfs_accelerate_py import BackendConfig, Client, ClientConfig, RetryPolicy

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
Row = tuple[str, str, str, str, str]  # server, version, backend, operation, result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(name: str, argv: list[str], ready_url: str, log: Path,
          timeout: float = 120.0) -> Iterator[None]:
    """Start a server process, wait until ``ready_url`` answers 200, stop it at the end."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            end = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}")
                try:
                    if requests.get(ready_url, timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > end:
                    raise RuntimeError(f"{name} not ready after {timeout:.0f} s; see {log}")
                time.sleep(0.3)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def client(backend: str, base_url: str, keys: list[Any] | None = None, **options: Any) -> Client:
    return Client([BackendConfig(name=backend, base_url=base_url, keys=keys or [],
                                 options=options, batch_window=0.05)],
                  ClientConfig(default_deadline=60.0, max_concurrency=4,
                               retry=RetryPolicy(max_attempts=2, base_delay=0.1)))


class Table:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def check(self, server: str, version: str, backend: str, operation: str,
              fn: Callable[[], Any]) -> None:
        try:
            note = fn()
            result = "pass" + (f" ({note})" if note else "")
        except Exception as exc:  # recorded, not raised: one failure must not hide the rest
            result = f"FAIL: {type(exc).__name__}: {str(exc)[:300]}"
            traceback.print_exc()
        print(f"{server:18} {backend:8} {operation:28} {result}", flush=True)
        self.rows.append((server, version, backend, operation, result.replace("|", "\\|")))


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


# ------------------------------------------------------------------ llama.cpp
CHAT = [{"role": "user", "content": "hello world"}]
GEN = {"max_tokens": 8, "temperature": 0.0, "seed": 1}


def llama_checks(t: Table, url: str) -> None:
    server, version = "llama-cpp-python", md.version("llama-cpp-python")
    v1 = url + "/v1"

    def openai_like(backend: str, base: str, **opts: Any) -> None:
        # send_request_id=False: see NOTES.md (llama-cpp-python's X-Request-ID must be a UUID)
        with client(backend, base, keys=["test-key-1"], send_request_id=False, **opts) as c:
            def chat() -> str:
                r = c.call(backend, "chat", {"model": "tiny", "messages": CHAT, **GEN})
                expect(r.usage is not None and r.usage.completion_tokens > 0, "usage")
                return f"{r.usage.completion_tokens} tokens, finish {r.finish_reason}"

            def chat_stream() -> str:
                s = c.stream(backend, "chat", {"model": "tiny", "messages": CHAT, **GEN})
                chunks = list(s)
                r = s.collect()
                expect(r.finish_reason is not None, "finish_reason")
                return f"{len(chunks)} chunks"

            t.check(server, version, backend, "chat", chat)
            t.check(server, version, backend, "chat (stream)", chat_stream)
            if backend in ("openai", "ovms"):
                def completions() -> str:
                    r = c.call(backend, "completions", {"model": "tiny", "prompt": "hello", **GEN})
                    expect(isinstance(r.text, str), "text")
                    return f"finish {r.finish_reason}"

                def completions_stream() -> str:
                    s = c.stream(backend, "completions", {"model": "tiny", "prompt": "hello", **GEN})
                    return f"{len(list(s))} chunks"

                t.check(server, version, backend, "completions", completions)
                t.check(server, version, backend, "completions (stream)", completions_stream)
            if backend in ("openai", "opea", "ovms"):
                def embeddings() -> str:
                    r = c.call(backend, "embeddings", {"model": "tiny-embed",
                                                       "input": ["hello", "the world", "a"]})
                    expect(len(r.data) == 3 and len({len(v) for v in r.data}) == 1, "3 vectors")
                    return f"3 inputs -> 3 vectors of {len(r.data[0])}"

                t.check(server, version, backend, "embeddings (3 inputs)", embeddings)
            if backend in ("openai", "groq"):
                def models() -> str:
                    r = c.call(backend, "models", {})
                    ids = sorted(m["id"] for m in r.data)
                    expect("tiny" in ids, f"tiny in {ids}")
                    return ", ".join(ids)

                t.check(server, version, backend, "models", models)

    openai_like("openai", v1)
    openai_like("groq", v1)  # a base URL with a path is used as given
    openai_like("opea", v1)
    # OVMS's OpenAI-compatible routes on their own base URL
    openai_like("ovms", "http://127.0.0.1:9", openai_base_url=v1)

    def missing_prefix() -> str:
        with client("openai", url, keys=["test-key-1"]) as c:
            try:
                c.call("openai", "chat", {"model": "tiny", "messages": CHAT, **GEN})
            except Exception as exc:
                expect("/v1" in str(exc) and "HTTP 404 from POST" in str(exc), str(exc))
                return "404 names the URL tried and the missing /v1"
        raise AssertionError("no error")

    t.check(server, version, "openai", "base URL without /v1", missing_prefix)

    def default_request_id() -> str:
        # Evidence for NOTES.md: the server's answer to our default X-Request-ID.
        with client("opea", v1) as c:
            try:
                c.call("opea", "chat", {"model": "tiny", "messages": CHAT, **GEN})
            except Exception as exc:
                expect("400" in str(exc), str(exc))
                return f"server limit: {str(exc).split(' (')[0]} (it wants a UUID; see notes)"
        return "the default request id is accepted"

    t.check(server, version, "opea", "chat, default X-Request-ID", default_request_id)

    def tgi_chat() -> str:
        with client("hf_tgi", url, send_request_id=False) as c:
            r = c.call("hf_tgi", "chat", {"model": "tiny", "messages": CHAT, **GEN})
            return f"finish {r.finish_reason}"

    t.check(server, version, "hf_tgi", "chat (OpenAI route)", tgi_chat)


# ------------------------------------------------------------------ KServe
ROW = {"name": "x", "datatype": "FP32"}


def kserve_checks(t: Table, url: str) -> None:
    server, version = "kserve ModelServer", md.version("kserve")
    with client("ovms", url, model="doubler") as c:
        t.check(server, version, "ovms", "live", lambda: c.call("ovms", "live", {}) and None)
        t.check(server, version, "ovms", "ready", lambda: c.call("ovms", "ready", {}) and None)
        t.check(server, version, "ovms", "server_metadata",
                lambda: c.call("ovms", "server_metadata", {}).data["version"])
        t.check(server, version, "ovms", "model_metadata",
                lambda: c.call("ovms", "model_metadata", {}).data["name"])
        t.check(server, version, "ovms", "model_ready",
                lambda: c.call("ovms", "model_ready", {}) and None)

        def infer() -> str:
            r = c.call("ovms", "infer", {"inputs": [{**ROW, "shape": [2, 2], "data": [1, 2, 3, 4]}],
                                         "batch": False})
            expect(r.data[0]["data"] == [2, 4, 6, 8], str(r.data))
            return "[[1,2],[3,4]] -> [[2,4],[6,8]]"

        def infer_coalesced() -> str:
            futs = [c.submit("ovms", "infer", {"inputs": [{**ROW, "shape": [1, 2], "data": [i, i]}]})
                    for i in range(1, 6)]
            rows = [f.result(30).data[0]["data"] for f in futs]
            expect(rows == [[2 * i, 2 * i] for i in range(1, 6)], str(rows))
            return "5 single-row requests split back in order"

        def predict() -> str:
            r = c.call("ovms", "predict", {"instances": [[1, 2], [3, 4]]})
            expect(r.data == [[2, 4], [6, 8]], str(r.data))
            return "v1 instances"

        t.check(server, version, "ovms", "infer", infer)
        t.check(server, version, "ovms", "infer (coalesced)", infer_coalesced)
        t.check(server, version, "ovms", "predict (v1 instances)", predict)


# ------------------------------------------------------------------ moto (S3)
def moto_checks(t: Table, url: str, work: Path) -> None:
    from ipfs_accelerate_s3_kit.credentials import s3_key

    server, version = "moto server", md.version("moto")
    key = s3_key("test-key-1", "test-secret-1", name="interop")
    data = os.urandom(3 * 1024 * 1024 + 5)
    with client("s3_kit", url, keys=[key], addressing_style="path",
                download_dir=str(work / "dl"), max_body_in_memory=1024 * 1024) as c:
        (work / "dl").mkdir()
        b = {"bucket": "interop"}

        def op(name: str, payload: dict[str, Any], check: Callable[[Any], Any] | None = None) -> None:
            t.check(server, version, "s3_kit", name,
                    lambda: (check or (lambda r: None))(c.call("s3_kit", name.split(" ")[0], payload)))

        op("create_bucket", b)
        op("list_buckets", {}, lambda r: expect("interop" in str(r.data), str(r.data)))
        op("put_object", {**b, "key": "k.bin", "body": data})
        op("head_object", {**b, "key": "k.bin"}, lambda r: expect(r.data["content_length"] == len(data), str(r.data)))
        op("get_object (range)", {**b, "key": "k.bin", "range": "bytes=0-9"},
           lambda r: expect(Path(r.data["path"]).read_bytes() == data[:10], "range body"))
        op("get_object (file)", {**b, "key": "k.bin", "file": str(work / "k.bin")},
           lambda r: expect((work / "k.bin").read_bytes() == data, "file body"))
        op("get_object (download_dir)", {**b, "key": "k.bin"},
           lambda r: expect(Path(r.data["path"]).read_bytes() == data, "download_dir body"))
        op("list_objects_v2", b, lambda r: expect("k.bin" in str(r.data), str(r.data)[:200]))
        op("delete_object", {**b, "key": "k.bin"})


def write_table(rows: list[Row], path: Path) -> None:
    lines = [
        "# Interop results",
        "",
        "Written by `python3 dev.py interop` (`tools/interop/run.py`): each backend's operations",
        "called through the `Client` against real servers on 127.0.0.1 installed from PyPI.",
        f"Last run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python "
        f"{sys.version.split()[0]}.",
        "",
        "| server | version | backend | operation | result |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {' | '.join(r)} |" for r in rows],
        "",
    ]
    notes = HERE / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    path.write_text("\n".join(lines))


def main(argv: list[str]) -> int:
    only = set(argv) or {"llama", "kserve", "moto"}
    t = Table()
    work = Path(tempfile.mkdtemp(prefix="interop-"))
    py = sys.executable
    if "llama" in only:
        sys.path.insert(0, str(HERE))
        import tiny_gguf

        model = tiny_gguf.write(work / "tiny.gguf")
        port = free_port()
        cfg = {"host": "127.0.0.1", "port": port, "models": [
            {"model": str(model), "model_alias": "tiny", "n_ctx": 512, "n_threads": 1,
             "chat_format": "chatml"},
            {"model": str(model), "model_alias": "tiny-embed", "n_ctx": 512, "n_threads": 1,
             "embedding": True}]}
        (work / "llama.json").write_text(json.dumps(cfg))
        url = f"http://127.0.0.1:{port}"
        try:
            with serve("llama-cpp-python", [py, "-m", "llama_cpp.server", "--config_file",
                                            str(work / "llama.json")], url + "/v1/models",
                       work / "llama.log"):
                llama_checks(t, url)
        except Exception as exc:
            t.check("llama-cpp-python", "?", "-", "start", lambda exc=exc: (_ for _ in ()).throw(exc))
    if "kserve" in only:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        try:
            with serve("kserve", [py, str(HERE / "kserve_model.py"), str(port)],
                       url + "/v2/health/ready", work / "kserve.log"):
                kserve_checks(t, url)
        except Exception as exc:
            t.check("kserve ModelServer", "?", "-", "start", lambda exc=exc: (_ for _ in ()).throw(exc))
    if "moto" in only:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        try:
            with serve("moto", [py, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                       url + "/moto-api/", work / "moto.log"):
                moto_checks(t, url, work)
        except Exception as exc:
            t.check("moto server", "?", "-", "start", lambda exc=exc: (_ for _ in ()).throw(exc))
    write_table(t.rows, ROOT / "docs" / "interop.md")
    failed = [r for r in t.rows if r[4].startswith("FAIL")]
    print(f"interop: {len(t.rows) - len(failed)} passed, {len(failed)} failed "
          f"(docs/interop.md; logs in {work})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
