"""Client side of Hugging Face Text Embeddings Inference (TEI).

Native TEI routes on the configured base URL (self-hosted container or a hosted Inference
Endpoint): ``/embed``, ``/embed_sparse``, ``/embed_all``, ``/rerank``, ``/predict``,
``/tokenize``, ``/info`` and ``/health``.  Queued single-input ``embed`` requests with
equal options are coalesced into one ``/embed`` call of at most ``max_client_batch_size``
inputs and split back in order.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, ClassVar, Hashable, Mapping, Sequence

from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.errors import (
    ContextTooLong,
    InvalidRequest,
    ProviderError,
    RateLimited,
    TransientError,
    error_for_status,
)
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.request import Request, new_request_id
from ipfs_accelerate_py.results import Result, Usage
from ipfs_accelerate_py.wire import openai_compat as oai
from ipfs_accelerate_py.wire.counts import check_batch, check_count, order_by_index


if TYPE_CHECKING:  # pragma: no cover
    import requests

#: Default coalescing limit; TEI's own default ``--max-client-batch-size`` is 32 as well.
DEFAULT_MAX_CLIENT_BATCH_SIZE = 32

# TEI: "`inputs` must have less than 512 tokens. Given: 600"; hosted endpoints and proxies
# phrase it in other ways, all of which mean "shorten the input", not "retry".
_TOO_LONG = re.compile(r"must have less than \d+ tokens|input is too long|too many tokens"
                       r"|exceeds? the maximum|maximum context length", re.IGNORECASE)


def tei_error_body(response: requests.Response) -> tuple[str | None, str | None, Any]:
    """``(error, error_type, estimated_time)`` from a TEI / HF error body, Nones otherwise."""
    try:
        body = response.json()
    except ValueError:
        return None, None, None
    if not isinstance(body, dict):
        return None, None, None
    err = body.get("error")
    if isinstance(err, dict):  # OpenAI-style body from a proxy in front of TEI
        err = err.get("message")
    if err is None:  # /v1/embeddings: {"message", "code", "error_type" (or "type")}
        err = body.get("message")
    etype = body.get("error_type") or body.get("type")
    return (str(err) if err is not None else None,
            str(etype) if etype is not None else None,
            body.get("estimated_time"))


def _input_count(value: Any) -> int:
    """How many inputs a TEI ``inputs`` field holds: a string or one token-id list is one."""
    return 1 if _is_single_input(value) or not isinstance(value, list) else len(value)


def _is_single_input(value: Any) -> bool:
    """One TEI ``InputType``: a string, or a list of token ids."""
    return isinstance(value, str) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, int) for v in value))


class TEIBackend(Backend):
    """Hugging Face Text Embeddings Inference."""

    name: ClassVar[str] = "hf_tei"
    # TEI's container listens on :80; the docs map it to localhost:8080.
    default_base_url: ClassVar[str | None] = "http://localhost:8080"
    operations: ClassVar[Mapping[str, str]] = {
        "embed": "dense embeddings (POST /embed); single inputs are coalesced into batches",
        "embeddings": "OpenAI-compatible embeddings (POST /v1/embeddings); coalesced like embed",
        "embed_sparse": "sparse embeddings, [{index, value}] per input (POST /embed_sparse)",
        "embed_all": "per-token embeddings without pooling (POST /embed_all)",
        "rerank": "rank texts against a query (POST /rerank) -> [{index, score, text?}]",
        "predict": "sequence classification (POST /predict) -> [{label, score}]",
        "tokenize": "tokenize inputs (POST /tokenize)",
        "info": "model and router limits (GET /info); remembers max_client_batch_size",
        "health": "readiness (GET /health)",
    }
    streaming_operations: ClassVar[frozenset[str]] = frozenset()
    key_required: ClassVar[bool] = False
    env_keys: ClassVar[tuple[str, ...]] = ("HF_API_KEY", "HF_API_TOKEN", "HF_TOKEN")
    metadata_keys: ClassVar[tuple[str, ...]] = ("hf_api_key", "hf_api_token")
    env_base_url: ClassVar[tuple[str, ...]] = ("HF_TEI_API_URL", "HF_TEI_ENDPOINT")
    metadata_base_url: ClassVar[tuple[str, ...]] = ("hf_tei_api_url", "hf_tei_endpoint")

    _PATHS: ClassVar[Mapping[str, str]] = {
        "embed": "/embed", "embeddings": "/v1/embeddings", "embed_sparse": "/embed_sparse", "embed_all": "/embed_all",
        "rerank": "/rerank", "predict": "/predict", "tokenize": "/tokenize",
    }
    #: payload fields each POST operation cannot do without
    _REQUIRED: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "embed": ("inputs",), "embeddings": ("input",), "embed_sparse": ("inputs",), "embed_all": ("inputs",),
        "rerank": ("query", "texts"), "predict": ("inputs",), "tokenize": ("inputs",),
    }

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)  # honours HF_TEI_API_URL when no base URL is configured
        #: the server's limits, learned from the last /info answer
        self.server_info: dict[str, Any] | None = None

    # ------------------------------------------------------------------ validation
    def check(self, request: Request) -> None:
        super().check(request)
        payload = request.payload
        for field in self._REQUIRED.get(request.operation, ()):
            if not isinstance(payload, Mapping) or payload.get(field) in (None, "", []):
                raise InvalidRequest(f"{self.name} {request.operation}: payload needs {field!r}",
                                     backend=self.name)
        if request.operation == "rerank" and not isinstance(payload.get("texts"), list):
            raise InvalidRequest(f"{self.name} rerank: 'texts' must be a list of strings",
                                 backend=self.name)

    # ------------------------------------------------------------------ building
    def _post(self, request: Request) -> HttpRequest:
        return HttpRequest("POST", self.url(self._PATHS[request.operation]),
                           headers={"Content-Type": "application/json"},
                           json=dict(request.payload))

    def build_embed(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._post(request)

    build_embed_sparse = build_embed_all = build_rerank = build_embeddings = build_embed
    build_predict = build_tokenize = build_embed

    def build_info(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self.url("/info"))

    def build_health(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return HttpRequest("GET", self.url("/health"))

    # ------------------------------------------------------------------ parsing
    def _result(self, response: requests.Response, body: Any) -> Result:
        return Result(data=body, raw=body, usage=self._usage(response), backend=self.name,
                      model=(self.server_info or {}).get("model_id"),
                      request_id=self.provider_request_id(response))

    @staticmethod
    def _usage(response: requests.Response) -> Usage | None:
        # TEI reports the tokens it computed in ``x-compute-tokens``; there is no body usage.
        value = response.headers.get("x-compute-tokens")
        try:
            return Usage.of(int(value), 0) if value is not None else None
        except ValueError:
            return None

    def _list_body(self, response: requests.Response) -> list[Any]:
        body = self.decode_json(response)
        if not isinstance(body, list):
            raise self.make_error(TransientError, f"HTTP {response.status_code}: expected a JSON "
                                  "array from TEI", response, code="malformed_response")
        return body

    def _counted(self, request: Request, response: requests.Response) -> list[Any]:
        """The list body, one item per input sent (a short answer is never passed on)."""
        return check_count(f"{self.name} {request.operation}",
                           _input_count(request.payload.get("inputs")),
                           self._list_body(response), self.error_factory(response))

    def parse_embed(self, request: Request, response: requests.Response) -> Result:
        body = self._counted(request, response)
        if not all(isinstance(v, list) for v in body):
            raise self.make_error(TransientError, "TEI /embed answered something other than "
                                  "a list of vectors", response, code="malformed_response")
        return self._result(response, body)

    def parse_embeddings(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)

        def make(cls: type[ProviderError], message: str, code: str | None) -> ProviderError:
            return self.make_error(cls, message, response, code=code)

        res = oai.parse_embeddings(body, expected=oai.embedding_inputs(request.payload.get("input")),
                                   request_id=self.provider_request_id(response), make_error=make)
        return Result(data=res.data, raw=body, usage=res.usage, model=res.model,
                      backend=self.name, request_id=res.request_id)

    def parse_embed_sparse(self, request: Request, response: requests.Response) -> Result:
        return self._result(response, self._counted(request, response))

    parse_embed_all = parse_tokenize = parse_embed_sparse

    def parse_predict(self, request: Request, response: requests.Response) -> Result:
        # One input answers a flat [{label, score}] list; a batch answers one list per input.
        body = self._list_body(response)
        inputs = request.payload.get("inputs")
        pair = isinstance(inputs, list) and len(inputs) == 2 and all(isinstance(v, str) for v in inputs)
        if isinstance(inputs, list) and not pair:
            check_count(f"{self.name} predict", len(inputs), body, self.error_factory(response))
        return self._result(response, body)

    def parse_rerank(self, request: Request, response: requests.Response) -> Result:
        body = self._list_body(response)
        if not all(isinstance(r, dict) and "index" in r and "score" in r for r in body):
            raise self.make_error(TransientError, "TEI /rerank answered ranks without "
                                  "index/score", response, code="malformed_response")
        # Ranks come sorted by score; each text's index must be there exactly once.
        order_by_index(f"{self.name} rerank", len(request.payload.get("texts") or ()), body,
                       make_error=self.error_factory(response))
        return self._result(response, body)

    def parse_info(self, request: Request, response: requests.Response) -> Result:
        body = self.decode_json(response)
        if not isinstance(body, dict):
            raise self.make_error(TransientError, "TEI /info answered a non-object", response,
                                  code="malformed_response")
        self.server_info = body
        return Result(data=body, raw=body, model=body.get("model_id"), backend=self.name,
                      request_id=self.provider_request_id(response))

    def parse_health(self, request: Request, response: requests.Response) -> Result:
        # 200 with an empty body is healthy; 503 arrives through classify_error.
        return Result(data={"healthy": True, "status": response.status_code}, backend=self.name,
                      request_id=self.provider_request_id(response))

    # ------------------------------------------------------------------ errors
    def classify_error(self, request: Request | None, response: requests.Response) -> ProviderError:
        message, etype, estimated = tei_error_body(response)
        if message is None:
            message, _ = self.error_message(response)  # HTML page, empty body, plain text
        status = response.status_code
        kind = (etype or "").lower()
        cls: type[ProviderError]
        # The status decides; error_type is kept as the code (a 401 from a proxy in front
        # of TEI must stay an auth error whatever body it carries).
        if status == 429:
            cls = RateLimited
        elif status == 424 or status >= 500:
            cls = TransientError
        elif status in (400, 413, 422):
            cls = ContextTooLong if _TOO_LONG.search(message) else InvalidRequest
        else:
            cls = error_for_status(status)
        retry_after = float(estimated) if isinstance(estimated, (int, float)) else None
        code = kind or ("payload_too_large" if status == 413 else None)
        return self.make_error(cls, message, response, code=code, retry_after=retry_after)

    # ------------------------------------------------------------------ batching
    #: coalescable operations and the payload field holding their input
    _BATCH_FIELDS: ClassVar[Mapping[str, str]] = {"embed": "inputs", "embeddings": "input"}

    def _single(self, request: Request) -> Any:
        """The one input of a single-input embed request (None: not a single input)."""
        value = request.payload.get(self._BATCH_FIELDS[request.operation])
        if isinstance(value, list) and len(value) == 1 and _is_single_input(value[0]):
            value = value[0]
        return value if _is_single_input(value) else None

    def batch_key(self, request: Request) -> Hashable | None:
        """Single-input ``embed``/``embeddings`` requests with equal options (and key pin)
        share a key."""
        field = self._BATCH_FIELDS.get(request.operation)
        if field is None or request.stream or self._single(request) is None:
            return None
        options = {k: v for k, v in request.payload.items() if k != field}
        return (request.operation, request.key, json.dumps(options, sort_keys=True, default=str))

    def max_batch_size(self, request: Request) -> int:
        """``max_client_batch_size`` from options (default 32), capped by /info once known."""
        configured = self.option("max_client_batch_size")
        learned = (self.server_info or {}).get("max_client_batch_size")
        if isinstance(learned, int) and learned > 0:
            return min(int(configured), learned) if configured else learned
        return int(configured) if configured else DEFAULT_MAX_CLIENT_BATCH_SIZE

    def merge_batch(self, requests: Sequence[Request]) -> Request:
        first = requests[0]
        field = self._BATCH_FIELDS[first.operation]
        payload = {**first.payload, field: [self._single(r) for r in requests]}
        return first.evolve(payload=payload, request_id=new_request_id(),
                            priority=min(r.priority for r in requests),
                            tags={"batch_of": [r.request_id for r in requests]})

    def split_batch(self, requests: Sequence[Request], result: Result) -> list[Result]:
        vectors = result.data
        check_batch(f"{self.name} {requests[0].operation}", requests, vectors,
                    self.error_factory(None))
        return [Result(data=[vec], raw=[vec], model=result.model, backend=self.name,
                       request_id=req.request_id, key_id=result.key_id, attempts=result.attempts)
                for req, vec in zip(requests, vectors)]
