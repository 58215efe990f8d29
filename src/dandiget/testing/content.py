"""The content host: an S3-like bucket serving blobs, Zarr entries and version manifests.

Keys are laid out as in the Archive's bucket (``blobs/abc/def/<uuid>``, ``zarr/<id>/<key>``,
``dandisets/<id>/<version>/assets.jsonld``...). It speaks S3's dialect where a downloader can
tell: Range/206/416, quoted ETags, XML errors, presigned ``X-Amz-*`` URLs that expire,
``response-content-disposition``, HEAD refused (403) on a URL presigned for GET, and 400 for a
request that carries an ``Authorization``
header (S3 refuses a second auth mechanism next to a presigned URL; here it also proves an
API token never leaks to the bucket). ``GET /?list-type=2`` is ListObjectsV2, since the
Archive's bucket is publicly listable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from io import StringIO
from urllib.parse import parse_qsl

from aiohttp import web
from ruamel.yaml import YAML

from dandiget.testing import metadata as md
from dandiget.testing.bucket_listing import list_objects_v2
from dandiget.testing.data import BytesSource, Source
from dandiget.testing.faults import Plan
from dandiget.testing.records import NotFound
from dandiget.testing.sending import (
    Host,
    Reply,
    fault_reply,
    s3_error,
    s3_error_body,
    send,
)
from dandiget.testing.store import Store

BLOB_KEY = re.compile(r"blobs/([0-9a-f]{3})/([0-9a-f]{3})/([0-9a-f-]{36})")
ZARR_KEY = re.compile(r"zarr/([0-9a-f-]{36})/(.+)")
MANIFEST_KEY = re.compile(r"dandisets/(\d{6})/(draft|0\.\d{6}\.\d{4})/"
                          r"(assets\.jsonld|assets\.yaml|dandiset\.jsonld|dandiset\.yaml)")
RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass
class StoredObject:
    """What a key resolves to: bytes plus the object headers S3 would send."""

    source: Source
    etag: str
    last_modified: datetime
    content_type: str
    embargoed: bool


def http_date(t: datetime) -> str:
    return format_datetime(t, usegmt=True)


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end_inclusive)``, ``"unsatisfiable"``, or None to serve the whole object."""
    if not header:
        return None
    m = RANGE.fullmatch(header.strip())
    if not m:
        return None  # S3 ignores a Range it cannot parse (e.g. multiple ranges)
    a, b = m.groups()
    if not a and not b:
        return None
    if not a:
        n = int(b)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(a)
    end = int(b) if b else size - 1
    if b and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


def manifest(store: Store, site: md.Site, did: str, ver: str, name: str) -> StoredObject | None:
    """The manifests the Archive writes next to each version (rendered on demand)."""
    try:
        d = store.dandiset(did)
        v = d.version(ver)
    except NotFound:
        return None
    if name.startswith("assets"):
        doc: object = [md.asset_metadata(site, a) for a in v.assets]
    else:
        doc = md.version_metadata(site, v)
    if name.endswith(".jsonld"):
        body = json.dumps(doc, indent=1).encode()
        ctype = "application/json"
    else:
        y = YAML(typ="safe")
        y.default_flow_style = False
        buf = StringIO()
        y.dump(doc, buf)
        body = buf.getvalue().encode()
        ctype = "application/x-yaml"
    return StoredObject(BytesSource(body), md5_of(body), v.modified, ctype, d.embargoed)


