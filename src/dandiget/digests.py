"""The Archive's digests, computed bit-exactly: dandi-etag, md5, and the Zarr tree checksum.

dandi-etag is S3's multipart ETag for the part layout that dandischema's ``PartGenerator``
chooses: 64 MiB parts, or ``ceil(size / 10_000)`` when 64 MiB would need 10,000 parts or
more. The digest is ``md5(b"".join(md5(part).digest() for part in parts)).hexdigest()``
followed by ``-<number of parts>``. Because the layout is a pure function of the size, a
large file can be fetched as parallel Range requests aligned to parts, each part hashed on
its own, and the per-part digests combined at the end without re-reading a byte.

The Zarr checksum (zarr-checksum 0.4.7) is an md5 over a canonical JSON manifest of every
directory, bottom-up; see :func:`zarr_checksum`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

DEFAULT_PART_SIZE = 64 * MiB
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_OBJECT_SIZE = 5 * TiB

EMPTY_ETAG = "d41d8cd98f00b204e9800998ecf8427e-0"
EMPTY_ZARR_CHECKSUM = "481a2f77ab786a0f45aafd5db0971caa-0--0"

ETAG_RE = re.compile(r"^[0-9a-f]{32}-\d{1,5}$")
ZARR_CHECKSUM_RE = re.compile(r"^([0-9a-f]{32})-([0-9]+)--([0-9]+)$")

#: Zarr-level names that are never part of a Zarr's content (VCS and DataLad bookkeeping).
ZARR_EXCLUDED = frozenset({".dandi", ".datalad", ".git", ".gitattributes", ".gitmodules"})

_READ_CHUNK = 4 * MiB


@dataclass(frozen=True)
class PartRule:
    """How dandischema lays out parts: ``part_size`` bytes each, unless that would need
    ``max_parts`` parts or more; then ``ceil(size / max_parts)``.

    The Archive's rule is :data:`S3_PARTS`; the parameters exist so tests can use a tiny
    rule under which small inputs cross part boundaries (and reach the ``max_parts`` clause).
    """

    part_size: int = DEFAULT_PART_SIZE
    max_parts: int = MAX_PARTS


S3_PARTS = PartRule()


def etag_part_size(size: int, rule: PartRule = S3_PARTS) -> int:
    """The part size dandischema would use for an object of ``size`` bytes."""
    if size < 0:
        raise ValueError(f"negative size: {size}")
    if size > MAX_OBJECT_SIZE:
        raise ValueError(f"{size} bytes is larger than the S3 maximum object size")
    part = rule.part_size
    if -(-size // part) >= rule.max_parts:
        part = -(-size // rule.max_parts)
    if (size and rule == S3_PARTS
            and not (MIN_PART_SIZE <= part <= MAX_PART_SIZE)):  # pragma: no cover - unreachable
        raise ValueError(f"part size {part} out of S3 bounds")
    return part


@dataclass(frozen=True)
class Part:
    """One dandi-etag part: its 0-based index, byte offset and length."""

    index: int
    offset: int
    length: int

    @property
    def end(self) -> int:
        """Offset one past the last byte."""
        return self.offset + self.length


def etag_parts(size: int, rule: PartRule = S3_PARTS) -> list[Part]:
    """The parts of an object of ``size`` bytes, in order (empty for a zero-byte object)."""
    if size == 0:
        return []
    psize = etag_part_size(size, rule)
    n = -(-size // psize)
    parts = [Part(i, i * psize, psize) for i in range(n - 1)]
    parts.append(Part(n - 1, (n - 1) * psize, size - (n - 1) * psize))
    return parts


def combine_part_digests(part_md5s: Iterable[bytes]) -> str:
    """dandi-etag from the binary md5 of each part, in order."""
    outer = hashlib.md5()
    n = 0
    for d in part_md5s:
        outer.update(d)
        n += 1
    return f"{outer.hexdigest()}-{n}"


class DandiETag:
    """Incremental dandi-etag of a stream whose total size is known up front."""

    def __init__(self, size: int, rule: PartRule = S3_PARTS):
        self.size = size
        self._parts = etag_parts(size, rule)
        self._digests: list[bytes] = []
        self._current = hashlib.md5()
        self._filled = 0  # bytes in the current part
        self._seen = 0

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        if self._seen + len(view) > self.size:
            raise ValueError("data extends past the declared size")
        self._seen += len(view)
        while view:
            part = self._parts[len(self._digests)]
            take = min(part.length - self._filled, len(view))
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == part.length:
                self._digests.append(self._current.digest())
                self._current = hashlib.md5()
                self._filled = 0

    @property
    def bytes_seen(self) -> int:
        return self._seen

    def hexdigest(self) -> str:
        if self._seen != self.size:
            raise ValueError(f"got {self._seen} of {self.size} bytes")
        return combine_part_digests(self._digests)


def dandi_etag_bytes(data: bytes, rule: PartRule = S3_PARTS) -> str:
    """dandi-etag of an in-memory object."""
    h = DandiETag(len(data), rule)
    h.update(data)
    return h.hexdigest()


def _read_chunks(path: Path, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as f:
        if start:
            f.seek(start)
        remaining = length
        while remaining is None or remaining > 0:
            n = _READ_CHUNK if remaining is None else min(_READ_CHUNK, remaining)
            chunk = f.read(n)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def file_dandi_etag(path: str | os.PathLike[str]) -> str:
    """dandi-etag of a local file."""
    p = Path(path)
    h = DandiETag(p.stat().st_size)
    for chunk in _read_chunks(p):
        h.update(chunk)
    return h.hexdigest()


def file_hexdigest(path: str | os.PathLike[str], algorithm: str = "md5",
                   start: int = 0, length: int | None = None) -> str:
    """Plain ``hashlib`` digest of (a byte range of) a local file."""
    h = hashlib.new(algorithm)
    for chunk in _read_chunks(Path(path), start, length):
        h.update(chunk)
    return h.hexdigest()


def md5_range_digest(path: str | os.PathLike[str], start: int, length: int) -> bytes:
    """Binary md5 of ``length`` bytes of a file starting at ``start`` (one etag part)."""
    h = hashlib.md5()
    for chunk in _read_chunks(Path(path), start, length):
        h.update(chunk)
    return h.digest()


# --------------------------------------------------------------------------- Zarr checksum


@dataclass(frozen=True)
class ZarrEntryDigest:
    """One file of a Zarr as the checksum sees it."""

    key: str  # relative path with "/" separators
    md5: str
    size: int


class _Dir:
    __slots__ = ("dirs", "files")

    def __init__(self) -> None:
        self.dirs: dict[str, _Dir] = {}
        self.files: dict[str, tuple[str, int]] = {}


def _dir_checksum(d: _Dir) -> tuple[str, int, int]:
    dirs = []
    count = 0
    total = 0
    for name, sub in d.dirs.items():
        digest, c, s = _dir_checksum(sub)
        if c == 0:
            continue  # directories without files contribute nothing
        dirs.append({"digest": digest, "name": name, "size": s})
        count += c
        total += s
    files = []
    for name, (md5, size) in d.files.items():
        files.append({"digest": md5, "name": name, "size": size})
        count += 1
        total += size
    dirs.sort(key=lambda x: str(x["name"]))
    files.sort(key=lambda x: str(x["name"]))
    manifest = json.dumps({"directories": dirs, "files": files}, separators=(",", ":"))
    md5 = hashlib.md5(manifest.encode("utf-8")).hexdigest()
    return f"{md5}-{count}--{total}", count, total


def zarr_checksum(entries: Iterable[ZarrEntryDigest | tuple[str, str, int]]) -> str:
    """The Zarr tree checksum (``dandi:dandi-zarr-checksum``) of a set of files."""
    root = _Dir()
    for e in entries:
        key, md5, size = (e.key, e.md5, e.size) if isinstance(e, ZarrEntryDigest) else e
        *dirs, name = key.split("/")
        node = root
        for part in dirs:
            node = node.dirs.setdefault(part, _Dir())
        node.files[name] = (md5, size)
    return _dir_checksum(root)[0]


def parse_zarr_checksum(value: str) -> tuple[str, int, int]:
    """Split a Zarr checksum into (md5, file count, total size)."""
    m = ZARR_CHECKSUM_RE.match(value)
    if not m:
        raise ValueError(f"not a Zarr checksum: {value!r}")
    return m.group(1), int(m.group(2)), int(m.group(3))


def walk_local_zarr(root: str | os.PathLike[str]) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Yield (key, entry) for everything but folders in a local Zarr (links not followed),
    skipping the excluded names at every level."""
    stack = [(os.fspath(root), "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            for de in it:
                if de.name in ZARR_EXCLUDED:
                    continue
                key = prefix + de.name
                if de.is_dir(follow_symlinks=False):
                    stack.append((de.path, key + "/"))
                else:
                    yield key, de


def iter_local_zarr(root: str | os.PathLike[str]) -> Iterator[tuple[str, Path]]:
    """Yield (key, path) for every file of a local Zarr, skipping the excluded names."""
    for key, de in walk_local_zarr(root):
        if de.is_file():
            yield key, Path(de.path)


def local_zarr_checksum(root: str | os.PathLike[str],
                        known_md5: dict[str, str] | None = None) -> str:
    """Zarr checksum of a local tree, hashing only files whose md5 is not already known."""
    known = known_md5 or {}
    entries = []
    for key, path in iter_local_zarr(root):
        size = path.stat().st_size
        md5 = known.get(key) or file_hexdigest(path, "md5")
        entries.append(ZarrEntryDigest(key, md5, size))
    return zarr_checksum(entries)
