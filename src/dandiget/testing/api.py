"""The API host: the Archive's REST routes as a downloader sees them (``/api/...``).

Requests are matched against Django-like URL patterns (6-digit dandiset ids, ``draft`` or
``0.YYMMDD.HHMM`` versions, lowercase UUIDv4 asset/zarr ids). A path that matches nothing gets
Django's HTML 404; a path that only lacks its trailing slash gets a 301 with the query kept.
Handlers run in worker threads under the store lock and return a :class:`Reply`.
"""

from __future__ import annotations

import asyncio
import bisect
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiDict

from dandiget.testing import metadata as md
from dandiget.testing.fastjson import asset_item_json, page_json
from dandiget.testing.faults import FaultSet, Plan
from dandiget.testing.pagination import (
    HEROKU_TIMEOUT_PAGE,
    InvalidPage,
    ListingBehaviour,
    dandi_page,
    lazy_page,
    page_number_of,
    replace_query_param,
    rows_on_page,
)
from dandiget.testing.presign import Signer
from dandiget.testing.queries import filter_assets, path_rows
from dandiget.testing.recording import RequestLog
from dandiget.testing.records import Asset, Dandiset, NotFound, User, Version, Zarr
from dandiget.testing.sending import (
    Host,
    Reply,
    detail_reply,
    fault_reply,
    html_404,
    json_reply,
    maybe_gzip,
    send,
)
from dandiget.testing.store import Store

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
DANDISET = r"(?P<did>\d{6})"
VERSION = r"(?P<ver>draft|0\.\d{6}\.\d{4})"
ASSET = rf"(?P<aid>{UUID})"
ZARR = rf"(?P<zid>{UUID})"
VPATH = rf"/api/dandisets/{DANDISET}/versions/{VERSION}"

UNAUTHENTICATED = {"WWW-Authenticate": 'Bearer realm="api"'}
ZARR_DOWNLOAD_ERROR = (
    "Unable to provide download link for zarr assets. Please browse the zarr files directly "
    "to do so."
)
TRUE = {"t", "y", "yes", "true", "on", "1"}
FALSE = {"f", "n", "no", "false", "off", "0"}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class Abort(Exception):
    """Stop handling and answer ``reply``."""

    def __init__(self, reply: Reply):
        super().__init__(reply.status)
        self.reply = reply


@dataclass
class Ctx:
    """One API request, detached from aiohttp so it can be handled in a worker thread."""

    method: str
    path: str
    raw_path: str
    raw_query: str
    query: MultiDict[str]
    headers: Mapping[str, str]
    host: str
    user: User | None
    plan: Plan

    @property
    def url(self) -> str:
        """The absolute request URL (``request.build_absolute_uri()``)."""
        return f"http://{self.host}{self.raw_path}" + (f"?{self.raw_query}" if self.raw_query
                                                        else "")

    def bool_param(self, name: str, default: bool) -> bool:
        raw = self.query.get(name)
        if raw is None:
            return default
        if raw.lower() in TRUE:
            return True
        if raw.lower() in FALSE:
            return False
        raise Abort(json_reply(400, {name: ["Must be a valid boolean."]}))


@dataclass
class Route:
    regex: re.Pattern[str]
    handler: Callable[..., Reply]
    allow: str

    @property
    def methods(self) -> set[str]:
        return {m.strip() for m in self.allow.split(",")} | {"HEAD"}


