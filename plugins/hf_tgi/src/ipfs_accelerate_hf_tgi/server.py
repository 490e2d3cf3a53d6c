"""Server side of TGI: answers like a ``text-generation-router``, deterministically.

The "model" is a word-level stand-in: the prompt's words are its tokens and the reply is
derived from a hash of the prompt and the seed.  Validation and errors follow TGI: 422
``validation`` for bad parameters or inputs that are too long, 429 ``overloaded``, and on
``/generate_stream`` errors arrive as an SSE event on a 200 answer, as TGI sends them.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from typing import Any, ClassVar, Mapping

from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire.openai_compat import messages_text
from ipfs_accelerate_py.wire.openai_server import (
    render_chat_chunks,
    render_chat_completion,
    render_completion,
    render_completion_chunks,
    render_model,
    sse_body,
    usage_dict,
)
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo
from ipfs_accelerate_py.wire.sse import format_sse

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORDS = ("the model says alpha bravo charlie delta echo foxtrot golf hotel india juliet "
          "kilo lima mike november oscar papa quebec romeo sierra tango").split()
_ERROR_TYPES = {400: "validation", 422: "validation", 424: "generation", 429: "overloaded",
                500: "incomplete_generation", 503: "healthcheck"}
_EOS = {"id": 2, "text": "</s>", "logprob": -0.01, "special": True}


class _Invalid(Exception):
    def __init__(self, message: str, status: int = 422, error_type: str = "validation",
                 plain: bool = False) -> None:
        super().__init__(message)
        self.message, self.status, self.error_type, self.plain = message, status, error_type, plain


class TGIServer(ProtocolServer):
    """A deterministic TGI router.  ``token`` (optional) demands that bearer token, as a
    hosted Inference Endpoint does; ``healthy=False`` makes ``/health`` answer 503."""

    name: ClassVar[str] = "hf_tgi"

    def __init__(self, seed: int = 0, *, max_input_tokens: int = 1024,
                 max_total_tokens: int = 2048, token: str | None = None,
                 model_id: str = "sim/tgi-model", version: str = "3.0.1") -> None:
        super().__init__(seed)
        self.seed = seed
        self.max_input_tokens = max_input_tokens
        self.max_total_tokens = max_total_tokens
        self.token = token
        self.model_id = model_id
        self.version = version
        self.healthy = True

    # ------------------------------------------------------------------ plumbing
    def handle(self, req: ServerRequest) -> ServerResponse:
        if self.token is not None and req.bearer_token() != self.token:
            return ServerResponse.json({"error": "Invalid credentials in Authorization header"}, 401)
        try:
            return super().handle(req)
        except _Invalid as exc:
            if exc.plain:
                return ServerResponse.text(exc.message, exc.status)
            return self._error(exc.status, exc.message, exc.error_type)

    def _error(self, status: int, message: str, error_type: str | None = None) -> ServerResponse:
        error_type = error_type or _ERROR_TYPES.get(status)
        if error_type is None:
            # not the router's own error (an auth proxy, a missing route): no error_type
            return ServerResponse.json({"error": message}, status)
        return ServerResponse.json({"error": message, "error_type": error_type}, status)

    def error(self, req: ServerRequest, status: int, message: str) -> ServerResponse:
        return self._error(status, message)

    def rate_limited(self, req: ServerRequest, info: RateLimitInfo) -> ServerResponse:
        # TGI has no quota headers: a full queue is "Model is overloaded".
        resp = self._error(429, "Model is overloaded", "overloaded")
        if info.retry_after is not None:
            resp.headers["retry-after"] = str(max(1, int(info.retry_after + 0.999)))
        return resp

    @staticmethod
    def _body(req: ServerRequest, required: tuple[str, ...]) -> dict[str, Any]:
        try:
            body = req.json()
        except ValueError as exc:
            raise _Invalid(f"Failed to parse the request body as JSON: {exc}", 400,
                           plain=True) from None
        for field in required:
            if not isinstance(body, dict) or field not in body:
                # axum's Json extractor: plain text, not TGI's JSON error body
                raise _Invalid("Failed to deserialize the JSON body into the target type: "
                               f"missing field `{field}` at line 1 column 2", plain=True)
        return body

    # ------------------------------------------------------------------ the "model"
    @staticmethod
    def _token_id(tok: str) -> int:
        return 100 + zlib.crc32(tok.encode("utf-8")) % 31000

    def tokens_of(self, text: str) -> list[dict[str, Any]]:
        return [{"id": self._token_id(m.group()), "text": m.group(), "start": m.start(),
                 "stop": m.end()} for m in _TOKEN.finditer(text)]

    def _validate(self, prompt: str, params: Mapping[str, Any], max_new_key: str) -> tuple[int, int]:
        """(input tokens, max new tokens) after TGI's validation rules."""
        if not prompt:
            raise _Invalid("Input validation error: `inputs` cannot be empty")
        temperature = params.get("temperature")
        if temperature is not None and not temperature > 0:
            raise _Invalid("Input validation error: `temperature` must be strictly positive")
        top_p = params.get("top_p")
        if top_p is not None and not 0 < top_p < 1:
            raise _Invalid("Input validation error: `top_p` must be > 0.0 and < 1.0")
        stop = params.get("stop") or []
        if len(stop) > 4:
            raise _Invalid(f"Input validation error: `stop` supports up to 4 stop sequences. "
                           f"Given: {len(stop)}")
        n_in = len(self.tokens_of(prompt))
        if n_in > self.max_input_tokens:
            raise _Invalid(f"Input validation error: `inputs` must have less than "
                           f"{self.max_input_tokens} tokens. Given: {n_in}")
        max_new = params.get(max_new_key)
        if max_new is None:
            max_new = self.max_total_tokens - n_in
        if max_new <= 0:
            raise _Invalid(f"Input validation error: `{max_new_key}` must be strictly positive")
        if n_in + max_new > self.max_total_tokens:
            raise _Invalid(f"Input validation error: `inputs` tokens + `max_new_tokens` must be "
                           f"<= {self.max_total_tokens}. Given: {n_in} `inputs` tokens and "
                           f"{max_new} `max_new_tokens`")
        return n_in, max_new

    def generate_tokens(self, prompt: str, max_new: int, params: Mapping[str, Any]
                        ) -> tuple[list[dict[str, Any]], str]:
        """The generated tokens (the last may be the special EOS) and the finish reason."""
        salt = f"{self.seed}:{params.get('seed', '')}:{prompt}"
        digest = hashlib.sha256(salt.encode("utf-8")).digest()
        n_words = 3 + digest[0] % 8
        tokens = []
        text = ""
        for i in range(min(n_words, max_new)):
            word = _WORDS[digest[1 + i] % len(_WORDS)]
            piece = word if i == 0 else " " + word
            tokens.append({"id": self._token_id(word), "text": piece,
                           "logprob": -round(digest[1 + i] / 255, 4), "special": False})
            text += piece
            for s in params.get("stop") or []:
                if s and text.endswith(s):
                    return tokens, "stop_sequence"
        if n_words >= max_new:
            return tokens, "length"
        return tokens + [dict(_EOS)], "eos_token"

    def _headers(self, n_in: int, n_out: int, chars: int) -> dict[str, str]:
        return {"x-compute-type": "gpu+optimized", "x-compute-time": "0.01",
                "x-compute-characters": str(chars), "x-total-time": "10",
                "x-validation-time": "0", "x-queue-time": "0", "x-inference-time": "10",
                "x-time-per-token": "1", "x-prompt-tokens": str(n_in),
                "x-generated-tokens": str(n_out)}

    # ------------------------------------------------------------------ native API
    def _generate(self, body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
        prompt = body["inputs"]
        if not isinstance(prompt, str):
            raise _Invalid("Failed to deserialize the JSON body into the target type: inputs: "
                           "invalid type, expected a string", plain=True)
        params = body.get("parameters") or {}
        n_in, max_new = self._validate(prompt, params, "max_new_tokens")
        tokens, finish = self.generate_tokens(prompt, max_new, params)
        text = "".join(t["text"] for t in tokens if not t["special"])
        if params.get("return_full_text"):
            text = prompt + text
        details = {"finish_reason": finish, "generated_tokens": len(tokens),
                   "seed": params.get("seed"), "input_length": n_in}
        return {"generated_text": text, "details": details}, tokens, n_in

    @route("POST", "/generate")
    def generate(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req, ("inputs",))
        out, tokens, n_in = self._generate(body)
        params = body.get("parameters") or {}
        answer: dict[str, Any] = {"generated_text": out["generated_text"]}
        if params.get("details"):
            d = out["details"]
            prefill = ([{"id": t["id"], "text": t["text"], "logprob": None}
                        for t in self.tokens_of(body["inputs"])]
                       if params.get("decoder_input_details") else [])
            answer["details"] = {"finish_reason": d["finish_reason"],
                                 "generated_tokens": d["generated_tokens"], "seed": d["seed"],
                                 "prefill": prefill, "tokens": tokens}
        return ServerResponse.json(answer, headers=self._headers(
            n_in, len(tokens), len(body["inputs"])))

    @route("POST", "/generate_stream")
    def generate_stream(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req, ("inputs",))
        try:
            out, tokens, n_in = self._generate(body)
        except _Invalid as exc:
            if exc.plain:
                raise
            # TGI has already answered 200 when validation runs: the error is an event.
            return ServerResponse.stream([format_sse({"error": exc.message,
                                                      "error_type": exc.error_type})])
        params = body.get("parameters") or {}
        return ServerResponse.stream(self.stream_events(out, tokens, bool(params.get("details"))),
                                     headers={"x-compute-type": "gpu+optimized",
                                              "x-accel-buffering": "no",
                                              "Cache-Control": "no-cache"})

    def stream_events(self, out: Mapping[str, Any], tokens: list[dict[str, Any]],
                      details: bool) -> list[bytes]:
        """TGI's token events; the last carries ``generated_text`` (and ``details``)."""
        events = []
        for i, tok in enumerate(tokens, start=1):
            last = i == len(tokens)
            events.append(format_sse({
                "index": i, "token": tok, "top_tokens": None,
                "generated_text": out["generated_text"] if last else None,
                "details": ({k: out["details"][k] for k in ("finish_reason", "generated_tokens",
                                                             "input_length", "seed")}
                            if last and details else None)}))
        return events

    @route("POST", "/tokenize")
    def tokenize(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req, ("inputs",))
        return ServerResponse.json(self.tokens_of(str(body["inputs"])))

    @route("GET", "/info")
    def info(self, req: ServerRequest) -> ServerResponse:
        return ServerResponse.json({
            "model_id": self.model_id, "model_sha": None, "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": 128, "max_best_of": 2, "max_stop_sequences": 4,
            "max_input_tokens": self.max_input_tokens, "max_total_tokens": self.max_total_tokens,
            "max_batch_total_tokens": 16000, "validation_workers": 2,
            "max_client_batch_size": 4, "router": "text-generation-router",
            "version": self.version, "sha": None, "docker_label": None})

    @route("GET", "/health")
    def health(self, req: ServerRequest) -> ServerResponse:
        if not self.healthy:
            return self._error(503, "unhealthy", "healthcheck")
        return ServerResponse(200, {"Content-Length": "0"}, b"")

    # ------------------------------------------------------------------ Messages API
    @staticmethod
    def chat_prompt(messages: Any) -> str:
        """A stand-in chat template: ``<|role|>content`` lines, then the assistant tag."""
        if not isinstance(messages, list):
            return messages_text(messages)
        lines = [f"<|{m.get('role', 'user')}|>\n{messages_text([m])}" for m in messages
                 if isinstance(m, Mapping)]
        return "\n".join(lines + ["<|assistant|>"])

    @route("POST", "/v1/chat/completions")
    def chat_completions(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req, ("messages",))
        prompt = self.chat_prompt(body["messages"])
        params = {"temperature": body.get("temperature"), "top_p": body.get("top_p"),
                  "stop": body.get("stop"), "seed": body.get("seed"),
                  "max_tokens": body.get("max_tokens", body.get("max_completion_tokens"))}
        stream = bool(body.get("stream"))
        try:
            n_in, max_new = self._validate(prompt, params, "max_tokens")
        except _Invalid as exc:
            if not stream:
                raise
            return ServerResponse.stream([format_sse({"error": exc.message,
                                                      "error_type": exc.error_type})])
        tokens, finish = self.generate_tokens(prompt, max_new, params)
        pieces = [t["text"] for t in tokens if not t["special"]]
        finish_reason = {"eos_token": "stop", "stop_sequence": "stop"}.get(finish, finish)
        usage = usage_dict(n_in, len(tokens))
        cid = ""  # TGI leaves the completion id empty
        fingerprint = {"system_fingerprint": f"{self.version}-native"}
        if stream:
            opts = body.get("stream_options") or {}
            chunks = render_chat_chunks(self.model_id, pieces,
                                        completion_id=cid, created=1700000000,
                                        usage=usage if opts.get("include_usage") else None,
                                        finish_reason=finish_reason, extra=fingerprint)
            return ServerResponse.stream(sse_body(chunks), headers={"Cache-Control": "no-cache"})
        return ServerResponse.json(render_chat_completion(
            self.model_id, "".join(pieces), completion_id=cid,
            created=1700000000, usage=usage, finish_reason=finish_reason, extra=fingerprint),
            headers=self._headers(n_in, len(tokens), len(prompt)))

    @route("POST", "/v1/completions")
    def completions(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req, ("prompt",))
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        stream = bool(body.get("stream"))
        if stream and len(prompts) > 1:
            raise _Invalid("Input validation error: streaming with multiple prompts is not "
                           "supported")
        params = {"temperature": body.get("temperature"), "top_p": body.get("top_p"),
                  "stop": body.get("stop"), "seed": body.get("seed"),
                  "max_tokens": body.get("max_tokens")}
        texts: list[str] = []
        finishes: list[str] = []
        n_in_total = n_out_total = 0
        for prompt in prompts:
            try:
                n_in, max_new = self._validate(str(prompt) + (body.get("suffix") or ""),
                                               params, "max_tokens")
            except _Invalid as exc:
                if not stream:
                    raise
                return ServerResponse.stream([format_sse({"error": exc.message,
                                                          "error_type": exc.error_type})])
            tokens, reason = self.generate_tokens(str(prompt), max_new, params)
            texts.append("".join(t["text"] for t in tokens if not t["special"]))
            finishes.append({"eos_token": "stop", "stop_sequence": "stop"}.get(reason, reason))
            n_in_total += n_in
            n_out_total += len(tokens)
        fingerprint = f"{self.version}-native"
        if stream:
            pieces = [p if i == 0 else " " + p for i, p in enumerate(texts[0].split(" "))]
            chunks = render_completion_chunks(self.model_id, pieces, completion_id="",
                                              created=1700000000)
            for c in chunks:
                c["system_fingerprint"] = fingerprint
                for ch in c["choices"]:
                    ch["finish_reason"] = ch["finish_reason"] and finishes[0]
            return ServerResponse.stream(sse_body(chunks), headers={"Cache-Control": "no-cache"})
        answer = render_completion(self.model_id, texts, completion_id="", created=1700000000,
                                   usage=usage_dict(n_in_total, n_out_total))
        answer["system_fingerprint"] = fingerprint
        for choice, reason in zip(answer["choices"], finishes):
            choice["finish_reason"] = reason
        return ServerResponse.json(answer)

    @route("GET", "/v1/models")
    def models(self, req: ServerRequest) -> ServerResponse:
        # TGI answers its one served model as a single model object, not a list.
        return ServerResponse.json(render_model(self.model_id, created=1700000000,
                                                owned_by=self.model_id))