class ContentHost(Host):
    """The aiohttp application playing the bucket."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw_query = request.raw_path.partition("?")[2]
        rec = self.log.add(request.method, "content", request.path, raw_query, request.headers)
        plan = self.faults.plan("content", request.method, rec.target,
                                request.headers.get("Range"))
        if plan.latency:
            await asyncio.sleep(plan.latency)
        if plan.status is not None:
            return await send(request, fault_reply("content", plan,
                                                   request.headers.get("Authorization")),
                              plan, rec)
        key = request.path.lstrip("/")
        if MANIFEST_KEY.fullmatch(key) or (key == "" and request.method == "GET"):
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(self.pool, self.resolve, request, key, raw_query,
                                               plan)
        else:
            reply = self.resolve(request, key, raw_query, plan)
        return await send(request, reply, plan, rec)

    # ------------------------------------------------------------------ resolution

    def resolve(self, request: web.BaseRequest, key: str, raw_query: str, plan: Plan) -> Reply:
        method = request.method
        if method not in ("GET", "HEAD"):
            return s3_error(405, Method=method, ResourceType="OBJECT")
        params = parse_qsl(raw_query, keep_blank_values=True)
        presigned, details = self.signer.check(key, params, method=method)
        if presigned != "none" and plan.expire_presigned:
            presigned = "expired"
        if "Authorization" in request.headers:
            if presigned != "none":
                return s3_error(400, "InvalidArgument",
                                "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                                "parameter, Signature query string parameter or the Authorization "
                                "header should be specified",
                                ArgumentName="Authorization",
                                ArgumentValue=request.headers["Authorization"])
            return s3_error(400, "InvalidArgument", "Unsupported Authorization Type",
                            ArgumentName="Authorization",
                            ArgumentValue=request.headers["Authorization"])
        if plan.refuse_unsigned and presigned != "ok":
            return s3_error(403)
        if presigned == "bad":
            if method == "HEAD":  # S3 answers a HEAD with the status alone
                return Reply(403, {"Content-Type": "application/xml"})
            return s3_error(403, "SignatureDoesNotMatch",
                            "The request signature we calculated does not match the signature "
                            "you provided. Check your key and signing method.")
        if presigned == "expired":
            body = s3_error_body("AccessDenied", "Request has expired", **details)
            return Reply.of_bytes(403, body, "application/xml")
        overrides = {k: v for k, v in params if k.startswith("response-")}
        if overrides and presigned != "ok":
            return s3_error(400, "InvalidRequest", "Request specific response headers cannot be "
                                                   "used for anonymous GET requests.")
        if key == "" and method == "GET":
            if dict(params).get("list-type") != "2":
                return s3_error(400, "InvalidRequest",
                                "This test bucket supports ListObjectsV2 (list-type=2) only")
            with self.store.lock:
                body = list_objects_v2(self.store, dict(params))
            return Reply.of_bytes(200, body, "application/xml")
        with self.store.lock:
            obj = self.lookup(key)
        if obj is None:
            if method == "HEAD":
                return Reply(404, {"Content-Type": "application/xml"})
            return s3_error(404, Key=key)
        if obj.embargoed and presigned != "ok":
            return s3_error(403)
        return self.object_reply(request, obj, overrides, plan)

    def lookup(self, key: str) -> StoredObject | None:
        m = BLOB_KEY.fullmatch(key)
        if m:
            blob = self.store.blobs.get(m.group(3))
            if blob is None or blob.key != key:
                return None
            return StoredObject(blob.served, blob.served_etag, blob.created,
                                "application/octet-stream", blob.embargoed)
        m = ZARR_KEY.fullmatch(key)
        if m:
            z = self.store.zarrs.get(m.group(1))
            if z is None:
                return None
            i = z.entries.index(m.group(2))
            if i < 0:
                return None
            return StoredObject(z.entries.served(i), z.entries.etag_for(i), z.modified,
                                "binary/octet-stream", z.embargoed)
        m = MANIFEST_KEY.fullmatch(key)
        if m:
            return manifest(self.store, self.site, *m.groups())
        return None

    # ------------------------------------------------------------------ object responses

    def object_reply(self, request: web.BaseRequest, obj: StoredObject,
                     overrides: dict[str, str], plan: Plan) -> Reply:
        size = obj.source.size
        etag = f'"{obj.etag}"'
        headers = {
            "Content-Type": overrides.get("response-content-type", obj.content_type),
            "ETag": etag,
            "Last-Modified": http_date(obj.last_modified),
            "Accept-Ranges": "bytes",
        }
        if "response-content-disposition" in overrides:
            headers["Content-Disposition"] = overrides["response-content-disposition"]
        if_match = request.headers.get("If-Match")
        if if_match is not None and if_match.strip() not in (etag, obj.etag, "*"):
            return s3_error(412, "PreconditionFailed",
                            "At least one of the pre-conditions you specified did not hold",
                            Condition="If-Match")
        if_none = request.headers.get("If-None-Match")
        if if_none is not None and if_none.strip() in (etag, obj.etag, "*"):
            return Reply(304, {"ETag": etag, "Last-Modified": headers["Last-Modified"]})
        rng = None if plan.ignore_range else parse_range(request.headers.get("Range"), size)
        if rng == "unsatisfiable":
            return s3_error(416, ActualObjectSize=size,
                            RangeRequested=request.headers.get("Range", ""))
        if plan.wrong_content_range and size > 1:
            start, end = rng if isinstance(rng, tuple) else (0, size - 1)
            start = start + 1 if start + 1 < size else start - 1
            rng = (start, max(end, start))
        if isinstance(rng, tuple):
            start, end = rng
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return Reply(206, headers, _lazy(obj.source, start, end + 1), end + 1 - start,
                         offset=start)
        return Reply(200, headers, _lazy(obj.source, 0, size), size)


def _lazy(src: Source, start: int, end: int) -> Iterable[bytes]:
    """Chunks of ``src`` computed only when the body is actually written (not for HEAD)."""
    class _Chunks:
        def __iter__(self) -> Iterator[bytes]:
            return src.iter_range(start, end)

    return _Chunks()


def md5_of(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()
