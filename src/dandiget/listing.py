"""Listing: from a resolved URL to a stream of remote assets (and Zarr entries).

One request per 1000 assets, each carrying full metadata (``metadata=true``): no
per-asset metadata request (dandi-cli made one per asset, serially). The stream is
consumed as it arrives, so the first transfer starts after the first page, which is small;
the pages after it are fetched a few at a time and handed out in path order. Pages the
server cannot produce in time are asked for again smaller (:meth:`ApiClient.asset_pages`).

A draft can change while it is listed, and page-number pagination then shifts: an asset
added before the current page repeats one, an asset removed skips one (archive-api §7).
Each pass is checked (``count`` of page 1 against the rows received, strictly increasing
paths across pages, no asset twice, the draft's ``modified`` before and after); a pass
that fails a check is followed by another, which yields only paths not yielded yet. So
no asset of the draft is skipped and none is handed out twice; files already handed out
stay (a download is never undone by listing). After :data:`MAX_RELISTS` changed passes
the listing fails with :class:`ListingChanged`, a clear error, rather than guess.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .api import ApiClient
from .errors import DandigetError, NotFoundError
from .paths import check_relpath
from .resolve import ParsedURL, URLKind, normalize_asset_path

log = logging.getLogger("dandiget")

#: Passes over a changing draft before giving up (a draft rarely changes more often).
MAX_RELISTS = 3


class ListingChanged(DandigetError):
    """The version changed while it was listed (pages shifted); raised by one pass."""


def parse_datetime(value: Any) -> datetime | None:
    """ISO-8601 (``Z`` or offset) or Python ``str(datetime)`` (space separator)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class BadAsset(ValueError):
    """The server described an asset in a way we cannot safely act on."""


@dataclass(frozen=True, slots=True)
class RemoteAsset:
    """An asset as listed with ``metadata=true``: everything a download needs."""

    asset_id: str
    path: str
    size: int
    blob_id: str | None
    zarr_id: str | None
    modified: str
    digests: dict[str, str | None]
    blob_date_modified: str | None
    content_url: str | None
    download_url: str
    embargoed: bool

    @property
    def is_zarr(self) -> bool:
        return self.zarr_id is not None

    @property
    def mtime(self) -> datetime | None:
        """``blobDateModified``, falling back to the asset's ``modified`` (as dandi-cli)."""
        return parse_datetime(self.blob_date_modified) or parse_datetime(self.modified)

    @property
    def etag(self) -> str | None:
        return self.digests.get("dandi-etag")

    @property
    def zarr_checksum(self) -> str | None:
        return self.digests.get("dandi-zarr-checksum")

    @classmethod
    def from_api(cls, item: dict[str, Any], api_url: str) -> RemoteAsset:
        """Build from a listing row or an ``/info/`` document (both carry ``metadata``)."""
        try:
            asset_id = str(item["asset_id"])
            path = item["path"]
            size = item["size"]
        except (KeyError, TypeError) as e:
            raise BadAsset(f"asset record lacks {e}") from None
        if not isinstance(path, str):
            raise BadAsset(f"asset {asset_id} has a non-string path")
        # The Archive never serves an absolute, ``..``, backslash, NUL or empty-segment path;
        # one that does is broken or hostile: refused (UnsafePathError), never repaired.
        check_relpath(path)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > 1 << 50:
            raise BadAsset(f"asset {path!r} has an invalid size {size!r}")
        blob, zarr = item.get("blob"), item.get("zarr")
        if (blob is None) == (zarr is None):
            raise BadAsset(f"asset {path!r} must have exactly one of blob and zarr")
        md = item.get("metadata") or {}
        raw = md.get("digest") or {}
        digests: dict[str, str | None] = {}
        if "dandi:dandi-etag" in raw:
            digests["dandi-etag"] = raw["dandi:dandi-etag"]
        if raw.get("dandi:sha2-256"):
            digests["sha256"] = raw["dandi:sha2-256"]
        if "dandi:dandi-zarr-checksum" in raw:
            digests["dandi-zarr-checksum"] = raw["dandi:dandi-zarr-checksum"]
        content_url = None
        for u in md.get("contentUrl") or ():  # plain loops: this runs once per asset
            if isinstance(u, str) and "/download" not in u.partition("?")[0] \
                    and not u.startswith(api_url):
                content_url = u
                break
        embargoed = False
        for a in md.get("access") or ():
            if isinstance(a, dict) and a.get("status") == "dandi:EmbargoedAccess":
                embargoed = True
                break
        return cls(
            asset_id=asset_id,
            path=path,
            size=size,
            blob_id=blob,
            zarr_id=zarr,
            modified=str(item.get("modified") or ""),
            digests=digests,
            blob_date_modified=md.get("blobDateModified"),
            content_url=content_url,
            download_url=f"{api_url}/assets/{asset_id}/download/",
            embargoed=embargoed,
        )


