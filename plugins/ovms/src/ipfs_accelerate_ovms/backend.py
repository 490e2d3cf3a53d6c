"""The client side of OpenVINO Model Server: KServe v2 REST (``/v2``), TF-Serving-style REST
(``/v1``) and the OpenAI-compatible API (``/v3``).

Model versions are pinned in the URL (``/versions/{v}``), never in the body (the original
system put ``"version"`` in the predict body, where OVMS ignores it).  Queued
single-instance ``infer`` requests for the same model, version and input signature are
coalesced into one call along the batch dimension and split back by row.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, ClassVar, Hashable, Iterator, Mapping, Sequence
from urllib.parse import quote

import attrs

from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.config import BackendConfig
from ipfs_accelerate_py.errors import (
    AuthError,
    ContextTooLong,
    CountMismatch,
    InvalidRequest,
    NotFound,
    ProviderError,
    RateLimited,
    TransientError,
    error_for_status,
)
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.request import Priority, Request, new_request_id
from ipfs_accelerate_py.results import Result, StreamChunk
from ipfs_accelerate_py.wire import openai_compat as oa
from ipfs_accelerate_py.wire.counts import check_ranking, check_rows
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, parse_openai_headers

from .tensors import TensorError, concat_rows, split_rows, validate_inputs

if TYPE_CHECKING:  # pragma: no cover
    import requests

#: Versions meaning "whatever the server serves by default": no ``/versions/`` segment.
_UNPINNED = (None, "", "latest")
_CONTEXT_HINTS = ("too long", "exceeds the maximum length", "max_prompt_len", "context length",
                  "maximum context", "prompt length")


class OvmsBackend(Backend):
    """OpenVINO Model Server.  Options: ``model`` and ``version`` (defaults for requests that
    name none; else env ``OVMS_MODEL`` / ``OVMS_VERSION``), ``batching`` (coalesce single
    infer requests, default True), ``max_batch_size`` (default 16), ``openai_base_url`` (where
    the OpenAI-compatible routes live, default ``{base_url}/v3``: OVMS serves them on their
    own port or behind their own proxy path in some deployments)."""

    name: ClassVar[str] = "ovms"
    default_base_url: ClassVar[str | None] = "http://localhost:9000"
    operations: ClassVar[Mapping[str, str]] = {
        "live": "GET /v2/health/live: is the server alive",
        "ready": "GET /v2/health/ready: is the server ready",
        "server_metadata": "GET /v2: server name, version, extensions",
        "model_metadata": "GET /v2/models/{m}[/versions/{v}]: input/output tensor metadata",
        "model_ready": "GET /v2/models/{m}[/versions/{v}]/ready: is the model ready",
        "infer": "POST /v2/models/{m}[/versions/{v}]/infer: KServe v2 typed-tensor inference (batched)",
        "predict": "POST /v1/models/{m}[/versions/{v}]:predict: TF-Serving row/columnar predict",
        "model_status": "GET /v1/models/{m}[/versions/{v}]: model version states",
        "tfs_metadata": "GET /v1/models/{m}[/versions/{v}]/metadata: TF-Serving signature metadata",
        "list_models": "GET /v1/config: served models and their version states",
        "chat": "POST /v3/chat/completions: OpenAI-compatible chat (streams)",
        "completions": "POST /v3/completions: OpenAI-compatible text completion (streams)",
        "embeddings": "POST /v3/embeddings: OpenAI-compatible embeddings",
        "rerank": "POST /v3/rerank: Cohere-style rerank",
    }
    streaming_operations: ClassVar[frozenset[str]] = frozenset({"chat", "completions"})
    key_required: ClassVar[bool] = False
    env_keys: ClassVar[tuple[str, ...]] = ("OVMS_API_KEY",)
    metadata_keys: ClassVar[tuple[str, ...]] = ("ovms_api_key",)
    env_base_url: ClassVar[tuple[str, ...]] = ("OVMS_API_URL",)
    metadata_base_url: ClassVar[tuple[str, ...]] = ("ovms_api_url",)
    response_id_header: ClassVar[str | None] = None

    def __init__(self, config: BackendConfig | None = None) -> None:
        super().__init__(config)  # honours OVMS_API_URL when no base URL is configured
        self.default_model: str | None = self.option("model") or os.environ.get("OVMS_MODEL") or None
        version = self.option("version")
        self.default_version: Any = version if version is not None else os.environ.get("OVMS_VERSION")
        openai_base = self.option("openai_base_url") or os.environ.get("OVMS_OPENAI_API_URL")
        #: Base of the OpenAI-compatible routes (chat/completions, embeddings, rerank).
        self.openai_base_url: str = (str(openai_base).rstrip("/") if openai_base
                                     else self.base_url + "/v3")

    @classmethod
    def options_from(cls, metadata: Mapping[str, Any] | None = None,
                     environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``model``/``version`` options from the original metadata keys (``ovms_model``,
        ``ovms_version``) or the environment (``OVMS_MODEL``, ``OVMS_VERSION``)."""
        metadata = metadata or {}
        environ = os.environ if environ is None else environ
        out: dict[str, Any] = {}
        for opt, meta, env in (("model", "ovms_model", "OVMS_MODEL"),
                               ("version", "ovms_version", "OVMS_VERSION")):
            value = metadata.get(meta) or environ.get(env)
            if value:
                out[opt] = value
        return out

    # ------------------------------------------------------------------ helpers
    def _invalid(self, message: str) -> InvalidRequest:
        return InvalidRequest(message, backend=self.name)

    def _model(self, payload: Mapping[str, Any]) -> str:
        model = payload.get("model") or self.default_model
        if not isinstance(model, str) or not model:
            raise self._invalid("no model: pass payload['model'] or configure option 'model' "
                                "(metadata ovms_model / env OVMS_MODEL)")
        return model

    def _version(self, payload: Mapping[str, Any]) -> str | None:
        version = payload["version"] if "version" in payload else self.default_version
        if version in _UNPINNED:
            return None
        if isinstance(version, bool) or not isinstance(version, (int, str)):
            raise self._invalid(f"version must be an integer or a string, got {type(version).__name__}")
        text = str(version).strip()
        if isinstance(version, int) and version < 1 or not text or "/" in text or " " in text:
            raise self._invalid(f"invalid model version {version!r}")
        return text

    def _model_path(self, prefix: str, payload: Mapping[str, Any]) -> str:
        path = f"{prefix}/models/{quote(self._model(payload), safe='')}"
        version = self._version(payload)
        if version is not None:
            path += f"/versions/{quote(version, safe='')}"
        return path

    def _get(self, path: str) -> HttpRequest:
        return HttpRequest("GET", self.url(path), headers={"Accept": "application/json"})

    def _post(self, path: str, body: Any) -> HttpRequest:
        return HttpRequest("POST", self.url(path), json=body,
                           headers={"Content-Type": "application/json", "Accept": "application/json"})

    def _post_v3(self, route: str, body: Any) -> HttpRequest:
        return HttpRequest("POST", f"{self.openai_base_url}/{route}", json=body,
                           headers={"Content-Type": "application/json", "Accept": "application/json"})

    def _malformed(self, response: requests.Response, why: str) -> TransientError:
        return self.make_error(TransientError, f"HTTP {response.status_code}: {why}", response,
                               code="malformed_response")

    def _json_object(self, response: requests.Response) -> dict[str, Any]:
        body = self.decode_json(response)
        if not isinstance(body, dict):
            raise self._malformed(response, "expected a JSON object")
        return body

    def _result(self, body: Any, *, data: Any = None, model: str | None = None,
                **fields: Any) -> Result:
        return Result(raw=body, data=data, model=model, backend=self.name, **fields)

    # ------------------------------------------------------------------ validation
    def check(self, request: Request) -> None:
        """Also reject payloads that can never succeed (bad tensors, no model) before queueing."""
        super().check(request)
        self.build_request(request, None)

    def _infer_body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        try:
            validate_inputs(payload.get("inputs"))
        except TensorError as exc:
            raise self._invalid(str(exc)) from None
        body: dict[str, Any] = {"inputs": list(payload["inputs"])}
        for field in ("id", "outputs", "parameters"):
            if payload.get(field) is not None:
                body[field] = payload[field]
        if "outputs" in body and not (isinstance(body["outputs"], list) and all(
                isinstance(o, Mapping) and isinstance(o.get("name"), str) for o in body["outputs"])):
            raise self._invalid("'outputs' must be a list of {name, parameters?} objects")
        return body

    # ------------------------------------------------------------------ KServe v2
    def build_live(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._get("/v2/health/live")

    def build_ready(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._get("/v2/health/ready")

    def _status_only(self, response: requests.Response) -> Result:
        # The body of a health answer is empty (or "{}"); the status code is the answer.
        return self._result(None, data=True)

    def parse_live(self, request: Request, response: requests.Response) -> Result:
        return self._status_only(response)

    parse_ready = parse_live

    def build_server_metadata(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._get("/v2")

    def parse_server_metadata(self, request: Request, response: requests.Response) -> Result:
        body = self._json_object(response)
        return self._result(body, data=body)

    def build_model_metadata(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._get(self._model_path("/v2", request.payload))

    def parse_model_metadata(self, request: Request, response: requests.Response) -> Result:
        body = self._json_object(response)
        if not isinstance(body.get("inputs"), list):
            raise self._malformed(response, "model metadata without 'inputs'")
        return self._result(body, data=body, model=body.get("name"))

    def build_model_ready(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._get(self._model_path("/v2", request.payload) + "/ready")

    def parse_model_ready(self, request: Request, response: requests.Response) -> Result:
        return self._result(None, data=True, model=self._model(request.payload))

    def build_infer(self, request: Request, key: ApiKey | None) -> HttpRequest:
        body = self._infer_body(request.payload)
        return self._post(self._model_path("/v2", request.payload) + "/infer", body)

    def parse_infer(self, request: Request, response: requests.Response) -> Result:
        body = self._json_object(response)
        outputs = body.get("outputs")
        if not isinstance(outputs, list):
            raise self._malformed(response, "inference response without 'outputs'")
        return self._result(body, data=outputs, model=body.get("model_name"))

    # ------------------------------------------------------------------ TF-Serving style
    def build_predict(self, request: Request, key: ApiKey | None) -> HttpRequest:
        payload = request.payload
        has_rows, has_cols = "instances" in payload, "inputs" in payload
        if has_rows == has_cols:
            raise self._invalid("predict needs exactly one of 'instances' (row format) or "
                                "'inputs' (columnar format)")
        body: dict[str, Any] = {"instances" if has_rows else "inputs":
                                payload["instances" if has_rows else "inputs"]}
        if payload.get("signature_name"):
            body["signature_name"] = payload["signature_name"]
        return self._post(self._model_path("/v1", payload) + ":predict", body)

    def parse_predict(self, request: Request, response: requests.Response) -> Result:
        body = self._json_object(response)
        field = "predictions" if "instances" in request.payload else "outputs"
        if field not in body:
            raise self._malformed(response, f"predict response without '{field}'")
        return self._result(body, data=body[field], model=self._model(request.payload))

    def build_model_status(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._get(self._model_path("/v1", request.payload))

    def parse_model_status(self, request: Request, response: requests.Response) -> Result:
        body = self._json_object(response)
        states = body.get("model_version_status")
        if not isinstance(states, list):
            raise self._malformed(response, "model status without 'model_version_status'")
        return self._result(body, data=states, model=self._model(request.payload))

    def build_tfs_metadata(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._get(self._model_path("/v1", request.payload) + "/metadata")

    def parse_tfs_metadata(self, request: Request, response: requests.Response) -> Result:
        body = self._json_object(response)
        return self._result(body, data=body, model=self._model(request.payload))

    def build_list_models(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._get("/v1/config")

    def parse_list_models(self, request: Request, response: requests.Response) -> Result:
        body = self._json_object(response)
        models = []
        for name, entry in sorted(body.items()):
            states = entry.get("model_version_status") if isinstance(entry, Mapping) else None
            models.append({"name": name, "versions": list(states or [])})
        return self._result(body, data=models)

    # ------------------------------------------------------------------ OpenAI-compatible /v3
    def _v3_body(self, request: Request) -> dict[str, Any]:
        payload = dict(request.payload)
        if "version" in payload:
            raise self._invalid("/v3 endpoints take no model version; name the servable in 'model'")
        payload["model"] = self._model(payload)
        if request.operation in self.streaming_operations:
            if request.stream:
                payload["stream"] = True
            else:
                payload.pop("stream", None)
        return payload

    def build_chat(self, request: Request, key: ApiKey | None) -> HttpRequest:
        body = self._v3_body(request)
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise self._invalid("chat needs a non-empty 'messages' list")
        http = self._post_v3("chat/completions", body)
        if request.stream:
            http.headers["Accept"] = "text/event-stream"
        return http

    def _with_backend(self, result: Result) -> Result:
        return attrs.evolve(result, backend=self.name, request_id=None)

    def parse_chat(self, request: Request, response: requests.Response) -> Result:
        return self._with_backend(oa.parse_chat_completion(self._json_object(response),
                                                           make_error=self.error_factory(response)))

    def stream_chat(self, request: Request, response: requests.Response) -> Iterator[StreamChunk]:
        return oa.iter_stream(response, self.error_factory(response))

    def build_completions(self, request: Request, key: ApiKey | None) -> HttpRequest:
        body = self._v3_body(request)
        if not isinstance(body.get("prompt"), str):
            raise self._invalid("completions needs a string 'prompt' (OVMS accepts one prompt)")
        http = self._post_v3("completions", body)
        if request.stream:
            http.headers["Accept"] = "text/event-stream"
        return http

    def parse_completions(self, request: Request, response: requests.Response) -> Result:
        return self._with_backend(oa.parse_completion(self._json_object(response),
                                                      make_error=self.error_factory(response)))

    def stream_completions(self, request: Request,
                           response: requests.Response) -> Iterator[StreamChunk]:
        return oa.iter_stream(response, self.error_factory(response))

    def build_embeddings(self, request: Request, key: ApiKey | None) -> HttpRequest:
        body = self._v3_body(request)
        inp = body.get("input")
        if not (isinstance(inp, str) or (isinstance(inp, list) and inp
                                         and all(isinstance(s, str) for s in inp))):
            raise self._invalid("embeddings needs 'input': a string or a non-empty list of strings")
        return self._post_v3("embeddings", body)

    def parse_embeddings(self, request: Request, response: requests.Response) -> Result:
        return self._with_backend(oa.parse_embeddings(
            self._json_object(response), expected=oa.embedding_inputs(request.payload.get("input")),
            make_error=self.error_factory(response)))

    def build_rerank(self, request: Request, key: ApiKey | None) -> HttpRequest:
        body = self._v3_body(request)
        docs = body.get("documents")
        if not isinstance(body.get("query"), str) or not isinstance(docs, list) or not all(
                isinstance(d, str) for d in docs):
            raise self._invalid("rerank needs a string 'query' and 'documents' as a list of strings")
        return self._post_v3("rerank", body)

    def parse_rerank(self, request: Request, response: requests.Response) -> Result:
        body = self._json_object(response)
        results = body.get("results")
        if not isinstance(results, list) or not all(
                isinstance(r, Mapping) and "index" in r and "relevance_score" in r for r in results):
            raise self._malformed(response, "rerank response without results[{index, relevance_score}]")
        check_ranking(f"{self.name} rerank", len(request.payload.get("documents") or ()),
                      request.payload.get("top_n"), results, make_error=self.error_factory(response))
        return self._result(body, data=results)

    # ------------------------------------------------------------------ errors, limits
    def classify_error(self, request: Request | None, response: requests.Response) -> ProviderError:
        """OVMS answers ``{"error": "<message>"}``: 404 a missing model or version, 400 a
        request it refuses, 503 a model version not loaded yet (worth a retry)."""
        message, code = self.error_message(response)
        status = response.status_code
        cls: type[ProviderError]
        if status == 404:
            cls = NotFound
        elif status == 503:
            cls = TransientError
        elif status == 429:
            cls = RateLimited
        elif status in (401, 403):
            cls = AuthError
        else:
            cls = error_for_status(status)
        if cls is InvalidRequest and any(h in message.lower() for h in _CONTEXT_HINTS):
            cls = ContextTooLong
        return self.make_error(cls, message, response, code=code)

    def rate_limit_info(self, response: requests.Response) -> RateLimitInfo | None:
        """OVMS sends no quota headers; a gateway in front of it may (OpenAI-style)."""
        info = parse_openai_headers(response.headers)
        return None if info.is_empty() else info

    # ------------------------------------------------------------------ batching
    def batch_key(self, request: Request) -> Hashable | None:
        """Single-instance infer requests (every input has batch dimension 1) with the same
        model, version, input names/datatypes/inner shapes, outputs and parameters."""
        if request.operation != "infer" or request.stream or not self.option("batching", True):
            return None
        payload = request.payload
        if payload.get("batch") is False:
            return None
        try:
            self._infer_body(payload)
            model, version = self._model(payload), self._version(payload)
        except InvalidRequest:
            return None
        signature = []
        for t in payload["inputs"]:
            shape = t["shape"]
            if not shape or shape[0] != 1:
                return None
            signature.append((t["name"], t["datatype"], tuple(shape[1:]),
                              json.dumps(t.get("parameters"), sort_keys=True)))
        return ("infer", self.base_url, model, version, tuple(signature),
                json.dumps(payload.get("outputs"), sort_keys=True),
                json.dumps(payload.get("parameters"), sort_keys=True))

    def max_batch_size(self, request: Request) -> int:
        return max(1, int(self.option("max_batch_size", 16)))

    def merge_batch(self, requests: Sequence[Request]) -> Request:
        first = requests[0].payload
        inputs = []
        for i, t in enumerate(first["inputs"]):
            inputs.append(concat_rows([r.payload["inputs"][i] for r in requests]))
        payload: dict[str, Any] = {"model": self._model(first), "inputs": inputs}
        version = self._version(first)
        if version is not None:
            payload["version"] = version
        else:
            payload["version"] = None  # keep unpinned even if a default version is configured
        for field in ("outputs", "parameters"):
            if first.get(field) is not None:
                payload[field] = first[field]
        deadlines = [r.deadline for r in requests if r.deadline is not None]
        return requests[0].evolve(
            payload=payload, request_id=new_request_id(),
            priority=Priority(min(int(r.priority) for r in requests)),
            deadline=min(deadlines) if deadlines else None,
            tags={"batch_of": [r.request_id for r in requests]})

    def split_batch(self, requests: Sequence[Request], result: Result) -> list[Result]:
        body = result.raw if isinstance(result.raw, Mapping) else {}
        outputs = body.get("outputs")
        n = len(requests)
        if not isinstance(outputs, list) or not outputs:
            raise self.make_error(TransientError, "batched inference response without outputs",
                                  None, code="batch_split_mismatch")
        make = self.error_factory(None)
        for o in outputs:  # a short batch dimension is a wrong answer, never a retry
            shape = o.get("shape") if isinstance(o, Mapping) else None
            check_rows(f"{self.name} infer batch output {o.get('name') if isinstance(o, Mapping) else o!r}",
                       n, shape[0] if isinstance(shape, list) and shape else None, make)
        try:
            per_output = [split_rows(o, n) for o in outputs]
        except TensorError as exc:
            raise self.make_error(CountMismatch, f"cannot split batched response: {exc}", None,
                                  code="count_mismatch") from None
        results = []
        for i, req in enumerate(requests):
            mine = [rows[i] for rows in per_output]
            raw = {k: v for k, v in body.items() if k != "outputs"}
            raw["outputs"] = mine
            if req.payload.get("id") is not None:
                raw["id"] = req.payload["id"]
            results.append(Result(raw=raw, data=mine, model=result.model, backend=self.name,
                                  request_id=req.request_id, key_id=result.key_id,
                                  attempts=result.attempts))
        return results