class ApiHost(Host):
    """The aiohttp application answering ``/api/...``."""

    def __init__(self, store: Store, site: md.Site, signer: Signer, faults: FaultSet,
                 log: RequestLog, pool: ThreadPoolExecutor):
        super().__init__(store, site, signer, faults, log, pool)
        #: Row budget and draft-edit hooks of the asset listing (shared with TestArchive).
        self.listing = ListingBehaviour()
        R = self._route
        self.routes = [
            R(r"/api/info/", self.info, "GET, OPTIONS"),
            R(r"/api/auth/token/", self.auth_token, "GET, POST, HEAD, OPTIONS"),
            R(r"/api/users/me/", self.users_me, "GET, OPTIONS"),
            R(r"/api/dandisets/", self.dandiset_list, "GET, POST, HEAD, OPTIONS"),
            R(rf"/api/dandisets/{DANDISET}/", self.dandiset_detail, "GET, DELETE, HEAD, OPTIONS"),
            R(rf"/api/dandisets/{DANDISET}/versions/", self.version_list, "GET, HEAD, OPTIONS"),
            R(rf"{VPATH}/", self.version_detail, "GET, PUT, DELETE, HEAD, OPTIONS"),
            R(rf"{VPATH}/info/", self.version_info, "GET, HEAD, OPTIONS"),
            R(rf"{VPATH}/assets/", self.asset_list, "GET, POST, HEAD, OPTIONS"),
            R(rf"{VPATH}/assets/paths/", self.asset_paths, "GET, HEAD, OPTIONS"),
            R(rf"{VPATH}/assets/{ASSET}/", self.v_asset_detail, "GET, PUT, DELETE, HEAD, OPTIONS"),
            R(rf"{VPATH}/assets/{ASSET}/info/", self.v_asset_info, "GET, HEAD, OPTIONS"),
            R(rf"{VPATH}/assets/{ASSET}/download/", self.v_asset_download, "GET, HEAD, OPTIONS"),
            R(rf"{VPATH}/assets/{ASSET}/validation/", self.v_asset_validation,
              "GET, HEAD, OPTIONS"),
            R(rf"/api/assets/{ASSET}/", self.asset_detail, "GET, HEAD, OPTIONS"),
            R(rf"/api/assets/{ASSET}/info/", self.asset_info, "GET, HEAD, OPTIONS"),
            R(rf"/api/assets/{ASSET}/download/", self.asset_download, "GET, HEAD, OPTIONS"),
            R(r"/api/zarr/", self.zarr_list, "GET, POST, HEAD, OPTIONS"),
            R(rf"/api/zarr/{ZARR}/", self.zarr_detail, "GET, HEAD, OPTIONS"),
            R(rf"/api/zarr/{ZARR}/files/", self.zarr_files, "GET, POST, DELETE, HEAD, OPTIONS"),
        ]

    @staticmethod
    def _route(pattern: str, handler: Callable[..., Reply], allow: str) -> Route:
        return Route(re.compile(pattern), handler, allow)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    # ------------------------------------------------------------------ dispatch

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        rec = self.log.add(request.method, "api", request.path, raw_query, request.headers)
        plan = self.faults.plan("api", request.method, rec.target)
        if plan.latency:
            await asyncio.sleep(plan.latency)
        if plan.status is not None:
            return await send(request, fault_reply("api", plan,
                                                   request.headers.get("Authorization")),
                              plan, rec)
        ctx = Ctx(request.method, request.path, raw_path, raw_query, MultiDict(request.query),
                  dict(request.headers), request.host, None, plan)
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(self.pool, self.dispatch, ctx)
        reply = maybe_gzip(request, reply)
        return await send(request, reply, plan, rec)

    def dispatch(self, ctx: Ctx) -> Reply:
        route, params = self._match(ctx.path)
        if route is None:
            if not ctx.path.endswith("/") and self._match(ctx.path + "/")[0] is not None:
                loc = ctx.raw_path + "/" + (f"?{ctx.raw_query}" if ctx.raw_query else "")
                return Reply(301, {"Location": loc, "Content-Type": "text/html; charset=utf-8"})
            return html_404()
        try:
            with self.store.lock:
                ctx.user = self._authenticate(ctx)
                if ctx.method not in route.methods:
                    raise Abort(detail_reply(405, f'Method "{ctx.method}" not allowed.'))
                if ctx.method == "OPTIONS":
                    reply = json_reply(200, {"name": "dandiget test archive", "description": "",
                                             "renders": ["application/json", "text/html"],
                                             "parses": ["application/json"]})
                elif ctx.method in WRITE_METHODS:
                    if ctx.user is None:
                        raise Abort(detail_reply(401, None, UNAUTHENTICATED))
                    raise Abort(detail_reply(403))
                else:
                    reply = route.handler(ctx, **params)
        except Abort as e:
            reply = e.reply
        except NotFound:
            reply = detail_reply(404)
        except InvalidPage:
            reply = detail_reply(404, "Invalid page.")
        if reply.headers.get("Content-Type", "").startswith("application/json") or \
                reply.status in (301, 302):
            reply.headers.setdefault("Allow", route.allow)
        reply.headers.setdefault("Vary", "Accept, Cookie, origin")
        reply.headers.setdefault("X-Request-Username",
                                 ctx.user.email if ctx.user else "AnonymousUser")
        return reply

    def _match(self, path: str) -> tuple[Route | None, dict[str, str]]:
        for r in self.routes:
            m = r.regex.fullmatch(path)
            if m:
                return r, m.groupdict()
        return None, {}

    def _authenticate(self, ctx: Ctx) -> User | None:
        """DRF TokenAuthentication: a bad ``token`` header fails every request with 401."""
        header = ctx.headers.get("Authorization") or ctx.headers.get("authorization")
        if not header:
            return None
        parts = header.split()
        if not parts or parts[0].lower() != "token":
            return None  # e.g. Bearer: not ours, the request stays anonymous
        if len(parts) == 1:
            raise Abort(detail_reply(401, "Invalid token header. No credentials provided.",
                                     UNAUTHENTICATED))
        if len(parts) > 2:
            raise Abort(detail_reply(
                401, "Invalid token header. Token string should not contain spaces.",
                UNAUTHENTICATED))
        user = self.store.user_by_token(parts[1])
        if user is None:
            raise Abort(detail_reply(401, "Invalid token.", UNAUTHENTICATED))
        return user

    # ------------------------------------------------------------------ access

    @staticmethod
    def _may_see(user: User | None, d: Dandiset) -> bool:
        return not d.embargoed or (user is not None and (user.admin or user.name in d.owners))

    def _dandiset(self, ctx: Ctx, did: str) -> Dandiset:
        d = self.store.dandiset(did)
        if not self._may_see(ctx.user, d):
            if ctx.user is None:
                raise Abort(detail_reply(401, None, UNAUTHENTICATED))
            raise Abort(detail_reply(403))
        return d

    def _version(self, ctx: Ctx, did: str, ver: str) -> Version:
        return self._dandiset(ctx, did).version(ver)

    def _asset_in_version(self, ctx: Ctx, did: str, ver: str, aid: str) -> Asset:
        v = self._version(ctx, did, ver)
        a = self.store.assets.get(aid)
        if a is None or v.by_path.get(a.path) is not a:
            raise NotFound(aid)
        return a

    def _asset(self, ctx: Ctx, aid: str) -> Asset:
        """``/api/assets/{id}/``: embargo judged by the blob/zarr, ownership by dandiset."""
        a = self.store.assets.get(aid)
        if a is None:
            raise NotFound(aid)
        if a.embargoed:
            if ctx.user is None:
                raise Abort(detail_reply(401, None, UNAUTHENTICATED))
            d = self.store.dandisets.get(a.dandiset_id)
            if not (ctx.user.admin or (d is not None and ctx.user.name in d.owners)):
                raise Abort(detail_reply(403))
        return a

    # ------------------------------------------------------------------ misc routes

    def info(self, ctx: Ctx) -> Reply:
        return json_reply(200, md.server_info(self.site))

    def auth_token(self, ctx: Ctx) -> Reply:
        if ctx.user is None:
            return detail_reply(401, None, UNAUTHENTICATED)
        return json_reply(200, ctx.user.token)

    def users_me(self, ctx: Ctx) -> Reply:
        if ctx.user is None:
            return detail_reply(401, None, UNAUTHENTICATED)
        u = ctx.user
        return json_reply(200, {"username": u.email, "name": u.name, "admin": u.admin,
                                "status": "APPROVED"})

    # ------------------------------------------------------------------ dandisets

    def dandiset_list(self, ctx: Ctx) -> Reply:
        draft = ctx.bool_param("draft", True)
        empty = ctx.bool_param("empty", True)
        embargoed = ctx.bool_param("embargoed", False)
        starred = ctx.bool_param("starred", False)
        user = ctx.user
        if embargoed and user is None:
            return json_reply(401, "Authentication credentials must be provided when attempting "
                                   "to access embargoed dandisets")
        if starred and user is None:
            return json_reply(401, "Must be authenticated to filter by starred dandisets.")
        only_mine = ctx.query.get("user")
        if only_mine is not None and only_mine != "me":
            return json_reply(400, {"user": [f'Select a valid choice. {only_mine} is not one of '
                                             'the available choices.']})
        items = []
        for d in self.store.dandisets.values():
            if d.embargoed and not (embargoed and self._may_see(user, d)):
                continue
            if not draft and not d.published:
                continue
            if not empty and not (d.published[-1] if d.published else d.draft).assets:
                continue
            if only_mine == "me" and (user is None or user.name not in d.owners):
                continue
            if starred:
                continue  # nobody stars anything here
            items.append(d)
        search = (ctx.query.get("search") or "").strip().lower()
        if search:
            items = [d for d in items if search in d.identifier or search in d.draft.name.lower()]
        ordering = ctx.query.get("ordering", "")
        keys: dict[str, Callable[[Dandiset], Any]] = {
            "id": lambda d: d.identifier,
            "name": lambda d: d.draft.name,
            "modified": lambda d: d.draft.modified,
            "size": lambda d: d.draft.size,
            "stars": lambda d: 0,
        }
        if ordering.lstrip("-") in keys:
            items.sort(key=keys[ordering.lstrip("-")], reverse=ordering.startswith("-"))
        page = dandi_page(items, ctx.url, ctx.query.get("page"), ctx.query.get("page_size"),
                          lambda d: md.dandiset_json(d, long=False))
        return json_reply(200, page)

    def dandiset_detail(self, ctx: Ctx, did: str) -> Reply:
        return json_reply(200, md.dandiset_json(self._dandiset(ctx, did), long=True))

    def version_list(self, ctx: Ctx, did: str) -> Reply:
        d = self._dandiset(ctx, did)
        order = ctx.query.get("order", "created")
        if order not in ("created", "-created"):
            return json_reply(400, {"order": [f"Select a valid choice. {order} is not one of the "
                                              "available choices."]})
        versions = sorted(d.versions, key=lambda v: v.created, reverse=order.startswith("-"))
        page = dandi_page(versions, ctx.url, ctx.query.get("page"), ctx.query.get("page_size"),
                          md.version_list_item)
        return json_reply(200, page)

    def version_detail(self, ctx: Ctx, did: str, ver: str) -> Reply:
        return json_reply(200, md.version_metadata(self.site, self._version(ctx, did, ver)))

    def version_info(self, ctx: Ctx, did: str, ver: str) -> Reply:
        return json_reply(200, md.version_info(self.site, self._version(ctx, did, ver)))

    # ------------------------------------------------------------------ assets in a version

    def asset_list(self, ctx: Ctx, did: str, ver: str) -> Reply:
        v = self._version(ctx, did, ver)
        order = ctx.query.get("order", "created")
        if order.lstrip("-") not in ("created", "modified", "path") or order.count("-") > 1:
            return json_reply(400, {"order": [f"Select a valid choice. {order} is not one of the "
                                              "available choices."]})
        with_metadata = ctx.bool_param("metadata", False)
        zarr_only = ctx.bool_param("zarr", False)
        assets = filter_assets(v, order, ctx.query.get("path"), ctx.query.get("glob"), zarr_only)
        raw_page, raw_size = ctx.query.get("page"), ctx.query.get("page_size")
        if self.listing.too_big(with_metadata, rows_on_page(len(assets), raw_page, raw_size)):
            return Reply.of_bytes(503, HEROKU_TIMEOUT_PAGE, "text/html; charset=utf-8")
        page = lazy_page(assets, ctx.url, raw_page, raw_size,
                         lambda a: asset_item_json(self.site, a, with_metadata))
        body = page_json(page, page["results"])
        for hook in self.listing.due(did, page_number_of(raw_page)):
            hook.action()  # the draft changes after this page, before the next request
        return Reply.of_bytes(200, body, "application/json")

    def asset_paths(self, ctx: Ctx, did: str, ver: str) -> Reply:
        v = self._version(ctx, did, ver)
        prefix = (ctx.query.get("path_prefix") or "").rstrip("/")
        rows = path_rows(v, prefix)
        if rows is None:
            return detail_reply(404, "Specified path not found.")

        def render(row: tuple[str, int, int, Asset | None]) -> dict[str, Any]:
            path, files, size, asset = row
            return {
                "path": path,
                "version": v.pk,
                "aggregate_files": files,
                "aggregate_size": size,
                "asset": None if asset is None else {
                    "asset_id": asset.asset_id, "url": md.asset_content_url(self.site, asset)},
            }

        page = dandi_page(rows, ctx.url, ctx.query.get("page"), ctx.query.get("page_size"), render)
        return json_reply(200, page)

    def v_asset_detail(self, ctx: Ctx, did: str, ver: str, aid: str) -> Reply:
        return json_reply(200, md.asset_metadata(self.site,
                                                 self._asset_in_version(ctx, did, ver, aid)))

    def v_asset_info(self, ctx: Ctx, did: str, ver: str, aid: str) -> Reply:
        return json_reply(200, md.asset_item(self.site,
                                             self._asset_in_version(ctx, did, ver, aid), True))

    def v_asset_download(self, ctx: Ctx, did: str, ver: str, aid: str) -> Reply:
        return self._download(ctx, self._asset_in_version(ctx, did, ver, aid))

    def v_asset_validation(self, ctx: Ctx, did: str, ver: str, aid: str) -> Reply:
        self._asset_in_version(ctx, did, ver, aid)
        return json_reply(200, {"status": "Valid", "validation_errors": []})

    # ------------------------------------------------------------------ bare asset routes

    def asset_detail(self, ctx: Ctx, aid: str) -> Reply:
        return json_reply(200, md.asset_metadata(self.site, self._asset(ctx, aid)))

    def asset_info(self, ctx: Ctx, aid: str) -> Reply:
        return json_reply(200, md.asset_item(self.site, self._asset(ctx, aid), True))

    def asset_download(self, ctx: Ctx, aid: str) -> Reply:
        return self._download(ctx, self._asset(ctx, aid))

    def _download(self, ctx: Ctx, a: Asset) -> Reply:
        disposition = ctx.query.get("content_disposition", "attachment")
        if disposition not in ("attachment", "inline"):
            return json_reply(400, {"content_disposition": [
                f'"{disposition}" is not a valid choice.']})
        if a.blob is None:
            return json_reply(400, ZARR_DOWNLOAD_ERROR)
        name = a.path.rsplit("/", 1)[-1]
        extra = [("response-content-disposition", f'{disposition}; filename="{name}"')]
        if disposition == "inline":
            if a.encoding_format.startswith("video/"):
                url = self.signer.sign(self.site.content_base, a.blob.key, extra,
                                       expired=ctx.plan.expire_presigned)
                page = (f'<video autoplay muted controls><source src="{url}" '
                        f'type="{a.encoding_format}"></video>')
                return Reply.of_bytes(200, page.encode(), "text/html; charset=utf-8")
            extra.append(("response-content-type", a.encoding_format))
        url = self.signer.sign(self.site.content_base, a.blob.key, extra,
                               expired=ctx.plan.expire_presigned)
        return redirect(url)

    # ------------------------------------------------------------------ zarr

    def _visible_zarr(self, ctx: Ctx, z: Zarr) -> bool:
        d = self.store.dandisets.get(z.dandiset_id)
        return not z.embargoed or (d is not None and self._may_see(ctx.user, d))

    def zarr_list(self, ctx: Ctx) -> Reply:
        did = ctx.query.get("dandiset")
        name = ctx.query.get("name")
        items = [z for z in self.store.zarrs.values()
                 if self._visible_zarr(ctx, z) and (did is None or z.dandiset_id == did)
                 and (name is None or z.name == name) and self._zarr_in_use(z)]
        page = dandi_page(items, ctx.url, ctx.query.get("page"), ctx.query.get("page_size"),
                          md.zarr_json)
        return json_reply(200, page)

    def _zarr_in_use(self, z: Zarr) -> bool:
        d = self.store.dandisets.get(z.dandiset_id)
        return d is not None and any(a.zarr is z for a in d.draft.assets if a.path == z.name)

    def zarr_detail(self, ctx: Ctx, zid: str) -> Reply:
        z = self.store.zarrs.get(zid)
        if z is None or not self._visible_zarr(ctx, z):
            raise NotFound(zid)
        return json_reply(200, md.zarr_json(z))

    def zarr_files(self, ctx: Ctx, zid: str) -> Reply:
        z = self.store.zarrs.get(zid)  # deliberately no embargo check, as on the real server
        if z is None:
            raise NotFound(zid)
        prefix = (ctx.query.get("prefix") or "").lstrip("/")
        if ".." in prefix.split("/"):
            return json_reply(400, {"prefix": ["Prefix may not contain '..' segments."]})
        after = ctx.query.get("after") or ""
        raw_limit = ctx.query.get("limit", "1000")
        try:
            limit = int(raw_limit)
        except ValueError:
            return json_reply(400, {"limit": ["A valid integer is required."]})
        if limit > 1000:
            return json_reply(400, {"limit": ["Ensure this value is less than or equal to 1000."]})
        if limit < 0:
            return json_reply(400, {"limit": ["Ensure this value is greater than or equal to 0."]})
        download = ctx.bool_param("download", False)
        if download or (ctx.method == "HEAD" and ctx.query.get("prefix")):
            # HEAD without download=true is redirected to a URL presigned for HEAD (as the
            # Archive does); every other redirect is presigned for GET only.
            url = self.signer.sign(self.site.content_base, z.prefix + prefix,
                                   expired=ctx.plan.expire_presigned,
                                   method="GET" if download else "HEAD")
            return redirect(url)
        listing_prefix = prefix.rstrip("/")
        lo, hi = z.entries.range_for_prefix(listing_prefix)
        if after:
            lo = max(lo, bisect.bisect_right(z.entries.keys, after))
        idx = range(lo, min(hi, lo + limit))
        results = [md.zarr_file_entry(z, i) for i in idx]
        truncated = lo + limit < hi and limit > 0
        nxt = None
        if truncated and results:
            nxt = replace_query_param(ctx.url, "after", results[-1]["Key"])
        return json_reply(200, {"next": nxt, "results": results})


def redirect(url: str) -> Reply:
    return Reply(302, {"Location": url, "Content-Type": "text/html; charset=utf-8"})
