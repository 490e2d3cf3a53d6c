"""``ipfs-accelerate chat|embed|infer``: one request to a backend."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from ..jobs import client_config_from_options, result_json
from .common import (EXIT_FAILED, EXIT_OK, REDACT, CliError, add_key_options, err,
                     parse_base_urls, plugin_manager, positive_float, positive_int)
from .keys import backend_config, read_keys_file

CHAT_OPS = ("chat", "messages")
EMBED_OPS = ("embeddings", "embed")
INFER_OPS = ("generate", "infer", "predict", "completions", "chat")
KINDS = {"chat": CHAT_OPS, "embed": EMBED_OPS, "infer": INFER_OPS}


def register(sub: Any) -> None:
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
                                           + ", ".join(KINDS[kind]) + " it supports)")
        p.add_argument("--payload", metavar="JSON", help="extra payload fields as a JSON object")
        p.add_argument("--max-tokens", type=positive_int, metavar="N")
        if kind == "chat":
            p.add_argument("--system", help="a system message")
        else:
            p.set_defaults(system=None)
        p.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
        p.add_argument("--json", action="store_true", help="print the whole result as JSON")
        p.add_argument("--verbose", "-v", action="store_true", help="print usage to stderr")
        add_key_options(p)
        p.add_argument("--timeout", type=positive_float, metavar="SECONDS", help="read timeout")
        p.set_defaults(func=run, concurrency=1)


def _one_backend(args: argparse.Namespace) -> tuple[str, Any]:
    pm = plugin_manager()

    try:
        return args.backend, pm.backend_class(args.backend)
    except LookupError as exc:
        raise CliError(str(exc)) from None


def _fits(cls: Any, op: str, payload: dict[str, Any]) -> bool:
    """Whether the backend accepts this payload shape for ``op`` (its own checks and
    request builder, with a probe key; nothing is sent)."""
    from ..config import BackendConfig
    from ..keys import ApiKey
    from ..request import Request

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


def _report_usage(usage: Any) -> None:
    if usage is not None:
        err(f"usage: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens")


def _check_before_sending(cls: Any, op: str, payload: dict[str, Any]) -> None:
    """The backend's own checks, before anything is sent: a request it refuses (a missing
    model) is a usage error (exit 2), not a failed call."""
    from ..config import BackendConfig
    from ..errors import AccelerateError
    from ..request import Request

    probe = cls(BackendConfig(name=cls.name, base_url="http://probe.invalid"))
    try:
        probe.check(Request(operation=op, payload=payload, backend=cls.name))
    except AccelerateError as exc:
        raise CliError(f"{type(exc).__name__}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from ..client import Client

    kind = args.command
    name, cls = _one_backend(args)
    ops = cls.operations
    if args.operation:
        op = args.operation
    else:
        candidates = {"chat": CHAT_OPS, "embed": EMBED_OPS, "infer": INFER_OPS}[kind]
        op = next((o for o in candidates if o in ops), None)
        if op is None:
            raise CliError(f"backend {name!r} has no {kind} operation; its operations: "
                           f"{', '.join(ops)} (choose one with --operation)")
    if op not in ops:
        raise CliError(f"backend {name!r} has no operation {op!r}; its operations: {', '.join(ops)}")
    payload = _payload_for(kind, op, args, cls)
    keys_file = read_keys_file(args.keys_file) if args.keys_file else None
    base = parse_base_urls([args.base_url] if args.base_url else None, [name]).get(name)
    cfg = backend_config(name, cls, args, keys_file, base)
    _check_before_sending(cls, op, payload)
    stream = not args.no_stream and op in cls.streaming_operations and not args.json
    with Client([cfg], client_config_from_options(args)) as client:
        try:
            if stream:
                rs = client.stream(name, op, payload)
                for chunk in rs:
                    if chunk.text:
                        sys.stdout.write(REDACT(chunk.text))
                        sys.stdout.flush()
                sys.stdout.write("\n")
                if args.verbose:
                    _report_usage(rs.usage)
                return EXIT_OK
            result = client.call(name, op, payload)
        except Exception as exc:
            partial = getattr(exc, "partial_text", "")
            if partial:
                sys.stdout.write("\n")
            err(f"error: {type(exc).__name__}: {exc}")
            return EXIT_FAILED
    if args.verbose:
        _report_usage(result.usage)
    if args.json or result.text is None:
        body = result_json(result)
        if not args.json:
            body.pop("raw", None) if body.get("data") is not None else None
        print(REDACT(json.dumps(body, indent=None if args.json else 2)))
    else:
        print(REDACT(result.text))
    return EXIT_OK


