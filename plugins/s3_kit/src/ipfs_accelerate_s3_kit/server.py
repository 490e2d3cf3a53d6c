"""The server side of the S3 protocol: a small in-memory, path-style object store for the
simulator and the contract tests.

It answers the operations the backend uses (buckets, objects, Multi-Object Delete,
ListObjectsV2 with continuation tokens, copy, multipart uploads, ranges) with S3's XML
bodies and ``<Error>`` documents, MD5 ETags and ``x-amz-request-id``.  Its 429 is S3's
``503 SlowDown``.  Given ``credentials={access: secret}`` it also checks SigV4 header
signatures (with botocore), answering ``SignatureDoesNotMatch`` / ``InvalidAccessKeyId``.
Real-service behaviour is tested against moto; this server is deliberately small.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
import uuid
from typing import Any, ClassVar, Mapping
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

import attrs
from ipfs_accelerate_py.server import ProtocolServer, ServerRequest, ServerResponse, route
from ipfs_accelerate_py.wire.ratelimit import RateLimitInfo

from . import s3xml

_NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
_CRED = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/s3/aws4_request")
_SIGNED = re.compile(r"SignedHeaders=([^,\s]+)")
_SIG = re.compile(r"Signature=([0-9a-f]{64})")
_STATUS_CODES = {400: "InvalidRequest", 401: "AccessDenied", 403: "AccessDenied", 404: "NoSuchKey",
                 405: "MethodNotAllowed", 409: "Conflict", 429: "SlowDown", 500: "InternalError",
                 503: "SlowDown"}


@attrs.define
class _Object:
    data: bytes
    etag: str
    content_type: str = "binary/octet-stream"
    metadata: dict[str, str] = attrs.field(factory=dict)
    modified: float = attrs.field(factory=time.time)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def _http_date(ts: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ts))


def _xml(body: str, status: int = 200, headers: Mapping[str, str] | None = None) -> ServerResponse:
    return ServerResponse(status, {"Content-Type": "application/xml", **(headers or {})},
                          ('<?xml version="1.0" encoding="UTF-8"?>' + body).encode("utf-8"))


class S3Server(ProtocolServer):
    name: ClassVar[str] = "s3_kit"

    def __init__(self, seed: int = 0, credentials: Mapping[str, str] | None = None,
                 region: str = "us-east-1") -> None:
        super().__init__(seed)
        self.credentials = dict(credentials or {})
        self.region = region
        self._lock = threading.RLock()
        self.buckets: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ protocol hooks
    def key_of(self, req: ServerRequest) -> str | None:
        m = _CRED.search(req.header("authorization") or "") or _CRED.search(
            "Credential=" + unquote(req.arg("X-Amz-Credential", "") or ""))
        return m.group(1) if m else None

    def rate_limited(self, req: ServerRequest, info: RateLimitInfo) -> ServerResponse:
        return self.s3_error(req, 503, "SlowDown", "Please reduce your request rate.")

    def error(self, req: ServerRequest, status: int, message: str) -> ServerResponse:
        return self.s3_error(req, status, _STATUS_CODES.get(status, "InvalidRequest"), message)

    def s3_error(self, req: ServerRequest, status: int, code: str, message: str,
                 **fields: str) -> ServerResponse:
        rid = uuid.UUID(int=self.rng.getrandbits(128)).hex[:16].upper()
        extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
        body = (f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>{extra}"
                f"<RequestId>{rid}</RequestId></Error>")
        if req.method == "HEAD":
            return ServerResponse(status, {"x-amz-request-id": rid, "Content-Length": "0"}, b"")
        return _xml(body, status, {"x-amz-request-id": rid})

    def handle(self, req: ServerRequest) -> ServerResponse:
        denied = self._check_auth(req)
        if denied is not None:
            return denied
        resp = super().handle(req)
        resp.headers.setdefault("x-amz-request-id", uuid.UUID(int=self.rng.getrandbits(128)).hex[:16].upper())
        return resp

    # ------------------------------------------------------------------ auth
    def _check_auth(self, req: ServerRequest) -> ServerResponse | None:
        auth = req.header("authorization") or ""
        access = self.key_of(req)
        if access is None:
            return self.s3_error(req, 403, "AccessDenied", "Access Denied")
        if not self.credentials:
            return None
        secret = self.credentials.get(access)
        if secret is None:
            return self.s3_error(req, 403, "InvalidAccessKeyId",
                                 "The AWS Access Key Id you provided does not exist in our records.")
        if auth and not self._signature_ok(req, auth, access, secret):
            return self.s3_error(req, 403, "SignatureDoesNotMatch",
                                 "The request signature we calculated does not match the signature "
                                 "you provided. Check your key and signing method.")
        return None

    def _signature_ok(self, req: ServerRequest, auth: str, access: str, secret: str) -> bool:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        cred, signed, sig = _CRED.search(auth), _SIGNED.search(auth), _SIG.search(auth)
        if not (cred and signed and sig):
            return False
        names = signed.group(1).split(";")
        headers = {n: req.header(n, "") or "" for n in names}
        query = "&".join(quote(k, safe="-_.~") + ("=" + quote(v, safe="-_.~") if v else "")
                         for k, vs in req.query.items() for v in vs)
        url = f"http://{headers.get('host', 'localhost')}{req.path}" + (f"?{query}" if query else "")
        aws = AWSRequest(method=req.method, url=url, headers=headers)
        aws.context["timestamp"] = req.header("x-amz-date", "")
        payload = req.header("x-amz-content-sha256", "")
        if payload not in ("UNSIGNED-PAYLOAD", hashlib.sha256(req.body).hexdigest()):
            return False
        signer = S3SigV4Auth(Credentials(access, secret), "s3", cred.group(3))
        signer.payload = lambda request: payload  # type: ignore[method-assign]
        expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
        return expected == sig.group(1)

    # ------------------------------------------------------------------ buckets
    def _bucket(self, req: ServerRequest, name: str) -> dict[str, Any] | ServerResponse:
        b = self.buckets.get(name)
        if b is None:
            return self.s3_error(req, 404, "NoSuchBucket", "The specified bucket does not exist",
                                 BucketName=name)
        return b

    @route("GET", "/")
    def list_buckets(self, req: ServerRequest) -> ServerResponse:
        with self._lock:
            items = "".join(f"<Bucket><Name>{escape(n)}</Name><CreationDate>{_iso(b['created'])}"
                            f"</CreationDate></Bucket>" for n, b in sorted(self.buckets.items()))
        return _xml(f"<ListAllMyBucketsResult {_NS}><Owner><ID>sim</ID></Owner><Buckets>{items}"
                    f"</Buckets></ListAllMyBucketsResult>")

    @route("PUT", "/{bucket}")
    def create_bucket(self, req: ServerRequest, bucket: str) -> ServerResponse:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            return self.s3_error(req, 400, "InvalidBucketName", "The specified bucket is not valid.",
                                 BucketName=bucket)
        with self._lock:
            if bucket in self.buckets:
                return self.s3_error(req, 409, "BucketAlreadyOwnedByYou",
                                     "Your previous request to create the named bucket succeeded.")
            self.buckets[bucket] = {"created": time.time(), "objects": {}}
        return ServerResponse(200, {"Location": f"/{bucket}"}, b"")

    @route("DELETE", "/{bucket}")
    def delete_bucket(self, req: ServerRequest, bucket: str) -> ServerResponse:
        with self._lock:
            b = self._bucket(req, bucket)
            if isinstance(b, ServerResponse):
                return b
            if b["objects"]:
                return self.s3_error(req, 409, "BucketNotEmpty", "The bucket you tried to delete is not empty")
            del self.buckets[bucket]
        return ServerResponse(204, {}, b"")

    @route("GET", "/{bucket}")
    def list_bucket(self, req: ServerRequest, bucket: str) -> ServerResponse:
        with self._lock:
            b = self._bucket(req, bucket)
            if isinstance(b, ServerResponse):
                return b
            if "uploads" in req.query:
                ups = "".join(f"<Upload><Key>{escape(u['key'])}</Key><UploadId>{uid}</UploadId>"
                              f"<Initiated>{_iso(u['created'])}</Initiated></Upload>"
                              for uid, u in self.uploads.items() if u["bucket"] == bucket)
                return _xml(f"<ListMultipartUploadsResult {_NS}><Bucket>{escape(bucket)}</Bucket>"
                            f"<IsTruncated>false</IsTruncated>{ups}</ListMultipartUploadsResult>")
            objects = dict(b["objects"])
        return self._list_v2(req, bucket, objects)

    def _list_v2(self, req: ServerRequest, bucket: str, objects: dict[str, _Object]) -> ServerResponse:
        prefix = req.arg("prefix", "") or ""
        delimiter = req.arg("delimiter")
        max_keys = int(req.arg("max-keys", "1000") or 1000)
        token = req.arg("continuation-token")
        after = base64.urlsafe_b64decode(token.encode()).decode() if token else (req.arg("start-after") or "")
        contents, prefixes, last = [], [], None
        truncated = False
        for key in sorted(k for k in objects if k.startswith(prefix) and k > after):
            if delimiter and delimiter in key[len(prefix):]:
                cp = key[:len(prefix) + key[len(prefix):].index(delimiter) + len(delimiter)]
                if cp in prefixes:
                    continue
                entry: Any = ("prefix", cp)
            else:
                entry = ("key", key)
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            if entry[0] == "prefix":
                prefixes.append(entry[1])
            else:
                contents.append(key)
            last = key
        items = "".join(
            f"<Contents><Key>{escape(k)}</Key><LastModified>{_iso(objects[k].modified)}</LastModified>"
            f"<ETag>&quot;{objects[k].etag}&quot;</ETag><Size>{len(objects[k].data)}</Size>"
            f"<StorageClass>STANDARD</StorageClass></Contents>" for k in contents)
        cps = "".join(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in prefixes)
        nxt = (f"<NextContinuationToken>{base64.urlsafe_b64encode(last.encode()).decode()}"
               f"</NextContinuationToken>") if truncated and last else ""
        return _xml(f"<ListBucketResult {_NS}><Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
                    f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>"
                    f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{nxt}{items}{cps}"
                    f"</ListBucketResult>")

    @route("POST", "/{bucket}")
    def delete_objects(self, req: ServerRequest, bucket: str) -> ServerResponse:
        if "delete" not in req.query:
            return self.error(req, 405, "only ?delete is supported on a bucket POST")
        md5 = req.header("content-md5")
        if md5 != base64.b64encode(hashlib.md5(req.body).digest()).decode():
            return self.s3_error(req, 400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
        root = s3xml.parse(req.body)
        quiet = (s3xml.text(root, "Quiet", "false") or "").lower() == "true"
        keys = [s3xml.text(o, "Key") or "" for o in root.iterfind("Object")]
        with self._lock:
            b = self._bucket(req, bucket)
            if isinstance(b, ServerResponse):
                return b
            for k in keys:
                b["objects"].pop(k, None)
        done = "" if quiet else "".join(f"<Deleted><Key>{escape(k)}</Key></Deleted>" for k in keys)
        return _xml(f"<DeleteResult {_NS}>{done}</DeleteResult>")

    # ------------------------------------------------------------------ objects
    def _object(self, req: ServerRequest, bucket: str, key: str) -> _Object | ServerResponse:
        b = self._bucket(req, bucket)
        if isinstance(b, ServerResponse):
            return b
        obj = b["objects"].get(key)
        if obj is None:
            return self.s3_error(req, 404, "NoSuchKey", "The specified key does not exist.", Key=key)
        return obj

    @route("PUT", "/{bucket}/{key:path}")
    def put_object(self, req: ServerRequest, bucket: str, key: str) -> ServerResponse:
        key = unquote(key)
        md5 = req.header("content-md5")
        if md5 is not None and md5 != base64.b64encode(hashlib.md5(req.body).digest()).decode():
            return self.s3_error(req, 400, "BadDigest", "The Content-MD5 you specified did not match "
                                 "what we received.")
        etag = hashlib.md5(req.body).hexdigest()
        if "partNumber" in req.query:
            with self._lock:
                up = self.uploads.get(req.arg("uploadId") or "")
                if up is None:
                    return self.s3_error(req, 404, "NoSuchUpload", "The specified upload does not exist.")
                up["parts"][int(req.arg("partNumber") or 0)] = (req.body, etag)
            return ServerResponse(200, {"ETag": f'"{etag}"'}, b"")
        source = req.header("x-amz-copy-source")
        with self._lock:
            b = self._bucket(req, bucket)
            if isinstance(b, ServerResponse):
                return b
            if source:
                sb, _, sk = unquote(source).lstrip("/").partition("/")
                src = self._object(req, sb, sk)
                if isinstance(src, ServerResponse):
                    return src
                replace = req.header("x-amz-metadata-directive") == "REPLACE"
                obj = _Object(src.data, src.etag,
                              req.header("content-type", src.content_type) if replace else src.content_type,
                              _meta(req) if replace else dict(src.metadata))
                b["objects"][key] = obj
                return _xml(f"<CopyObjectResult><LastModified>{_iso(obj.modified)}</LastModified>"
                            f"<ETag>&quot;{obj.etag}&quot;</ETag></CopyObjectResult>")
            b["objects"][key] = _Object(req.body, etag, req.header("content-type", "binary/octet-stream")
                                        or "binary/octet-stream", _meta(req))
        return ServerResponse(200, {"ETag": f'"{etag}"'}, b"")

    def _object_headers(self, obj: _Object) -> dict[str, str]:
        headers = {"ETag": f'"{obj.etag}"', "Content-Type": obj.content_type,
                   "Last-Modified": _http_date(obj.modified), "Accept-Ranges": "bytes"}
        headers.update({f"x-amz-meta-{k}": v for k, v in obj.metadata.items()})
        return headers

    @route("GET", "/{bucket}/{key:path}")
    def get_object(self, req: ServerRequest, bucket: str, key: str) -> ServerResponse:
        with self._lock:
            obj = self._object(req, bucket, unquote(key))
        if isinstance(obj, ServerResponse):
            return obj
        headers = self._object_headers(obj)
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", req.header("range") or "")
        if m and obj.data:
            size = len(obj.data)
            start, end = (int(m.group(1)), int(m.group(2) or size - 1)) if m.group(1) else \
                (max(0, size - int(m.group(2) or 0)), size - 1)
            end = min(end, size - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return ServerResponse(206, headers, obj.data[start:end + 1])
        return ServerResponse(200, headers, obj.data)

    @route("HEAD", "/{bucket}/{key:path}")
    def head_object(self, req: ServerRequest, bucket: str, key: str) -> ServerResponse:
        with self._lock:
            obj = self._object(req, bucket, unquote(key))
        if isinstance(obj, ServerResponse):
            return obj
        headers = self._object_headers(obj)
        headers["Content-Length"] = str(len(obj.data))
        return ServerResponse(200, headers, b"")

    @route("DELETE", "/{bucket}/{key:path}")
    def delete_object(self, req: ServerRequest, bucket: str, key: str) -> ServerResponse:
        with self._lock:
            if "uploadId" in req.query:
                if self.uploads.pop(req.arg("uploadId") or "", None) is None:
                    return self.s3_error(req, 404, "NoSuchUpload", "The specified upload does not exist.")
                return ServerResponse(204, {}, b"")
            b = self._bucket(req, bucket)
            if isinstance(b, ServerResponse):
                return b
            b["objects"].pop(unquote(key), None)
        return ServerResponse(204, {}, b"")

    @route("POST", "/{bucket}/{key:path}")
    def multipart(self, req: ServerRequest, bucket: str, key: str) -> ServerResponse:
        key = unquote(key)
        with self._lock:
            b = self._bucket(req, bucket)
            if isinstance(b, ServerResponse):
                return b
            if "uploads" in req.query:
                uid = uuid.UUID(int=self.rng.getrandbits(128)).hex
                self.uploads[uid] = {"bucket": bucket, "key": key, "parts": {}, "created": time.time(),
                                     "content_type": req.header("content-type", "binary/octet-stream"),
                                     "metadata": _meta(req)}
                return _xml(f"<InitiateMultipartUploadResult {_NS}><Bucket>{escape(bucket)}</Bucket>"
                            f"<Key>{escape(key)}</Key><UploadId>{uid}</UploadId>"
                            f"</InitiateMultipartUploadResult>")
            up = self.uploads.get(req.arg("uploadId") or "")
            if up is None:
                return self.s3_error(req, 404, "NoSuchUpload", "The specified upload does not exist.")
            wanted = [(int(s3xml.text(p, "PartNumber") or 0), (s3xml.text(p, "ETag") or "").strip('"'))
                      for p in s3xml.parse(req.body).iterfind("Part")]
            for n, etag in wanted:
                if up["parts"].get(n, (b"", None))[1] != etag:
                    return self.s3_error(req, 400, "InvalidPart", "One or more of the specified parts "
                                         "could not be found.")
            data = b"".join(up["parts"][n][0] for n, _ in wanted)
            digest = hashlib.md5(b"".join(bytes.fromhex(e) for _, e in wanted)).hexdigest()
            etag = f"{digest}-{len(wanted)}"
            b["objects"][key] = _Object(data, etag, up["content_type"] or "binary/octet-stream",
                                        up["metadata"])
            del self.uploads[req.arg("uploadId") or ""]
        return _xml(f"<CompleteMultipartUploadResult {_NS}><Location>/{escape(bucket)}/{escape(key)}"
                    f"</Location><Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key>"
                    f"<ETag>&quot;{etag}&quot;</ETag></CompleteMultipartUploadResult>")


def _meta(req: ServerRequest) -> dict[str, str]:
    return {k[11:]: v for k, v in req.headers.items() if k.startswith("x-amz-meta-")}
