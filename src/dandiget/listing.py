"""Listing: from a resolved URL to a stream of remote assets (and Zarr entries).

One request per 1000 assets, each carrying full metadata (``metadata=true``): no
per-asset metadata request (dandi-cli made one per asset, serially). The stream is
consumed as it arrives, so the first transfer starts after the first page.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .api import ApiClient
from .errors import NotFoundError
from .paths import check_relpath
from .resolve import ParsedURL, URLKind, normalize_asset_path

log = logging.getLogger("dandiget")


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
        urls = md.get("contentUrl") or []
        content_url = next(
            (u for u in urls if isinstance(u, str) and "/download" not in u.split("?")[0]
             and not u.startswith(api_url)), None)
        access = md.get("access") or []
        embargoed = any(isinstance(a, dict) and a.get("status") == "dandi:EmbargoedAccess"
                        for a in access)
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
    async for item in client.iter_assets(dandiset_id, version, page_size=page_size, **filters):
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
