"""Byte sources behind blobs and Zarr entries: literal bytes, generated content, local files.

Generated content is a pure function of ``(seed, salt, size)`` so a 2 GiB blob never has to
exist in memory or on disk: any byte range is computed on demand, one 1 MiB block at a time.
Block ``i`` is a 32-byte header ``b"dandiget" + seed + salt + i`` followed by the tail of a
pseudo-random 1 MiB base block picked by ``seed``; the header makes every block (and so every
dandi-etag part and every Zarr entry) distinct. Digests are computed once per content and
cached process-wide, because hashing is the only expensive thing a test archive does.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from dandiget.testing.archive_digests import PART_SIZE, PartHasher, dandi_etag

BLOCK_SIZE = 1 << 20
_HEADER = struct.Struct("<8sQQQ")  # 32 bytes
_N_BASES = 16
_MASK = (1 << 64) - 1


@functools.lru_cache(maxsize=_N_BASES)
def _base_block(k: int) -> bytes:
    return random.Random(0x0DA7D1 + k).randbytes(BLOCK_SIZE)


def generated_block(seed: int, salt: int, index: int, start: int = 0,
                    end: int = BLOCK_SIZE) -> bytes:
    """Bytes ``[start, end)`` of block ``index`` (1 MiB) of the generated stream ``(seed, salt)``.

    Only the requested slice is built, so tiny entries cost nothing like a whole block.
    """
    base = _base_block(seed % _N_BASES)
    hsize = _HEADER.size
    if start >= hsize:
        return base[start:end]
    header = _HEADER.pack(b"dandiget", seed & _MASK, salt & _MASK, index & _MASK)
    if end <= hsize:
        return header[start:end]
    return header[start:] + base[hsize:end]


class Source:
    """Immutable bytes of known size that can be streamed by range."""

    __slots__ = ()
    size: int

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes ``[start, end)`` in chunks of at most 1 MiB."""
        raise NotImplementedError

    def read(self) -> bytes:
        """All bytes (only for small content and tests)."""
        return b"".join(self.iter_range())

    @property
    def cache_key(self) -> tuple | None:
        """Key for the process-wide digest cache, or None when not worth caching."""
        return None

    def _bounds(self, start: int, end: int | None) -> tuple[int, int]:
        end = self.size if end is None else min(end, self.size)
        return max(0, start), end


class BytesSource(Source):
    """Literal content held in memory."""

    __slots__ = ("data", "size")

    def __init__(self, data: bytes):
        self.data = bytes(data)
        self.size = len(self.data)

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        start, end = self._bounds(start, end)
        view = memoryview(self.data)
        for off in range(start, end, BLOCK_SIZE):
            yield bytes(view[off:min(end, off + BLOCK_SIZE)])

    def read(self) -> bytes:
        return self.data

    def __repr__(self) -> str:
        return f"BytesSource({self.size} bytes)"


class GeneratedSource(Source):
    """Deterministic pseudo-random content computed per block."""

    __slots__ = ("salt", "seed", "size")

    def __init__(self, size: int, seed: int = 0, salt: int = 0):
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self.seed = seed
        self.salt = salt

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        start, end = self._bounds(start, end)
        pos = start
        while pos < end:
            index, off = divmod(pos, BLOCK_SIZE)
            take = min(BLOCK_SIZE - off, end - pos)
            yield generated_block(self.seed, self.salt, index, off, off + take)
            pos += take

    @property
    def cache_key(self) -> tuple:
        return ("gen", self.seed, self.salt, self.size)

    def __repr__(self) -> str:
        return f"GeneratedSource(size={self.size}, seed={self.seed}, salt={self.salt})"


class FileSource(Source):
    """Content of a local file (``TestArchive.from_directory``); read on demand."""

    __slots__ = ("_key", "path", "size")

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        st = self.path.stat()
        self.size = st.st_size
        self._key = ("file", str(self.path.resolve()), st.st_size, st.st_mtime_ns)

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        start, end = self._bounds(start, end)
        with open(self.path, "rb") as f:
            f.seek(start)
            pos = start
            while pos < end:
                chunk = f.read(min(BLOCK_SIZE, end - pos))
                if not chunk:
                    break
                pos += len(chunk)
                yield chunk

    @property
    def cache_key(self) -> tuple:
        return self._key

    def __repr__(self) -> str:
        return f"FileSource({self.path})"


class Digests(NamedTuple):
    """What the archive knows about some content."""

    md5: str
    etag: str
    sha256: str


_cache: dict[tuple, Digests] = {}
_cache_lock = threading.Lock()


def _small_bytes(source: Source) -> bytes | None:
    if isinstance(source, BytesSource):
        return source.data
    if isinstance(source, GeneratedSource) and source.size <= BLOCK_SIZE:
        return generated_block(source.seed, source.salt, 0, 0, source.size)
    return None


def _digests_of_bytes(data: bytes) -> Digests:
    m = hashlib.md5(data)
    if len(data) > PART_SIZE:  # bytes handed in by a test may span several parts
        etag = dandi_etag(data)
    elif data:  # one part: the md5 of its md5
        etag = f"{hashlib.md5(m.digest()).hexdigest()}-1"
    else:
        etag = "d41d8cd98f00b204e9800998ecf8427e-0"
    return Digests(m.hexdigest(), etag, hashlib.sha256(data).hexdigest())


def compute_digests(source: Source) -> Digests:
    """md5, dandi-etag and sha256 of ``source``, cached for big generated and file content."""
    data = _small_bytes(source)
    if data is not None:  # cheap: no cache, no locking (scale specs hash 100k of these)
        return _digests_of_bytes(data)
    key = source.cache_key
    if key is not None:
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None:
            return hit
    if 0 < source.size <= BLOCK_SIZE:
        d = _digests_of_bytes(b"".join(source.iter_range()))
    else:
        md5 = hashlib.md5()
        sha = hashlib.sha256()
        etag = PartHasher(source.size)
        for chunk in source.iter_range():
            md5.update(chunk)
            sha.update(chunk)
            etag.update(chunk)
        d = Digests(md5.hexdigest(), etag.hexdigest(), sha.hexdigest())
    if key is not None:
        with _cache_lock:
            _cache[key] = d
    return d


def md5_hex(source: Source) -> str:
    """Just the md5 (Zarr entries), without the cost of sha256 for small entries."""
    key = source.cache_key
    if key is not None:
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None:
            return hit.md5
    if isinstance(source, BytesSource):
        return hashlib.md5(source.data).hexdigest()
    if isinstance(source, GeneratedSource) and source.size <= BLOCK_SIZE:
        return hashlib.md5(generated_block(source.seed, source.salt, 0, 0, source.size)).hexdigest()
    h = hashlib.md5()
    for chunk in source.iter_range():
        h.update(chunk)
    return h.hexdigest()


def compute_many(sources: list[Source], fn=compute_digests, workers: int | None = None) -> list:
    """Apply a digest function to many sources, in threads when there is real hashing to do.

    hashlib releases the GIL on large buffers, so big contents hash in parallel.
    """
    total = sum(s.size for s in sources)
    if total < 64 * BLOCK_SIZE or len(sources) < 2:
        return [fn(s) for s in sources]
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 2)) as ex:
        return list(ex.map(fn, sources))
