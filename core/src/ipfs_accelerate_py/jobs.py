"""Batch jobs: the parts every batch runner shares (the core's journaled runner and any
plugin's, e.g. the Redis one).

* :func:`read_batch_input` -- the JSONL request lines, bad lines reported and never fatal;
* :func:`result_record` -- a request's outcome as the one output line format;
* :func:`input_digest` -- the SHA-256 naming an input (journal binding, job names);
* :class:`Progress` -- the live progress line;
* :class:`~ipfs_accelerate_py.journal.ResumableOutput` -- the resumable writer;
* :func:`client_config_from_options` / :func:`backend_config_from_options` -- configs from
  the command line's numbers;
* :class:`BatchJob` -- what a runner gets: paths, options, installed backends and a client
  factory (keys are the command line's business and never reach a runner).

Errors a user can fix are :class:`JobError` (a ``ValueError``): one line, no traceback.
"""

from __future__ import annotations

import base64
import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

import attrs

from .errors import AccelerateError
from .journal import ResumableOutput, file_digest

__all__ = ["JobError", "BatchLine", "BatchJob", "redact_output", "Progress", "ResumableOutput",
           "read_batch_input", "result_record", "result_json", "error_json", "input_digest",
           "client_config_from_options", "backend_config_from_options", "MAX_DEPTH"]

#: Deepest JSON nesting a request line may have (an API payload is far shallower; a deeper
#: line is refused as bad instead of exhausting the recursion limit later).
MAX_DEPTH = 128


class JobError(AccelerateError, ValueError):
    """A problem the user can fix (a path, a lock, a full disk): shown as one line."""


def redact_output(text: str) -> str:
    """Result and output lines: the core redactor's known secrets only (every key loaded
    registers itself), so a model's answer keeps every legitimate word."""
    from .redaction import REDACTOR

    return REDACTOR.known(text)


def input_digest(path: str | Path) -> str:
    """SHA-256 of an input file's content: binds a journal or names a distributed job."""
    return file_digest(path)


