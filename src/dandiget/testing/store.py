"""The archive's state: records built from a spec, lookups, and the mutations tests need.

All access goes through ``Store.lock`` (API handlers run in worker threads, tests mutate from
their own thread).
"""

from __future__ import annotations

import functools
import hashlib
import json
import mimetypes
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

from dandiget.testing.data import (
    BytesSource,
    Digests,
    FileSource,
    Source,
    compute_digests,
    compute_many,
)
from dandiget.testing.model import ArchiveSpec, AssetSpec, BlobSpec, DandisetSpec, ZarrSpec
from dandiget.testing.records import (
    DERIVED,
    UTC,
    Asset,
    Blob,
    Dandiset,
    NotFound,
    PublishInfo,
    User,
    Version,
    Zarr,
    ZarrEntries,
    det_uuid,
)

#: Timestamps of spec-built records start here, so they are stable across runs.
BASE_TIME = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
#: Blobs larger than this are hashed when the archive is built (in parallel), others lazily.
EAGER_DIGEST_SIZE = 1 << 20


def version_datetime(version: str) -> datetime:
    """The publish time a ``0.YYMMDD.HHMM`` version string encodes."""
    _, d, t = version.split(".")
    return datetime(2000 + int(d[:2]), int(d[2:4]), int(d[4:6]), int(t[:2]), int(t[2:]),
                    tzinfo=UTC)


def _content_key(src: Source) -> tuple:
    key = src.cache_key
    if key is not None:
        return key
    assert isinstance(src, BytesSource)
    return ("bytes", hashlib.sha1(src.data).hexdigest(), src.size)


def guess_encoding(path: str) -> str:
    """The MIME type dandi-cli would have recorded for ``path``."""
    name = path.rsplit("/", 1)[-1].lower()
    return _encoding_by_suffix(name[name.find("."):] if "." in name else "")


@functools.lru_cache(maxsize=256)
def _encoding_by_suffix(low: str) -> str:
    if low.endswith(".nwb"):
        return "application/x-nwb"
    if low.endswith((".zarr", ".ngff")):
        return "application/x-zarr"
    if low.endswith((".yaml", ".yml")):
        return "application/x-yaml"
    return mimetypes.guess_type("x" + low)[0] or "application/octet-stream"


