"""The client side of the LLVM inference server protocol (contract in this plugin's README).

Each operation goes to its own path; the original system sent everything, code execution
included, to ``/models/default/infer``.  Queued single ``infer`` requests for the same model
and parameters are coalesced into one ``batch_infer`` call; the pipeline waits at most
``BackendConfig.batch_window`` for companions, so a lone request never waits forever (the
original's batcher had no flush timer).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, Hashable, Mapping, Sequence
from urllib.parse import quote

from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.errors import (
    AuthError,
    ContextTooLong,
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
from ipfs_accelerate_py.results import Result
from ipfs_accelerate_py.wire.counts import check_batch, check_count
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, parse_openai_headers

if TYPE_CHECKING:  # pragma: no cover
    import requests

#: The protocol's error codes that decide the class whatever the status says.
CODE_CLASSES: dict[str, type[ProviderError]] = {
    "invalid_request": InvalidRequest,
    "invalid_input": InvalidRequest,
    "payload_too_large": InvalidRequest,
    "input_too_long": ContextTooLong,
    "unauthorized": AuthError,
    "model_not_found": NotFound,
    "not_found": NotFound,
    "rate_limited": RateLimited,
    "model_loading": TransientError,
    "overloaded": TransientError,
    "internal_error": TransientError,
}

OPTIMIZATION_LEVELS = ("O0", "O1", "O2", "O3", "Os", "Oz")


class LlvmBackend(Backend):
    """The LLVM inference server.  Options: ``model`` (default model id), ``batching``
    (coalesce single infer requests, default True), ``max_batch_size`` (default 8)."""

    name: ClassVar[str] = "llvm"
    #: The original wrapper's documented default; its later ``LlvmClient`` used :8090.
    default_base_url: ClassVar[str | None] = "http://localhost:8080"
    operations: ClassVar[Mapping[str, str]] = {
        "list_models": "GET /models: the models the server offers",
        "model_info": "GET /models/{id}: one model's description",
        "infer": "POST /models/{id}/infer: run a model on one input (coalesced into batch_infer)",
        "batch_infer": "POST /models/{id}/batch_infer: run a model on a list of inputs",
        "execute": "POST /execute: compile and run code",
        "optimize": "POST /optimize: optimize code at an optimization level",
        "batch_execute": "POST /batch_execute: compile and run several programs",
        "status": "GET /status: server status",
        "reload_model": "POST /models/{id}/reload: reload a model",
    }
    key_required: ClassVar[bool] = False
    env_keys: ClassVar[tuple[str, ...]] = ("LLVM_API_KEY",)
    metadata_keys: ClassVar[tuple[str, ...]] = ("llvm_api_key",)
    env_base_url: ClassVar[tuple[str, ...]] = ("LLVM_API_URL", "LLVM_BASE_URL")
    metadata_base_url: ClassVar[tuple[str, ...]] = ("llvm_api_url",)

    # ------------------------------------------------------------------ helpers
    def _invalid(self, message: str) -> InvalidRequest:
        return InvalidRequest(message, backend=self.name)

    def _model(self, payload: Mapping[str, Any]) -> str:
        model = payload.get("model") or self.option("model")
        if not isinstance(model, str) or not model:
            raise self._invalid("no model: pass payload['model'] or configure option 'model'")
        return model

    def _model_path(self, payload: Mapping[str, Any], suffix: str = "") -> str:
        return f"/models/{quote(self._model(payload), safe='')}{suffix}"

    @staticmethod
    def _parameters(payload: Mapping[str, Any]) -> dict[str, Any]:
        params = payload.get("parameters")
        return dict(params) if isinstance(params, Mapping) else {}

    def _get(self, path: str) -> HttpRequest:
        return HttpRequest("GET", self.url(path), headers={"Accept": "application/json"})

    def _post(self, path: str, body: Any) -> HttpRequest:
        return HttpRequest("POST", self.url(path), json=body,
                           headers={"Content-Type": "application/json", "Accept": "application/json"})

    def _malformed(self, response: requests.Response, why: str) -> TransientError:
        return self.make_error(TransientError, f"HTTP {response.status_code}: {why}", response,
                               code="malformed_response")

    def _object(self, response: requests.Response) -> dict[str, Any]:
        body = self.decode_json(response)
        if not isinstance(body, dict):
            raise self._malformed(response, "expected a JSON object")
        return body

    def _result(self, body: Any, data: Any, *, text: str | None = None,
                model: str | None = None) -> Result:
        return Result(raw=body, data=data, text=text, model=model, backend=self.name)

    def _results_list(self, response: requests.Response, expected: int) -> tuple[dict, list]:
        body = self._object(response)
        results = body.get("results")
        if not isinstance(results, list):
            raise self._malformed(response, "batch answer without a 'results' list")
        check_count(f"{self.name} batch_infer", expected, results, self.error_factory(response))
        return body, results

    @staticmethod
    def _output_of(item: Any) -> tuple[bool, Any]:
        if isinstance(item, Mapping):
            for field in ("output", "result"):
                if field in item:
                    return True, item[field]
        return False, None

    def check(self, request: Request) -> None:
        """Also reject payloads that can never succeed before they are queued."""
        super().check(request)
        self.build_request(request, None)

    # ------------------------------------------------------------------ models
    def build_list_models(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._get("/models")

    def parse_list_models(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        models = body.get("models")
        if not isinstance(models, list):
            raise self._malformed(response, "model list without 'models'")
        # Servers may list bare ids; normalise to objects with an "id".
        data = [dict(m) if isinstance(m, Mapping) else {"id": str(m)} for m in models]
        return self._result(body, data)

    def build_model_info(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._get(self._model_path(request.payload))

    def parse_model_info(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        return self._result(body, body, model=str(body.get("id") or self._model(request.payload)))

    def build_reload_model(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._post(self._model_path(request.payload, "/reload"), {})

    def parse_reload_model(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        return self._result(body, body, model=self._model(request.payload))

    def build_status(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._get("/status")

    def parse_status(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        return self._result(body, body)

    # ------------------------------------------------------------------ inference
    def build_infer(self, request: Request, key: ApiKey | None) -> HttpRequest:
        payload = request.payload
        if payload.get("input") is None:
            raise self._invalid("infer needs 'input'")
        body = {"input": payload["input"], "parameters": self._parameters(payload)}
        return self._post(self._model_path(payload, "/infer"), body)

    def parse_infer(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        found, output = self._output_of(body)
        if not found:
            raise self._malformed(response, "inference answer without 'output'")
        return self._result(body, output, text=output if isinstance(output, str) else None,
                            model=str(body.get("model") or self._model(request.payload)))

    def build_batch_infer(self, request: Request, key: ApiKey | None) -> HttpRequest:
        payload = request.payload
        inputs = payload.get("inputs")
        if not isinstance(inputs, list) or not inputs or any(i is None for i in inputs):
            raise self._invalid("batch_infer needs 'inputs': a non-empty list")
        body = {"inputs": list(inputs), "parameters": self._parameters(payload)}
        return self._post(self._model_path(payload, "/batch_infer"), body)

    def parse_batch_infer(self, request: Request, response: requests.Response) -> Result:
        body, results = self._results_list(response, len(request.payload["inputs"]))
        outputs = []
        for i, item in enumerate(results):
            found, output = self._output_of(item)
            if not found:
                raise self._malformed(response, f"results[{i}] has no 'output'")
            outputs.append(output)
        return self._result(body, outputs, model=str(body.get("model") or self._model(request.payload)))

    # ------------------------------------------------------------------ code
    @staticmethod
    def _code(value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())

    def build_execute(self, request: Request, key: ApiKey | None) -> HttpRequest:
        code = request.payload.get("input", request.payload.get("code"))
        if not self._code(code):
            raise self._invalid("execute needs the code to run in 'input'")
        return self._post("/execute", {"input": code, "parameters": self._parameters(request.payload)})

    def _execution(self, response: requests.Response, item: Any) -> Any:
        if not isinstance(item, Mapping) or not {"result", "output", "errors"} <= set(item):
            raise self._malformed(response, "execution answer without result/output/errors")
        return item

    def parse_execute(self, request: Request, response: requests.Response) -> Result:
        body = self._execution(response, self._object(response))
        output = body.get("output")
        return self._result(body, body, text=output if isinstance(output, str) else None)

    def build_optimize(self, request: Request, key: ApiKey | None) -> HttpRequest:
        payload = request.payload
        code = payload.get("input", payload.get("code"))
        if not self._code(code):
            raise self._invalid("optimize needs the code in 'input'")
        params = self._parameters(payload)
        level = payload.get("optimization_level", params.get("optimization_level", "O2"))
        if level not in OPTIMIZATION_LEVELS:
            raise self._invalid(f"optimization_level must be one of {', '.join(OPTIMIZATION_LEVELS)}")
        params["optimization_level"] = level
        return self._post("/optimize", {"input": code, "parameters": params})

    def parse_optimize(self, request: Request, response: requests.Response) -> Result:
        body = self._object(response)
        if not isinstance(body.get("optimized_code"), str):
            raise self._malformed(response, "optimize answer without 'optimized_code'")
        return self._result(body, body, text=body["optimized_code"])

    def build_batch_execute(self, request: Request, key: ApiKey | None) -> HttpRequest:
        inputs = request.payload.get("inputs")
        if not isinstance(inputs, list) or not inputs or not all(self._code(c) for c in inputs):
            raise self._invalid("batch_execute needs 'inputs': a non-empty list of programs")
        return self._post("/batch_execute", {"inputs": list(inputs),
                                             "parameters": self._parameters(request.payload)})

    def parse_batch_execute(self, request: Request, response: requests.Response) -> Result:
        body, results = self._results_list(response, len(request.payload["inputs"]))
        return self._result(body, [self._execution(response, r) for r in results])

    # ------------------------------------------------------------------ errors, limits
    def classify_error(self, request: Request | None, response: requests.Response) -> ProviderError:
        """``{"error": {"message", "code"}}``: a known ``code`` decides the class, else the
        status does (``{"error": "..."}`` and non-JSON bodies are understood too)."""
        message, code = self.error_message(response)
        cls = CODE_CLASSES.get(code or "") or error_for_status(response.status_code)
        return self.make_error(cls, message, response, code=code)

    def rate_limit_info(self, response: requests.Response) -> RateLimitInfo | None:
        info = parse_openai_headers(response.headers)
        return None if info.is_empty() else info

    # ------------------------------------------------------------------ batching
    def batch_key(self, request: Request) -> Hashable | None:
        """Single infer requests for the same model and parameters coalesce."""
        if request.operation != "infer" or not self.option("batching", True):
            return None
        payload = request.payload
        if payload.get("batch") is False or payload.get("input") is None:
            return None
        try:
            model = self._model(payload)
            params = json.dumps(self._parameters(payload), sort_keys=True)
        except (InvalidRequest, TypeError, ValueError):
            return None
        return ("infer", self.base_url, model, params)

    def max_batch_size(self, request: Request) -> int:
        return max(1, int(self.option("max_batch_size", 8)))

    def merge_batch(self, requests: Sequence[Request]) -> Request:
        first = requests[0].payload
        payload = {"model": self._model(first), "inputs": [r.payload["input"] for r in requests],
                   "parameters": self._parameters(first)}
        deadlines = [r.deadline for r in requests if r.deadline is not None]
        return requests[0].evolve(
            operation="batch_infer", payload=payload, request_id=new_request_id(),
            priority=Priority(min(int(r.priority) for r in requests)),
            deadline=min(deadlines) if deadlines else None,
            tags={"batch_of": [r.request_id for r in requests]})

    def split_batch(self, requests: Sequence[Request], result: Result) -> list[Result]:
        outputs = result.data
        check_batch(f"{self.name} infer", requests, outputs, self.error_factory(None))
        raw_items = (result.raw or {}).get("results") if isinstance(result.raw, Mapping) else None
        parts = []
        for i, (req, output) in enumerate(zip(requests, outputs)):
            raw = raw_items[i] if isinstance(raw_items, list) and len(raw_items) == len(outputs) else output
            parts.append(Result(raw=raw, data=output, text=output if isinstance(output, str) else None,
                                model=result.model, backend=self.name, request_id=req.request_id))
        return parts
