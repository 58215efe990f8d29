"""The digests the test archive serves, written from the spec, not shared with the client.

The client verifies downloads with :mod:`dandiget.digests`. If the archive computed the
digests it serves with the same code, a mistake there would go unnoticed: both sides would
agree on the wrong value. So this module re-implements, from ``archive-api.md`` (§2.11 for
the Zarr checksum, §3 for the blob ETag) and nothing else, what the archive needs:

* the dandi-etag part layout: 64 MiB parts, or ``ceil(size / 10000)`` when 64 MiB would
  need 10,000 parts or more; the last part holds the remainder;
* the dandi-etag: md5 of the concatenated binary part md5s, then ``-<number of parts>``;
* the Zarr checksum: per directory, md5 of the compact JSON
  ``{"directories":[{"digest","name","size"}...],"files":[...]}`` (both sorted by name,
  directories without files left out), written ``<md5>-<file count>--<total size>``.

Both are checked against the reference implementations (dandischema, zarr-checksum) in
``tests/testing/test_archive_digests.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

#: The Archive's layout: the S3 default part size and S3's limit on the number of parts.
PART_SIZE = 64 * 1024 * 1024
PART_LIMIT = 10_000

EMPTY_DIRECTORY_MANIFEST = b'{"directories":[],"files":[]}'
EMPTY_ZARR_CHECKSUM = hashlib.md5(EMPTY_DIRECTORY_MANIFEST).hexdigest() + "-0--0"


def part_lengths(size: int, part_size: int = PART_SIZE,
                 part_limit: int = PART_LIMIT) -> tuple[int, int, int]:
    """``(count, length of every part but the last, length of the last)`` for ``size`` bytes.

    ``part_size`` and ``part_limit`` default to the Archive's; tests pass tiny values so that
    small objects have many parts.
    """
    if size == 0:
        return 0, 0, 0
    count, rest = divmod(size, part_size)
    if rest:
        count += 1
    if count >= part_limit:
        part_size, rest = divmod(size, part_limit)
        if rest:
            part_size += 1
        count, rest = divmod(size, part_size)
        if rest:
            count += 1
    last = size - (count - 1) * part_size
    return count, part_size, last


class PartHasher:
    """dandi-etag of a stream of known length, fed in pieces of any size."""

    def __init__(self, size: int, part_size: int = PART_SIZE, part_limit: int = PART_LIMIT):
        self.count, self.part_size, last = part_lengths(size, part_size, part_limit)
        self.size = size
        self._fed = 0
        self._current = hashlib.md5()
        self._room = self.part_size if self.count > 1 else last  # bytes left in this part
        self._joined = bytearray()

    def update(self, data: bytes | memoryview) -> None:
        data = memoryview(data)
        self._fed += len(data)
        if self._fed > self.size:
            raise ValueError(f"more than the {self.size} bytes announced")
        while len(data):
            piece, data = data[:self._room], data[self._room:]
            self._current.update(piece)
            self._room -= len(piece)
            if self._room == 0:
                self._joined += self._current.digest()
                self._current = hashlib.md5()
                parts_done = len(self._joined) // 16
                remaining = self.size - parts_done * self.part_size
                self._room = min(self.part_size, remaining)

    def hexdigest(self) -> str:
        if self._fed != self.size:
            raise ValueError(f"fed {self._fed} of {self.size} bytes")
        return f"{hashlib.md5(bytes(self._joined)).hexdigest()}-{self.count}"


def dandi_etag(data: bytes, part_size: int = PART_SIZE, part_limit: int = PART_LIMIT) -> str:
    """dandi-etag of bytes in memory."""
    h = PartHasher(len(data), part_size, part_limit)
    h.update(data)
    return h.hexdigest()


def zarr_checksum(files: Iterable[tuple[str, str, int]]) -> str:
    """The Zarr checksum of ``(key, md5 hex, size)`` triples (keys use ``/``)."""
    root: dict = {}
    for key, md5, size in files:
        node = root
        names = key.split("/")
        for name in names[:-1]:
            node = node.setdefault(name, {})
        node[names[-1]] = (md5, size)
    return _directory(root)[0]


def _directory(node: dict) -> tuple[str, int, int]:
    """``(digest, file count, total size)`` of one directory, its subdirectories first."""
    directories, files = [], []
    count = total = 0
    for name in sorted(node):
        child = node[name]
        if isinstance(child, dict):
            digest, n, size = _directory(child)
            if n == 0:
                continue
            directories.append({"digest": digest, "name": name, "size": size})
        else:
            digest, size = child
            n = 1
            files.append({"digest": digest, "name": name, "size": size})
        count += n
        total += size
    manifest = json.dumps({"directories": directories, "files": files}, separators=(",", ":"))
    return f"{hashlib.md5(manifest.encode()).hexdigest()}-{count}--{total}", count, total
