"""The S3 backend: each storage operation is one signed HTTP request in the pipeline.

Payloads name buckets and keys (``{"bucket": "b", "key": "k", "body": b"..."}``); results
carry their parsed output in ``Result.data``.  Signing happens in ``build_<op>`` (SigV4 by
botocore), so ``auth_headers`` returns nothing.  See README.md for every operation.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, ClassVar, Mapping
from urllib.parse import quote

import requests
from ipfs_accelerate_py.backend import Backend
from ipfs_accelerate_py.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    ProviderError,
    RateLimited,
    TransientError,
)
from ipfs_accelerate_py.http import HttpRequest
from ipfs_accelerate_py.keys import ApiKey
from ipfs_accelerate_py.request import Request
from ipfs_accelerate_py.results import Result

from . import bodies, download, s3xml
from .credentials import DEFAULT_REGION, credentials_of, endpoint_from, keys_from_env, keys_from_s3cfg
from .signing import aws_endpoint, build_url, presign, sign

NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NoSuchVersion", "NotFound"})
AUTH_CODES = frozenset({"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken",
                        "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled",
                        "RequestTimeTooSkewed", "InvalidSecurity"})
#: Auth codes that condemn the credential pair itself (not a bucket's permissions).
KEY_REJECTED_CODES = frozenset({"SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken",
                                "InvalidToken", "InvalidSecurity"})
RATE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                        "TooManyRequests", "ServiceUnavailable"})
# Worth another attempt: the server timed out reading us, failed, or got a corrupted body.
TRANSIENT_CODES = frozenset({"RequestTimeout", "InternalError", "BadDigest",
                             "XAmzContentSHA256Mismatch", "OperationAborted", "IncompleteBody"})

#: Bytes a get_object may hold in memory (option max_body_in_memory); larger: use a file.
MAX_BODY_IN_MEMORY = 64 * 1024 * 1024
_OBJECT_OPS = ("put_object", "get_object", "head_object", "delete_object", "copy_object",
               "create_multipart_upload", "upload_part", "complete_multipart_upload",
               "abort_multipart_upload")


class _Recent:
    """A small bounded map request id -> value (what build computed that parse needs)."""

    def __init__(self, limit: int = 4096) -> None:
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def put(self, rid: str, value: Any) -> None:
        with self._lock:
            self._data[rid] = value
            while len(self._data) > self._limit:
                self._data.popitem(last=False)

    def pop(self, rid: str) -> Any:
        with self._lock:
            return self._data.pop(rid, None)


class S3KitBackend(Backend):
    """S3-compatible object storage (AWS S3, MinIO, Ceph RGW, moto...).

    Options (``BackendConfig.options``): ``region`` (default us-east-1; a key's own region
    wins), ``addressing_style`` ("auto" | "path" | "virtual"), ``verify_etag`` (default True:
    check uploaded/downloaded bodies against the MD5 ETag), ``download_dir`` (get_object
    without ``file`` streams the object to a file there, named after the quoted key,
    instead of into memory), ``max_body_in_memory`` (bytes a get_object may hold in memory,
    default 64 MiB; a larger object is a non-retried ``InvalidRequest`` telling to pass
    ``file`` or set ``download_dir``).
    """

    name: ClassVar[str] = "s3_kit"
    default_base_url: ClassVar[str | None] = "https://s3.amazonaws.com"
    operations: ClassVar[Mapping[str, str]] = {
        "list_buckets": "list the account's buckets",
        "create_bucket": "create a bucket (payload: bucket, region?)",
        "delete_bucket": "delete an empty bucket",
        "put_object": "upload an object from body (bytes), file (path) or stream (file object)",
        "get_object": "download an object to bytes, or to 'file' (atomic, verified)",
        "head_object": "an object's size, ETag, type and metadata",
        "delete_object": "delete one object",
        "delete_objects": "delete up to 1000 objects in one call (Multi-Object Delete)",
        "list_objects_v2": "one page of a bucket listing (prefix, delimiter, continuation_token)",
        "copy_object": "server-side copy (source_bucket, source_key -> bucket, key)",
        "create_multipart_upload": "start a multipart upload; returns upload_id",
        "upload_part": "upload one part (bytes) of a multipart upload; ETag verified",
        "complete_multipart_upload": "assemble the uploaded parts into the object",
        "abort_multipart_upload": "abort a multipart upload and free its parts",
        "list_multipart_uploads": "multipart uploads in progress in a bucket",
    }
    key_required: ClassVar[bool] = True
    env_keys: ClassVar[tuple[str, ...]] = ("S3_ACCESS_KEY", "S3_SECRET_KEY", "AWS_ACCESS_KEY_ID",
                                           "AWS_SECRET_ACCESS_KEY")
    metadata_keys: ClassVar[tuple[str, ...]] = ("s3cfg",)
    env_base_url: ClassVar[tuple[str, ...]] = ("S3_ENDPOINT", "AWS_ENDPOINT_URL")
    request_id_header: ClassVar[str | None] = None  # S3 takes none; x-amz-* would need signing
    response_id_header: ClassVar[str | None] = "x-amz-request-id"

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._sent_md5 = _Recent()
        self._streams = bodies.StreamBodies()

    # ------------------------------------------------------------------ configuration
    @classmethod
    def keys_from(cls, metadata: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> list[ApiKey]:
        """Keys from metadata ``s3cfg`` (a mapping or a list of them), else the environment
        (S3_ACCESS_KEY/S3_SECRET_KEY/S3_ENDPOINT, then the AWS_* names).  No placeholder
        credentials are ever invented."""
        metadata = metadata or {}
        environ = os.environ if environ is None else environ
        keys = keys_from_s3cfg(metadata.get("s3cfg"), cls.name) if metadata.get("s3cfg") else []
        return keys or keys_from_env(environ, cls.name)

    @classmethod
    def base_url_from(cls, metadata: Mapping[str, Any] | None = None,
                      environ: Mapping[str, str] | None = None) -> str | None:
        return endpoint_from(metadata, environ)

    def auth_headers(self, key: ApiKey | None) -> dict[str, str]:
        return {}  # requests are signed in build_<op>

    def estimate_tokens(self, request: Request) -> int:
        return 0  # storage has no tokens; never serialise an object body to guess

    def check(self, request: Request) -> None:
        super().check(request)
        p = request.payload
        op = request.operation
        missing = []
        if op not in ("list_buckets",) and not p.get("bucket"):
            missing.append("bucket")
        if op in _OBJECT_OPS and not p.get("key"):
            missing.append("key")
        if op in ("upload_part", "complete_multipart_upload", "abort_multipart_upload") and not p.get("upload_id"):
            missing.append("upload_id")
        if op == "copy_object" and not (p.get("source_bucket") and p.get("source_key")):
            missing.append("source_bucket/source_key")
        if op == "put_object" and sum(n in p for n in ("body", "file", "stream")) != 1:
            missing.append("exactly one of body/file/stream")
        if op == "delete_objects" and not 0 < len(p.get("keys") or ()) <= 1000:
            missing.append("keys (1..1000)")
        if missing:
            raise InvalidRequest(f"{op} needs {', '.join(missing)}", backend=self.name)

    # ------------------------------------------------------------------ addressing/signing
    def region_for(self, key: ApiKey | None) -> str:
        extra = key.extra if key is not None else {}
        return extra.get("region") or self.option("region") or DEFAULT_REGION

    def endpoint_for(self, key: ApiKey | None) -> str:
        extra = key.extra if key is not None else {}
        return (extra.get("endpoint_url") or self.config.base_url
                or aws_endpoint(self.region_for(key))).rstrip("/")

    def object_url(self, key: ApiKey | None, bucket: str = "", obj: str = "",
                   query: Mapping[str, Any] | None = None) -> str:
        return build_url(self.endpoint_for(key), bucket, obj,
                         style=self.option("addressing_style", "auto"), query=query)

    def _signed(self, method: str, key: ApiKey | None, bucket: str = "", obj: str = "", *,
                query: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
                body: bodies.Body | None = None, stream: bool = False) -> HttpRequest:
        creds = credentials_of(key, self.name)
        url = self.object_url(key, bucket, obj, query)
        hdrs = dict(headers or {})
        payload_hash = bodies.EMPTY_SHA256
        data: Any = None
        if body is not None:
            payload_hash = body.payload_hash
            data = body.data
            hdrs["Content-Length"] = str(body.length)
            if body.content_md5:
                hdrs["Content-MD5"] = body.content_md5
        signed = sign(method, url, hdrs, payload_hash, creds, self.region_for(key))
        return HttpRequest(method, url, headers=signed, data=data, stream=stream)

    def presigned_url(self, key: ApiKey, method: str, bucket: str, obj: str, *,
                      expires_in: int = 3600, headers: Mapping[str, str] | None = None) -> str:
        """A presigned URL (not a network call).  Any ``headers`` are signed and must be sent."""
        creds = credentials_of(key, self.name)
        url = self.object_url(key, bucket, obj)
        return presign(method.upper(), url, creds, self.region_for(key), expires_in, headers)

    # ------------------------------------------------------------------ errors
    def parse_response(self, request: Request, response: requests.Response) -> Result:
        # The pipeline sends only >= 400 to classify_error; S3's 301 PermanentRedirect (wrong
        # region) and 307 TemporaryRedirect are failures too, never an object body.
        if not 200 <= response.status_code < 300:
            raise self.classify_error(request, response)
        return super().parse_response(request, response)

    def classify_error(self, request: Request | None, response: requests.Response) -> ProviderError:
        """S3's ``<Error><Code>`` decides; a bodiless answer (HEAD) falls back on the status."""
        status = response.status_code
        body = b""
        if request is None or request.operation != "head_object":
            try:
                body = response.content or b""
            except (requests.RequestException, OSError):
                body = b""
        err = s3xml.parse_error(body)
        code = err.get("Code") if err else None
        message = (err.get("Message") if err else None) or _status_message(status, body)
        cls: type[ProviderError]
        if code in NOT_FOUND_CODES or (code is None and status == 404):
            cls = NotFound
            code = code or "NotFound"
        elif code in AUTH_CODES or (code is None and status in (401, 403)):
            cls = AuthError
        elif code in RATE_CODES or status in (429, 503):
            cls = RateLimited
        elif code in TRANSIENT_CODES or status >= 500 or status in (307, 408):
            cls = TransientError  # 307: a new bucket's DNS is still propagating
        else:  # other 4xx, and 301 PermanentRedirect (the bucket lives in another region)
            cls = InvalidRequest if 300 <= status < 500 else TransientError
        text = f"S3 {code}: {message}" if code else f"S3 {message}"
        error = self.make_error(cls, text, response, code=code)
        if error.provider_request_id is None and err and err.get("RequestId"):
            error.provider_request_id = err["RequestId"]
        if cls is AuthError:
            # S3 answers 403 for bad credentials and for missing permissions alike; only the
            # former should take a credential pair out of rotation.
            error.key_rejected = code in KEY_REJECTED_CODES
        return error

    def _error_in_200(self, request: Request, response: requests.Response, body: bytes) -> None:
        """CopyObject and CompleteMultipartUpload can fail *after* sending 200."""
        if s3xml.parse_error(body) is not None:
            err = self.classify_error(request, response)  # reads the same (cached) body
            if isinstance(err, InvalidRequest) and response.status_code == 200:
                err = self.make_error(TransientError, err.message, response, code=err.code)
            raise err

    def _xml(self, request: Request, response: requests.Response) -> Any:
        body = response.content or b""
        self._error_in_200(request, response, body)
        try:
            return s3xml.parse(body)
        except s3xml.ET.ParseError:
            what = "an empty body" if not body.strip() else "a malformed XML body"
            raise self.make_error(TransientError, f"HTTP {response.status_code} with {what}",
                                  response, code="malformed_response") from None

    def _result(self, response: requests.Response, data: Any) -> Result:
        return Result(data=data, request_id=response.headers.get("x-amz-request-id"))

    def _invalid(self, message: str) -> InvalidRequest:
        return InvalidRequest(message, backend=self.name)

    # ------------------------------------------------------------------ buckets
    def build_list_buckets(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._signed("GET", key)

    def parse_list_buckets(self, request: Request, response: requests.Response) -> Result:
        return self._result(response, s3xml.parse_buckets(self._xml(request, response)))

    def build_create_bucket(self, request: Request, key: ApiKey | None) -> HttpRequest:
        region = request.payload.get("region") or self.region_for(key)
        body = None if region == "us-east-1" else bodies.from_bytes(s3xml.create_bucket_body(region))
        return self._signed("PUT", key, request.payload["bucket"], body=body)

    def parse_create_bucket(self, request: Request, response: requests.Response) -> Result:
        return self._result(response, {"location": response.headers.get("Location")})

    def build_delete_bucket(self, request: Request, key: ApiKey | None) -> HttpRequest:
        return self._signed("DELETE", key, request.payload["bucket"])

    def parse_delete_bucket(self, request: Request, response: requests.Response) -> Result:
        return self._result(response, {"deleted": True})

    # ------------------------------------------------------------------ objects
    def _upload_body(self, request: Request) -> bodies.Body:
        p = request.payload
        try:
            if "body" in p:
                return bodies.from_bytes(p["body"] if p["body"] is not None else b"")
            if "file" in p:
                return bodies.from_path(p["file"])
            return self._streams.prepare(request.request_id, p["stream"], p.get("content_length"))
        except (ValueError, TypeError, OSError) as exc:
            raise self._invalid(f"{request.operation}: cannot read the body: {exc}") from None

    def build_put_object(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        body = self._upload_body(request)
        self._sent_md5.put(request.request_id, body.md5_hex)
        headers = _object_headers(p)
        return self._signed("PUT", key, p["bucket"], p["key"], headers=headers, body=body)

    def parse_put_object(self, request: Request, response: requests.Response) -> Result:
        etag = response.headers.get("ETag")
        self._verify_etag(request, response, etag)
        self._streams.forget(request.request_id)
        return self._result(response, {"etag": etag, "version_id": response.headers.get("x-amz-version-id")})

    def _verify_etag(self, request: Request, response: requests.Response, etag: str | None) -> None:
        sent = self._sent_md5.pop(request.request_id)
        if not sent or not self.option("verify_etag", True):
            return
        got = download.plain_md5(etag)
        if got is not None and got != sent:
            raise self.make_error(TransientError, "S3 returned an ETag that does not match the MD5 "
                                  "of the body sent", response, code="ETagMismatch")

    def _version(self, p: Mapping[str, Any]) -> dict[str, Any] | None:
        return {"versionId": p["version_id"]} if p.get("version_id") else None

    def build_get_object(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        headers = {"Range": p["range"]} if p.get("range") else {}
        # stream=True: the body is read raw by parse (never gunzipped, verified, maybe to a file)
        return self._signed("GET", key, p["bucket"], p["key"], query=self._version(p),
                            headers=headers, stream=True)

    def parse_get_object(self, request: Request, response: requests.Response) -> Result:
        p = request.payload
        verify = self.option("verify_etag", True) and response.status_code == 200
        info = _object_info(response)
        target = p.get("file") or self._download_path(p)
        try:
            if target:  # streamed to disk in chunks, never held in memory
                size = download.read_to_file(response, target, verify_md5=verify)
                info.update(path=os.fspath(target), size=size)
            else:
                limit = int(self.option("max_body_in_memory", MAX_BODY_IN_MEMORY))
                info["body"] = download.read_bytes(response, verify_md5=verify, limit=limit)
                info["size"] = len(info["body"])
        except download.BodyTooLarge as exc:
            raise self.make_error(InvalidRequest, f"{exc}: pass payload['file'] or set option "
                                  "'download_dir' to stream it to disk", response,
                                  code="BodyTooLarge") from None
        except download.BodyReadError as exc:
            raise self.make_error(TransientError, f"download interrupted: {exc}", response,
                                  code="IncompleteBody") from None
        except download.BodyMismatch as exc:
            raise self.make_error(TransientError, f"download corrupted: {exc}", response,
                                  code="ETagMismatch") from None
        return self._result(response, info)

    def _download_path(self, p: Mapping[str, Any]) -> str | None:
        """``download_dir``/<quoted key>: one flat file name per key, no path traversal."""
        directory = self.option("download_dir")
        if not directory:
            return None
        return os.path.join(os.fspath(directory), quote(str(p["key"]), safe=""))

    def build_head_object(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        return self._signed("HEAD", key, p["bucket"], p["key"], query=self._version(p))

    def parse_head_object(self, request: Request, response: requests.Response) -> Result:
        return self._result(response, _object_info(response))

    def build_delete_object(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        return self._signed("DELETE", key, p["bucket"], p["key"], query=self._version(p))

    def parse_delete_object(self, request: Request, response: requests.Response) -> Result:
        return self._result(response, {"deleted": True,
                                       "version_id": response.headers.get("x-amz-version-id")})

    def build_delete_objects(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        body = bodies.from_bytes(s3xml.delete_body(p["keys"], bool(p.get("quiet"))))
        return self._signed("POST", key, p["bucket"], query={"delete": None},
                            headers={"Content-Type": "application/xml"}, body=body)

    def parse_delete_objects(self, request: Request, response: requests.Response) -> Result:
        return self._result(response, s3xml.parse_delete_result(self._xml(request, response)))

    def build_list_objects_v2(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        query: dict[str, Any] = {"list-type": "2"}
        for field, name in (("prefix", "prefix"), ("delimiter", "delimiter"),
                            ("max_keys", "max-keys"), ("continuation_token", "continuation-token"),
                            ("start_after", "start-after")):
            if p.get(field) is not None:
                query[name] = p[field]
        return self._signed("GET", key, p["bucket"], query=query)

    def parse_list_objects_v2(self, request: Request, response: requests.Response) -> Result:
        return self._result(response, s3xml.parse_list_v2(self._xml(request, response)))

    def build_copy_object(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        source = quote(f"{p['source_bucket']}/{p['source_key']}", safe="/~")
        if p.get("source_version_id"):
            source += "?versionId=" + quote(str(p["source_version_id"]), safe="")
        headers = _object_headers(p)
        headers["x-amz-copy-source"] = source
        if p.get("metadata") is not None or p.get("content_type"):
            headers["x-amz-metadata-directive"] = "REPLACE"
        return self._signed("PUT", key, p["bucket"], p["key"], headers=headers)

    def parse_copy_object(self, request: Request, response: requests.Response) -> Result:
        root = self._xml(request, response)
        return self._result(response, {"etag": s3xml.text(root, "ETag"),
                                       "last_modified": s3xml.text(root, "LastModified")})

    # ------------------------------------------------------------------ multipart
    def build_create_multipart_upload(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        return self._signed("POST", key, p["bucket"], p["key"], query={"uploads": None},
                            headers=_object_headers(p))

    def parse_create_multipart_upload(self, request: Request, response: requests.Response) -> Result:
        root = self._xml(request, response)
        upload_id = s3xml.text(root, "UploadId")
        if not upload_id:
            raise self.make_error(TransientError, "CreateMultipartUpload answer has no UploadId",
                                  response, code="malformed_response")
        return self._result(response, {"upload_id": upload_id, "bucket": s3xml.text(root, "Bucket"),
                                       "key": s3xml.text(root, "Key")})

    def build_upload_part(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        number = int(p.get("part_number", 0))
        if not 1 <= number <= 10000:
            raise self._invalid("upload_part: part_number must be within 1..10000")
        body = self._upload_body(request)
        self._sent_md5.put(request.request_id, body.md5_hex)
        return self._signed("PUT", key, p["bucket"], p["key"],
                            query={"partNumber": number, "uploadId": p["upload_id"]}, body=body)

    def parse_upload_part(self, request: Request, response: requests.Response) -> Result:
        etag = response.headers.get("ETag")
        if not etag:
            raise self.make_error(TransientError, "UploadPart answer has no ETag", response,
                                  code="malformed_response")
        self._verify_etag(request, response, etag)
        self._streams.forget(request.request_id)
        return self._result(response, {"etag": etag, "part_number": int(request.payload["part_number"])})

    def build_complete_multipart_upload(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        parts = [(int(x["part_number"]), str(x["etag"])) for x in p.get("parts") or ()]
        if not parts:
            raise self._invalid("complete_multipart_upload needs parts")
        body = bodies.from_bytes(s3xml.complete_body(parts))
        return self._signed("POST", key, p["bucket"], p["key"], query={"uploadId": p["upload_id"]},
                            headers={"Content-Type": "application/xml"}, body=body)

    def parse_complete_multipart_upload(self, request: Request, response: requests.Response) -> Result:
        root = self._xml(request, response)
        return self._result(response, {"etag": s3xml.text(root, "ETag"),
                                       "location": s3xml.text(root, "Location"),
                                       "version_id": response.headers.get("x-amz-version-id")})

    def build_abort_multipart_upload(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        return self._signed("DELETE", key, p["bucket"], p["key"], query={"uploadId": p["upload_id"]})

    def parse_abort_multipart_upload(self, request: Request, response: requests.Response) -> Result:
        return self._result(response, {"aborted": True})

    def build_list_multipart_uploads(self, request: Request, key: ApiKey | None) -> HttpRequest:
        p = request.payload
        query: dict[str, Any] = {"uploads": None}
        if p.get("prefix"):
            query["prefix"] = p["prefix"]
        return self._signed("GET", key, p["bucket"], query=query)

    def parse_list_multipart_uploads(self, request: Request, response: requests.Response) -> Result:
        root = self._xml(request, response)
        return self._result(response, {
            "uploads": s3xml.parse_uploads(root),
            "is_truncated": (s3xml.text(root, "IsTruncated", "false") or "").lower() == "true"})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.endpoint_for(None)}>"


# ---------------------------------------------------------------------- helpers
_HEADER_FIELDS: tuple[tuple[str, str], ...] = (
    ("content_type", "Content-Type"), ("cache_control", "Cache-Control"),
    ("content_disposition", "Content-Disposition"), ("content_encoding", "Content-Encoding"),
    ("storage_class", "x-amz-storage-class"), ("acl", "x-amz-acl"),
)


def _object_headers(p: Mapping[str, Any]) -> dict[str, str]:
    headers = {h: str(p[f]) for f, h in _HEADER_FIELDS if p.get(f)}
    for name, value in (p.get("metadata") or {}).items():
        headers[f"x-amz-meta-{name.lower()}"] = str(value)
    return headers


def _object_info(response: requests.Response) -> dict[str, Any]:
    h = response.headers
    length = h.get("Content-Length")
    return {
        "content_length": int(length) if length and length.isdigit() else None,
        "etag": h.get("ETag"),
        "content_type": h.get("Content-Type"),
        "last_modified": h.get("Last-Modified"),
        "version_id": h.get("x-amz-version-id"),
        "content_range": h.get("Content-Range"),
        "metadata": {k[11:]: v for k, v in h.items() if k.lower().startswith("x-amz-meta-")},
    }


def _status_message(status: int, body: bytes) -> str:
    if not body.strip():
        return f"HTTP {status} with an empty body"
    if body.lstrip().startswith(b"<"):
        return f"HTTP {status} with a non-S3 (HTML/XML) body"
    return f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"


__all__ = ["S3KitBackend"]
