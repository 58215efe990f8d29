"""The records a test archive serves from: blobs, zarrs, assets, versions, dandisets, users.

Records hold only what cannot be recomputed (ids, timestamps, byte sources, digests); every
JSON document is rendered per request by :mod:`dandiget.testing.metadata`. That keeps a
100,000-asset dandiset or a 200,000-entry Zarr in tens of megabytes.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import threading
from array import array
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from dandiget.testing.archive_digests import EMPTY_ZARR_CHECKSUM, zarr_checksum
from dandiget.testing.data import (
    BLOCK_SIZE,
    Digests,
    GeneratedSource,
    Source,
    compute_digests,
    compute_many,
    generated_block,
    md5_hex,
)
from dandiget.testing.model import generated_zarr_keys

UTC = timezone.utc


class NotFound(LookupError):
    """No such dandiset, version, asset or zarr (the API answers 404)."""


def det_uuid(*parts: object) -> str:
    """A UUIDv4-shaped id derived from ``parts`` (ids stay stable across processes)."""
    x = hashlib.md5("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()
    return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-{'89ab'[int(x[16], 16) & 3]}{x[17:20]}-{x[20:32]}"


class Blob:
    """An object under ``blobs/``; ``served`` may differ from what the digests describe.

    Digests of small blobs are computed on first use, so a 100,000-asset spec loads fast.
    """

    __slots__ = ("_digests", "_served_etag", "blob_id", "created", "embargoed", "has_sha256",
                 "served", "size", "source")

    def __init__(self, blob_id: str, source: Source, has_sha256: bool, created: datetime,
                 embargoed: bool, digests: Digests | None = None):
        self.blob_id = blob_id
        self.source = source
        self.size = source.size
        self.has_sha256 = has_sha256
        self.created = created
        self.embargoed = embargoed
        self.served: Source = source
        self._digests = digests
        self._served_etag = ""

    @property
    def digests(self) -> Digests:
        if self._digests is None:
            self._digests = compute_digests(self.source)
        return self._digests

    @property
    def etag(self) -> str:
        return self.digests.etag

    @property
    def sha256(self) -> str | None:
        return self.digests.sha256 if self.has_sha256 else None

    @property
    def served_etag(self) -> str:
        """The S3 ETag of what is served (the dandi-etag, unless the object was replaced)."""
        return self.etag if self.served is self.source else self._served_etag

    def replace(self, src: Source) -> None:
        self._served_etag = compute_digests(src).etag
        self.served = src

    @property
    def key(self) -> str:
        i = self.blob_id
        return f"blobs/{i[:3]}/{i[3:6]}/{i}"

    def digest_dict(self) -> dict[str, str]:
        d = {"dandi:dandi-etag": self.etag}
        if self.has_sha256:
            d["dandi:sha2-256"] = self.digests.sha256
        return d


_zarr_md5_cache: dict[tuple, bytes] = {}
_zarr_sum_cache: dict[tuple, str] = {}
_zarr_cache_lock = threading.Lock()


def _generated_md5s(count: int, size: int, seed: int) -> bytes:
    """Packed binary md5 of every generated entry, in generation order (cached)."""
    key = (count, size, seed)
    with _zarr_cache_lock:
        hit = _zarr_md5_cache.get(key)
    if hit is not None:
        return hit
    step = 8192

    def chunk(start: int) -> bytes:
        out = bytearray()
        for i in range(start, min(count, start + step)):
            if size <= BLOCK_SIZE:
                out += hashlib.md5(generated_block(seed, i + 1, 0, 0, size)).digest()
            else:
                out += bytes.fromhex(md5_hex(GeneratedSource(size, seed, i + 1)))
        return bytes(out)

    starts = range(0, count, step)
    if count * size < (64 << 20):
        packed = b"".join(map(chunk, starts))
    else:  # hashlib releases the GIL on big buffers: use both cores
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as ex:
            packed = b"".join(ex.map(chunk, starts))
    with _zarr_cache_lock:
        _zarr_md5_cache[key] = packed
    return packed


class ZarrEntries:
    """The files of one Zarr, sorted by key (S3 order); generated entries are not materialised."""

    __slots__ = ("_explicit", "_gen", "_md5", "_overrides", "keys", "refs", "sizes", "total")

    def __init__(self, generated: tuple[int, int, int] | None,
                 explicit: Mapping[str, Source]):
        self._gen = generated
        self._explicit: list[Source] = []
        self._overrides: dict[int, Source] = {}
        pairs: dict[str, int] = {}
        if generated is not None:
            count, _size, _seed = generated
            for i, key in enumerate(generated_zarr_keys(count)):
                pairs[key] = i
        for key, src in explicit.items():
            pairs[key] = -1 - len(self._explicit)
            self._explicit.append(src)
        self.keys = sorted(pairs)
        self.refs = array("q", (pairs[k] for k in self.keys))
        gen_md5 = _generated_md5s(*generated) if generated is not None else b""
        exp_md5 = [bytes.fromhex(h) for h in compute_many(self._explicit, md5_hex)]
        md5 = bytearray()
        sizes = array("q")
        for ref in self.refs:
            if ref >= 0:
                assert generated is not None
                md5 += gen_md5[16 * ref:16 * ref + 16]
                sizes.append(generated[1])
            else:
                md5 += exp_md5[-1 - ref]
                sizes.append(self._explicit[-1 - ref].size)
        self._md5 = bytes(md5)
        self.sizes = sizes
        self.total = sum(sizes)

    def __len__(self) -> int:
        return len(self.keys)

    def index(self, key: str) -> int:
        """Position of ``key``, or -1."""
        i = bisect.bisect_left(self.keys, key)
        return i if i < len(self.keys) and self.keys[i] == key else -1

    def md5(self, i: int) -> str:
        return self._md5[16 * i:16 * i + 16].hex()

    def source(self, i: int) -> Source:
        """What is stored (the listing describes this unless replaced)."""
        ref = self.refs[i]
        if ref >= 0:
            assert self._gen is not None
            return GeneratedSource(self._gen[1], self._gen[2], ref + 1)
        return self._explicit[-1 - ref]

    def served(self, i: int) -> Source:
        """What the bucket returns for entry ``i`` (``replace_object`` can swap it)."""
        return self._overrides.get(i) or self.source(i)

    def replace(self, i: int, src: Source) -> None:
        self._overrides[i] = src

    def range_for_prefix(self, prefix: str) -> tuple[int, int]:
        """Index range of the keys starting with ``prefix``."""
        lo = bisect.bisect_left(self.keys, prefix)
        hi = bisect.bisect_left(self.keys, prefix + "\U0010ffff") if prefix else len(self.keys)
        return lo, hi

    def checksum(self) -> str:
        if not self.keys:
            return EMPTY_ZARR_CHECKSUM
        key = (self._gen, tuple((k, self.md5(i), self.sizes[i]) for i, k in enumerate(self.keys)
                                if self.refs[i] < 0))
        with _zarr_cache_lock:
            hit = _zarr_sum_cache.get(key)
        if hit is not None:
            return hit
        value = zarr_checksum((k, self.md5(i), self.sizes[i]) for i, k in enumerate(self.keys))
        with _zarr_cache_lock:
            _zarr_sum_cache[key] = value
        return value

    def served_size(self, i: int) -> int:
        """Size of entry ``i`` as served (differs after ``replace_object``)."""
        src = self._overrides.get(i)
        return src.size if src is not None else self.sizes[i]

    def etag_for(self, i: int) -> str:
        """The S3 ETag of entry ``i`` as served (plain md5)."""
        if i in self._overrides:
            return md5_hex(self._overrides[i])
        return self.md5(i)


class Zarr:
    """A Zarr archive: its entries, ingestion status and checksum."""

    __slots__ = ("checksum", "created", "dandiset_id", "embargoed", "entries", "modified",
                 "name", "pending", "zarr_id")

    def __init__(self, zarr_id: str, name: str, dandiset_id: str, entries: ZarrEntries,
                 pending: bool, embargoed: bool, created: datetime):
        self.zarr_id = zarr_id
        self.name = name
        self.dandiset_id = dandiset_id
        self.entries = entries
        self.pending = pending
        self.embargoed = embargoed
        self.created = created
        #: Second precision, as S3's LastModified.
        self.modified = created.replace(microsecond=0)
        self.checksum: str | None = None if pending else entries.checksum()

    @property
    def status(self) -> str:
        return "Pending" if self.pending else "Complete"

    @property
    def size(self) -> int:
        return 0 if self.pending else self.entries.total

    @property
    def file_count(self) -> int:
        return 0 if self.pending else len(self.entries)

    @property
    def prefix(self) -> str:
        return f"zarr/{self.zarr_id}/"


@dataclass(frozen=True)
class PublishInfo:
    """When and by which activity an asset or version was published."""

    date: datetime
    activity_id: str
    software_id: str


#: ``Asset(blob_date_modified=DERIVED)``: a plausible mtime derived from the creation time.
DERIVED = "\x00derived"


class Asset:
    """One asset row: immutable once created (a draft edit makes a new row)."""

    __slots__ = ("_bdm", "asset_id", "blob", "created", "dandiset_id",
                 "encoding_format", "extra", "modified", "path", "published", "zarr")

    def __init__(self, asset_id: str, path: str, dandiset_id: str, created: datetime, *,
                 blob: Blob | None = None, zarr: Zarr | None = None,
                 blob_date_modified: str | None = DERIVED, encoding_format: str = "",
                 extra: dict[str, Any] | None = None):
        self.asset_id = asset_id
        self.path = path
        self.dandiset_id = dandiset_id
        self.blob = blob
        self.zarr = zarr
        self.created = created
        self.modified = created + timedelta(microseconds=17)
        self._bdm = blob_date_modified
        self.encoding_format = encoding_format
        self.extra = extra
        self.published: PublishInfo | None = None

    @property
    def blob_date_modified(self) -> str | None:
        """As stored; None when the uploader did not record one."""
        if self._bdm is DERIVED:
            return (self.created - timedelta(days=1, microseconds=1234)).isoformat()
        return self._bdm

    @property
    def size(self) -> int:
        if self.blob is not None:
            return self.blob.size
        assert self.zarr is not None
        return self.zarr.size

    @property
    def embargoed(self) -> bool:
        return self.blob.embargoed if self.blob is not None else bool(self.zarr and self.zarr.embargoed)


class Version:
    """A draft or published version: an ordered list of asset rows plus metadata."""

    __slots__ = ("_cache", "_rev", "assets", "by_path", "created", "dandiset", "metadata",
                 "modified", "name", "pk", "published_info", "release_notes", "status", "version")

    def __init__(self, pk: int, dandiset: Dandiset, version: str, name: str, created: datetime):
        self.pk = pk
        self.dandiset = dandiset
        self.version = version
        self.name = name
        self.created = created
        self.modified = created
        self.status = "Valid"
        self.assets: list[Asset] = []
        self.by_path: dict[str, Asset] = {}
        self.metadata: dict[str, Any] = {}
        self.published_info: PublishInfo | None = None
        self.release_notes = ""
        self._rev = 0
        self._cache: dict[Any, Any] = {}

    @property
    def is_draft(self) -> bool:
        return self.version == "draft"

    def add(self, asset: Asset) -> Asset | None:
        """Append ``asset`` (replacing any asset at the same path); returns the replaced one."""
        old = self.by_path.get(asset.path)
        if old is not None:
            self.assets.remove(old)
        self.assets.append(asset)
        self.by_path[asset.path] = asset
        self.touch()
        return old

    def remove(self, asset: Asset) -> None:
        self.assets.remove(asset)
        del self.by_path[asset.path]
        self.touch()

    def touch(self) -> None:
        self._rev += 1
        self._cache.clear()

    def cached(self, key: Any, fn: Any) -> Any:
        """Memoise a derived value until the next change of this version."""
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def asset_count(self) -> int:
        return len(self.assets)

    @property
    def size(self) -> int:
        return self.cached("size", lambda: sum(a.size for a in self.assets))

    def sorted_assets(self, order: str) -> list[Asset]:
        """Assets in ``created``/``modified``/``path`` order, ``-`` for descending."""
        def build() -> list[Asset]:
            field = order.lstrip("-")
            if field == "created":
                lst = list(self.assets)  # kept in creation order
            elif field == "modified":
                lst = sorted(self.assets, key=lambda a: (a.modified, a.created))
            else:
                lst = sorted(self.assets, key=lambda a: a.path)
            if order.startswith("-"):
                lst.reverse()
            return lst

        if order == "created":
            return self.assets
        return self.cached(("order", order), build)


class Dandiset:
    """A dandiset: its draft, published versions (oldest first), owners, embargo."""

    __slots__ = ("created", "draft", "embargoed", "identifier", "metadata", "modified",
                 "owners", "published")

    def __init__(self, identifier: str, created: datetime, embargoed: bool,
                 owners: Iterable[str], metadata: dict[str, Any] | None):
        self.identifier = identifier
        self.created = created
        self.modified = created + timedelta(microseconds=32)
        self.embargoed = embargoed
        self.owners = set(owners)
        self.metadata = dict(metadata or {})
        self.published: list[Version] = []
        self.draft: Version  # set by the store

    @property
    def embargo_status(self) -> str:
        return "EMBARGOED" if self.embargoed else "OPEN"

    def version(self, v: str) -> Version:
        if v == "draft":
            return self.draft
        for ver in self.published:
            if ver.version == v:
                return ver
        raise NotFound(v)

    @property
    def versions(self) -> list[Version]:
        """All versions in creation order (the draft is created with the dandiset)."""
        return [self.draft, *self.published]

    @property
    def latest_published(self) -> Version | None:
        return max(self.published, key=lambda v: v.modified) if self.published else None


@dataclass(frozen=True)
class User:
    name: str
    token: str
    admin: bool
    email: str
