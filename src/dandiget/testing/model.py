"""The declarative description of a test archive: dandisets, their assets, users.

A spec says *what* the archive holds; :mod:`dandiget.testing.store` turns it into the records
the server answers from. Content is either literal (``content=b"..."``), generated from a seed
(``size=..., seed=...``; nothing is kept in memory) or read from a local file (``file=...``).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dandiget.testing.data import BytesSource, FileSource, GeneratedSource, Source

ZARR_SUFFIXES = (".zarr", ".ngff")


def check_path(path: str) -> str:
    """Reject paths the Archive's path constraint would reject (structure only).

    Specs do not call this: a test archive must be able to play a hostile or buggy server
    (``a/../../escape.txt``) so clients can prove they refuse such paths.
    """
    if not path or path.startswith("/") or path.endswith("/") or path.endswith("."):
        raise ValueError(f"invalid asset path {path!r}")
    if len(path) > 512:
        raise ValueError(f"asset path longer than 512 characters: {path!r}")
    for seg in path.split("/"):
        if seg in ("", ".", "..") or ".." in seg:
            raise ValueError(f"invalid asset path {path!r}")
    return path


def check_zarr_key(key: str) -> str:
    """Reject keys S3 could not store under a Zarr prefix (structure only; not enforced)."""
    if not key or key.startswith("/") or key.endswith("/"):
        raise ValueError(f"invalid zarr key {key!r}")
    if any(seg in ("", ".", "..") for seg in key.split("/")):
        raise ValueError(f"invalid zarr key {key!r}")
    return key


@dataclass
class BlobSpec:
    """One blob asset. Give exactly one of ``content``, ``size`` (generated) or ``file``."""

    path: str
    content: bytes | None = None
    size: int | None = None
    seed: int = 0
    file: str | os.PathLike[str] | None = None
    #: ``blobDateModified`` as stored (any ISO-8601 string); a default is derived when None.
    blob_date_modified: str | None = None
    omit_blob_date_modified: bool = False
    #: False: the digest lacks ``dandi:sha2-256`` (the server's sha256 task has not run).
    sha256: bool = True
    encoding_format: str | None = None
    #: Extra user-supplied asset metadata merged over the defaults.
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("empty asset path")
        given = sum(x is not None for x in (self.content, self.file))
        if given > 1:
            raise ValueError(f"{self.path}: give only one of content/file")
        if self.content is not None:
            if self.size is not None and self.size != len(self.content):
                raise ValueError(f"{self.path}: size {self.size} != len(content)")
        elif self.file is None and self.size is None:
            raise ValueError(f"{self.path}: give content, size or file")
        if self.size is not None and self.size < 0:
            raise ValueError(f"{self.path}: negative size")

    def source(self) -> Source:
        """The bytes of this blob as a streamable source."""
        if self.content is not None:
            return BytesSource(self.content)
        if self.file is not None:
            return FileSource(self.file)
        assert self.size is not None
        return GeneratedSource(self.size, self.seed, 0)

    def read(self) -> bytes:
        """All bytes (fine for small blobs; use :meth:`iter_bytes` for big ones)."""
        return self.source().read()

    def iter_bytes(self) -> Iterator[bytes]:
        return self.source().iter_range()


def generated_zarr_keys(count: int) -> list[str]:
    """Keys of a generated Zarr, in generation order: a 3-D chunk grid like ``"3/12/7"``."""
    k = 1
    while k * k * k < count:
        k += 1
    return [f"{i // (k * k)}/{(i // k) % k}/{i % k}" for i in range(count)]


@dataclass
class ZarrSpec:
    """One Zarr asset: literal ``entries`` and/or ``generated=(count, entry_size, seed)``."""

    path: str
    entries: Mapping[str, bytes | os.PathLike[str]] | None = None
    generated: tuple[int, int, int] | None = None
    #: True: status not ``Complete`` yet, checksum null, size and file_count 0.
    checksum_pending: bool = False
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.path or any(not k for k in self.entries or {}):
            raise ValueError(f"empty path or zarr key in {self.path!r}")
        if self.generated is not None:
            count, size, _seed = self.generated
            if count < 0 or size < 0:
                raise ValueError(f"{self.path}: bad generated={self.generated}")

    def iter_sources(self) -> Iterator[tuple[str, Source]]:
        """(key, source) of every entry, generated ones first, unsorted."""
        if self.generated is not None:
            count, size, seed = self.generated
            for i, key in enumerate(generated_zarr_keys(count)):
                yield key, GeneratedSource(size, seed, i + 1)
        for key, value in (self.entries or {}).items():
            if isinstance(value, (bytes, bytearray)):
                yield key, BytesSource(bytes(value))
            else:
                yield key, FileSource(value)

    def files(self) -> dict[str, bytes]:
        """Every entry's bytes (small Zarrs and tests only)."""
        return {k: s.read() for k, s in self.iter_sources()}


AssetSpec = BlobSpec | ZarrSpec


@dataclass
class UserSpec:
    """An approved user and their API token (``Authorization: token <token>``)."""

    name: str
    token: str
    admin: bool = False
    email: str | None = None


