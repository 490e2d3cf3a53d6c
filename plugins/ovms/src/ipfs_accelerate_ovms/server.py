"""The server side of OpenVINO Model Server, for tests, the simulator and benchmarks.

Answers like OVMS on its KServe v2 (``/v2``), TF-Serving-style (``/v1``) and
OpenAI-compatible (``/v3``) REST endpoints, with OVMS's ``{"error": "<message>"}`` bodies
and status codes (404 missing model or version, 400 refused request, 503 version not loaded
yet).  Served models compute simple deterministic functions, so a test can check each row
of a batched answer; generated text and vectors are deterministic under ``seed``.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence
from urllib.parse import unquote

import attrs
from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire.sse import format_sse

from .tensors import V2_DATATYPES, element_count, flatten

RowFn = Callable[[list[float], int], list[float]]


@attrs.define
class ServedModel:
    """A model the server serves: one input and one output tensor, a row function."""

    name: str
    input_name: str
    input_dim: int
    output_name: str
    output_dim: int
    fn: RowFn
    datatype: str = "FP32"
    #: version -> state (AVAILABLE, LOADING, UNLOADING, END)
    versions: dict[str, str] = attrs.field(factory=lambda: {"1": "AVAILABLE"})

    def latest(self) -> str | None:
        ready = [int(v) for v, s in self.versions.items() if s == "AVAILABLE"]
        return str(max(ready)) if ready else None


def _plus_one(row: list[float], version: int) -> list[float]:
    return [x + 1 for x in row]


def _summary(row: list[float], version: int) -> list[float]:
    return [sum(row) * version, min(row), max(row)]


def default_models() -> list[ServedModel]:
    """``dummy`` (like OVMS's test model: a = b + 1) and ``resnet`` (two versions; the
    version scales the first output, so version pinning is observable)."""
    return [
        ServedModel("dummy", "b", 10, "a", 10, _plus_one),
        ServedModel("resnet", "0", 4, "1463", 3, _summary,
                    versions={"1": "AVAILABLE", "2": "AVAILABLE"}),
    ]


_VOCAB = ("openvino", "serves", "models", "fast", "on", "every", "device", "with", "low",
          "latency", "and", "high", "throughput", "today")
_NOT_FOUND = "Model with requested name is not found"
_VERSION_NOT_FOUND = "Model with requested version is not found"
_NOT_LOADED = "Model with requested version is not loaded yet"
_GRAPH_NOT_FOUND = "Mediapipe graph definition with requested name is not found"


class OvmsServer(ProtocolServer):
    """OpenVINO Model Server.  ``models`` replaces the served tensor models; ``servables``
    names the ``/v3`` graphs (chat/completions, embeddings, rerank); ``api_key`` makes
    every route require ``Authorization: Bearer <api_key>``."""

    name: ClassVar[str] = "ovms"
    server_version: ClassVar[str] = "2025.3.0"
    max_prompt_len: ClassVar[int] = 512

    def __init__(self, seed: int = 0, models: Sequence[ServedModel] | None = None,
                 servables: Mapping[str, str] | None = None, api_key: str | None = None) -> None:
        super().__init__(seed)
        self.seed = seed
        self.models = {m.name: m for m in (models if models is not None else default_models())}
        self.servables = dict(servables if servables is not None else {
            "llama3": "llm", "gte-large": "embeddings", "bge-reranker": "rerank"})
        self.api_key = api_key

    # ------------------------------------------------------------------ plumbing
    def handle(self, req: ServerRequest) -> ServerResponse:
        if self.api_key is not None and req.bearer_token() != self.api_key:
            return self.error(req, 401, "Unauthorized")
        return super().handle(req)

    def error(self, req: ServerRequest, status: int, message: str) -> ServerResponse:
        return ServerResponse.json({"error": message}, status)

    def set_state(self, model: str, version: str, state: str) -> None:
        """Change a model version's state (``LOADING`` makes it answer 503)."""
        self.models[model].versions[str(version)] = state

    def _body(self, req: ServerRequest) -> Any:
        try:
            return req.json()
        except ValueError:
            return None

    def _resolve(self, req: ServerRequest, model: str,
                 version: str | None) -> tuple[ServedModel, str] | ServerResponse:
        m = self.models.get(unquote(model))
        if m is None:
            return self.error(req, 404, _NOT_FOUND)
        if version is None:
            v = m.latest()
            if v is None:
                return self.error(req, 503, _NOT_LOADED)
            return m, v
        version = unquote(version)
        if version not in m.versions:
            return self.error(req, 404, _VERSION_NOT_FOUND)
        if m.versions[version] != "AVAILABLE":
            return self.error(req, 503, _NOT_LOADED)
        return m, version

    def _ok(self) -> ServerResponse:
        return ServerResponse.json({})

    # ------------------------------------------------------------------ KServe v2
    @route("GET", "/v2/health/live")
    def live(self, req: ServerRequest) -> ServerResponse:
        return self._ok()

    @route("GET", "/v2/health/ready")
    def ready(self, req: ServerRequest) -> ServerResponse:
        if any(m.latest() for m in self.models.values()) or not self.models:
            return self._ok()
        return self.error(req, 503, "Server is not ready")

    @route("GET", "/v2")
    def server_metadata(self, req: ServerRequest) -> ServerResponse:
        return ServerResponse.json({"name": "OpenVINO Model Server", "version": self.server_version})

    def _metadata(self, req: ServerRequest, model: str, version: str | None) -> ServerResponse:
        found = self._resolve(req, model, version)
        if isinstance(found, ServerResponse):
            return found
        m, _ = found
        return ServerResponse.json({
            "name": m.name, "versions": sorted(m.versions, key=int), "platform": "OpenVINO",
            "inputs": [{"name": m.input_name, "datatype": m.datatype, "shape": [-1, m.input_dim]}],
            "outputs": [{"name": m.output_name, "datatype": m.datatype, "shape": [-1, m.output_dim]}],
        })

    @route("GET", "/v2/models/{model}")
    def model_metadata(self, req: ServerRequest, model: str) -> ServerResponse:
        return self._metadata(req, model, None)

    @route("GET", "/v2/models/{model}/versions/{version}")
    def model_version_metadata(self, req: ServerRequest, model: str, version: str) -> ServerResponse:
        return self._metadata(req, model, version)

    @route("GET", "/v2/models/{model}/ready")
    def model_ready(self, req: ServerRequest, model: str) -> ServerResponse:
        found = self._resolve(req, model, None)
        return found if isinstance(found, ServerResponse) else self._ok()

    @route("GET", "/v2/models/{model}/versions/{version}/ready")
    def model_version_ready(self, req: ServerRequest, model: str, version: str) -> ServerResponse:
        found = self._resolve(req, model, version)
        return found if isinstance(found, ServerResponse) else self._ok()

    @route("POST", "/v2/models/{model}/infer")
    def infer(self, req: ServerRequest, model: str) -> ServerResponse:
        return self._infer(req, model, None)

    @route("POST", "/v2/models/{model}/versions/{version}/infer")
    def infer_version(self, req: ServerRequest, model: str, version: str) -> ServerResponse:
        return self._infer(req, model, version)

    def _infer(self, req: ServerRequest, model: str, version: str | None) -> ServerResponse:
        found = self._resolve(req, model, version)
        if isinstance(found, ServerResponse):
            return found
        m, v = found
        body = self._body(req)
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            return self.error(req, 400, "Invalid message structure")
        tensors = {t.get("name"): t for t in body["inputs"] if isinstance(t, dict)}
        if m.input_name not in tensors:
            return self.error(req, 400, "Missing input with specific name")
        if len(tensors) != 1:
            return self.error(req, 400, "Invalid number of inputs")
        t = tensors[m.input_name]
        if t.get("datatype") not in V2_DATATYPES or t["datatype"] != m.datatype:
            return self.error(req, 400, "Invalid input precision")
        shape = t.get("shape")
        if (not isinstance(shape, list) or len(shape) != 2 or shape[1] != m.input_dim
                or not isinstance(shape[0], int) or shape[0] < 1):
            return self.error(req, 400, "Invalid input shape")
        values = flatten(t.get("data", []))
        if len(values) != element_count(shape):
            return self.error(req, 400, "Invalid number of values in tensor proto container")
        rows = [values[i * m.input_dim:(i + 1) * m.input_dim] for i in range(shape[0])]
        out_rows = [m.fn(row, int(v)) for row in rows]
        wanted = [o.get("name") for o in body.get("outputs") or [] if isinstance(o, dict)]
        if wanted and any(w != m.output_name for w in wanted):
            return self.error(req, 400, "Invalid output name")
        return ServerResponse.json({
            "model_name": m.name, "model_version": v, "id": str(body.get("id") or ""),
            "outputs": [{"name": m.output_name, "shape": [len(rows), m.output_dim],
                         "datatype": m.datatype, "data": [x for r in out_rows for x in r]}],
        })

    # ------------------------------------------------------------------ TF-Serving style
    def _status(self, m: ServedModel, version: str | None) -> list[dict[str, Any]]:
        versions = [version] if version is not None else sorted(m.versions, key=int)
        return [{"version": v, "state": m.versions[v],
                 "status": {"error_code": "OK", "error_message": ""}} for v in versions]

    @route("GET", "/v1/config")
    def config_status(self, req: ServerRequest) -> ServerResponse:
        return ServerResponse.json({name: {"model_version_status": self._status(m, None)}
                                    for name, m in self.models.items()})

    def _model_status(self, req: ServerRequest, model: str, version: str | None) -> ServerResponse:
        m = self.models.get(unquote(model))
        if m is None:
            return self.error(req, 404, _NOT_FOUND)
        if version is not None and unquote(version) not in m.versions:
            return self.error(req, 404, _VERSION_NOT_FOUND)
        return ServerResponse.json({"model_version_status": self._status(
            m, unquote(version) if version is not None else None)})

    @route("GET", "/v1/models/{model}")
    def tfs_status(self, req: ServerRequest, model: str) -> ServerResponse:
        return self._model_status(req, model, None)

    @route("GET", "/v1/models/{model}/versions/{version}")
    def tfs_version_status(self, req: ServerRequest, model: str, version: str) -> ServerResponse:
        return self._model_status(req, model, version)

    def _tfs_metadata(self, req: ServerRequest, model: str, version: str | None) -> ServerResponse:
        found = self._resolve(req, model, version)
        if isinstance(found, ServerResponse):
            return found
        m, v = found

        def sig(name: str, dim: int) -> dict[str, Any]:
            return {"name": name, "dtype": "DT_FLOAT",
                    "tensorShape": {"dim": [{"size": "-1"}, {"size": str(dim)}]}}

        return ServerResponse.json({
            "modelSpec": {"name": m.name, "signatureName": "", "version": v},
            "metadata": {"signature_def": {
                "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
                "signatureDef": {"serving_default": {
                    "inputs": {m.input_name: sig(m.input_name, m.input_dim)},
                    "outputs": {m.output_name: sig(m.output_name, m.output_dim)},
                    "methodName": "tensorflow/serving/predict"}}}},
        })

    @route("GET", "/v1/models/{model}/metadata")
    def tfs_metadata(self, req: ServerRequest, model: str) -> ServerResponse:
        return self._tfs_metadata(req, model, None)

    @route("GET", "/v1/models/{model}/versions/{version}/metadata")
    def tfs_version_metadata(self, req: ServerRequest, model: str, version: str) -> ServerResponse:
        return self._tfs_metadata(req, model, version)

    @route("POST", "/v1/models/{model}:predict")
    def predict(self, req: ServerRequest, model: str) -> ServerResponse:
        return self._predict(req, model, None)

    @route("POST", "/v1/models/{model}/versions/{version}:predict")
    def predict_version(self, req: ServerRequest, model: str, version: str) -> ServerResponse:
        return self._predict(req, model, version)

    def _predict(self, req: ServerRequest, model: str, version: str | None) -> ServerResponse:
        found = self._resolve(req, model, version)
        if isinstance(found, ServerResponse):
            return found
        m, v = found
        body = self._body(req)
        if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
            return self.error(req, 400, "Invalid request: expected exactly one of instances or inputs")
        row_format = "instances" in body
        data = body["instances" if row_format else "inputs"]
        if row_format and isinstance(data, list):
            rows = [row.get(m.input_name) if isinstance(row, dict) else row for row in data]
        elif isinstance(data, dict):
            rows = data.get(m.input_name)
        else:
            rows = data
        if not isinstance(rows, list) or not rows:
            return self.error(req, 400, "Missing input with specific name")
        flat_rows = [flatten(r) for r in rows]
        if any(len(r) != m.input_dim or not all(isinstance(x, (int, float)) for x in r)
               for r in flat_rows):
            return self.error(req, 400, "Invalid input shape")
        out = [m.fn(r, int(v)) for r in flat_rows]
        if row_format:
            return ServerResponse.json({"predictions": out})
        return ServerResponse.json({"outputs": out})

    # ------------------------------------------------------------------ OpenAI-compatible /v3
    def _words(self, *parts: str, n: int) -> list[str]:
        digest = hashlib.sha256(("%d|" % self.seed + "|".join(parts)).encode()).digest()
        return [_VOCAB[digest[i % len(digest)] % len(_VOCAB)] for i in range(n)]

    def _servable(self, req: ServerRequest, body: Any, kind: str) -> ServerResponse | None:
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return self.error(req, 400, "Invalid request: model is missing")
        if self.servables.get(body["model"]) != kind:
            return self.error(req, 404, _GRAPH_NOT_FOUND)
        return None

    @staticmethod
    def _text_of(content: Any) -> str:
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        return ""

    def _generate(self, req: ServerRequest, body: dict[str, Any],
                  prompt: str) -> tuple[list[str], str, int] | ServerResponse:
        prompt_tokens = len(prompt.split())
        if prompt_tokens > self.max_prompt_len:
            return self.error(req, 400, f"prompt is too long: {prompt_tokens} tokens exceeds "
                                        f"max_prompt_len {self.max_prompt_len}")
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            return self.error(req, 400, "max_tokens must be a positive integer")
        natural = 4 + len(prompt) % 5
        n = min(natural, limit) if limit else natural
        return self._words(body["model"], prompt, n=n), ("length" if n < natural else "stop"), prompt_tokens

    def _usage(self, prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    @route("POST", "/v3/chat/completions")
    def chat(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req)
        bad = self._servable(req, body, "llm")
        if bad is not None:
            return bad
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(msg, dict) and "role" in msg for msg in messages):
            return self.error(req, 400, "Invalid request: messages is missing or malformed")
        prompt = " ".join(self._text_of(msg.get("content")) for msg in messages)
        gen = self._generate(req, body, prompt)
        if isinstance(gen, ServerResponse):
            return gen
        words, finish, prompt_tokens = gen
        created = 1_716_825_108 + self.seed
        tools = body.get("tools")
        tool_call = None
        if tools and body.get("tool_choice", "auto") != "none":
            fn = (tools[0].get("function") or {}) if isinstance(tools[0], dict) else {}
            last = self._text_of(messages[-1].get("content"))
            tool_call = {"id": "call_" + hashlib.sha256(last.encode()).hexdigest()[:12],
                         "type": "function",
                         "function": {"name": fn.get("name", "tool"),
                                      "arguments": json.dumps({"query": last})}}
            finish = "tool_calls"
        if body.get("stream"):
            return ServerResponse.stream(self._chat_stream(body, words, finish, prompt_tokens,
                                                           tool_call, created))
        message: dict[str, Any] = {"role": "assistant",
                                   "content": None if tool_call else " ".join(words)}
        if tool_call:
            message["tool_calls"] = [tool_call]
        return ServerResponse.json({
            "choices": [{"finish_reason": finish, "index": 0, "logprobs": None, "message": message}],
            "created": created, "model": body["model"], "object": "chat.completion",
            "usage": self._usage(prompt_tokens, 0 if tool_call else len(words)),
        })

    def _chat_stream(self, body: dict[str, Any], words: list[str], finish: str, prompt_tokens: int,
                     tool_call: dict[str, Any] | None, created: int) -> Iterator[bytes]:
        model = body["model"]
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
            obj: dict[str, Any] = {"choices": [{"index": 0, "delta": delta,
                                                "finish_reason": finish_reason}],
                                   "created": created, "model": model,
                                   "object": "chat.completion.chunk"}
            if include_usage:
                obj["usage"] = None
            return format_sse(obj)

        yield chunk({"role": "assistant", "content": None}, None)
        if tool_call:
            fn = tool_call["function"]
            args = fn["arguments"]
            yield chunk({"tool_calls": [{"index": 0, "id": tool_call["id"], "type": "function",
                                         "function": {"name": fn["name"], "arguments": ""}}]}, None)
            half = len(args) // 2
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[:half]}}]}, None)
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[half:]}}]},
                        finish)
        else:
            for i, word in enumerate(words):
                last = i == len(words) - 1
                yield chunk({"content": word if last else word + " "}, finish if last else None)
        if include_usage:
            yield format_sse({"choices": [], "created": created, "model": model,
                              "object": "chat.completion.chunk",
                              "usage": self._usage(prompt_tokens, 0 if tool_call else len(words))})
        yield format_sse("[DONE]")

    @route("POST", "/v3/completions")
    def completions(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req)
        bad = self._servable(req, body, "llm")
        if bad is not None:
            return bad
        if not isinstance(body.get("prompt"), str):
            return self.error(req, 400, "prompt is not a string")
        gen = self._generate(req, body, body["prompt"])
        if isinstance(gen, ServerResponse):
            return gen
        words, finish, prompt_tokens = gen
        created = 1_716_825_108 + self.seed
        if body.get("stream"):
            def events() -> Iterator[bytes]:
                for i, word in enumerate(words):
                    last = i == len(words) - 1
                    yield format_sse({"choices": [{"index": 0, "text": word if last else word + " ",
                                                   "finish_reason": finish if last else None,
                                                   "logprobs": None}],
                                      "created": created, "model": body["model"],
                                      "object": "text_completion"})
                yield format_sse("[DONE]")

            return ServerResponse.stream(events())
        return ServerResponse.json({
            "choices": [{"finish_reason": finish, "index": 0, "logprobs": None,
                         "text": " ".join(words)}],
            "created": created, "model": body["model"], "object": "text_completion",
            "usage": self._usage(prompt_tokens, len(words)),
        })

    def vector(self, model: str, text: str, dim: int = 8) -> list[float]:
        """The deterministic unit vector the server returns for ``text``."""
        digest = hashlib.sha256(f"{self.seed}|{model}|{text}".encode()).digest()
        raw = [b / 127.5 - 1.0 for b in struct.unpack(f"{dim}B", digest[:dim])]
        norm = math.sqrt(sum(x * x for x in raw)) or 1.0
        return [round(x / norm, 6) for x in raw]

    @route("POST", "/v3/embeddings")
    def embeddings(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req)
        bad = self._servable(req, body, "embeddings")
        if bad is not None:
            return bad
        inp = body.get("input")
        texts = [inp] if isinstance(inp, str) else inp
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return self.error(req, 400, "input field is not a string or array of strings")
        if len(texts) > 500:
            return self.error(req, 400, "Number of input documents exceeds allowed value 500")
        return ServerResponse.json({
            "object": "list", "model": body["model"],
            "data": [{"object": "embedding", "embedding": self.vector(body["model"], t), "index": i}
                     for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": sum(len(t.split()) for t in texts),
                      "total_tokens": sum(len(t.split()) for t in texts)},
        })

    @staticmethod
    def relevance(query: str, document: str) -> float:
        """Word-overlap score in (0, 1): deterministic and easy to predict in tests."""
        q, d = set(query.lower().split()), set(document.lower().split())
        return round((len(q & d) + 1) / (len(q) + 2), 6)

    @route("POST", "/v3/rerank")
    def rerank(self, req: ServerRequest) -> ServerResponse:
        body = self._body(req)
        bad = self._servable(req, body, "rerank")
        if bad is not None:
            return bad
        docs = body.get("documents")
        if not isinstance(body.get("query"), str) or not isinstance(docs, list) or not all(
                isinstance(d, str) for d in docs):
            return self.error(req, 400, "query and documents (a list of strings) are required")
        if len(docs) > 100:
            return self.error(req, 400, "Number of documents exceeds allowed value 100")
        scored = sorted(((self.relevance(body["query"], d), i) for i, d in enumerate(docs)),
                        key=lambda p: (-p[0], p[1]))
        top_n = body.get("top_n")
        if isinstance(top_n, int) and top_n > 0:
            scored = scored[:top_n]
        results = []
        for score, i in scored:
            hit: dict[str, Any] = {"index": i, "relevance_score": score}
            if body.get("return_documents"):
                hit["document"] = docs[i]
            results.append(hit)
        return ServerResponse.json({"results": results})
