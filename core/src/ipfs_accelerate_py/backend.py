"""The contract a backend plugin implements: build the HTTP request, parse the answer,
classify the error, read rate-limit headers.  Queueing, limits, retries, the breaker and
stats all come from the pipeline; a backend is glue.

Subclass :class:`Backend`, set :attr:`~Backend.name`, and for each operation ``op`` write
``build_op(request, key) -> HttpRequest`` and ``parse_op(request, response) -> Result``
(plus ``stream_op(request, response) -> Iterator[StreamChunk]`` if it streams).
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Hashable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

from .config import BackendConfig
from .errors import (
    ContextTooLong,
    InvalidRequest,
    ProviderError,
    TransientError,
    error_for_status,
)
from .http import HttpRequest, KeyAuth
from .key_source import backend_keys
from .keys import ApiKey
from .redaction import redact_url, register_url_secrets
from .request import Request
from .results import Result, StreamChunk, ToolCallDelta
from .wire.ratelimit import RateLimitInfo, parse_retry_after, parse_should_retry

#: A path ending in a version segment: ``/v1``, ``/openai/v1``, ``/v1beta``, ``/api/v2``.
_VERSIONED = re.compile(r"/v\d+(?:alpha\d*|beta\d*)?/?$")

if TYPE_CHECKING:  # pragma: no cover
    import requests



def answered_without_stream(response: requests.Response) -> bool:
    """Did the server answer a streamed request with one JSON document?  Streams come as
    ``text/event-stream`` or NDJSON (``application/x-ndjson``); ``application/json`` (also
    ``+json`` types) is a complete body."""
    ctype = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    return ctype == "application/json" or (ctype.startswith("application/")
                                           and ctype.endswith("+json"))


class Backend:
    """Base class of every backend.  One instance per configured backend in a client."""

    #: The backend's registry name (``"openai"``), used in requests and configuration.
    name: ClassVar[str] = ""
    #: Used when the configuration gives no base URL.
    default_base_url: ClassVar[str | None] = None
    #: operation name -> one-line description (shown by ``ipfs-accelerate plugins``).
    operations: ClassVar[Mapping[str, str]] = {}
    #: Operations that can stream.
    streaming_operations: ClassVar[frozenset[str]] = frozenset()
    #: Whether a request can be sent without a key (self-hosted servers: False).
    key_required: ClassVar[bool] = True
    #: Environment variables holding a key, in order of preference.
    env_keys: ClassVar[tuple[str, ...]] = ()
    #: The original system's metadata keys holding a key, in order of preference.
    metadata_keys: ClassVar[tuple[str, ...]] = ()
    #: Environment variables / metadata keys holding a base URL.
    env_base_url: ClassVar[tuple[str, ...]] = ()
    metadata_base_url: ClassVar[tuple[str, ...]] = ()
    #: Request headers that carry this backend's credential (case-insensitive).  The
    #: transport blanks them on the sent request once the answer arrives, and they are
    #: redacted wherever headers are shown.
    secret_headers: ClassVar[frozenset[str]] = frozenset({"authorization"})
    #: Header carrying our request id to the provider (None: the provider takes none).
    request_id_header: ClassVar[str | None] = "X-Request-ID"
    #: Header carrying the provider's own request id in responses.
    response_id_header: ClassVar[str | None] = "x-request-id"
    #: The version prefix this provider's routes live under when the base URL carries it
    #: (``"/v1"`` for OpenAI-style APIs); named in the hint of a 404 from a base URL
    #: without one.  None: paths carry their own version.
    base_url_version: ClassVar[str | None] = None

    def __init__(self, config: BackendConfig | None = None) -> None:
        self.config = config or BackendConfig(name=self.name)
        # Explicit configuration wins, then the environment (OLLAMA_API_URL...), then the
        # provider's default: a self-hosted server's URL is always honoured.
        base = self.config.base_url or type(self).base_url_from() or self.default_base_url
        if not base:
            from .errors import ConfigError

            raise ConfigError("base_url", f"backend {self.name!r} needs a base_url")
        register_url_secrets(base)
        self.base_url = base.rstrip("/")
        #: Send the pipeline's request id in ``request_id_header``.  Off with
        #: ``options={"send_request_id": False}`` or ``ClientConfig(send_request_id=False)``.
        self.send_request_id = bool(self.config.options.get("send_request_id", True))

    # ------------------------------------------------------------------ configuration
    @classmethod
    def keys_from(cls, metadata: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> list[ApiKey]:
        """Keys from the original system's metadata keys, else from the environment
        variables and their numbered variants (the core's one key source, which the CLI
        uses too: see :mod:`ipfs_accelerate_py.key_source`)."""
        return backend_keys(cls.metadata_keys, cls.env_keys, metadata, environ)

    @classmethod
    def base_url_from(cls, metadata: Mapping[str, Any] | None = None,
                      environ: Mapping[str, str] | None = None) -> str | None:
        metadata = metadata or {}
        environ = os.environ if environ is None else environ
        for name in cls.metadata_base_url:
            if metadata.get(name):
                return str(metadata[name])
        for name in cls.env_base_url:
            if environ.get(name):
                return environ[name]
        return None

    def option(self, name: str, default: Any = None) -> Any:
        return self.config.options.get(name, default)

    # ------------------------------------------------------------------ client side
    def supports(self, operation: str) -> bool:
        return operation in self.operations

    def check(self, request: Request) -> None:
        """Reject a request that can never succeed, before it is queued."""
        if not self.supports(request.operation):
            raise InvalidRequest(
                f"backend {self.name!r} has no operation {request.operation!r}; "
                f"supported: {', '.join(sorted(self.operations))}", backend=self.name)
        if request.stream and request.operation not in self.streaming_operations:
            raise InvalidRequest(f"operation {request.operation!r} of {self.name!r} does not stream",
                                 backend=self.name)

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def auth_headers(self, key: ApiKey | None) -> dict[str, str]:
        """Bearer auth by default; override for other schemes (and name the headers in
        :attr:`secret_headers`).  Called by the transport at send time only: the headers
        are never stored in the :class:`HttpRequest`, which can be printed."""
        secret = key.reveal() if key is not None else None
        return {"Authorization": f"Bearer {secret}"} if secret else {}

    def build_request(self, request: Request, key: ApiKey | None) -> HttpRequest:
        builder = getattr(self, "build_" + request.operation, None)
        if builder is None:
            raise InvalidRequest(f"backend {self.name!r} cannot build {request.operation!r}",
                                 backend=self.name)
        http = builder(request, key)
        # The credential is applied by the transport when it prepares the request.
        http.auth = KeyAuth(self, key)
        if self.request_id_header and self.send_request_id:
            http.headers.setdefault(self.request_id_header, request.request_id)
        if request.stream:
            http.stream = True
        return http

    def parse_response(self, request: Request, response: requests.Response) -> Result:
        parser = getattr(self, "parse_" + request.operation)
        return parser(request, response)

    def parse_stream(self, request: Request, response: requests.Response) -> Iterator[StreamChunk]:
        parser = getattr(self, "stream_" + request.operation, None)
        if parser is None:
            raise InvalidRequest(f"operation {request.operation!r} does not stream",
                                 backend=self.name)
        if answered_without_stream(response):
            whole = self.whole_answer(request, response)
            if whole is not None:
                return iter((whole,))
        return parser(request, response)

    def whole_answer(self, request: Request, response: requests.Response) -> StreamChunk | None:
        """A streamed request answered with the complete JSON body (a server or proxy that
        does not stream): the parsed result as one chunk, so the call succeeds once instead
        of being resent.  None when the body is not JSON after all (a stream mislabelled as
        ``application/json``): the stream parser reads it then."""
        try:
            response.json()
        except ValueError:
            return None
        result = self.parse_response(request.evolve(stream=False), response)
        return StreamChunk(
            text=result.text or "",
            tool_calls=tuple(ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.arguments)
                             for i, c in enumerate(result.tool_calls)),
            finish_reason=result.finish_reason or "stop", usage=result.usage,
            model=result.model, raw=result.raw)

    def classify_error(self, request: Request | None, response: requests.Response) -> ProviderError:
        """Map an error response to one error class.  The default understands the common
        ``{"error": {"message", "type", "code"}}``, ``{"error": "..."}`` and ``{"message"}``
        bodies; backends override it to read their provider's codes."""
        message, code = self.error_message(response)
        cls = error_for_status(response.status_code)
        if code and "context_length" in code:
            cls = ContextTooLong
        return self.make_error(cls, message, response, code=code)

    def make_error(self, cls: type[ProviderError], message: str, response: requests.Response | None,
                   *, code: str | None = None, retry_after: float | None = None) -> ProviderError:
        """Build a classified error carrying the response's hints."""
        headers = response.headers if response is not None else {}
        if response is not None and response.status_code == 404:
            message += self.not_found_hint(response)
        return cls(
            message,
            status=response.status_code if response is not None else None,
            code=code,
            provider_request_id=self.provider_request_id(response),
            retry_after=retry_after if retry_after is not None else parse_retry_after(headers),
            should_retry=parse_should_retry(headers),
            response=response,
            backend=self.name,
        )

    def not_found_hint(self, response: requests.Response) -> str:
        """For a 404 from a base URL without the provider's version prefix (the usual
        mistake with a self-hosted server): the URL tried (without its query) and the
        prefix it may lack.  Empty otherwise: the provider's message says it all."""
        prefix = self.base_url_version
        if not prefix or _VERSIONED.search(urlsplit(self.base_url).path):
            return ""
        sent = getattr(response, "request", None)
        url = str(getattr(sent, "url", None) or getattr(response, "url", "") or "")
        url = urlsplit(url)._replace(query="", fragment="").geturl()
        return (f" [HTTP 404 from {getattr(sent, 'method', None) or 'the server'} {url}: the "
                f"base URL {self.base_url} has no version prefix; {self.name} routes usually "
                f"live under {self.base_url}{prefix}]")

    def error_factory(self, response: requests.Response | None
                      ) -> Callable[..., ProviderError]:
        """``make(cls, message, code=None)`` bound to ``response``: what shared parsers (for
        instance ``wire.openai_compat``) call to raise an error carrying this response."""

        def make(cls: type[ProviderError], message: str, code: str | None = None) -> ProviderError:
            return self.make_error(cls, message, response, code=code)

        return make

    def provider_request_id(self, response: requests.Response | None) -> str | None:
        if response is None or not self.response_id_header:
            return None
        return response.headers.get(self.response_id_header)

    @staticmethod
    def error_message(response: requests.Response) -> tuple[str, str | None]:
        """(message, code) from a JSON error body; a short text excerpt otherwise."""
        try:
            body = response.json()
        except ValueError:
            text = (response.text or "").strip()
            if not text:
                return f"HTTP {response.status_code} with an empty body", None
            if text.lstrip().startswith("<"):
                return f"HTTP {response.status_code} with a non-JSON (HTML) body", None
            return f"HTTP {response.status_code}: {text[:300]}", None
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            code = err.get("code") or err.get("type") or err.get("status")
            return str(err.get("message") or err), (str(code) if code is not None else None)
        if isinstance(err, str):
            return err, None
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"]), (str(body["code"]) if body.get("code") else None)
        return f"HTTP {response.status_code}: {json.dumps(body)[:300]}", None

    def decode_json(self, response: requests.Response) -> Any:
        """The JSON body of a success response; anything else is a transient error, never a
        silently wrong result (an HTML page from a proxy, an empty or cut body)."""
        try:
            return response.json()
        except ValueError:
            text = (response.text or "").strip()
            what = "an empty body" if not text else (
                "an HTML page" if text.startswith("<") else "malformed JSON")
            raise self.make_error(TransientError, f"HTTP {response.status_code} with {what}",
                                  response, code="malformed_response") from None

    def rate_limit_info(self, response: requests.Response) -> RateLimitInfo | None:
        """What the response's headers say about the key's quota (None: nothing)."""
        return None

    def estimate_tokens(self, request: Request) -> int:
        """A pre-call estimate of the tokens a request costs (reconciled from usage later)."""
        payload = request.payload
        try:
            size = len(json.dumps(payload, default=str))
        except (TypeError, ValueError):
            size = 0
        out = 0
        for k in ("max_tokens", "max_completion_tokens", "max_new_tokens", "maxOutputTokens",
                  "num_predict"):
            v = payload.get(k) if isinstance(payload, Mapping) else None
            if isinstance(v, int):
                out = v
                break
        return size // 4 + out

    def endpoint_id(self, request: Request | None = None) -> str:
        """Breaker scope: one breaker per backend endpoint.  The base URL's user info and
        query string are left out: the id is shown in logs, errors, labels and Redis names."""
        return f"{self.name}@{redact_url(self.base_url)}"

    # ------------------------------------------------------------------ batching
    def batch_key(self, request: Request) -> Hashable | None:
        """Requests with equal non-None keys may be coalesced into one call."""
        return None

    def max_batch_size(self, request: Request) -> int:
        return 1

    def merge_batch(self, requests: Sequence[Request]) -> Request:
        raise NotImplementedError

    def split_batch(self, requests: Sequence[Request], result: Result) -> list[Result]:
        raise NotImplementedError

    # ------------------------------------------------------------------ description
    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {"name": cls.name, "operations": dict(cls.operations),
                "streaming": sorted(cls.streaming_operations),
                "default_base_url": cls.default_base_url}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {redact_url(self.base_url)}>"