async def iter_selected_assets(client: ApiClient, parsed: ParsedURL, dandiset_id: str | None,
                               version: str | None, *, page_size: int = 1000
                               ) -> AsyncIterator[dict[str, Any]]:
    """The raw asset records a URL selects, raising dandi-cli's NotFoundError when none."""
    kind = parsed.kind
    if kind is URLKind.BASE_ASSET_ID:
        assert parsed.asset_id
        yield await client.get_asset_info(parsed.asset_id)
        return
    assert dandiset_id and version
    if kind is URLKind.ASSET_ID:
        assert parsed.asset_id
        yield await client.get_version_asset_info(dandiset_id, version, parsed.asset_id)
        return
    filters: dict[str, str] = {}
    path = parsed.path or ""
    if kind is URLKind.FOLDER:
        filters["path"] = normalize_asset_path(path).rstrip("/") + "/"
    elif kind in (URLKind.PREFIX, URLKind.ITEM):
        filters["path"] = normalize_asset_path(path)
    elif kind is URLKind.GLOB:
        filters["glob"] = path
    found = 0
    async for item in iter_consistent_assets(client, dandiset_id, version,
                                             page_size=page_size, **filters):
        if kind is URLKind.ITEM and item.get("path") != filters["path"]:
            continue
        found += 1
        yield item
    if found or kind is URLKind.DANDISET:
        return
    if kind is URLKind.ITEM:
        raise NotFoundError(
            f"No asset at path {filters['path']!r} in version {version}. Verify the path is "
            "correct and the asset exists in this version. Use 'dandi ls' to list available "
            "assets.")
    if kind is URLKind.FOLDER:
        raise NotFoundError(f"No assets found under folder {filters['path']!r}")
    if kind is URLKind.PREFIX:
        raise NotFoundError(f"No assets found with path prefix {filters['path']!r}")
    raise NotFoundError(f"No assets found matching glob {path!r}")


async def known_total_size(client: ApiClient, parsed: ParsedURL, version: str) -> int | None:
    """Bytes of everything a Dandiset or folder URL selects, known before listing it (the
    version's ``size``; a folder's ``aggregate_size`` from ``assets/paths/``), else None."""
    did = parsed.dandiset_id
    if did is None:
        return None
    try:
        if parsed.kind is URLKind.DANDISET:
            info = await client.get_version_info(did, version)
            _remember_stamp(client, did, version, info)
            size = info.get("size") if isinstance(info, dict) else None
            return size if isinstance(size, int) and size >= 0 else None
        if parsed.kind is URLKind.FOLDER:
            folder = normalize_asset_path(parsed.path or "").strip("/")
            parent = folder.rpartition("/")[0]
            async for row in client.paginate(f"dandisets/{did}/versions/{version}/assets/paths/",
                                             {"path_prefix": parent, "page_size": "1000"}):
                if isinstance(row, dict) and row.get("path") == folder:
                    size = row.get("aggregate_size")
                    return size if isinstance(size, int) and size >= 0 else None
    except DandigetError as e:
        log.debug("no total size for %s: %s", parsed.original or parsed.path, e)
    return None


#: A draft's ``modified`` read moments ago (by :func:`known_total_size`), per client: the
#: first pass of its listing takes it as its "before" instead of asking again (one request
#: less before the first page). An earlier "before" only widens the window a change is
#: detected in; it is used once, and only while fresh.
_recent_stamps: weakref.WeakKeyDictionary[ApiClient, dict[tuple[str, str], tuple[float, str]]] \
    = weakref.WeakKeyDictionary()
RECENT_STAMP_SECONDS = 30.0


def _remember_stamp(client: ApiClient, dandiset_id: str, version: str, info: Any) -> None:
    stamp = info.get("modified") if isinstance(info, dict) else None
    if version == "draft" and isinstance(stamp, str):
        _recent_stamps.setdefault(client, {})[(dandiset_id, version)] = (time.monotonic(), stamp)


