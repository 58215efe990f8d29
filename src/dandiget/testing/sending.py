"""Writing responses: the archive's error shapes and a body writer that applies faults.

Every response goes out as an ``aiohttp.web.StreamResponse`` whose body we write ourselves,
so a fault can cut, slow, stall or corrupt it at an exact byte offset.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from aiohttp import web

from dandiget.testing.faults import Plan
from dandiget.testing.recording import RequestRecord

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from dandiget.testing import metadata as md
    from dandiget.testing.faults import FaultSet
    from dandiget.testing.presign import Signer
    from dandiget.testing.recording import RequestLog
    from dandiget.testing.store import Store


class Host:
    """What the API and the content host both answer from: the archive's data, its public
    URLs, URL signing, the injected faults, the request log and a pool for blocking work."""

    def __init__(self, store: Store, site: md.Site, signer: Signer, faults: FaultSet,
                 log: RequestLog, pool: ThreadPoolExecutor):
        self.store = store
        self.site = site
        self.signer = signer
        self.faults = faults
        self.log = log
        self.pool = pool

DJANGO_404 = (
    b"\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n</head>\n"
    b"<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n"
    b"</body>\n</html>\n"
)

HOST_ID = "9Gjjt1m+cjU4OPvX9O9/8RuvnG41MRb/18Oux2o5H5MY7ISNTlXN+Dz9IG62/ILVxhAGI0qyPfg="

API_DETAIL = {
    400: "Malformed request.",
    401: "Authentication credentials were not provided.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "Conflict.",
    500: "A server error occurred.",
    502: "Bad gateway.",
    503: "Service temporarily unavailable, try again later.",
    504: "Gateway timeout.",
}

S3_ERRORS = {
    400: ("InvalidRequest", "Bad Request"),
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    405: ("MethodNotAllowed", "The specified method is not allowed against this resource."),
    416: ("InvalidRange", "The requested range is not satisfiable"),
    429: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    501: ("NotImplemented", "A header you provided implies functionality that is not implemented"),
    502: ("BadGateway", "Bad Gateway"),
    503: ("SlowDown", "Please reduce your request rate."),
    504: ("GatewayTimeout", "Gateway Timeout"),
}

GZIP_MIN = 200
WRITE_CHUNK = 1 << 20


@dataclass
class Reply:
    """A response before it is written: status, headers and a body of known length."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] = ()
    length: int = 0
    #: Offset in the object of the first body byte (a 206's range start), for ``pause_at``.
    offset: int = 0

    @classmethod
    def of_bytes(cls, status: int, body: bytes, content_type: str | None,
                 headers: Mapping[str, str] | None = None) -> Reply:
        h = dict(headers or {})
        if content_type:
            h["Content-Type"] = content_type
        return cls(status, h, [body] if body else [], len(body))


def json_reply(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Reply:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Reply.of_bytes(status, body, "application/json", headers)


def detail_reply(status: int, detail: str | None = None,
                 headers: Mapping[str, str] | None = None) -> Reply:
    return json_reply(status, {"detail": detail or API_DETAIL.get(status, "Error.")}, headers)


def html_404() -> Reply:
    return Reply.of_bytes(404, DJANGO_404, "text/html; charset=utf-8")


def s3_error_body(code: str, message: str, **fields: Any) -> bytes:
    extra = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message>{extra}<RequestId>DANDIGETTEST0000</RequestId>"
        f"<HostId>{HOST_ID}</HostId></Error>"
    ).encode()


def s3_error(status: int, code: str | None = None, message: str | None = None,
             headers: Mapping[str, str] | None = None, **fields: Any) -> Reply:
    dcode, dmsg = S3_ERRORS.get(status, ("InternalError", "Error"))
    body = s3_error_body(code or dcode, message or dmsg, **fields)
    return Reply.of_bytes(status, body, "application/xml", headers)


def fault_reply(host: str, plan: Plan, auth: str | None = None) -> Reply:
    """The error a ``status=`` fault answers with, in the host's own error shape.

    With ``echo_auth``, ``auth`` (the request's Authorization header) is echoed back in the
    body and in an ``X-Echo-Authorization`` header, as careless servers and proxies do.
    """
    assert plan.status is not None
    status = plan.status
    headers: dict[str, str] = {}
    if plan.retry_after is not None:
        headers["Retry-After"] = str(plan.retry_after)
    if plan.echo_auth and auth:
        headers["X-Echo-Authorization"] = auth
        detail = f"Request was denied; you sent Authorization: {auth}"
        if host == "content":
            return s3_error(status, message=detail, headers=headers)
        return detail_reply(status, detail, headers)
    if host == "content":
        return s3_error(status, headers=headers)
    if status == 429:
        wait = plan.retry_after if plan.retry_after is not None else 1
        return detail_reply(429, f"Request was throttled. Expected available in {wait} seconds.",
                            headers)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return detail_reply(status, None, headers)


