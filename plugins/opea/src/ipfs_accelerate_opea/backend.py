"""OPEA GenAIComps microservices and the ChatQnA gateway, client side."""

from __future__ import annotations

import ast
import json
from typing import Any, Hashable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import attrs

from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.config import BackendConfig
from ipfs_accelerate_py.errors import InvalidRequest, ProviderError, TransientError
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.request import Request, new_request_id
from ipfs_accelerate_py.results import IncompleteStream, Result, StreamChunk, Usage
from ipfs_accelerate_py.wire import openai_compat as oc
from ipfs_accelerate_py.wire.counts import check_batch, check_count


#: operation -> (option naming its own service URL, path under that URL)
_ROUTES = {
    "chat": ("llm_url", "chat/completions"),
    "embeddings": ("embedding_url", "embeddings"),
    "rerank": ("reranking_url", "reranking"),
    "chatqna": ("chatqna_url", "chatqna"),
    "health": (None, "health_check"),
}
_REQUIRED = {"chat": ("messages",), "embeddings": ("input",), "chatqna": ("messages",)}


def _with_v1(url: str) -> str:
    """OPEA services serve under /v1; a bare host:port gets it appended."""
    url = url.rstrip("/")
    return url + "/v1" if urlsplit(url).path in ("", "/") else url


