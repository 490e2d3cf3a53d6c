"""S3's XML: parse answers and error bodies, build Multi-Object Delete and
CompleteMultipartUpload bodies.  Namespaces are ignored (servers differ in using them)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Iterable, Sequence
from xml.sax.saxutils import escape

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _strip(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse(body: bytes) -> ET.Element:
    """Parse an XML document with namespaces removed from every tag."""
    root = ET.fromstring(body)
    for el in root.iter():
        el.tag = _strip(el.tag)
    return root


def text(el: ET.Element | None, path: str, default: str | None = None) -> str | None:
    if el is None:
        return default
    found = el.find(path)
    return found.text if found is not None and found.text is not None else default


def parse_error(body: bytes) -> dict[str, str] | None:
    """``{"code", "message", "request_id", ...}`` from an ``<Error>`` body, else None."""
    if not body or not body.lstrip().startswith(b"<"):
        return None
    try:
        root = parse(body)
    except ET.ParseError:
        return None
    if root.tag != "Error":
        return None
    return {child.tag: (child.text or "") for child in root}


def parse_buckets(root: ET.Element) -> list[dict[str, Any]]:
    return [{"name": text(b, "Name"), "creation_date": text(b, "CreationDate")}
            for b in root.iterfind("Buckets/Bucket")]


def parse_list_v2(root: ET.Element) -> dict[str, Any]:
    contents = [{
        "key": text(c, "Key"),
        "size": int(text(c, "Size", "0") or 0),
        "etag": text(c, "ETag"),
        "last_modified": text(c, "LastModified"),
        "storage_class": text(c, "StorageClass"),
    } for c in root.iterfind("Contents")]
    prefixes = [text(p, "Prefix") for p in root.iterfind("CommonPrefixes")]
    return {
        "contents": contents,
        "common_prefixes": prefixes,
        "is_truncated": (text(root, "IsTruncated", "false") or "").lower() == "true",
        "next_continuation_token": text(root, "NextContinuationToken"),
        "key_count": int(text(root, "KeyCount", str(len(contents))) or 0),
        "prefix": text(root, "Prefix"),
    }


def parse_delete_result(root: ET.Element) -> dict[str, list]:
    deleted = [text(d, "Key") for d in root.iterfind("Deleted")]
    errors = [{"key": text(e, "Key"), "code": text(e, "Code"), "message": text(e, "Message")}
              for e in root.iterfind("Error")]
    return {"deleted": deleted, "errors": errors}


def parse_uploads(root: ET.Element) -> list[dict[str, Any]]:
    return [{"key": text(u, "Key"), "upload_id": text(u, "UploadId"),
             "initiated": text(u, "Initiated")} for u in root.iterfind("Upload")]


def delete_body(keys: Iterable[str], quiet: bool = False) -> bytes:
    objects = "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys)
    quiet_el = "<Quiet>true</Quiet>" if quiet else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="{S3_NS}">{quiet_el}'
            f"{objects}</Delete>").encode("utf-8")


def complete_body(parts: Sequence[tuple[int, str]]) -> bytes:
    items = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
                    for n, etag in sorted(parts))
    return (f'<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload xmlns="{S3_NS}">'
            f"{items}</CompleteMultipartUpload>").encode("utf-8")


def create_bucket_body(region: str) -> bytes:
    return (f'<CreateBucketConfiguration xmlns="{S3_NS}"><LocationConstraint>{escape(region)}'
            f"</LocationConstraint></CreateBucketConfiguration>").encode("utf-8")