class Store:
    """Every record the archive serves, with lookups and the mutations behind TestArchive."""

    def __init__(self, spec: ArchiveSpec | None = None):
        self.lock = threading.RLock()
        self.dandisets: dict[str, Dandiset] = {}
        self.assets: dict[str, Asset] = {}
        self.blobs: dict[str, Blob] = {}
        self.zarrs: dict[str, Zarr] = {}
        self.users: dict[str, User] = {}
        self.users_by_name: dict[str, User] = {}
        self._blob_dedup: dict[tuple, Blob] = {}
        self._pk = 0
        self._last_now = datetime.now(UTC)
        if spec is not None:
            self.load(spec)

    # ------------------------------------------------------------------ helpers

    def now(self) -> datetime:
        """Current time, strictly increasing (so creation order is total)."""
        t = datetime.now(UTC)
        if t <= self._last_now:
            t = self._last_now + timedelta(microseconds=1)
        self._last_now = t
        return t

    def _next_pk(self) -> int:
        self._pk += 1
        return self._pk

    def user_by_token(self, token: str) -> User | None:
        return self.users.get(token)

    def dandiset(self, identifier: str) -> Dandiset:
        try:
            return self.dandisets[identifier]
        except KeyError:
            raise NotFound(identifier) from None

    def asset_by_path(self, identifier: str, path: str, version: str = "draft") -> Asset:
        v = self.dandiset(identifier).version(version)
        try:
            return v.by_path[path]
        except KeyError:
            raise NotFound(path) from None

    # ------------------------------------------------------------------ building

    def load(self, spec: ArchiveSpec) -> None:
        """Add the users and dandisets of ``spec`` (digests are computed here, up front)."""
        with self.lock:
            for u in spec.users:
                user = User(u.name, u.token, u.admin, u.email or f"{u.name}@example.org")
                self.users[u.token] = user
                self.users_by_name[u.name] = user
            try:
                for k, d in enumerate(spec.dandisets, start=len(self.dandisets)):
                    self._load_dandiset(d, k)
            finally:
                self._blob_dedup.clear()  # identical content shares a blob within one load

    def _make_blob(self, spec: BlobSpec, src: Source, digests: Digests | None,
                   created: datetime, embargoed: bool, dandiset_id: str) -> Blob:
        key = (_content_key(src), spec.sha256, embargoed, dandiset_id if embargoed else "")
        blob = self._blob_dedup.get(key)
        if blob is None:
            blob_id = det_uuid("blob", *key)
            blob = Blob(blob_id, src, spec.sha256, created, embargoed, digests)
            self._blob_dedup[key] = blob
            self.blobs[blob_id] = blob
        return blob

    def _blob_asset(self, d: Dandiset, spec: BlobSpec, src: Source, digests: Digests | None,
                    created: datetime, asset_id: str | None = None) -> Asset:
        blob = self._make_blob(spec, src, digests, created - timedelta(seconds=1), d.embargoed,
                               d.identifier)
        if spec.omit_blob_date_modified:
            bdm = None
        elif spec.blob_date_modified is not None:
            bdm = spec.blob_date_modified
        else:
            bdm = DERIVED
        extra = json.dumps(spec.metadata, sort_keys=True, default=str) if spec.metadata else ""
        aid = asset_id or det_uuid("asset", d.identifier, spec.path, blob.blob_id,
                                   spec.blob_date_modified, spec.omit_blob_date_modified,
                                   spec.encoding_format, extra)
        asset = self.assets.get(aid)
        if asset is None:
            asset = Asset(aid, spec.path, d.identifier, created, blob=blob,
                          blob_date_modified=bdm,
                          encoding_format=spec.encoding_format or guess_encoding(spec.path),
                          extra=spec.metadata)
            self.assets[aid] = asset
        return asset

    def _zarr_asset(self, d: Dandiset, spec: ZarrSpec, created: datetime,
                    asset_id: str | None = None) -> Asset:
        explicit: dict[str, Source] = {}
        for key, value in (spec.entries or {}).items():
            explicit[key] = (BytesSource(bytes(value)) if isinstance(value, (bytes, bytearray))
                             else FileSource(value))
        entries = ZarrEntries(spec.generated, explicit)
        zid = det_uuid("zarr", d.identifier, spec.path, entries.checksum(), spec.checksum_pending)
        zarr = Zarr(zid, spec.path, d.identifier, entries, spec.checksum_pending, d.embargoed,
                    created - timedelta(seconds=2))
        self.zarrs[zid] = zarr
        aid = asset_id or det_uuid("asset", d.identifier, spec.path, zid)
        asset = Asset(aid, spec.path, d.identifier, created, zarr=zarr,
                      blob_date_modified=(created - timedelta(days=1)).isoformat(),
                      encoding_format="application/x-zarr", extra=spec.metadata)
        asset.modified = created + timedelta(milliseconds=455)
        self.assets[aid] = asset
        return asset

    def _load_dandiset(self, spec: DandisetSpec, k: int) -> None:
        if spec.identifier in self.dandisets:
            raise ValueError(f"dandiset {spec.identifier} already exists")
        pub_times = sorted((version_datetime(v), v) for v in spec.published)
        created = BASE_TIME + timedelta(hours=k)
        if pub_times and pub_times[0][0] - timedelta(days=30) < created:
            created = pub_times[0][0] - timedelta(days=30, hours=-k)
        d = Dandiset(spec.identifier, created, spec.embargoed, spec.owners, spec.metadata)
        self.dandisets[spec.identifier] = d

        # Hash big content up front, in parallel; small blobs hash on first use.
        all_blob_specs = [b for _, v in pub_times for b in spec.published[v]]
        all_blob_specs += [a for a in spec.assets if isinstance(a, BlobSpec)]
        sources = [b.source() for b in all_blob_specs]
        big = [s for s in sources if s.size > EAGER_DIGEST_SIZE]
        digests = dict(zip(map(id, big), compute_many(big), strict=True))
        by_spec = {id(b): (s, digests.get(id(s))) for b, s in zip(all_blob_specs, sources, strict=True)}

        previous: dict[str, tuple[AssetSpec, Asset]] = {}
        last_published: Version | None = None
        for when, vstr in pub_times:
            v = Version(self._next_pk(), d, vstr, spec.name, when + timedelta(milliseconds=758))
            info = PublishInfo(when + timedelta(milliseconds=752),
                               det_uuid("publish", d.identifier, vstr),
                               det_uuid("software", d.identifier, vstr))
            v.published_info = info
            v.metadata = dict(spec.metadata or {})
            current: dict[str, tuple[AssetSpec, Asset]] = {}
            for i, b in enumerate(spec.published[vstr]):
                prev = previous.get(b.path)
                if prev is not None and prev[0] == b:
                    asset = prev[1]
                else:
                    src, dg = by_spec[id(b)]
                    t = when - timedelta(hours=1) + timedelta(microseconds=1003 * i + 7)
                    asset = self._blob_asset(d, b, src, dg, t)
                    if asset.published is None:
                        asset.published = PublishInfo(
                            when + timedelta(milliseconds=833),
                            det_uuid("asset-publish", asset.asset_id),
                            det_uuid("asset-software", asset.asset_id),
                        )
                v.assets.append(asset)
                v.by_path[asset.path] = asset
                current[b.path] = (b, asset)
            v.modified = v.created + timedelta(milliseconds=864)
            d.published.append(v)
            previous = current
            last_published = v

        draft = Version(self._next_pk(), d, "draft", spec.name, created + timedelta(microseconds=26))
        draft.metadata = dict(spec.metadata or {})
        d.draft = draft
        t0 = created + timedelta(seconds=60)
        for i, a in enumerate(spec.assets):
            prev = previous.get(a.path)
            if prev is not None and prev[0] == a:
                asset = prev[1]
            else:
                t = t0 + timedelta(microseconds=1003 * i + 11)
                if isinstance(a, BlobSpec):
                    src, dg = by_spec[id(a)]
                    asset = self._blob_asset(d, a, src, dg, t)
                else:
                    asset = self._zarr_asset(d, a, t)
            draft.assets.append(asset)
            draft.by_path[asset.path] = asset
        last_mod = max((a.modified for a in draft.assets), default=draft.created)
        draft.modified = max(last_mod, draft.created) + timedelta(seconds=1, microseconds=301)
        if last_published is not None:
            if [a.asset_id for a in draft.assets] == [a.asset_id for a in last_published.assets]:
                draft.status = "Published"
            draft.modified = max(draft.modified, last_published.created - timedelta(milliseconds=5))
        draft.touch()

    # ------------------------------------------------------------------ mutations

    def add_blob(self, identifier: str, spec: BlobSpec) -> Asset:
        with self.lock:
            d = self.dandiset(identifier)
            src = spec.source()
            now = self.now()
            asset = self._blob_asset(d, spec, src, compute_digests(src), now,
                                     asset_id=str(uuid.uuid4()))
            self._draft_changed(d, asset)
            return asset

    def add_zarr(self, identifier: str, spec: ZarrSpec) -> Asset:
        with self.lock:
            d = self.dandiset(identifier)
            asset = self._zarr_asset(d, spec, self.now(), asset_id=str(uuid.uuid4()))
            self._draft_changed(d, asset)
            return asset

    def _draft_changed(self, d: Dandiset, asset: Asset | None = None) -> None:
        if asset is not None:
            d.draft.add(asset)
        else:
            d.draft.touch()
        d.draft.modified = self.now()
        d.draft.status = "Valid"

    def remove_asset(self, identifier: str, path: str) -> None:
        with self.lock:
            d = self.dandiset(identifier)
            d.draft.remove(self.asset_by_path(identifier, path))
            self._draft_changed(d)

    def replace_object(self, identifier: str, path: str, data: bytes | Source,
                       version: str = "draft") -> None:
        """Serve other bytes behind an existing object without touching any digest."""
        src = data if isinstance(data, Source) else BytesSource(data)
        with self.lock:
            v = self.dandiset(identifier).version(version)
            asset = v.by_path.get(path)
            if asset is not None and asset.blob is not None:
                asset.blob.replace(src)
                return
            for zpath, a in v.by_path.items():
                if a.zarr is not None and path.startswith(zpath + "/"):
                    i = a.zarr.entries.index(path[len(zpath) + 1:])
                    if i < 0:
                        break
                    a.zarr.entries.replace(i, src)
                    return
            raise NotFound(path)

    def set_zarr_entries(self, identifier: str, path: str,
                         entries: Mapping[str, bytes | Source]) -> Zarr:
        with self.lock:
            asset = self.asset_by_path(identifier, path)
            if asset.zarr is None:
                raise ValueError(f"{path} is not a zarr")
            srcs = {k: v if isinstance(v, Source) else BytesSource(v) for k, v in entries.items()}
            z = asset.zarr
            z.entries = ZarrEntries(None, srcs)
            z.modified = self.now().replace(microsecond=0)
            z.checksum = None if z.pending else z.entries.checksum()
            d = self.dandiset(identifier)
            self._draft_changed(d)
            return z

    def set_embargo(self, identifier: str, embargoed: bool) -> None:
        with self.lock:
            d = self.dandiset(identifier)
            if embargoed and d.published:
                raise ValueError("a dandiset with published versions cannot be embargoed")
            d.embargoed = embargoed
            for a in d.draft.assets:
                if a.blob is not None:
                    a.blob.embargoed = embargoed
                if a.zarr is not None:
                    a.zarr.embargoed = embargoed
            d.draft.touch()

    def publish(self, identifier: str, release_notes: str = "") -> str:
        """Freeze the draft's blob assets into a new ``0.YYMMDD.HHMM`` version."""
        with self.lock:
            d = self.dandiset(identifier)
            if d.embargoed:
                raise ValueError("only OPEN dandisets can be published")
            now = self.now()
            when = now.replace(second=0, microsecond=0)
            taken = {v.version for v in d.published}
            while when.strftime("0.%y%m%d.%H%M") in taken:
                when += timedelta(minutes=1)
            vstr = when.strftime("0.%y%m%d.%H%M")
            v = Version(self._next_pk(), d, vstr, d.draft.name, now)
            v.metadata = dict(d.draft.metadata)
            v.release_notes = release_notes
            v.published_info = PublishInfo(now, str(uuid.uuid4()), str(uuid.uuid4()))
            for a in d.draft.assets:
                if a.blob is None:
                    continue
                if a.published is None:
                    a.published = PublishInfo(now, str(uuid.uuid4()), str(uuid.uuid4()))
                v.assets.append(a)
                v.by_path[a.path] = a
            v.modified = self.now()
            d.published.append(v)
            d.draft.status = "Published"
            d.draft.touch()
            return vstr

    # ------------------------------------------------------------------ iteration

    def iter_objects(self) -> Iterator[tuple[str, Source]]:
        """(bucket key, served source) of every blob and zarr entry."""
        with self.lock:
            blobs = list(self.blobs.values())
            zarrs = list(self.zarrs.values())
        for b in blobs:
            yield b.key, b.served
        for z in zarrs:
            for i, k in enumerate(z.entries.keys):
                yield z.prefix + k, z.entries.served(i)