async def _draft_stamp(client: ApiClient, dandiset_id: str, version: str, *,
                       recent: bool = False) -> str | None:
    """The draft's ``modified`` (None for a published version, which never changes, or when
    the server does not say). ``recent``: one read moments ago will do."""
    if version != "draft":
        return None
    if recent:
        when, seen = _recent_stamps.get(client, {}).pop((dandiset_id, version), (0.0, ""))
        if seen and time.monotonic() - when < RECENT_STAMP_SECONDS:
            return seen
    try:
        info = await client.get_json(f"dandisets/{dandiset_id}/versions/{version}/info/",
                                     attempts=1)
    except DandigetError as e:
        log.debug("no version info for %s/%s: %s", dandiset_id, version, e)
        return None
    stamp = info.get("modified") if isinstance(info, dict) else None
    return stamp if isinstance(stamp, str) else None


async def _one_pass(client: ApiClient, dandiset_id: str, version: str, page_size: int,
                    filters: dict[str, str]) -> AsyncIterator[list[dict[str, Any]]]:
    """One pass over the listing, page by page (one generator hop per page, not per asset),
    raising :class:`ListingChanged` when pages shifted (after yielding the rows before the
    one that shows it)."""
    count: int | None = None
    received = 0
    last_path: str | None = None
    ids: set[str] = set()
    pages = client.asset_pages(dandiset_id, version, page_size=page_size, **filters)
    async with aclosing(pages):  # a shifted pass is abandoned: stop its read-ahead too
        async for page in pages:
            if received == 0 and count is None and isinstance(page.get("count"), int):
                count = page["count"]  # only page 1 carries it
            rows: list[dict[str, Any]] = page["results"]
            changed: ListingChanged | None = None
            for i, item in enumerate(rows):
                if isinstance(item, dict):
                    path = item.get("path")
                    if isinstance(path, str):
                        if last_path is not None and path <= last_path:
                            changed = ListingChanged(f"asset {path!r} arrived after "
                                                     f"{last_path!r}: the pages shifted")
                        last_path = path
                    aid = item.get("asset_id")
                    if isinstance(aid, str) and changed is None:
                        if aid in ids:
                            changed = ListingChanged(f"asset {aid} listed twice")
                        ids.add(aid)
                if changed is not None:
                    rows = rows[:i]
                    break
            received += len(rows)
            if rows:
                yield rows
            if changed is not None:
                raise changed
    if count is not None and received != count:
        raise ListingChanged(f"page 1 announced {count} assets, {received} arrived")


async def iter_consistent_assets(client: ApiClient, dandiset_id: str, version: str, *,
                                 page_size: int = 1000, **filters: str
                                 ) -> AsyncIterator[dict[str, Any]]:
    """Every asset of a version once, none skipped even if the draft changes meanwhile."""
    handed_out: dict[str, Any] = {}  # path -> asset_id
    for listing_pass in range(1, MAX_RELISTS + 2):  # re-lists, not request retries
        before = await _draft_stamp(client, dandiset_id, version, recent=listing_pass == 1)
        this_pass: set[str] = set()
        try:
            async for rows in _one_pass(client, dandiset_id, version, page_size, filters):
                for item in rows:
                    path, aid = str(item.get("path")), item.get("asset_id")
                    this_pass.add(path)
                    if path in handed_out:
                        if handed_out[path] != aid:
                            log.warning("%s changed on the server while the listing was "
                                        "read; the version listed first is downloaded (run "
                                        "again for the new one)", path)
                        continue
                    handed_out[path] = aid
                    yield item
            after = await _draft_stamp(client, dandiset_id, version)
            if before == after:
                gone = sorted(p for p in handed_out if p not in this_pass)
                if gone:
                    log.warning("%d asset(s) were removed from %s/%s while it was listed, "
                                "after being listed: %s", len(gone), dandiset_id, version,
                                ", ".join(map(str, gone[:10])))
                return
            reason = f"its modified time went from {before} to {after}"
        except ListingChanged as e:
            reason = str(e)
        if listing_pass > MAX_RELISTS:
            raise ListingChanged(
                f"Dandiset {dandiset_id} version {version} kept changing while it was listed "
                f"({listing_pass} passes; last: {reason}). Try again when it is not being edited.")
        log.warning("Dandiset %s version %s changed while it was listed (%s); listing it "
                    "again", dandiset_id, version, reason)


@dataclass(frozen=True, slots=True)
class ZarrEntry:
    """One file of a Zarr as the server lists it."""

    key: str
    size: int
    md5: str
    modified: datetime | None

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> ZarrEntry:
        try:
            key, size, etag = item["Key"], item["Size"], item["ETag"]
        except (KeyError, TypeError) as e:
            raise BadAsset(f"Zarr entry lacks {e}") from None
        if not isinstance(key, str) or not isinstance(size, int) or size < 0:
            raise BadAsset(f"invalid Zarr entry {item!r}")
        return cls(key=key, size=size, md5=str(etag).strip('"').lower(),
                   modified=parse_datetime(item.get("LastModified")))
