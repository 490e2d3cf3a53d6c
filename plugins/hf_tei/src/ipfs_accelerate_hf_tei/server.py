"""Server side of TEI: answers like a ``text-embeddings-router``, deterministically.

Vectors, sparse weights, rerank and class scores are derived from hashes of the input
text (plus the seed), so the same input always gets the same answer.  Validation follows
TEI: an empty batch is 400 ``empty``, a batch above ``max_client_batch_size`` is 413
``validation``, an input above ``max_input_length`` tokens without ``truncate`` is 422
``validation``, a body that does not deserialize is axum's plain-text 422, and overload
is 429 ``overloaded``.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import zlib
from typing import Any, ClassVar

from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire.openai_server import render_embeddings, usage_dict
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo

_TOKEN = re.compile(r"\w+|[^\w\s]")
_ERROR_TYPES = {400: "empty", 413: "validation", 422: "validation", 424: "backend",
                429: "overloaded", 503: "unhealthy"}
_CLS, _SEP = 101, 102


class _Invalid(Exception):
    def __init__(self, status: int, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type


class TEIServer(ProtocolServer):
    """A deterministic TEI router.  ``token`` (optional) makes it demand that bearer token,
    as a hosted Inference Endpoint does; ``healthy=False`` makes ``/health`` answer 503."""

    name: ClassVar[str] = "hf_tei"

    def __init__(self, seed: int = 0, *, dim: int = 16, max_input_length: int = 512,
                 max_client_batch_size: int = 32, token: str | None = None,
                 model_id: str = "sim/tei-embedder") -> None:
        super().__init__(seed)
        self.seed = seed
        self.dim = dim
        self.max_input_length = max_input_length
        self.max_client_batch_size = max_client_batch_size
        self.token = token
        self.model_id = model_id
        self.healthy = True
        self.prompts = {"query": "query: ", "passage": "passage: "}
        self.labels = ["negative", "positive"]

    # ------------------------------------------------------------------ plumbing
    def handle(self, req: ServerRequest) -> ServerResponse:
        if self.token is not None and req.bearer_token() != self.token:
            return ServerResponse.json({"error": "Invalid credentials in Authorization header"}, 401)
        try:
            return super().handle(req)
        except _PlainText as exc:
            return ServerResponse.text(exc.message, 422)
        except _Invalid as exc:
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
        # TEI has no quota headers: a full queue is "Model is overloaded".
        resp = self._error(429, "Model is overloaded", "overloaded")
        if info.retry_after is not None:
            resp.headers["retry-after"] = str(max(1, int(info.retry_after + 0.999)))
        return resp

    def _body(self, req: ServerRequest, required: tuple[str, ...]) -> dict[str, Any]:
        try:
            body = req.json()
        except ValueError as exc:
            raise _Invalid(400, f"Failed to parse the request body as JSON: {exc}") from None
        missing = [f for f in required if not isinstance(body, dict) or f not in body]
        if missing:
            # axum's Json extractor rejects with a plain-text 422, not TEI's JSON body.
            raise _PlainText(f"Failed to deserialize the JSON body into the target type: "
                             f"missing field `{missing[0]}`")
        return body

    def _ok(self, body: Any, tokens: int = 0, chars: int = 0) -> ServerResponse:
        return ServerResponse.json(body, headers={
            "x-compute-type": "cpu", "x-compute-time": "0", "x-compute-characters": str(chars),
            "x-compute-tokens": str(tokens), "x-total-time": "0", "x-tokenization-time": "0",
            "x-queue-time": "0", "x-inference-time": "0"})

    # ------------------------------------------------------------------ tokenizer
    def _token_id(self, tok: str) -> int:
        return 1000 + zlib.crc32(tok.lower().encode("utf-8")) % 29000

    def _tokens(self, text: str, special: bool = True) -> list[dict[str, Any]]:
        out = [{"id": _CLS, "text": "[CLS]", "special": True, "start": None, "stop": None}] if special else []
        out += [{"id": self._token_id(m.group()), "text": m.group().lower(), "special": False,
                 "start": m.start(), "stop": m.end()} for m in _TOKEN.finditer(text)]
        if special:
            out.append({"id": _SEP, "text": "[SEP]", "special": True, "start": None, "stop": None})
        return out

    def _prepare(self, body: dict[str, Any], value: Any) -> list[int]:
        """Token ids of one input after prompt, length validation and truncation."""
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            ids = list(value)
        elif isinstance(value, str):
            prompt_name = body.get("prompt_name")
            if prompt_name is not None:
                if prompt_name not in self.prompts:
                    raise _Invalid(422, f"Input validation error: prompt `{prompt_name}` cannot "
                                   "be found in the `sentence-transformers` configuration")
                value = self.prompts[prompt_name] + value
            ids = [t["id"] for t in self._tokens(value)]
        else:
            raise _PlainText("Failed to deserialize the JSON body into the target type: "
                             "inputs: data did not match any variant of untagged enum Input")
        if len(ids) > self.max_input_length:
            if not body.get("truncate"):
                raise _Invalid(422, "Input validation error: `inputs` must have less than "
                               f"{self.max_input_length} tokens. Given: {len(ids)}")
            keep = self.max_input_length
            direction = str(body.get("truncation_direction") or "right").lower()
            ids = ids[-keep:] if direction == "left" else ids[:keep]
        return ids

    def _batch(self, body: dict[str, Any]) -> list[Any]:
        inputs = body["inputs"]
        single = isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and all(isinstance(v, int) for v in inputs))
        batch = [inputs] if single else inputs
        if not isinstance(batch, list):
            raise _PlainText("Failed to deserialize the JSON body into the target type: "
                             "inputs: data did not match any variant of untagged enum Input")
        if not batch:
            raise _Invalid(400, "`inputs` cannot be empty", "empty")
        if len(batch) > self.max_client_batch_size:
            raise _Invalid(413, f"batch size {len(batch)} > maximum allowed batch size "
                           f"{self.max_client_batch_size}", "validation")
        return batch

    # ------------------------------------------------------------------ numbers
    def _unit(self, *parts: Any) -> list[float]:
        """``dim`` floats in [-1, 1) from a hash of ``parts`` (and the seed)."""
        out: list[float] = []
        counter = 0
        while len(out) < self.dim:
            digest = hashlib.sha256(repr((self.seed, counter) + parts).encode("utf-8")).digest()
            out += [v / 2**31 for v in struct.unpack(">8i", digest)]
            counter += 1
        return out[: self.dim]

    @staticmethod
    def _normalized(vec: list[float]) -> list[float]:
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    def _embedding(self, ids: list[int], normalize: bool, dims: int | None) -> list[float]:
        vec = self._unit("embed", tuple(ids))
        if dims is not None:
            vec = vec[:dims]
        return [round(v, 6) for v in (self._normalized(vec) if normalize else vec)]

    # ------------------------------------------------------------------ routes
    @route("POST", "/embed")
    def embed(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req, ("inputs",))
        batch = self._batch(body)
        dims = body.get("dimensions")
        if dims is not None and (not isinstance(dims, int) or not 0 < dims <= self.dim):
            raise _Invalid(422, f"Input validation error: `dimensions` must be between 1 and "
                           f"{self.dim}. Given: {dims}")
        normalize = body.get("normalize", True) is not False
        ids = [self._prepare(body, x) for x in batch]
        vectors = [self._embedding(i, normalize, dims) for i in ids]
        return self._ok(vectors, sum(map(len, ids)), sum(len(x) for x in batch if isinstance(x, str)))

    @route("POST", "/v1/embeddings")
    def openai_embeddings(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req, ("input",))
        fmt = body.get("encoding_format") or "float"
        try:
            if fmt not in ("float", "base64"):
                raise _PlainText("Failed to deserialize the JSON body into the target type: "
                                 f"encoding_format: unknown variant `{fmt}`")
            native = {**body, "inputs": body["input"]}
            batch = self._batch(native)
            dims = body.get("dimensions")
            if dims is not None and (not isinstance(dims, int) or not 0 < dims <= self.dim):
                raise _Invalid(422, f"Input validation error: `dimensions` must be between 1 "
                               f"and {self.dim}. Given: {dims}")
            ids = [self._prepare(native, x) for x in batch]
        except _PlainText:
            raise
        except _Invalid as exc:  # this route speaks the OpenAI-compatible error shape
            return ServerResponse.json({"message": exc.message, "code": exc.status,
                                        "error_type": exc.error_type
                                        or _ERROR_TYPES.get(exc.status, "backend")}, exc.status)
        vectors = [self._embedding(i, True, dims) for i in ids]
        tokens = sum(map(len, ids))
        return ServerResponse.json(render_embeddings(self.model_id, vectors,
                                                     usage=usage_dict(tokens),
                                                     encoding_format=fmt))

    @route("POST", "/embed_all")
    def embed_all(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req, ("inputs",))
        ids = [self._prepare(body, x) for x in self._batch(body)]
        out = [[[round(v, 6) for v in self._unit("token", t)] for t in seq] for seq in ids]
        return self._ok(out, sum(map(len, ids)))

    @route("POST", "/embed_sparse")
    def embed_sparse(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req, ("inputs",))
        ids = [self._prepare(body, x) for x in self._batch(body)]
        out = []
        for seq in ids:
            weights: dict[int, float] = {}
            for t in seq:
                if t in (_CLS, _SEP):
                    continue
                w = round(abs(self._unit("sparse", t)[0]) * 3, 6)
                weights[t] = max(weights.get(t, 0.0), w)
            out.append([{"index": i, "value": weights[i]} for i in sorted(weights)])
        return self._ok(out, sum(map(len, ids)))

    def _words(self, text: str) -> set[str]:
        return {m.group().lower() for m in _TOKEN.finditer(text) if m.group().isalnum()}

    @route("POST", "/rerank")
    def rerank(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req, ("query", "texts"))
        texts = body["texts"]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise _PlainText("Failed to deserialize the JSON body into the target type: "
                             "texts: invalid type, expected a sequence of strings")
        if not texts:
            raise _Invalid(400, "`texts` cannot be empty", "empty")
        if len(texts) > self.max_client_batch_size:
            raise _Invalid(413, f"batch size {len(texts)} > maximum allowed batch size "
                           f"{self.max_client_batch_size}", "validation")
        query = self._words(str(body["query"]))
        ranks = []
        for i, text in enumerate(texts):
            self._prepare(body, str(body["query"]) + " " + text)  # length validation as TEI
            words = self._words(text)
            overlap = len(query & words) / (len(query | words) or 1)
            raw = round(overlap * 10 - 5, 6)
            score = raw if body.get("raw_scores") else round(1 / (1 + math.exp(-raw)), 6)
            rank: dict[str, Any] = {"index": i, "score": score}
            if body.get("return_text"):
                rank["text"] = text
            ranks.append(rank)
        ranks.sort(key=lambda r: (-r["score"], r["index"]))
        return self._ok(ranks, sum(len(self._tokens(t)) for t in texts))

    def _classify(self, body: dict[str, Any], item: Any) -> list[dict[str, Any]]:
        text = " ".join(item) if isinstance(item, list) else item
        if not isinstance(text, str):
            raise _PlainText("Failed to deserialize the JSON body into the target type: "
                             "inputs: data did not match any variant of untagged enum PredictInput")
        self._prepare(body, text)
        logits = [round(v * 4, 6) for v in self._unit("predict", text)[: len(self.labels)]]
        if body.get("raw_scores"):
            scores = logits
        else:
            exp = [math.exp(v) for v in logits]
            scores = [round(e / sum(exp), 6) for e in exp]
        preds = [{"label": lab, "score": s} for lab, s in zip(self.labels, scores)]
        return sorted(preds, key=lambda p: -p["score"])

    @route("POST", "/predict")
    def predict(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req, ("inputs",))
        inputs = body["inputs"]
        pair = isinstance(inputs, list) and len(inputs) == 2 and all(isinstance(v, str) for v in inputs)
        if isinstance(inputs, str) or pair:
            return self._ok(self._classify(body, inputs))
        if not isinstance(inputs, list) or not inputs:
            raise _Invalid(400, "`inputs` cannot be empty", "empty")
        return self._ok([self._classify(body, item) for item in inputs])

    @route("POST", "/tokenize")
    def tokenize(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req, ("inputs",))
        inputs = body["inputs"]
        batch = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(batch, list) or not all(isinstance(t, str) for t in batch):
            raise _PlainText("Failed to deserialize the JSON body into the target type: "
                             "inputs: data did not match any variant of untagged enum TokenizeInput")
        special = body.get("add_special_tokens", True) is not False
        return self._ok([self._tokens(t, special) for t in batch])

    @route("GET", "/info")
    def info(self, req: ServerRequest) -> ServerResponse:
        return ServerResponse.json({
            "model_id": self.model_id, "model_sha": None, "model_dtype": "float32",
            "model_type": {"embedding": {"pooling": "cls"}},
            "max_concurrent_requests": 512, "max_input_length": self.max_input_length,
            "max_batch_tokens": 16384, "max_batch_requests": None,
            "max_client_batch_size": self.max_client_batch_size, "auto_truncate": False,
            "tokenization_workers": 4, "version": "1.5.0", "sha": None, "docker_label": None,
            "served_model_name": self.model_id})

    @route("GET", "/health")
    def health(self, req: ServerRequest) -> ServerResponse:
        if not self.healthy:
            return self._error(503, "unhealthy", "unhealthy")
        return ServerResponse(200, {"Content-Length": "0"}, b"")


class _PlainText(_Invalid):
    """axum's own 422 for a body that does not deserialize: text/plain, not TEI's JSON."""

    def __init__(self, message: str) -> None:
        super().__init__(422, message)