class OPEABackend(Backend):
    """OPEA microservices (LLM text generation, embeddings, reranking) and gateways (ChatQnA).

    The base URL includes ``/v1`` (default ``http://localhost:8000/v1``, as in the original
    system; a bare ``http://host:port`` gets ``/v1`` appended).  Each service usually runs on
    its own port, so options ``llm_url``, ``embedding_url``, ``reranking_url`` and
    ``chatqna_url`` may point an operation elsewhere (same ``/v1`` rule); all share one
    circuit breaker.  A key is optional: when given it is sent as a bearer token.
    """

    name = "opea"
    default_base_url = "http://localhost:8000/v1"
    base_url_version = "/v1"
    operations = {
        "chat": "POST /v1/chat/completions on the LLM text-generation service (streams)",
        "embeddings": "POST /v1/embeddings (OpenAI shape; single inputs are batched)",
        "rerank": "POST /v1/reranking: order documents by relevance to a query",
        "chatqna": "POST /v1/chatqna on a ChatQnA gateway (RAG answer; streams)",
        "health": "GET /v1/health_check",
    }
    streaming_operations = frozenset({"chat", "chatqna"})
    key_required = False
    env_keys = ("OPEA_API_KEY",)
    metadata_keys = ("opea_api_key",)
    env_base_url = ("OPEA_API_ENDPOINT",)
    metadata_base_url = ("opea_endpoint",)
    request_id_header = "X-Request-ID"
    response_id_header = "x-request-id"

    def __init__(self, config: BackendConfig | None = None) -> None:
        super().__init__(config)
        self.base_url = _with_v1(self.base_url)

    def service_url(self, operation: str) -> str:
        option, path = _ROUTES[operation]
        base = self.option(option) if option else None
        return (_with_v1(str(base)) if base else self.base_url) + "/" + path

    def check(self, request: Request) -> None:
        super().check(request)
        missing = [k for k in _REQUIRED.get(request.operation, ())
                   if request.payload.get(k) in (None, "", [])]
        if request.operation == "rerank":
            query, docs = _rerank_query(request.payload)
            missing += [name for name, v in (("query", query), ("documents", docs)) if not v]
        if missing:
            raise InvalidRequest(f"opea {request.operation}: payload needs {', '.join(missing)}",
                                 backend=self.name)

    def classify_error(self, request: Request | None, response: Any) -> ProviderError:
        info = oc.classify_response(response)
        return self.make_error(info.cls, info.message, response, code=info.code)

    def _post(self, request: Request, body: Mapping[str, Any]) -> HttpRequest:
        return HttpRequest("POST", self.service_url(request.operation), json=dict(body))

    # ------------------------------------------------------------------ chat
    def build_chat(self, request: Request, key: ApiKey | None) -> HttpRequest:
        body = dict(request.payload)
        body["stream"] = bool(request.stream)  # the service's default differs per version
        if not request.stream:
            body.pop("stream_options", None)
        return self._post(request, body)

    def parse_chat(self, request: Request, response: Any) -> Result:
        body = self.decode_json(response)
        rid = self.provider_request_id(response)
        choices = body.get("choices") if isinstance(body, Mapping) else None
        # A plain-string "messages" is answered as a text completion.
        if isinstance(choices, list) and choices and "text" in choices[0] and "message" not in choices[0]:
            return oc.parse_completion(body, request_id=rid, make_error=self.error_factory(response))
        return oc.parse_chat_completion(body, request_id=rid, make_error=self.error_factory(response))

    def stream_chat(self, request: Request, response: Any) -> Iterator[StreamChunk]:
        return oc.iter_stream(response, self.error_factory(response))

    # ------------------------------------------------------------------ chatqna
    def build_chatqna(self, request: Request, key: ApiKey | None) -> HttpRequest:
        body = dict(request.payload)
        body["stream"] = bool(request.stream)  # the gateway streams unless told not to
        return self._post(request, body)

    def parse_chatqna(self, request: Request, response: Any) -> Result:
        return self.parse_chat(request, response)

    def stream_chatqna(self, request: Request, response: Any) -> Iterator[StreamChunk]:
        """The gateway streams ``data: b'token'`` frames (Python bytes literals), or the LLM's
        own OpenAI chunks passed through, and ends with ``data: [DONE]``."""
        make = self.error_factory(response)
        for ev in oc.safe_events(response, make):
            data = ev.data.strip()
            if data == "[DONE]":
                return
            if data[:2] in ("b'", 'b"'):
                try:
                    raw = ast.literal_eval(data)
                    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
                except (ValueError, SyntaxError, UnicodeDecodeError):
                    raise make(TransientError, f"malformed stream frame: {data[:100]!r}",
                               "malformed_response") from None
                yield StreamChunk(text=text, raw=data)
            elif data.startswith("{"):
                try:
                    obj = json.loads(data)
                except ValueError:
                    raise make(TransientError, f"malformed stream event: {data[:100]!r}",
                               "malformed_response") from None
                if oc.is_error_event(obj):
                    raise oc.error_from_body(obj, make)
                yield oc.parse_chunk(obj)
            else:
                yield StreamChunk(text=data, raw=data)
        raise IncompleteStream("stream ended without its [DONE] terminator")

    # ------------------------------------------------------------------ embeddings
    def build_embeddings(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._post(request, request.payload)

    def parse_embeddings(self, request: Request, response: Any) -> Result:
        body = self.decode_json(response)
        rid = self.provider_request_id(response)
        if isinstance(body, Mapping) and "embedding" in body and "data" not in body:
            # The older EmbedDoc answer: {"text": ..., "embedding": [...]}.
            vec = body["embedding"]
            if not isinstance(vec, list) or not vec:
                raise self.make_error(TransientError, "embedding answer has no vector", response,
                                      code="malformed_response")
            vectors = check_count(f"{self.name} embeddings",
                                  oc.embedding_inputs(request.payload.get("input")),
                                  vec if isinstance(vec[0], list) else [vec],
                                  self.error_factory(response))
            return Result(request_id=rid, raw=body, data=[[float(x) for x in v] for v in vectors])
        return oc.parse_embeddings(body, expected=oc.embedding_inputs(request.payload.get("input")),
                                   request_id=rid, make_error=self.error_factory(response))

    # ------------------------------------------------------------------ rerank
    def build_rerank(self, request: Request, key: ApiKey | None) -> HttpRequest:
        """``{"query", "documents": [str | {"text"}], "top_n"}`` is sent as OPEA's
        RerankingRequest (``input`` + ``retrieved_docs``); a native body passes through."""
        p = request.payload
        if "documents" in p and "retrieved_docs" not in p:
            body: dict[str, Any] = {"input": p.get("query"),
                                    "retrieved_docs": [_doc(d) for d in p["documents"]]}
            if p.get("top_n") is not None:
                body["top_n"] = p["top_n"]
            return self._post(request, body)
        return self._post(request, p)

    def parse_rerank(self, request: Request, response: Any) -> Result:
        """``data``: ``[{"index", "text", "score"}]`` best first; ``index`` points into the
        documents sent (None if the service returned a text it was not given)."""
        body = self.decode_json(response)
        sent = [_doc(d)["text"] for d in (request.payload.get("documents")
                                          or request.payload.get("retrieved_docs") or [])]
        if isinstance(body, Mapping) and isinstance(body.get("reranked_docs"), list):
            ranked = [(str(d.get("text", "")), d.get("score")) for d in body["reranked_docs"]]
        elif isinstance(body, Mapping) and isinstance(body.get("documents"), list):
            ranked = [(str(d), None) for d in body["documents"]]  # LLMParamsDoc: texts only
        else:
            raise self.make_error(TransientError, "reranking answer has no reranked_docs", response,
                                  code="malformed_response")
        used: set[int] = set()
        data = []
        for text, score in ranked:
            idx = next((i for i, t in enumerate(sent) if t == text and i not in used), None)
            if idx is not None:
                used.add(idx)
            data.append({"index": idx, "text": text,
                         "score": float(score) if score is not None else None})
        return Result(request_id=self.provider_request_id(response), raw=body, data=data)

    # ------------------------------------------------------------------ health
    def build_health(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self.service_url("health"))

    def parse_health(self, request: Request, response: Any) -> Result:
        return Result(request_id=self.provider_request_id(response), raw=self.decode_json(response),
                      data=self.decode_json(response))

    # ------------------------------------------------------------------ batching
    def batch_key(self, request: Request) -> Hashable | None:
        if request.operation != "embeddings" or not isinstance(request.payload.get("input"), str):
            return None
        rest = {k: v for k, v in request.payload.items() if k != "input"}
        return ("embeddings", request.key, json.dumps(rest, sort_keys=True, default=str))

    def max_batch_size(self, request: Request) -> int:
        # The embedding service forwards to TEI, whose default max_client_batch_size is 32.
        return max(1, int(self.option("embedding_batch_size", 32)))

    def merge_batch(self, requests: Sequence[Request]) -> Request:
        first = requests[0]
        return first.evolve(payload={**first.payload, "input": [r.payload["input"] for r in requests]},
                            request_id=new_request_id(),
                            tags={**first.tags, "batch_of": [r.request_id for r in requests]})

    def split_batch(self, requests: Sequence[Request], result: Result) -> list[Result]:
        vectors = result.data
        check_batch(f"{self.name} embeddings", requests, vectors, self.error_factory(None))
        n = len(requests)
        total = result.usage.prompt_tokens if result.usage else 0
        shares = [total // n + (1 if i < total % n else 0) for i in range(n)]
        return [attrs.evolve(result, data=[v], usage=Usage(s, 0, s) if result.usage else None)
                for v, s in zip(vectors, shares)]


def _doc(d: Any) -> dict[str, Any]:
    return dict(d) if isinstance(d, Mapping) else {"text": str(d)}


def _rerank_query(p: Mapping[str, Any]) -> tuple[Any, Any]:
    return p.get("query") or p.get("input") or p.get("initial_query"), (
        p.get("documents") or p.get("retrieved_docs"))
