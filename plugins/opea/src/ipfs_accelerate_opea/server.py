"""OPEA GenAIComps microservices and the ChatQnA gateway, server side (deterministic)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping

from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire import openai_compat as oc
from ipfs_accelerate_py.wire import openai_server as ocs
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo

DEFAULT_MODEL = "Intel/neural-chat-7b-v3-3"


def _fastapi_422(field: str, body: Any) -> ServerResponse:
    """FastAPI's validation answer for a missing body field."""
    return ServerResponse.json({"detail": [{"type": "missing", "loc": ["body", field],
                                            "msg": "Field required", "input": body}]}, 422)


class OPEAServer(ProtocolServer):
    """One process answering what OPEA spreads over several services: the LLM
    text-generation microservice (``/v1/chat/completions``, OpenAI-compatible, SSE), the
    embedding microservice (``/v1/embeddings``, OpenAI shape, or the older ``{"text"}``
    EmbedDoc), the reranking microservice (``/v1/reranking``: RerankingRequest ->
    ``reranked_docs`` with scores, SearchedDoc -> LLMParamsDoc with ``documents``), a
    ChatQnA gateway (``/v1/chatqna``, streaming ``data: b'token'`` frames by default) and
    ``/v1/health_check``.  Errors are FastAPI's (``{"detail": ...}``, 422 for validation).
    With ``token`` set, requests need ``Authorization: Bearer <token>``.
    """

    name = "opea"

    def __init__(self, seed: int = 0, *, token: str | None = None, context_window: int = 4096,
                 embedding_dims: int = 16) -> None:
        super().__init__(seed)
        self.seed = seed
        self.token = token
        self.compat = ocs.CompatResponder((), seed=seed, context_window=context_window,
                                         embedding_dims=embedding_dims, check_models=False)

    def handle(self, req: ServerRequest) -> ServerResponse:
        if self.token is not None and req.bearer_token() != self.token:
            resp = ServerResponse.json({"detail": "Not authenticated"}, 401,
                                       {"WWW-Authenticate": "Bearer"})
        else:
            resp = super().handle(req)
        rid = hashlib.sha256(f"{self.seed}:{req.path}:{req.body!r}".encode()).hexdigest()[:32]
        resp.headers.setdefault("x-request-id", rid)
        return resp

    def error(self, req: ServerRequest, status: int, message: str) -> ServerResponse:
        if status >= 500:
            return ServerResponse.text("Internal Server Error" if status == 500 else message, status)
        return ServerResponse.json({"detail": message}, status)

    def rate_limited(self, req: ServerRequest, info: RateLimitInfo) -> ServerResponse:
        return ServerResponse.json({"detail": "Too Many Requests"}, 429,
                                   ocs.retry_after_headers(info.retry_after or 1.0, with_ms=False))

    @staticmethod
    def _json(req: ServerRequest) -> tuple[Any, ServerResponse | None]:
        try:
            return req.json(), None
        except ValueError:
            return None, ServerResponse.json({"detail": [{"type": "json_invalid", "loc": ["body", 0],
                                                          "msg": "JSON decode error"}]}, 422)

    # -- LLM text generation ---------------------------------------------------------
    @route("POST", "/v1/chat/completions")
    def chat(self, req: ServerRequest) -> ServerResponse:
        body, err = self._json(req)
        if err is not None:
            return err
        if not isinstance(body, Mapping) or "messages" not in body:
            return _fastapi_422("messages", body)
        body = {"model": DEFAULT_MODEL, "max_tokens": 1024, **body}
        if isinstance(body["messages"], str):  # answered through the completions API
            inner = {k: body[k] for k in ("model", "max_tokens", "stream", "stream_options") if k in body}
            inner["prompt"] = body["messages"]
            return self.compat.completions(ServerRequest("POST", req.path, body=json.dumps(inner).encode()))
        return self.compat.chat(ServerRequest("POST", req.path, body=json.dumps(body).encode()))

    # -- embeddings ------------------------------------------------------------------
    @route("POST", "/v1/embeddings")
    def embeddings(self, req: ServerRequest) -> ServerResponse:
        body, err = self._json(req)
        if err is not None:
            return err
        if isinstance(body, Mapping) and "text" in body and "input" not in body:
            text = str(body["text"])
            return ServerResponse.json({"id": self._id(text), "text": text,
                                        "embedding": ocs.synth_vector(text, self.compat.embedding_dims,
                                                                     self.seed)})
        if not isinstance(body, Mapping) or "input" not in body:
            return _fastapi_422("input", body)
        return self.compat.embeddings(ServerRequest(
            "POST", req.path, body=json.dumps({"model": "BAAI/bge-base-en-v1.5", **body}).encode()))

    # -- reranking -------------------------------------------------------------------
    @route("POST", "/v1/reranking")
    def reranking(self, req: ServerRequest) -> ServerResponse:
        body, err = self._json(req)
        if err is not None:
            return err
        if not isinstance(body, Mapping) or "retrieved_docs" not in body:
            return _fastapi_422("retrieved_docs", body)
        query = body.get("initial_query", body.get("input"))
        if query is None:
            return _fastapi_422("input", body)
        docs = [d if isinstance(d, str) else str(d.get("text", "")) for d in body["retrieved_docs"]]
        top_n = int(body.get("top_n", 1))
        ranked = sorted(((self._score(str(query), d), i, d) for i, d in enumerate(docs)),
                        key=lambda t: (-t[0], t[1]))[:top_n]
        if "initial_query" in body:  # SearchedDoc in, LLMParamsDoc out
            return ServerResponse.json({"id": self._id(str(query)), "model": None, "query": query,
                                        "max_tokens": 1024, "max_new_tokens": 1024, "top_k": 10,
                                        "top_p": 0.95, "typical_p": 0.95, "temperature": 0.01,
                                        "streaming": True, "documents": [d for _, _, d in ranked]})
        return ServerResponse.json({"reranked_docs": [{"text": d, "score": s} for s, _, d in ranked]})

    @staticmethod
    def _score(query: str, doc: str) -> float:
        """Word overlap, deterministic and plausible enough for ordering."""
        q = set(re.findall(r"\w+", query.lower()))
        d = set(re.findall(r"\w+", doc.lower()))
        return round(len(q & d) / (len(q) or 1), 6)

    def _id(self, salt: str) -> str:
        return hashlib.sha256(f"{self.seed}:{salt}".encode()).hexdigest()[:32]

    # -- ChatQnA gateway -------------------------------------------------------------
    @route("POST", "/v1/chatqna")
    def chatqna(self, req: ServerRequest) -> ServerResponse:
        body, err = self._json(req)
        if err is not None:
            return err
        if not isinstance(body, Mapping) or "messages" not in body:
            return _fastapi_422("messages", body)
        question = oc.messages_text(body["messages"])
        answer = ocs.synth_text(question, self.seed, body.get("max_tokens"), salt="chatqna")
        if body.get("stream", True):
            tokens = re.findall(r"\s?\S+\s?", answer)
            frames = [b"data: " + repr(t.encode("utf-8")).encode("ascii") + b"\n\n" for t in tokens]
            return ServerResponse.stream(frames + [b"data: [DONE]\n\n"])
        return ServerResponse.json({
            "id": "chatcmpl-" + self._id(question)[:22], "object": "chat.completion", "created": 1700000000,
            "model": "chatqna",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                         "finish_reason": "stop", "metadata": None}],
            "usage": {"prompt_tokens": 0, "total_tokens": 0, "completion_tokens": 0}})

    @route("GET", "/v1/health_check")
    def health(self, req: ServerRequest) -> ServerResponse:
        return ServerResponse.json({"Service Title": "opea_service@simulated",
                                    "Service Description": "OpeaComponent", "Version": "1.0"})
