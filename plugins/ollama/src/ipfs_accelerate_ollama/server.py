"""Server side of Ollama: answers ``/api/*`` like an Ollama server, deterministically.

Replies are derived from hashes of the prompt and the seed; the "tokenizer" counts words.
Streams are NDJSON (``application/x-ndjson``) whose last object has ``"done": true``; errors
are ``{"error": "..."}`` bodies (404 for a model that is not pulled, 400 for a bad request)
and, once a stream has started, an ``{"error": ...}`` line.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, ClassVar, Collection, Iterable, Mapping, Sequence

from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire.ndjson import format_ndjson

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORDS = ("the llama says alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo "
          "lima mike november oscar papa quebec romeo sierra tango").split()
CREATED_AT = "2025-01-01T00:00:00Z"
NDJSON = "application/x-ndjson"


def canonical(name: str) -> str:
    """``llama3.2`` -> ``llama3.2:latest`` (Ollama's default tag)."""
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


class _Fail(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class OllamaServer(ProtocolServer):
    """A deterministic Ollama server.

    ``models`` are the locally pulled models (pulling adds one); ``embedding_models`` among
    them answer ``/api/embed``.  ``registry`` limits what ``/api/pull`` can find (None: any
    name).  ``token`` (optional) demands that bearer token, as ollama.com does.
    """

    name: ClassVar[str] = "ollama"

    def __init__(self, seed: int = 0, *,
                 models: Sequence[str] = ("llama3.2:latest", "all-minilm:latest"),
                 embedding_models: Collection[str] = ("all-minilm:latest",),
                 registry: Collection[str] | None = None, token: str | None = None,
                 num_ctx: int = 2048, dim: int = 16, version: str = "0.12.3") -> None:
        super().__init__(seed)
        self.seed = seed
        self.models = [canonical(m) for m in models]
        self.embedding_models = {canonical(m) for m in embedding_models}
        self.registry = None if registry is None else {canonical(m) for m in registry}
        self.token = token
        self.num_ctx = num_ctx
        self.dim = dim
        self.version = version
        self.running: dict[str, str] = {}  # model -> expires_at

    # ------------------------------------------------------------------ plumbing
    def handle(self, req: ServerRequest) -> ServerResponse:
        if self.token is not None and req.bearer_token() != self.token:
            return self.error(req, 401, "unauthorized")
        try:
            return super().handle(req)
        except _Fail as exc:
            return self.error(req, exc.status, exc.message)

    def error(self, req: ServerRequest, status: int, message: str) -> ServerResponse:
        return ServerResponse.json({"error": message}, status)

    @staticmethod
    def _body(req: ServerRequest) -> dict[str, Any]:
        try:
            body = req.json()
        except ValueError:
            raise _Fail(400, "invalid character 'x' looking for beginning of value") from None
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise _Fail(400, "json: cannot unmarshal array into Go value of type api.Request")
        return body

    def _model(self, body: Mapping[str, Any], *, embedding: bool = False) -> str:
        name = body.get("model") or body.get("name")
        if not name:
            raise _Fail(400, "model is required")
        model = canonical(str(name))
        if model not in self.models:
            raise _Fail(404, f'model "{name}" not found, try pulling it first')
        if embedding and model not in self.embedding_models:
            raise _Fail(400, f'"{name}" does not support embeddings')
        return model

    def _keep_alive(self, model: str, keep_alive: Any) -> bool:
        """Load or unload ``model``; True when the request asked to unload it."""
        if keep_alive in (0, "0", "0s", "0m"):
            self.running.pop(model, None)
            return True
        self.running[model] = "2025-01-01T00:05:00Z"
        return False

    @staticmethod
    def count(text: str) -> int:
        return len(_TOKEN.findall(text))

    def reply_words(self, prompt: str, options: Mapping[str, Any]) -> tuple[list[str], str]:
        """The reply's pieces and its ``done_reason`` (``length`` when num_predict binds)."""
        salt = f"{self.seed}:{options.get('seed', '')}:{prompt}"
        digest = hashlib.sha256(salt.encode("utf-8")).digest()
        n = 3 + digest[0] % 8
        limit = options.get("num_predict")
        reason = "stop"
        if isinstance(limit, int) and 0 <= limit < n:
            n, reason = limit, "length"
        words = [_WORDS[digest[1 + i] % len(_WORDS)] for i in range(n)]
        return [w if i == 0 else " " + w for i, w in enumerate(words)], reason

    @staticmethod
    def _stats(prompt_tokens: int, eval_tokens: int) -> dict[str, Any]:
        return {"total_duration": 1000000 + eval_tokens * 1000, "load_duration": 1000,
                "prompt_eval_count": prompt_tokens, "prompt_eval_duration": prompt_tokens * 100,
                "eval_count": eval_tokens, "eval_duration": eval_tokens * 1000}

    @staticmethod
    def _stream(objects: Iterable[Mapping[str, Any]]) -> ServerResponse:
        return ServerResponse.stream([format_ndjson(o) for o in objects], content_type=NDJSON)

    @staticmethod
    def _format(pieces: list[str], fmt: Any) -> list[str]:
        """``format: "json"`` or a schema: the reply becomes one JSON object."""
        if not fmt:
            return pieces
        return [json.dumps({"response": "".join(pieces)})]

    # ------------------------------------------------------------------ generation
    @route("POST", "/api/chat")
    def chat(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req)
        model = self._model(body)
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            raise _Fail(400, "json: cannot unmarshal string into Go struct field "
                        "ChatRequest.messages of type []api.Message")
        unload = self._keep_alive(model, body.get("keep_alive"))
        head = {"model": body.get("model"), "created_at": CREATED_AT}
        if not messages:  # load or unload the model
            done = {**head, "message": {"role": "assistant", "content": ""},
                    "done_reason": "unload" if unload else "load", "done": True}
            return ServerResponse.json(done)
        prompt = "\n".join(f"{m.get('role')}: {m.get('content', '')}" for m in messages
                           if isinstance(m, Mapping))
        images = sum(len(m.get("images") or ()) for m in messages if isinstance(m, Mapping))
        n_prompt = self.count(prompt) + 768 * images  # an image costs a fixed token budget
        options = body.get("options") or {}
        pieces, reason = self.reply_words(prompt, options)
        pieces = self._format(pieces, body.get("format"))
        calls = self._tool_calls(body.get("tools"), messages)
        if calls:
            pieces = []
        n_eval = sum(self.count(p) for p in pieces) + len(calls) * 5
        final_msg = {"role": "assistant", "content": "" if body.get("stream", True) else "".join(pieces)}
        if calls and not body.get("stream", True):
            final_msg["tool_calls"] = calls
        final = {**head, "message": final_msg, "done_reason": reason, "done": True,
                 **self._stats(n_prompt, n_eval)}
        if not body.get("stream", True):
            return ServerResponse.json(final)
        lines = [{**head, "message": {"role": "assistant", "content": p}, "done": False}
                 for p in pieces]
        if calls:
            lines.append({**head, "message": {"role": "assistant", "content": "",
                                              "tool_calls": calls}, "done": False})
        return self._stream(lines + [final])

    @staticmethod
    def _tool_calls(tools: Any, messages: list[Any]) -> list[dict[str, Any]]:
        """With tools offered and a user turn last, call the first tool with the user's text."""
        if not tools or not messages or not isinstance(messages[-1], Mapping):
            return []
        if messages[-1].get("role") != "user":
            return []
        fn = (tools[0] or {}).get("function") or {}
        return [{"id": "call_" + hashlib.sha256(str(messages[-1].get("content")).encode())
                 .hexdigest()[:8], "function": {"index": 0, "name": fn.get("name", ""),
                                                "arguments": {"query": messages[-1].get("content")}}}]

    @route("POST", "/api/generate")
    def generate(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req)
        model = self._model(body)
        unload = self._keep_alive(model, body.get("keep_alive"))
        head = {"model": body.get("model"), "created_at": CREATED_AT}
        prompt = str(body.get("prompt") or "")
        if not prompt and not body.get("images"):
            return ServerResponse.json({**head, "response": "", "done": True,
                                        "done_reason": "unload" if unload else "load"})
        full = (body.get("system") or "") + "\n" + prompt + (body.get("suffix") or "")
        n_prompt = self.count(full) + 768 * len(body.get("images") or ())
        pieces, reason = self.reply_words(full, body.get("options") or {})
        pieces = self._format(pieces, body.get("format"))
        n_eval = sum(self.count(p) for p in pieces)
        context = [100 + (b % 200) for b in hashlib.sha256(full.encode()).digest()[:8]]
        final = {**head, "response": "" if body.get("stream", True) else "".join(pieces),
                 "done": True, "done_reason": reason, "context": context,
                 **self._stats(n_prompt, n_eval)}
        if not body.get("stream", True):
            return ServerResponse.json(final)
        return self._stream([{**head, "response": p, "done": False} for p in pieces] + [final])

    # ------------------------------------------------------------------ embeddings
    def _vector(self, text: str, dims: int) -> list[float]:
        out: list[float] = []
        counter = 0
        while len(out) < dims:
            digest = hashlib.sha256(f"{self.seed}:{counter}:{text}".encode()).digest()
            out += [(b - 127.5) / 127.5 for b in digest]
            counter += 1
        norm = math.sqrt(sum(v * v for v in out[:dims])) or 1.0
        return [round(v / norm, 7) for v in out[:dims]]

    @route("POST", "/api/embed")
    def embed(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req)
        model = self._model(body, embedding=True)
        self._keep_alive(model, body.get("keep_alive"))
        value = body.get("input")
        inputs = [value] if isinstance(value, str) else value
        if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
            raise _Fail(400, "invalid input type")
        dims = body.get("dimensions") or self.dim
        if not isinstance(dims, int) or not 0 < dims <= self.dim:
            raise _Fail(400, f"invalid dimensions: {dims}")
        counts = []
        texts = []
        for text in inputs:
            n = self.count(text)
            if n > self.num_ctx:
                if body.get("truncate") is False:
                    raise _Fail(400, "the input length exceeds the context length")
                text = " ".join(_TOKEN.findall(text)[: self.num_ctx])
                n = self.num_ctx
            counts.append(n)
            texts.append(text)
        return ServerResponse.json({"model": body.get("model"),
                                    "embeddings": [self._vector(t, dims) for t in texts],
                                    "total_duration": 14143917, "load_duration": 1019500,
                                    "prompt_eval_count": sum(counts)})

    # ------------------------------------------------------------------ models
    def _model_entry(self, name: str) -> dict[str, Any]:
        digest = hashlib.sha256(name.encode()).hexdigest()
        family = name.split(":")[0].split("/")[-1].rstrip("0123456789.") or "llama"
        return {"name": name, "model": name, "modified_at": CREATED_AT,
                "size": 1000000 + int(digest[:6], 16), "digest": digest,
                "details": {"parent_model": "", "format": "gguf", "family": family,
                            "families": [family], "parameter_size": "1B",
                            "quantization_level": "Q4_K_M"}}

    @route("GET", "/api/tags")
    def tags(self, req: ServerRequest) -> ServerResponse:
        return ServerResponse.json({"models": [self._model_entry(m) for m in self.models]})

    @route("GET", "/api/ps")
    def ps(self, req: ServerRequest) -> ServerResponse:
        out = []
        for name, expires in sorted(self.running.items()):
            entry = self._model_entry(name)
            entry.pop("modified_at")
            out.append({**entry, "expires_at": expires, "size_vram": entry["size"]})
        return ServerResponse.json({"models": out})

    @route("POST", "/api/show")
    def show(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req)
        model = self._model(body)
        entry = self._model_entry(model)
        caps = ["embedding"] if model in self.embedding_models else ["completion", "tools"]
        return ServerResponse.json({
            "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {model}\n",
            "parameters": 'stop                           "<|eot_id|>"',
            "template": "{{ .Prompt }}", "details": entry["details"],
            "model_info": {"general.architecture": entry["details"]["family"],
                           "general.parameter_count": 1000000000,
                           f"{entry['details']['family']}.context_length": self.num_ctx},
            "capabilities": caps, "modified_at": CREATED_AT})

    @route("POST", "/api/pull")
    def pull(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req)
        name = body.get("model") or body.get("name")
        if not name:
            raise _Fail(400, "model is required")
        model = canonical(str(name))
        found = self.registry is None or model in self.registry
        digest = "sha256:" + hashlib.sha256(model.encode()).hexdigest()
        total = 3000
        progress: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if found:
            progress += [{"status": f"pulling {digest[7:19]}", "digest": digest, "total": total}]
            progress += [{"status": f"pulling {digest[7:19]}", "digest": digest, "total": total,
                          "completed": done} for done in (1000, 2000, 3000)]
            progress += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"},
                         {"status": "success"}]
            if model not in self.models:
                self.models.append(model)
        else:
            progress.append({"error": "pull model manifest: file does not exist"})
        if body.get("stream", True) is False:
            if not found:
                raise _Fail(500, "pull model manifest: file does not exist")
            return ServerResponse.json({"status": "success"})
        return self._stream(progress)

    @route("GET", "/api/version")
    def version_info(self, req: ServerRequest) -> ServerResponse:
        return ServerResponse.json({"version": self.version})

    @route("GET", "/")
    def root(self, req: ServerRequest) -> ServerResponse:
        return ServerResponse.text("Ollama is running")