@dataclass
class DandisetSpec:
    """A dandiset: its draft's assets, optional published versions (blobs only), access."""

    identifier: str
    name: str = "Test dandiset"
    assets: list[AssetSpec] = field(default_factory=list)
    published: dict[str, list[BlobSpec]] = field(default_factory=dict)
    embargoed: bool = False
    owners: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if len(self.identifier) != 6 or not self.identifier.isdigit():
            raise ValueError(f"dandiset identifier must be 6 digits: {self.identifier!r}")
        for v, assets in self.published.items():
            if not re.fullmatch(r"0\.\d{6}\.\d{4}", v):
                raise ValueError(f"published version must look like 0.YYMMDD.HHMM: {v!r}")
            if any(not isinstance(a, BlobSpec) for a in assets):
                raise ValueError("published versions hold blobs only (the Archive cannot publish zarrs)")
        if self.embargoed and self.published:
            raise ValueError("embargoed dandisets cannot have published versions")
        seen: set[str] = set()
        for a in self.assets:
            if a.path in seen:
                raise ValueError(f"duplicate asset path {a.path!r}")
            seen.add(a.path)

    @classmethod
    def generated(cls, identifier: str, count: int, size: int = 1024, seed: int = 0, *,
                  per_dir: int = 1000, name: str | None = None, **kwargs: Any) -> DandisetSpec:
        """A dandiset with ``count`` generated blobs of ``size`` bytes (for scale tests)."""
        assets: list[AssetSpec] = [
            BlobSpec(path=f"dir{i // per_dir:04d}/file{i:07d}.bin", size=size, seed=seed + i)
            for i in range(count)
        ]
        return cls(identifier=identifier, name=name or f"Generated dandiset ({count} assets)",
                   assets=assets, **kwargs)


@dataclass
class ArchiveSpec:
    """Everything a :class:`~dandiget.testing.TestArchive` serves."""

    dandisets: list[DandisetSpec] = field(default_factory=list)
    users: list[UserSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        ids = [d.identifier for d in self.dandisets]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate dandiset identifiers")
        names = {u.name for u in self.users}
        for d in self.dandisets:
            for o in d.owners:
                if o not in names:
                    raise ValueError(f"owner {o!r} of {d.identifier} is not a user")

    # -------------------------------------------------------------- JSON (for --spec files)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchiveSpec:
        """Build from the JSON form written by :meth:`to_dict` (see ``serve --spec``)."""
        return cls(
            dandisets=[_dandiset_from_dict(d) for d in data.get("dandisets", [])],
            users=[UserSpec(**u) for u in data.get("users", [])],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (literal content as text or base64)."""
        return {
            "dandisets": [_dandiset_to_dict(d) for d in self.dandisets],
            "users": [
                {"name": u.name, "token": u.token, "admin": u.admin, "email": u.email}
                for u in self.users
            ],
        }


def _bytes_from(v: Any) -> bytes:
    if isinstance(v, str):
        return v.encode("utf-8")
    if isinstance(v, Mapping) and "base64" in v:
        return base64.b64decode(v["base64"])
    raise ValueError(f"cannot read content from {v!r}")


def _bytes_to(b: bytes) -> Any:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(b).decode("ascii")}


def _asset_from_dict(a: Mapping[str, Any]) -> AssetSpec:
    a = dict(a)
    if a.pop("type", None) == "zarr" or "entries" in a or "generated" in a:
        entries = {k: _bytes_from(v) for k, v in (a.pop("entries", None) or {}).items()}
        gen = a.pop("generated", None)
        return ZarrSpec(entries=entries or None, generated=tuple(gen) if gen else None, **a)
    if "content" in a and a["content"] is not None:
        a["content"] = _bytes_from(a["content"])
    return BlobSpec(**a)


def _asset_to_dict(a: AssetSpec) -> dict[str, Any]:
    if isinstance(a, ZarrSpec):
        out: dict[str, Any] = {"type": "zarr", "path": a.path}
        if a.entries:
            out["entries"] = {k: _bytes_to(v) if isinstance(v, bytes) else os.fspath(v)
                              for k, v in a.entries.items()}
        if a.generated:
            out["generated"] = list(a.generated)
        if a.checksum_pending:
            out["checksum_pending"] = True
        if a.metadata:
            out["metadata"] = a.metadata
        return out
    out = {"path": a.path}
    if a.content is not None:
        out["content"] = _bytes_to(a.content)
    elif a.file is not None:
        out["file"] = os.fspath(a.file)
    else:
        out["size"] = a.size
        out["seed"] = a.seed
    for name in ("blob_date_modified", "encoding_format", "metadata"):
        if getattr(a, name) is not None:
            out[name] = getattr(a, name)
    if a.omit_blob_date_modified:
        out["omit_blob_date_modified"] = True
    if not a.sha256:
        out["sha256"] = False
    return out


def _dandiset_from_dict(d: Mapping[str, Any]) -> DandisetSpec:
    d = dict(d)
    if "generated" in d:
        g = d.pop("generated")
        return DandisetSpec.generated(d.pop("identifier"), **g, **d)
    assets = [_asset_from_dict(a) for a in d.pop("assets", [])]
    published = {
        v: [_asset_from_dict(a) for a in lst] for v, lst in d.pop("published", {}).items()
    }
    return DandisetSpec(assets=assets, published=published, **d)  # type: ignore[arg-type]


def _dandiset_to_dict(d: DandisetSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "identifier": d.identifier,
        "name": d.name,
        "assets": [_asset_to_dict(a) for a in d.assets],
    }
    if d.published:
        out["published"] = {v: [_asset_to_dict(a) for a in lst] for v, lst in d.published.items()}
    if d.embargoed:
        out["embargoed"] = True
    if d.owners:
        out["owners"] = list(d.owners)
    if d.metadata:
        out["metadata"] = d.metadata
    return out


@dataclass(frozen=True)
class AssetInfo:
    """What the archive serves for one asset (``TestArchive.asset``)."""

    asset_id: str
    blob_id: str | None
    zarr_id: str | None
    path: str
    size: int
    #: The ``digest`` dict of the asset metadata (what clients verify against).
    digests: dict[str, Any]
    #: The unsigned object URL (``contentUrl[1]``): a blob object or a Zarr's root prefix.
    content_url: str
    metadata: dict[str, Any]
