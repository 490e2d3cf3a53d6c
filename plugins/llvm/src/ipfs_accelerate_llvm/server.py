"""The server side of the LLVM inference server protocol (contract in the plugin README).

Deterministic: a string input is answered upper-cased, a list of numbers scaled by
``parameters.scale`` (default 2); ``/execute`` "runs" a C-like program by collecting its
``printf("...")`` strings and its ``return N;`` value; ``/optimize`` strips comments and
blank lines and lists the passes of the level.  Errors use the protocol's
``{"error": {"message", "code"}}`` body.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar, Mapping, Sequence
from urllib.parse import unquote

from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo, format_duration

PASSES: dict[str, list[str]] = {
    "O0": [],
    "O1": ["mem2reg", "simplifycfg", "early-cse"],
    "O2": ["mem2reg", "simplifycfg", "early-cse", "instcombine", "gvn", "licm"],
    "O3": ["mem2reg", "simplifycfg", "early-cse", "instcombine", "gvn", "licm", "loop-unroll",
           "slp-vectorizer"],
    "Os": ["mem2reg", "simplifycfg", "instcombine", "gvn"],
    "Oz": ["mem2reg", "simplifycfg", "instcombine"],
}

_PRINTF = re.compile(r'printf\s*\(\s*"((?:[^"\\]|\\.)*)"')
_RETURN = re.compile(r"\breturn\s+(-?\d+)\s*;")
_MAX_BATCH = 64


def default_models() -> list[dict[str, Any]]:
    return [
        {"id": "resnet50", "status": "loaded", "precision": "fp32", "max_batch_size": 32},
        {"id": "bert-base", "status": "loaded", "precision": "fp16", "max_batch_size": 16},
        {"id": "t5-small", "status": "loading", "precision": "int8", "max_batch_size": 8},
    ]


class LlvmServer(ProtocolServer):
    """``models`` replaces the served models (dicts with ``id`` and ``status``); ``api_key``
    makes every route require ``Authorization: Bearer <api_key>``."""

    name: ClassVar[str] = "llvm"
    version: ClassVar[str] = "1.0.0"

    def __init__(self, seed: int = 0, models: Sequence[Mapping[str, Any]] | None = None,
                 api_key: str | None = None) -> None:
        super().__init__(seed)
        self.models = {m["id"]: dict(m) for m in (models if models is not None else default_models())}
        self.api_key = api_key
        self.reloads: dict[str, int] = {}

    # ------------------------------------------------------------------ plumbing
    def handle(self, req: ServerRequest) -> ServerResponse:
        if self.api_key is not None and req.bearer_token() != self.api_key:
            return self.fail(401, "invalid or missing bearer token", "unauthorized")
        resp = super().handle(req)
        rid = req.header("x-request-id")
        if rid:
            resp.headers.setdefault("X-Request-ID", rid)
        return resp

    @staticmethod
    def fail(status: int, message: str, code: str) -> ServerResponse:
        return ServerResponse.json({"error": {"message": message, "code": code}}, status)

    _STATUS_CODES: ClassVar[dict[int, str]] = {
        400: "invalid_request", 401: "unauthorized", 404: "not_found", 405: "invalid_request",
        413: "payload_too_large", 429: "rate_limited", 503: "overloaded"}

    def error(self, req: ServerRequest, status: int, message: str) -> ServerResponse:
        return self.fail(status, message, self._STATUS_CODES.get(
            status, "internal_error" if status >= 500 else "invalid_request"))

    def rate_limit_headers(self, info: RateLimitInfo) -> dict[str, str]:
        out: dict[str, str] = {}
        if info.limit_requests is not None:
            out["x-ratelimit-limit-requests"] = str(int(info.limit_requests))
        if info.remaining_requests is not None:
            out["x-ratelimit-remaining-requests"] = str(max(0, int(info.remaining_requests)))
        if info.reset_requests is not None:
            out["x-ratelimit-reset-requests"] = format_duration(max(0.0, info.reset_requests))
        return out

    def _body(self, req: ServerRequest) -> tuple[dict[str, Any] | None, ServerResponse | None]:
        try:
            body = req.json()
        except ValueError:
            return None, self.fail(400, "request body is not valid JSON", "invalid_request")
        if not isinstance(body, dict):
            return None, self.fail(400, "request body must be a JSON object", "invalid_request")
        return body, None

    def _model(self, model: str, *, need_loaded: bool = True) -> dict[str, Any] | ServerResponse:
        m = self.models.get(unquote(model))
        if m is None:
            return self.fail(404, f"model '{unquote(model)}' not found", "model_not_found")
        if need_loaded and m.get("status") != "loaded":
            return self.fail(503, f"model '{m['id']}' is still loading", "model_loading")
        return m

    # ------------------------------------------------------------------ models
    @route("GET", "/models")
    def list_models(self, req: ServerRequest) -> ServerResponse:
        return ServerResponse.json({"models": list(self.models.values())})

    @route("GET", "/models/{model}")
    def model_info(self, req: ServerRequest, model: str) -> ServerResponse:
        m = self._model(model, need_loaded=False)
        return m if isinstance(m, ServerResponse) else ServerResponse.json(m)

    @route("POST", "/models/{model}/reload")
    def reload_model(self, req: ServerRequest, model: str) -> ServerResponse:
        m = self._model(model, need_loaded=False)
        if isinstance(m, ServerResponse):
            return m
        m["status"] = "loaded"
        self.reloads[m["id"]] = self.reloads.get(m["id"], 0) + 1
        return ServerResponse.json({"model": m["id"], "status": "reloaded"})

    @route("GET", "/status")
    def status(self, req: ServerRequest) -> ServerResponse:
        loaded = sum(1 for m in self.models.values() if m.get("status") == "loaded")
        return ServerResponse.json({"status": "ok", "version": self.version,
                                    "models_loaded": loaded, "models_total": len(self.models)})

    # ------------------------------------------------------------------ inference
    @staticmethod
    def compute(value: Any, parameters: Mapping[str, Any]) -> Any:
        """The answer to one input, or None if the input is not one the models take."""
        if isinstance(value, str):
            return value.upper()
        if isinstance(value, list) and value and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
            scale = parameters.get("scale", 2)
            return [x * scale for x in value]
        return None

    def _params(self, body: Mapping[str, Any]) -> dict[str, Any] | ServerResponse:
        params = body.get("parameters", {})
        if not isinstance(params, dict):
            return self.fail(400, "'parameters' must be an object", "invalid_request")
        scale = params.get("scale", 2)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            return self.fail(400, "'parameters.scale' must be a number", "invalid_request")
        return params

    @route("POST", "/models/{model}/infer")
    def infer(self, req: ServerRequest, model: str) -> ServerResponse:
        m = self._model(model)
        if isinstance(m, ServerResponse):
            return m
        body, err = self._body(req)
        if err is not None:
            return err
        params = self._params(body)
        if isinstance(params, ServerResponse):
            return params
        output = self.compute(body.get("input"), params)
        if output is None:
            return self.fail(400, "'input' must be a string or a list of numbers", "invalid_input")
        return ServerResponse.json({"model": m["id"], "output": output, "execution_time": 0.001})

    @route("POST", "/models/{model}/batch_infer")
    def batch_infer(self, req: ServerRequest, model: str) -> ServerResponse:
        m = self._model(model)
        if isinstance(m, ServerResponse):
            return m
        body, err = self._body(req)
        if err is not None:
            return err
        params = self._params(body)
        if isinstance(params, ServerResponse):
            return params
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            return self.fail(400, "'inputs' must be a non-empty list", "invalid_request")
        if len(inputs) > _MAX_BATCH:
            return self.fail(413, f"at most {_MAX_BATCH} inputs per batch", "payload_too_large")
        outputs = [self.compute(v, params) for v in inputs]
        bad = [i for i, o in enumerate(outputs) if o is None]
        if bad:
            return self.fail(400, f"inputs[{bad[0]}] must be a string or a list of numbers",
                             "invalid_input")
        return ServerResponse.json({"model": m["id"], "results": [
            {"output": o, "execution_time": 0.001} for o in outputs]})

    # ------------------------------------------------------------------ code
    @staticmethod
    def run(code: str) -> dict[str, Any]:
        """"Execute" a C-like program: its printf strings and its return value."""
        errors = []
        if code.count("{") != code.count("}"):
            errors.append("error: expected '}' at end of input")
        if errors:
            return {"result": None, "output": "", "errors": errors, "execution_time": 0.0}
        output = "".join(bytes(s, "utf-8").decode("unicode_escape") for s in _PRINTF.findall(code))
        ret = _RETURN.search(code)
        return {"result": int(ret.group(1)) if ret else 0, "output": output, "errors": [],
                "execution_time": round(0.0001 * len(code.splitlines()), 6)}

    @staticmethod
    def optimized(code: str) -> str:
        lines = [re.sub(r"//.*$", "", ln).rstrip() for ln in code.splitlines()]
        return "\n".join(ln for ln in lines if ln.strip())

    def _code(self, body: Mapping[str, Any]) -> str | ServerResponse:
        code = body.get("input")
        if not isinstance(code, str) or not code.strip():
            return self.fail(400, "'input' must be the program text", "invalid_input")
        return code

    @route("POST", "/execute")
    def execute(self, req: ServerRequest) -> ServerResponse:
        body, err = self._body(req)
        if err is not None:
            return err
        code = self._code(body)
        if isinstance(code, ServerResponse):
            return code
        return ServerResponse.json(self.run(code))

    @route("POST", "/optimize")
    def optimize(self, req: ServerRequest) -> ServerResponse:
        body, err = self._body(req)
        if err is not None:
            return err
        code = self._code(body)
        if isinstance(code, ServerResponse):
            return code
        level = (body.get("parameters") or {}).get("optimization_level", "O2")
        if level not in PASSES:
            return self.fail(400, f"unknown optimization_level {json.dumps(level)}", "invalid_request")
        errors = self.run(code)["errors"]
        return ServerResponse.json({"optimized_code": "" if errors else self.optimized(code),
                                    "optimization_passes": [] if errors else PASSES[level],
                                    "errors": errors})

    @route("POST", "/batch_execute")
    def batch_execute(self, req: ServerRequest) -> ServerResponse:
        body, err = self._body(req)
        if err is not None:
            return err
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs or not all(
                isinstance(c, str) and c.strip() for c in inputs):
            return self.fail(400, "'inputs' must be a non-empty list of programs", "invalid_input")
        if len(inputs) > _MAX_BATCH:
            return self.fail(413, f"at most {_MAX_BATCH} programs per batch", "payload_too_large")
        return ServerResponse.json({"results": [self.run(c) for c in inputs]})