def maybe_gzip(request: web.BaseRequest, reply: Reply) -> Reply:
    """Django's GZipMiddleware: compress bodies of 200+ bytes for clients that accept gzip."""
    if reply.length < GZIP_MIN or "gzip" not in request.headers.get("Accept-Encoding", ""):
        return reply
    body = b"".join(reply.chunks)
    packed = gzip.compress(body, compresslevel=6, mtime=0)
    if len(packed) >= len(body):
        return reply
    reply.headers["Content-Encoding"] = "gzip"
    vary = reply.headers.get("Vary")
    if vary and "Accept-Encoding" not in vary:
        reply.headers["Vary"] = vary.replace("Cookie", "Cookie, Accept-Encoding", 1)
    return Reply(reply.status, reply.headers, [packed], len(packed))


def _split(data: bytes, size: int) -> Iterable[bytes]:
    if len(data) <= size:
        yield data
        return
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i:i + size])


async def send(request: web.BaseRequest, reply: Reply, plan: Plan,
               record: RequestRecord) -> web.StreamResponse:
    """Write ``reply`` applying the body faults of ``plan``; returns the prepared response."""
    if plan.disconnect:  # not a byte of the response: the client sees a dropped connection
        _close(request)
        raise asyncio.CancelledError
    record.status = reply.status
    resp = web.StreamResponse(status=reply.status)
    declared = reply.length
    if plan.short_body and declared == 0 and request.method != "HEAD":
        declared = 1  # an empty body can only be "short" against a larger promise
    for k, v in reply.headers.items():
        resp.headers[k] = v
    resp.content_length = declared
    try:
        await resp.prepare(request)
        if request.method == "HEAD" or (reply.length == 0 and not plan.short_body):
            if plan.pause_at == reply.offset and request.method != "HEAD":
                await plan.hold()  # an empty body pauses once its headers are out
            if plan.drop_after is not None and request.method != "HEAD":
                _close(request)
            return resp
        await _write_body(request, resp, reply, plan, record)
    except ConnectionError:
        pass  # the client went away; nothing left to do
    return resp


def _close(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()  # flushes what was written, then FIN


async def _write_body(request: web.BaseRequest, resp: web.StreamResponse, reply: Reply,
                      plan: Plan, record: RequestRecord) -> None:
    length = reply.length
    limit = length
    close = False
    if plan.short_body:
        limit = max(0, length - 1)
        close = True
    if plan.drop_after is not None:
        limit = min(limit, max(0, plan.drop_after))
        close = True
    corrupt_at = length // 2 if plan.corrupt and length else -1
    # after the first bytes (half the body, at most 64 KiB); a 1-byte body stalls before it
    stall_at = min(length // 2, 65536) if plan.stall and length else -1
    pause_at = -1  # body offset where the response is held, if its range holds that byte
    if plan.pause_at is not None and 0 <= plan.pause_at - reply.offset < length:
        pause_at = plan.pause_at - reply.offset
    piece_size = WRITE_CHUNK
    if plan.rate:
        piece_size = max(1, min(65536, int(plan.rate / 20)))
    stall = plan.stall

    async def stall_here() -> None:
        await asyncio.sleep(stall)

    stops = sorted(((at, wait) for at, wait in ((pause_at, plan.hold), (stall_at, stall_here))
                    if at >= 0), key=lambda stop: stop[0])
    t0 = time.monotonic()
    sent = 0
    for chunk in reply.chunks:
        if sent >= limit:
            break
        if sent + len(chunk) > limit:
            chunk = chunk[:limit - sent]
        if sent <= corrupt_at < sent + len(chunk):
            b = bytearray(chunk)
            b[corrupt_at - sent] ^= 0xFF
            chunk = bytes(b)
        for piece in _split(chunk, piece_size):
            # stops inside this piece: write up to the stop, then wait there (a pause the
            # test releases, or a stall)
            while stops and sent <= stops[0][0] < sent + len(piece):
                at, wait = stops.pop(0)
                cut = at - sent
                if cut:
                    await resp.write(piece[:cut])
                    sent += cut
                    record.bytes_sent = sent
                    piece = piece[cut:]
                await wait()
            await resp.write(piece)
            sent += len(piece)
            record.bytes_sent = sent
            if plan.rate:
                ahead = sent / plan.rate - (time.monotonic() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    if plan.long_body:
        transport = request.transport
        if transport is not None and not transport.is_closing():
            transport.write(b"\0" * 1024)
            record.bytes_sent = sent + 1024
        close = True
    if close:
        _close(request)
