"""``ipfs-accelerate``: the command line.

    ipfs-accelerate plugins                      installed backends, strategies, versions
    ipfs-accelerate chat|embed|infer ...         one request to a backend
    ipfs-accelerate batch IN.jsonl -o OUT.jsonl  a resumable JSONL batch through the pipeline
    ipfs-accelerate sim --port 8765              the local provider simulator
    ipfs-accelerate demo                         simulator + a few hundred requests, offline

Keys come from environment variables (each backend's own, e.g. ``OPENAI_API_KEY``, plus
numbered variants ``OPENAI_API_KEY_1``, ``OPENAI_API_KEY_2``...) or ``--keys-file``.  They
are never printed, logged or written to the output, the errors file or the journal.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import queue
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO
from urllib.parse import urlsplit

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


# --------------------------------------------------------------------------- secrets
class Redactor:
    """Replaces every known key in text we print or write (defence in depth: the core
    never puts keys in messages, but a provider could echo one back)."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, "***")
        return text


REDACT = Redactor()


def _err(msg: str) -> None:
    sys.stderr.write(REDACT(msg) + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- keys and backends
def read_keys_file(path: str) -> dict[str, list[str]] | list[str]:
    """A JSON object ``{"openai": ["k1", "k2"], "claude": "k3"}`` (or ``{name: key}``
    per backend), a JSON list of keys, or plain text with one key per line (``#``
    comments).  A plain list applies to every backend of the command."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read keys file {path}: {exc.strerror}") from None
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            data = json.loads(stripped)
        except ValueError:
            raise CliError(f"keys file {path} is not valid JSON") from None
        if isinstance(data, list):
            return [str(k) for k in data if k]
        out: dict[str, list[str]] = {}
        for backend, value in data.items():
            if isinstance(value, str):
                out[backend] = [value]
            elif isinstance(value, list):
                out[backend] = [str(v) for v in value if v]
            elif isinstance(value, dict):
                out[backend] = [f"{name}\x00{v}" for name, v in value.items() if v]
            else:
                raise CliError(f"keys file {path}: {backend!r} must map to a key, a list or an object")
        return out
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def env_keys(cls: Any, environ: Mapping[str, str] | None = None) -> list[Any]:
    """Keys for a backend class from its environment variables, numbered variants included
    (``OPENAI_API_KEY``, ``OPENAI_API_KEY_1``, ...).  Backends with their own credential
    rules (an S3 key pair) are read with their ``keys_from``."""
    from .backend import Backend
    from .keys import ApiKey

    environ = os.environ if environ is None else environ
    if getattr(cls.keys_from, "__func__", None) is not Backend.keys_from.__func__:
        return list(cls.keys_from(environ=environ))
    found: list[Any] = []
    seen: set[str] = set()
    for base in cls.env_keys:
        pattern = re.compile(re.escape(base) + r"(?:_(\d+))?$")
        names = sorted((n for n in environ if pattern.match(n)),
                       key=lambda n: int(pattern.match(n).group(1) or 0))  # type: ignore[union-attr]
        for name in names:
            secret = environ[name]
            if secret and secret not in seen:
                seen.add(secret)
                found.append(ApiKey(secret=secret, name=name.lower()))
    return found


def _keys_for(backend: str, cls: Any, keys_file: Any) -> list[Any]:
    from .keys import ApiKey

    if keys_file is not None:
        raw = keys_file if isinstance(keys_file, list) else keys_file.get(backend, [])
        keys = []
        for i, item in enumerate(raw, 1):
            name, sep, secret = item.partition("\x00")
            if not sep:
                name, secret = f"{backend}-key-{i}", item
            keys.append(ApiKey(secret=secret, name=name))
        if keys:
            for k in keys:
                REDACT.add(k.reveal())
            return keys
    keys = env_keys(cls)
    for k in keys:
        REDACT.add(k.reveal())
    return keys


def protocol_path(cls: Any) -> str:
    """The path part of a backend's default base URL (``/v1`` for OpenAI): appended to a
    simulator mount point to get a working base URL."""
    return urlsplit(cls.default_base_url or "").path.rstrip("/")


def _parse_base_urls(values: Sequence[str] | None, backends: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    names = list(backends)
    for v in values or ():
        name, sep, url = v.partition("=")
        if sep and "://" not in name:
            out[name] = url
        elif len(names) == 1:
            out[names[0]] = v
        else:
            raise CliError(f"--base-url {v!r}: with several backends write NAME=URL")
    return out


def _backend_config(name: str, cls: Any, args: argparse.Namespace, keys_file: Any,
                    base_url: str | None) -> Any:
    from .config import BackendConfig

    keys = _keys_for(name, cls, keys_file)
    if not keys and cls.key_required and not cls.keys_from():
        hint = " or ".join(cls.env_keys) or "a keys file"
        raise CliError(f"backend {name!r} needs an API key: set {hint}, or pass --keys-file")
    kwargs: dict[str, Any] = {}
    if getattr(args, "rpm", None):
        kwargs["requests_per_minute"] = args.rpm
    if getattr(args, "tpm", None):
        kwargs["tokens_per_minute"] = args.tpm
    if getattr(args, "per_key_concurrency", None):
        kwargs["max_concurrent_per_key"] = args.per_key_concurrency
    if getattr(args, "timeout", None):
        kwargs["read_timeout"] = args.timeout
    return BackendConfig(name=name, keys=keys, base_url=base_url or cls.base_url_from() or None,
                         **kwargs)


def _client_config(args: argparse.Namespace) -> Any:
    from .config import ClientConfig

    kwargs: dict[str, Any] = {"max_concurrency": max(1, getattr(args, "concurrency", 8) or 8)}
    if getattr(args, "strategy", None):
        kwargs["strategy"] = args.strategy
    if getattr(args, "deadline", None):
        kwargs["default_deadline"] = args.deadline
    return ClientConfig(**kwargs)


# --------------------------------------------------------------------------- JSON output
def _json_safe(obj: Any) -> Any:
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(obj)).decode("ascii")}
    import attrs

    if attrs.has(type(obj)):
        return _json_safe(attrs.asdict(obj, recurse=False))
    if hasattr(obj, "tolist"):
        return _json_safe(obj.tolist())
    return str(obj)


def result_json(result: Any) -> dict[str, Any]:
    """A :class:`~ipfs_accelerate_py.results.Result` as JSON (None fields left out)."""
    out: dict[str, Any] = {
        "text": result.text,
        "tool_calls": [_json_safe(t) for t in result.tool_calls] or None,
        "finish_reason": result.finish_reason,
        "usage": _json_safe(result.usage),
        "model": result.model,
        "data": _json_safe(result.data),
        "raw": _json_safe(result.raw),
        "request_id": result.request_id,
        "key_id": result.key_id,
        "attempts": result.attempts,
    }
    return {k: v for k, v in out.items() if v is not None}


def error_json(exc: BaseException) -> dict[str, Any]:
    cls = getattr(exc, "error_class", None)
    out = {"type": type(exc).__name__, "class": getattr(cls, "value", None), "message": str(exc),
           "status": getattr(exc, "status", None), "code": getattr(exc, "code", None)}
    last = getattr(exc, "last_error", None)
    if last is not None:
        out["last_error"] = f"{type(last).__name__}: {last}"
    return {k: v for k, v in out.items() if v is not None}


# --------------------------------------------------------------------------- progress
class Progress:
    """A live progress line on stderr: done/total, rate, ETA, retries, 429s, breaker."""

    def __init__(self, total: int, client: Any, stream: TextIO | None = None,
                 interval: float | None = None, label: str = "") -> None:
        self.total = total
        self.client = client
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.2 if self.tty else 1.0)
        self.label = label
        self.done = 0
        self.failed = 0
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def advance(self, n: int = 1, failed: int = 0) -> None:
        with self._lock:  # called from the pipeline's worker threads too
            self.done += n
            self.failed += failed

    def line(self) -> str:
        elapsed = max(1e-6, time.monotonic() - self.start)
        rate = self.done / elapsed
        remaining = self.total - self.done
        eta = remaining / rate if rate > 0 else float("inf")
        retries = rl = 0
        breakers: list[str] = []
        try:
            snap = self.client.stats()
            for name, b in sorted(snap.backends.items()):
                retries += b.get("retries", 0)
                rl += b.get("rate_limited", 0)
                breakers.append(f"{name}:{b.get('breaker', '?')}")
        except Exception:  # stats must never break the job
            pass
        width = 24
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        eta_txt = "--:--" if eta == float("inf") else f"{int(eta // 60)}:{int(eta % 60):02d}"
        return (f"{self.label}{self.done}/{self.total} [{bar}] {frac:4.0%} {rate:7.1f}/s ETA {eta_txt} "
                f"retries {retries} 429s {rl} failed {self.failed} breaker {' '.join(breakers) or '-'}")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._emit()

    def _emit(self, final: bool = False) -> None:
        text = self.line()
        if self.tty:
            self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        self._emit()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._emit(final=True)


# --------------------------------------------------------------------------- plugins
def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    infos = pm.list_plugins()
    backends = pm.backends()
    servers = pm.protocol_servers()
    strategies = pm.strategies()
    by_module: dict[str, Any] = {}
    for info in infos:
        by_module[info.name] = info

    def dist_of(obj: Any) -> tuple[str, str]:
        mod = getattr(obj, "__module__", "") or ""
        for info in infos:
            root = info.module.split(".")[0]
            if mod == root or mod.startswith(root + "."):
                return info.distribution or "-", info.version or "-"
        if mod.startswith("ipfs_accelerate_py"):
            from . import __version__

            return "ipfs-accelerate-core", __version__
        return "-", "-"

    if args.json:
        out = {
            "plugins": [_json_safe(i) for i in infos],
            "backends": {n: {**c.describe(), "distribution": dist_of(c)[0], "version": dist_of(c)[1],
                             "protocol_server": n in servers, "env_keys": list(c.env_keys)}
                         for n, c in sorted(backends.items())},
            "strategies": {n: {"distribution": dist_of(s)[0], "version": dist_of(s)[1]}
                           for n, s in sorted(strategies.items())},
            "protocol_servers": sorted(servers),
        }
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print("Backends:")
    if not backends:
        print("  (none installed; try: pip install ipfs-accelerate-openai)")
    for name, cls in sorted(backends.items()):
        dist, ver = dist_of(cls)
        extra = "  [simulator]" if name in servers else ""
        print(f"  {name:<10} {dist} {ver}  base {cls.default_base_url}{extra}")
        for op, desc in cls.operations.items():
            mark = " (streams)" if op in cls.streaming_operations else ""
            print(f"      {op:<22} {desc}{mark}")
    print("Strategies:")
    for name, s in sorted(strategies.items()):
        dist, ver = dist_of(s)
        print(f"  {name:<16} {dist} {ver}")
    only_servers = sorted(set(servers) - set(backends))
    if only_servers:
        print("Protocol servers without a backend: " + ", ".join(only_servers))
    return EXIT_OK


# --------------------------------------------------------------------------- one request
_CHAT_OPS = ("chat", "messages")
_EMBED_OPS = ("embeddings", "embed")
_INFER_OPS = ("generate", "infer", "predict", "completions", "chat")


def _one_backend(args: argparse.Namespace) -> tuple[str, Any]:
    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    try:
        return args.backend, pm.backend_class(args.backend)
    except LookupError as exc:
        raise CliError(str(exc)) from None


def _fits(cls: Any, op: str, payload: dict[str, Any]) -> bool:
    """Whether the backend accepts this payload shape for ``op`` (its own checks and
    request builder, with a probe key; nothing is sent)."""
    from .config import BackendConfig
    from .keys import ApiKey
    from .request import Request

    try:
        probe = cls(BackendConfig(name=cls.name, base_url="http://probe.invalid"))
        req = Request(operation=op, payload=payload, backend=cls.name)
        probe.check(req)
        probe.build_request(req, ApiKey(secret="probe-key", name="probe"))
        return True
    except Exception:
        return False


def _payload_for(kind: str, op: str, args: argparse.Namespace, cls: Any = None) -> dict[str, Any]:
    text = " ".join(args.text) if args.text else None
    if text == "-":
        text = sys.stdin.read()
    extra: dict[str, Any] = {}
    if args.payload:
        try:
            extra = json.loads(args.payload)
        except ValueError:
            raise CliError("--payload is not valid JSON") from None
        if not isinstance(extra, dict):
            raise CliError("--payload must be a JSON object")
    model = {"model": args.model} if args.model else {}
    n = args.max_tokens
    candidates: list[dict[str, Any]]
    if kind == "chat":
        if text is None:
            raise CliError("chat needs the message text")
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": text}]
        candidates = [{"messages": messages, **({"max_tokens": n} if n else {})}]
    elif text is None:
        candidates = [{}]
    elif kind == "embed":
        candidates = [{"input": text}] if op == "embeddings" else [{"inputs": text}, {"input": text},
                                                                    {"text": text}]
    else:
        user = [{"role": "user", "content": text}]
        candidates = [
            {"inputs": text, **({"parameters": {"max_new_tokens": n}} if n else {})},
            {"prompt": text, **({"max_tokens": n} if n else {})},
            {"input": text},
            {"messages": user, **({"max_tokens": n} if n else {})},
        ]
        if op in ("completions",):
            candidates.insert(0, candidates.pop(1))
        elif op == "chat":
            candidates.insert(0, candidates.pop(3))
    if cls is not None and len(candidates) > 1:
        # A field the operation's own description names goes first ("completion for a
        # prompt" -> prompt); then the first shape the backend accepts wins.
        desc = str(cls.operations.get(op, "")).lower()
        candidates.sort(key=lambda c: not any(re.search(rf"\b{k}\b", desc) for k in c
                                              if k not in ("max_tokens", "parameters")))
    shaped = [{**c, **model, **extra} for c in candidates]
    if cls is not None and len(shaped) > 1:
        for payload in shaped:
            if _fits(cls, op, payload):
                return payload
    return shaped[0]


def cmd_request(args: argparse.Namespace) -> int:
    from .client import Client

    kind = args.command
    name, cls = _one_backend(args)
    ops = cls.operations
    if args.operation:
        op = args.operation
    else:
        candidates = {"chat": _CHAT_OPS, "embed": _EMBED_OPS, "infer": _INFER_OPS}[kind]
        op = next((o for o in candidates if o in ops), None)
        if op is None:
            raise CliError(f"backend {name!r} has no {kind} operation; its operations: "
                           f"{', '.join(ops)} (choose one with --operation)")
    if op not in ops:
        raise CliError(f"backend {name!r} has no operation {op!r}; its operations: {', '.join(ops)}")
    payload = _payload_for(kind, op, args, cls)
    keys_file = read_keys_file(args.keys_file) if args.keys_file else None
    base = _parse_base_urls([args.base_url] if args.base_url else None, [name]).get(name)
    cfg = _backend_config(name, cls, args, keys_file, base)
    stream = not args.no_stream and op in cls.streaming_operations and not args.json
    with Client([cfg], _client_config(args)) as client:
        try:
            if stream:
                rs = client.stream(name, op, payload)
                for chunk in rs:
                    if chunk.text:
                        sys.stdout.write(REDACT(chunk.text))
                        sys.stdout.flush()
                sys.stdout.write("\n")
                if rs.usage is not None and args.verbose:
                    _err(f"usage: {rs.usage.prompt_tokens} prompt + {rs.usage.completion_tokens} "
                         f"completion tokens")
                return EXIT_OK
            result = client.call(name, op, payload)
        except Exception as exc:
            partial = getattr(exc, "partial_text", "")
            if partial:
                sys.stdout.write("\n")
            _err(f"error: {type(exc).__name__}: {exc}")
            return EXIT_FAILED
    if args.json or result.text is None:
        body = result_json(result)
        if not args.json:
            body.pop("raw", None) if body.get("data") is not None else None
        print(REDACT(json.dumps(body, indent=None if args.json else 2)))
    else:
        print(REDACT(result.text))
    return EXIT_OK


def cmd_limits(args: argparse.Namespace) -> int:  # issue 12; logic in limits_report.py
    from .client import Client
    from .limits_report import probe_limits

    name, cls = _one_backend(args)
    op = args.operation or next((o for o in _CHAT_OPS + _INFER_OPS if o in cls.operations), None)
    if op is None or op not in cls.operations:
        raise CliError(f"backend {name!r}: choose a probe operation with --operation; its "
                       f"operations: {', '.join(cls.operations)}")
    cfg = _backend_config(name, cls, args, read_keys_file(args.keys_file) if args.keys_file
                          else None, _parse_base_urls([args.base_url] if args.base_url else None,
                                                      [name]).get(name))
    with Client([cfg], _client_config(args)) as client:
        report, errors = probe_limits(client, name, op, _payload_for("chat", op, args, cls),
                                      args.probes)
    for e in errors:
        _err(f"probe failed: {REDACT(e)}")
    print(report)
    return EXIT_OK if len(errors) < args.probes or not args.probes else EXIT_FAILED


# --------------------------------------------------------------------------- batch
class _Line:
    __slots__ = ("id", "line_no", "backend", "operation", "payload", "priority")

    def __init__(self, rid: str, line_no: int, backend: str, operation: str, payload: dict,
                 priority: Any) -> None:
        self.id = rid
        self.line_no = line_no
        self.backend = backend
        self.operation = operation
        self.payload = payload
        self.priority = priority


def read_batch_input(path: str, backends: Mapping[str, Any]) -> tuple[list[_Line], list[dict]]:
    """Valid requests, and bad lines ``{"line", "error", "text"}`` (reported, not fatal)."""
    from .request import _priority

    good: list[_Line] = []
    bad: list[dict] = []
    seen: set[str] = set()
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        for n, raw in enumerate(f, 1):
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                continue

            def reject(msg: str) -> None:
                bad.append({"line": n, "error": msg, "text": text[:2000]})

            try:
                obj = json.loads(text)
            except ValueError as exc:
                reject(f"not valid JSON: {exc}")
                continue
            if not isinstance(obj, dict):
                reject("a request line must be a JSON object")
                continue
            backend, op, payload = obj.get("backend"), obj.get("operation"), obj.get("payload", {})
            if not isinstance(backend, str) or not backend:
                reject("missing \"backend\"")
                continue
            if backend not in backends:
                reject(f"unknown backend {backend!r}; installed: {', '.join(sorted(backends)) or 'none'}")
                continue
            if not isinstance(op, str) or op not in backends[backend].operations:
                reject(f"backend {backend!r} has no operation {op!r}; its operations: "
                       f"{', '.join(backends[backend].operations)}")
                continue
            if not isinstance(payload, dict):
                reject("\"payload\" must be a JSON object")
                continue
            rid = obj.get("id", f"line-{n}")
            if not isinstance(rid, (str, int)) or isinstance(rid, bool) or rid == "":
                reject("\"id\" must be a non-empty string or an integer")
                continue
            rid = str(rid)
            if rid in seen:
                reject(f"duplicate id {rid!r}")
                continue
            try:
                prio = _priority(obj.get("priority", "NORMAL"))
            except Exception as exc:
                reject(str(exc))
                continue
            seen.add(rid)
            good.append(_Line(rid, n, backend, op, payload, prio))
    return good, bad


def cmd_batch(args: argparse.Namespace) -> int:
    if getattr(args, "redis", None):  # several workers, one job: the Redis plugin does it
        try:
            from ipfs_accelerate_redis.batch import cli_batch
        except ImportError as exc:
            if exc.name not in ("ipfs_accelerate_redis", "ipfs_accelerate_redis.batch", "redis"):
                raise
            raise CliError("--redis needs the Redis plugin: pip install ipfs-accelerate-redis") from None
        return cli_batch(args)
    from .client import Client
    from .journal import JournalMismatch, ResumableOutput, file_digest
    from .plugins import get_plugin_manager
    from .request import Request

    pm = get_plugin_manager()
    installed = pm.backends()
    out_path = args.output
    journal_path = args.journal or out_path + ".journal.sqlite3"
    errors_path = args.errors or out_path + ".errors.jsonl"
    lines, bad = read_batch_input(args.input, installed)
    # The errors file is rebuilt from the input on every run: idempotent across resumes.
    with open(errors_path, "w", encoding="utf-8") as ef:
        for b in bad:
            _err(f"{args.input}:{b['line']}: {b['error']}")
            ef.write(REDACT(json.dumps(b)) + "\n")
    try:
        output = ResumableOutput(out_path, journal_path, file_digest(args.input), str(args.input),
                                 restart=args.restart)
    except JournalMismatch as exc:
        raise CliError(str(exc)) from None
    pending = [ln for ln in lines if ln.id not in output.done]
    if output.done:
        note = f" (rebuilt {out_path} from the journal)" if output.rebuilt else (
            f" (dropped {output.truncated} unjournaled bytes)" if output.truncated else "")
        _err(f"resuming: {len(lines) - len(pending)} of {len(lines)} already done{note}")
    used = sorted({ln.backend for ln in pending})
    keys_file = read_keys_file(args.keys_file) if args.keys_file else None
    bases = _parse_base_urls(args.base_url, used or sorted({ln.backend for ln in lines}))
    total_failed = 0
    if pending:
        configs = [_backend_config(n, installed[n], args, keys_file, bases.get(n)) for n in used]
        results: queue.Queue = queue.Queue()
        client = Client(configs, _client_config(args))
        progress = Progress(len(pending), client)
        stop = threading.Event()

        def submit_all() -> None:
            for ln in pending:
                if stop.is_set():
                    return
                try:  # a request the pipeline refuses up front is a failed result, not a hang
                    req = Request(operation=ln.operation, payload=ln.payload, backend=ln.backend,
                                  priority=ln.priority, tags={"id": ln.id})
                    fut = client.submit(req, block=True)
                except Exception as exc:
                    results.put((ln, None, exc))
                    continue
                fut.add_done_callback(lambda f, ln=ln: results.put((ln, f, None)))

        submitter = threading.Thread(target=submit_all, name="batch-submit", daemon=True)
        written = 0
        try:
            with progress:
                submitter.start()
                while written < len(pending):
                    batch = [results.get()]
                    try:
                        while len(batch) < 256:
                            batch.append(results.get_nowait())
                    except queue.Empty:
                        pass
                    items = []
                    nfail = 0
                    for ln, fut, exc in batch:
                        if exc is None:
                            exc = fut.exception()
                        try:
                            rec = ({"id": ln.id, "ok": True, "result": result_json(fut.result())}
                                   if exc is None else
                                   {"id": ln.id, "ok": False, "error": error_json(exc)})
                            text = json.dumps(rec, ensure_ascii=False)
                        except Exception as ser:  # an unserialisable result must not stop the job
                            exc = ser
                            text = json.dumps({"id": ln.id, "ok": False, "error": {
                                "type": "OutputError", "message": f"result not serialisable: {ser}"}})
                        nfail += exc is not None
                        line = (REDACT(text) + "\n").encode("utf-8")
                        items.append((ln.id, ln.line_no, exc is None, line))
                    written += output.write(items)
                    total_failed += nfail
                    progress.advance(len(batch), nfail)
        except KeyboardInterrupt:
            stop.set()
            client.close(wait=False)
            output.close()
            _err("interrupted; run the same command again to resume")
            return 130
        finally:
            stop.set()
        client.close()
        print(client.stats().table())
    done, ok = output.journal.count()
    output.close()
    failed = done - ok
    print(f"requests: {len(lines)}  written: {done}  ok: {ok}  failed: {failed}  "
          f"bad lines: {len(bad)}  lost: {len(lines) - done}")
    print(f"output: {out_path}" + (f"  errors: {errors_path}" if bad else ""))
    return EXIT_OK if failed == 0 and not bad and done == len(lines) else EXIT_FAILED


# --------------------------------------------------------------------------- sim
def _sim_config(args: argparse.Namespace) -> Any:
    from .sim import SimConfig

    outages = []
    for spec in args.outage or ():
        a, sep, b = spec.partition(":")
        try:
            outages.append((float(a), float(b)))
        except ValueError:
            raise CliError(f"--outage {spec!r}: expected START:END in seconds") from None
    models: dict[str, list[str]] = {}
    for spec in args.model or ():
        backend, sep, model = spec.partition("=")
        if not sep or not backend or not model:
            raise CliError(f"--model {spec!r}: expected BACKEND=MODEL")
        models.setdefault(backend, []).append(model)
    try:
        return SimConfig(rps=args.rps, models=models, burst=args.burst, tokens_per_minute=args.tpm,
                         latency=args.latency, jitter=args.jitter, error_rate=args.error_rate,
                         outages=outages, seed=args.seed, host=args.host, port=args.port,
                         backends=args.backends.split(",") if args.backends else None)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def cmd_sim(args: argparse.Namespace) -> int:
    import asyncio

    from .plugins import get_plugin_manager
    from .sim import serve_forever

    cfg = _sim_config(args)
    backends = get_plugin_manager().backends()

    def ready(port: int, app: Any) -> None:
        url = f"http://{cfg.host}:{port}"
        print(f"simulator listening on {url}", flush=True)
        for name in sorted(app.servers):
            cls = backends.get(name)
            suffix = protocol_path(cls) if cls is not None else ""
            print(f"  {name:<10} base_url {url}/{name}{suffix}", flush=True)
        print(f"  stats      GET {url}/_sim/stats", flush=True)

    async def run() -> None:
        task = asyncio.ensure_future(serve_forever(cfg, ready=ready))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, task.cancel)
            except (NotImplementedError, RuntimeError):  # not on this platform
                pass
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(run())
    return EXIT_OK


# --------------------------------------------------------------------------- demo
def _demo_backend() -> tuple[str, Any, str]:
    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    backends, servers = pm.backends(), pm.protocol_servers()
    order = (["openai"] if "openai" in backends else []) + sorted(backends)
    for name in order:
        cls = backends[name]
        if name in servers:
            op = next((o for o in _CHAT_OPS if o in cls.operations), None)
            if op is not None:
                return name, cls, op
    raise CliError("the demo needs a backend with a simulator and a chat operation: "
                   "pip install ipfs-accelerate-openai")


def _first_model(client: Any, name: str, cls: Any) -> str:
    """A model the service knows (from its own model listing; never a built-in list)."""
    if "models" in cls.operations:
        try:
            res = client.call(name, "models", {})
            items = res.data if isinstance(res.data, list) else (res.raw or {}).get("data", [])
            for item in items or ():
                ident = item if isinstance(item, str) else (
                    getattr(item, "id", None) or (item.get("id") or item.get("name")
                                                  if isinstance(item, Mapping) else None))
                if ident:
                    return str(ident).removeprefix("models/")
        except Exception:
            pass
    return "demo-model"


def cmd_demo(args: argparse.Namespace) -> int:
    from .client import Client
    from .config import BackendConfig, BreakerPolicy, ClientConfig, RetryPolicy
    from .keys import ApiKey
    from .request import Request
    from .sim import SimConfig, Simulator

    name, cls, op = _demo_backend()
    n = args.requests
    outage = (args.outage_start, args.outage_start + args.outage_length)
    simcfg = SimConfig(rps=args.rps, burst=max(1.0, args.rps / 4), latency=args.latency,
                       jitter=args.latency, error_rate=args.error_rate, outages=[outage],
                       seed=args.seed, backends=[name])
    keys = [ApiKey(secret=f"demo-key-{i}", name=f"demo-key-{i}") for i in (1, 2, 3)]
    print(f"demo: {n} {name} {op} requests over 3 keys against the simulator "
          f"({args.rps:g} req/s per key, {args.error_rate:.0%} errors, outage {outage[0]:g}-{outage[1]:g} s)",
          flush=True)
    lost = n
    with Simulator(simcfg) as sim:
        cfg = BackendConfig(name=name, keys=keys, base_url=sim.base_url(name) + protocol_path(cls),
                            max_concurrent_per_key=8)
        ccfg = ClientConfig(max_concurrency=24, default_deadline=120.0,
                            retry=RetryPolicy(base_delay=0.05, max_delay=1.0, max_attempts=8),
                            breaker=BreakerPolicy(open_interval=0.25, max_open_interval=1.0))
        client = Client([cfg], ccfg)
        model = _first_model(client, name, cls)
        ok = 0
        errors: dict[str, int] = {}
        with Progress(n, client, label="demo ") as progress:
            futures = []
            for i in range(n):
                payload = {"model": model, "max_tokens": 16,
                           "messages": [{"role": "user", "content": f"Demo request {i}: say hello."}]}
                fut = client.submit(Request(operation=op, payload=payload, backend=name), block=True)
                fut.add_done_callback(lambda f: progress.advance(1, 0 if f.exception() is None else 1))
                futures.append(fut)
            for fut in futures:
                try:
                    fut.result()
                    ok += 1
                except Exception as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        client.close()
        print(client.stats().table())
        s = sim.stats()
        print(f"simulator: {s['requests']} HTTP requests, {s['rate_limited']} answered 429, "
              f"{s['errors_injected']} injected errors, {s['outage_calls']} calls during the outage")
        lost = n - ok
    print(f"requests: {n}  ok: {ok}  failed: {n - ok}" +
          (f" ({', '.join(f'{k}: {v}' for k, v in errors.items())})" if errors else ""))
    print(f"lost: {lost}")
    return EXIT_OK if lost == 0 else EXIT_FAILED


# --------------------------------------------------------------------------- parser
def _add_key_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys-file", metavar="PATH",
                   help="API keys: one per line, or JSON {\"backend\": [\"key\", ...]}; "
                        "default: the backend's environment variables (e.g. OPENAI_API_KEY, "
                        "OPENAI_API_KEY_1, ...)")


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=int, default=8, metavar="N",
                   help="requests in flight at once (default: %(default)s)")
    p.add_argument("--per-key-concurrency", type=int, metavar="N",
                   help="requests in flight per key (default: the backend's, 8)")
    p.add_argument("--rpm", type=float, metavar="N", help="requests per minute per key")
    p.add_argument("--tpm", type=float, metavar="N", help="tokens per minute per key")
    p.add_argument("--strategy", help="key-selection strategy (see `ipfs-accelerate plugins`)")
    p.add_argument("--deadline", type=float, metavar="SECONDS",
                   help="give up on a request after this long, retries included (default 600)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="read timeout of one attempt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipfs-accelerate",
        description="Call AI inference and storage services at volume through one resilient "
                    "pipeline (queue, per-key rate limits, retries, circuit breaker, stats).",
        epilog="Run `ipfs-accelerate COMMAND --help` for a command's options.  "
               "`ipfs-accelerate demo` tries everything offline.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"ipfs-accelerate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed backends, strategies and their versions",
                       description="List the installed plugins (distribution and version), the "
                                   "operations of each backend (and which stream), the key-selection "
                                   "strategies, and which backends the simulator can serve.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_plugins)

    for kind, helptext, desc in (
        ("chat", "send one chat message", "Send one chat message to a backend and print the "
         "answer (streamed to the terminal when the backend streams)."),
        ("embed", "embed one text", "Embed one text with a backend and print the result as JSON."),
        ("infer", "one inference request (TGI generate, OVMS infer, ...)",
         "Send one inference request.  The text becomes the operation's input; --payload adds "
         "or overrides fields (e.g. tensors for OVMS)."),
    ):
        p = sub.add_parser(kind, help=helptext, description=desc)
        p.add_argument("text", nargs="*", help="the text ('-' reads stdin)")
        p.add_argument("--backend", "-b", required=True, help="backend name (see `plugins`)")
        p.add_argument("--base-url", help="the service's base URL (default: the backend's, or its "
                                          "environment variable)")
        p.add_argument("--model", "-m", help="model name")
        p.add_argument("--operation", help="the backend operation (default: the first of "
                                           + ", ".join({"chat": _CHAT_OPS, "embed": _EMBED_OPS,
                                                        "infer": _INFER_OPS}[kind])
                                           + " it supports)")
        p.add_argument("--payload", metavar="JSON", help="extra payload fields as a JSON object")
        p.add_argument("--max-tokens", type=int, metavar="N")
        if kind == "chat":
            p.add_argument("--system", help="a system message")
        else:
            p.set_defaults(system=None)
        p.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
        p.add_argument("--json", action="store_true", help="print the whole result as JSON")
        p.add_argument("--verbose", "-v", action="store_true", help="print usage to stderr")
        _add_key_options(p)
        p.add_argument("--timeout", type=float, metavar="SECONDS", help="read timeout")
        p.set_defaults(func=cmd_request, concurrency=1)

    p = sub.add_parser("limits", help="probe a backend and show each key's learned limits",
                       description="Send a few tiny requests, then print each key's rate, "
                                   "capacity and window and where each came from (configured, "
                                   "response headers, 429s).")
    p.add_argument("--backend", "-b", required=True)
    p.add_argument("--base-url")
    p.add_argument("--model", "-m")
    p.add_argument("--operation", help="the probe's operation (default: chat-like)")
    p.add_argument("--probes", type=int, default=3, metavar="N", help="(default: %(default)s)")
    _add_key_options(p)
    _add_pipeline_options(p)
    p.set_defaults(func=cmd_limits, text=["ping"], max_tokens=1, system=None, payload=None)

    p = sub.add_parser(
        "batch", help="run a JSONL file of requests (resumable)",
        description="Run every request of IN.jsonl through the pipeline and write one result "
                    "line per request to OUT: {\"id\", \"ok\": true, \"result\"} or {\"id\", \"ok\": "
                    "false, \"error\"}, as they complete.  Input lines: {\"id\"?, \"backend\", "
                    "\"operation\", \"payload\", \"priority\"? (HIGH/NORMAL/LOW or 0/1/2)}; a line "
                    "without an id gets \"line-N\".  A SQLite journal (OUT.journal.sqlite3) makes "
                    "it resumable: killed at any moment (even SIGKILL), run the same command again "
                    "and it finishes with every request exactly once in OUT.  Bad lines are "
                    "reported with their line number and written to OUT.errors.jsonl; they do not "
                    "stop the job.  Exit status: 0 all ok, 1 some failed or bad lines, 2 usage.")
    p.add_argument("input", metavar="IN.jsonl")
    p.add_argument("-o", "--output", required=True, metavar="OUT.jsonl")
    p.add_argument("--base-url", action="append", metavar="[BACKEND=]URL",
                   help="a backend's base URL (repeatable; BACKEND= needed with several backends)")
    p.add_argument("--journal", metavar="PATH", help="journal path (default: OUT.journal.sqlite3)")
    p.add_argument("--errors", metavar="PATH", help="bad-lines file (default: OUT.errors.jsonl)")
    p.add_argument("--restart", action="store_true",
                   help="discard OUT and the journal and start over")
    p.add_argument("--redis", metavar="URL",
                   help="distributed: workers started with the same IN and URL share the job "
                        "through Redis Streams (needs ipfs-accelerate-redis; no journal)")
    p.add_argument("--job", metavar="NAME", help="with --redis: the job name (default: a hash "
                                                 "of IN's content)")
    p.add_argument("--claim-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="with --redis: take over a silent worker's requests after this long "
                        "(default: %(default)s)")
    _add_key_options(p)
    _add_pipeline_options(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser(
        "sim", help="run the local provider simulator",
        description="Serve every installed backend's protocol under /<backend> on one port (a "
                    "client's base URL is http://HOST:PORT/openai/v1 etc.), with per-key rate "
                    "limits answered by the provider's own 429 and headers, latency, injected "
                    "errors and outage windows, deterministic under --seed.  GET /_sim/stats "
                    "returns its counters.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="(default: %(default)s; 0 picks one)")
    p.add_argument("--rps", type=float, help="requests per second per key (default: unlimited)")
    p.add_argument("--burst", type=float, help="bucket size of --rps (default: one second's worth)")
    p.add_argument("--tpm", type=float, help="tokens per minute per key")
    p.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                   help="fixed latency of every answer")
    p.add_argument("--jitter", type=float, default=0.0, metavar="SECONDS",
                   help="plus uniform(0, JITTER)")
    p.add_argument("--error-rate", type=float, default=0.0, metavar="P",
                   help="share of requests answered with the protocol's 500")
    p.add_argument("--outage", action="append", metavar="START:END",
                   help="answer 503 between these seconds after start (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backends", metavar="A,B", help="mount only these protocols")
    p.add_argument("--model", action="append", metavar="BACKEND=MODEL",
                   help="an extra model name a protocol accepts (repeatable)")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser(
        "demo", help="simulator + a few hundred requests with an outage, offline",
        description="Start the simulator in-process and send a few hundred chat requests over "
                    "three keys with rate limits, injected errors and an outage midway, showing "
                    "progress and the final stats table.  Prints 'lost: 0' and exits 0 when "
                    "every request completed; non-zero if any was lost.")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--rps", type=float, default=60.0, help="simulated limit per key (req/s)")
    p.add_argument("--latency", type=float, default=0.02)
    p.add_argument("--error-rate", type=float, default=0.03)
    p.add_argument("--outage-start", type=float, default=1.0)
    p.add_argument("--outage-length", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        _err(f"ipfs-accelerate {args.command}: {exc}")
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # configuration errors from the core, plugin errors
        from .errors import AccelerateError

        if isinstance(exc, AccelerateError):
            _err(f"ipfs-accelerate {args.command}: {exc}")
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    raise SystemExit(main())