# --------------------------------------------------------------------------- input
@attrs.frozen
class BatchLine:
    """One valid request line of a batch input."""

    id: str
    line_no: int
    backend: str
    operation: str
    payload: dict
    priority: int

    def request_json(self) -> str:
        """The line as JSON (what a distributed runner hands between workers)."""
        return json.dumps({"id": self.id, "backend": self.backend, "operation": self.operation,
                           "payload": self.payload, "priority": int(self.priority)})


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 overflows to inf, which no JSON API accepts
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(obj: Any) -> int:
    """Nesting depth, iteratively (a recursive walk is what we are guarding against)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, d)
            if d > MAX_DEPTH:
                return d
            stack.extend((v, d + 1) for v in node)
    return deepest


def read_batch_input(path: str | Path, backends: Mapping[str, Any]
                     ) -> tuple[list[BatchLine], list[dict]]:
    """Valid requests, and bad lines ``{"line", "error", "text"}`` (reported, not fatal)."""
    from .request import _priority

    good: list[BatchLine] = []
    bad: list[dict] = []
    seen: set[str] = set()
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise JobError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        for n, raw in enumerate(f, 1):
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                continue

            def reject(msg: str) -> None:
                bad.append({"line": n, "error": msg, "text": text[:2000]})

            try:
                obj = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
            except ValueError as exc:
                reject(f"not valid JSON: {exc}")
                continue
            except RecursionError:
                reject(f"nested deeper than {MAX_DEPTH} levels")
                continue
            if not isinstance(obj, dict):
                reject("a request line must be a JSON object")
                continue
            if _depth(obj) > MAX_DEPTH:
                reject(f"nested deeper than {MAX_DEPTH} levels")
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
            if not _utf8(rid):
                reject("\"id\" is not valid Unicode (a lone surrogate)")
                continue
            if rid in seen:
                reject(f"duplicate id {rid!r}")
                continue
            try:
                prio = _priority(obj.get("priority", "NORMAL"))
            except Exception as exc:
                reject(str(exc))
                continue
            seen.add(rid)
            good.append(BatchLine(rid, n, backend, op, payload, prio))
    return good, bad


# --------------------------------------------------------------------------- output
def _json_safe(obj: Any) -> Any:
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(obj)).decode("ascii")}
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
        # Dollars as a string: exact, as the Decimal it is.
        "cost": str(result.cost) if getattr(result, "cost", None) is not None else None,
        "cache": _json_safe(getattr(result, "cache", None)),
    }
    return {k: v for k, v in out.items() if v is not None}


def error_json(exc: BaseException) -> dict[str, Any]:
    """An error as JSON: type, error class, message, status, code, last error."""
    cls = getattr(exc, "error_class", None)
    out = {"type": type(exc).__name__, "class": getattr(cls, "value", None), "message": str(exc),
           "status": getattr(exc, "status", None), "code": getattr(exc, "code", None)}
    last = getattr(exc, "last_error", None)
    if last is not None:
        out["last_error"] = f"{type(last).__name__}: {last}"
    return {k: v for k, v in out.items() if v is not None}


def result_record(rid: str, outcome: Any, redact: Callable[[str], str] = redact_output) -> tuple[bool, str]:
    """``(ok, line)`` for a request's outcome (a result, an exception, or a finished
    future): ``{"id", "ok": true, "result"}`` or ``{"id", "ok": false, "error"}``, redacted,
    without the newline.  An unserialisable result becomes a failed record, never a crash."""
    exc: BaseException | None = None
    if hasattr(outcome, "exception") and callable(outcome.exception):  # a future
        exc = outcome.exception()
        outcome = exc if exc is not None else outcome.result()
    elif isinstance(outcome, BaseException):
        exc = outcome
    try:
        rec = ({"id": rid, "ok": True, "result": result_json(outcome)} if exc is None else
               {"id": rid, "ok": False, "error": error_json(exc)})
        text = json.dumps(rec, ensure_ascii=False)
        if not _utf8(text):  # a lone surrogate echoed back: escape rather than crash
            text = json.dumps(rec)
    except (ValueError, TypeError, RecursionError) as ser:
        exc = ser
        text = json.dumps({"id": rid, "ok": False, "error": {
            "type": "OutputError", "message": f"result not serialisable: {ser}"}})
    return exc is None, redact(text)


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
        try:
            if self.tty:
                self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
            else:
                self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed: progress is not worth a crash
            pass

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


# --------------------------------------------------------------------------- configs
def client_config_from_options(options: Any) -> Any:
    """A :class:`~ipfs_accelerate_py.config.ClientConfig` from the command line's
    ``concurrency``, ``strategy`` and ``deadline`` (absent ones keep the defaults; invalid
    ones raise :class:`~ipfs_accelerate_py.errors.ConfigError`, never change silently)."""
    from .config import ClientConfig

    kwargs: dict[str, Any] = {}
    for opt, field in (("concurrency", "max_concurrency"), ("strategy", "strategy"),
                       ("deadline", "default_deadline")):
        value = getattr(options, opt, None)
        if value is not None:
            kwargs[field] = value
    from .costs.options import cost_config

    kwargs.update(cost_config(options))
    cache = getattr(options, "cache", None)
    if isinstance(cache, str) and cache:  # batch --cache PATH|URL (docs/caching.md)
        from .caching.resolve import cache_url

        kwargs["cache"] = cache_url(cache)
    return ClientConfig(**kwargs)


def backend_config_from_options(name: str, keys: Sequence[Any], options: Any,
                                base_url: str | None = None) -> Any:
    """A :class:`~ipfs_accelerate_py.config.BackendConfig` from keys and the command
    line's ``rpm``, ``tpm``, ``per_key_concurrency`` and ``timeout``."""
    from .config import BackendConfig

    kwargs: dict[str, Any] = {}
    for opt, field in (("rpm", "requests_per_minute"), ("tpm", "tokens_per_minute"),
                       ("per_key_concurrency", "max_concurrent_per_key"),
                       ("timeout", "read_timeout")):
        value = getattr(options, opt, None)
        if value is not None:
            kwargs[field] = value
    return BackendConfig(name=name, keys=list(keys), base_url=base_url, **kwargs)


# --------------------------------------------------------------------------- a job
@attrs.frozen
class BatchJob:
    """One ``batch`` run as a runner sees it.

    ``options`` holds every parsed command-line option (those plugins added included);
    ``make_client(backends)`` builds the pipeline client for the backends the input uses
    (keys, base URLs and limits resolved by the command line); ``redact`` scrubs known
    secrets from anything written; ``report`` prints a one-line note to stderr.
    """

    input_path: Path
    output_path: Path
    errors_path: Path
    journal_path: Path
    options: Any
    backends: Mapping[str, Any]
    make_client: Callable[[Sequence[str]], Any]
    redact: Callable[[str], str] = redact_output
    report: Callable[[str], None] = attrs.field(
        default=lambda msg: (sys.stderr.write(msg + "\n"), sys.stderr.flush()))

    def read_input(self) -> tuple[list[BatchLine], list[dict]]:
        return read_batch_input(self.input_path, self.backends)

    def digest(self) -> str:
        return input_digest(self.input_path)
