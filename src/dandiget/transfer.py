"""Moving bytes: GET a file into a temporary name beside its target, hashing as it arrives.

Two shapes of transfer, chosen by size:

* **stream**: one GET, written sequentially; resumes an interrupted temporary file with
  ``Range: bytes=<len>-`` after re-hashing the bytes already on disk. Used for small and
  medium files and for every Zarr entry.
* **parts**: parallel Range GETs aligned to dandi-etag parts, each written at its offset
  with ``os.pwrite`` and hashed on its own; the part digests combine into the dandi-etag
  without re-reading the file. Finished parts are journalled (after ``fdatasync``) so an
  interrupted download — even ``kill -9`` — resumes part by part.

A server that ignores Range (answers 200), sends a ``Content-Range`` that does not start
where we asked, or a body longer or shorter than announced never corrupts a file: the
response is rejected (or the file restarted) before a byte is written at a wrong offset.
Whatever happens, only the caller renames a *verified* temporary into place.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from .api import TRANSIENT_ERRORS, _describe
from .config import TransferConfig
from .digests import DandiETag, Part, combine_part_digests, etag_parts, md5_range_digest
from .errors import ChecksumError, TransferError
from .retry import parse_retry_after

log = logging.getLogger("dandiget")

CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

#: Objects up to this size are fetched into memory and verified before they are written.
SMALL_OBJECT = 2 << 20

#: Chunks at least this large are hashed and written in a worker thread, so hashing (which
#: releases the GIL) overlaps with the event loop reading the next chunk.
THREAD_THRESHOLD = 256 * 1024


class _Hasher(Protocol):
    def update(self, data: bytes) -> None: ...


def display_url(url: str) -> str:
    """A URL safe to show: no query string (presigned signatures are credentials)."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, p.path, "", ""))


@dataclass
class Source:
    """Where a file's bytes come from.

    ``url`` is fetched anonymously (a public content URL, or a presigned one). For data that
    needs the API's redirect (embargoed, or a direct URL that stopped working),
    ``resolve`` returns a fresh URL; it is asked again when a presigned URL expires (a few
    times at most, so a server that keeps answering 403 still ends in an error).
    """

    url: str | None
    resolve: Callable[[], Awaitable[str]] | None = None
    refreshes: int = 0
    max_refreshes: int = 3

    async def current(self) -> str:
        if self.url is None:
            if self.resolve is None:
                raise TransferError("no download URL")
            self.url = await self.resolve()
        return self.url

    async def refresh(self) -> bool:
        """Get a new URL from the API after a 403/404. False when there is no way to."""
        if self.resolve is None or self.refreshes >= self.max_refreshes:
            return False
        self.refreshes += 1
        self.url = await self.resolve()
        return True


@dataclass
class _Cursor:
    pos: int = 0


class _Restart(Exception):
    """The temporary file is unusable (server ignored Range, object changed): start over."""


class _HTTPStatus(Exception):
    def __init__(self, status: int, retry_after: float | None, url: str):
        super().__init__(f"HTTP {status} from {display_url(url)}")
        self.status = status
        self.retry_after = retry_after


_RETRYABLE: tuple[type[BaseException], ...] = (_HTTPStatus, *TRANSIENT_ERRORS)


class Meter(Protocol):
    """Receives byte counts: ``add`` for bytes received now, ``resumed`` for bytes found on
    disk from an earlier run, ``rollback`` for bytes discarded (a restart)."""

    def add(self, n: int) -> None: ...
    def resumed(self, n: int) -> None: ...
    def rollback(self, n: int) -> None: ...


class NullMeter:
    def add(self, n: int) -> None:
        pass

    def resumed(self, n: int) -> None:
        pass

    def rollback(self, n: int) -> None:
        pass


class Transferer:
    """Fetches files into temporary paths using one shared session and retry policy."""

    def __init__(self, session: aiohttp.ClientSession, config: TransferConfig):
        self.session = session
        self.config = config
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout,
                                             sock_read=config.read_timeout)

    # ------------------------------------------------------------------ public

    async def fetch(self, source: Source, temp: Path, size: int,
                    digest: tuple[str, str] | None, meter: Meter) -> str | None:
        """Download into ``temp`` and return the computed digest (verified against ``digest``).

        Raises :class:`ChecksumError` when the bytes do not match (after one fresh retry),
        :class:`TransferError` when they cannot be fetched. ``temp`` is left in place on
        TransferError (to resume later) and removed on ChecksumError.
        """
        algo = digest[0] if digest else "md5"
        for fresh_try in range(2):
            if algo == "dandi-etag" and size >= self.config.multipart_threshold:
                got = await self._fetch_parts(source, temp, size, meter)
            else:
                got = await self._fetch_stream(source, temp, size, algo, meter)
            if digest is None or got == digest[1]:
                return got
            log.warning("%s: %s mismatch (got %s, expected %s)%s", temp.name, algo, got,
                        digest[1], "; retrying from scratch" if fresh_try == 0 else "")
            discard(temp)
            meter.rollback(size)
        assert digest is not None
        raise ChecksumError(algo, got, digest[1])

    # ------------------------------------------------------------------ small objects

    async def fetch_small(self, source: Source, size: int, digest: tuple[str, str],
                          meter: Meter) -> bytes:
        """GET a small object into memory and verify it before a byte touches the disk.

        Most Zarr chunks are kilobytes: for them the cost is requests and filesystem
        metadata, so this path does one GET, one hash and no temporary-file bookkeeping;
        the caller writes the verified bytes with a single write.
        """
        algo, expected = digest
        got = ""
        for fresh_try in range(2):
            attempt = 0
            while True:
                attempt += 1
                url = await source.current()
                try:
                    data = await self._get_small(url, size)
                    break
                except _Restart as e:
                    if attempt >= self.config.retry.attempts:
                        raise TransferError(f"{e} (gave up after {attempt} attempts)") from None
                    await asyncio.sleep(self.config.retry.delay(attempt))
                except _RETRYABLE as e:
                    await self._after_failure(e, attempt, source, url)
            meter.add(len(data))
            if len(data) >= THREAD_THRESHOLD:
                got = await asyncio.to_thread(_digest_bytes, algo, data)
            else:
                got = _digest_bytes(algo, data)
            if got == expected:
                return data
            log.warning("%s: %s mismatch (got %s, expected %s)%s", display_url(url), algo, got,
                        expected, "; retrying" if fresh_try == 0 else "")
            meter.rollback(len(data))
        raise ChecksumError(algo, got, expected)

    async def _get_small(self, url: str, size: int) -> bytes:
        async with self.session.get(url, headers={"Accept-Encoding": "identity"},
                                    timeout=self.timeout, auto_decompress=False) as resp:
            if resp.status == 206:
                raise _Restart("a partial response (206) to a plain GET")
            if resp.status != 200:
                raise _HTTPStatus(resp.status,
                                  parse_retry_after(resp.headers.get("Retry-After")), url)
            if resp.content_length is not None and resp.content_length != size:
                raise _Restart(f"Content-Length {resp.content_length} != {size} expected")
            data = await resp.read()
        if len(data) != size:
            raise aiohttp.ClientPayloadError(f"got {len(data)} of {size} bytes")
        return data

    # ------------------------------------------------------------------ one stream

    def _new_hasher(self, algo: str, size: int) -> Any:
        return DandiETag(size) if algo == "dandi-etag" else hashlib.new(algo)

    async def _fetch_stream(self, source: Source, temp: Path, size: int, algo: str,
                            meter: Meter) -> str:
        hasher = self._new_hasher(algo, size)
        offset = 0
        try:
            have = temp.stat().st_size
        except FileNotFoundError:
            have = 0
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            if have > size:
                os.ftruncate(fd, 0)  # longer than the object: cannot be a prefix of it
                have = 0
            if have:
                # Resume: the prefix on disk feeds the hasher first (it is verified too).
                await asyncio.to_thread(_hash_prefix, temp, have, hasher)
                offset = have
                meter.resumed(have)
            attempt = 0
            cursor = _Cursor(offset)
            last = cursor.pos
            while cursor.pos < size:
                attempt = self._next_attempt(attempt, last, cursor.pos)
                last = cursor.pos
                url = await source.current()
                try:
                    await self._get_into(url, fd, cursor.pos, size, hasher, meter, cursor,
                                         ranged=cursor.pos > 0)
                except _Restart as e:
                    log.debug("%s: %s; restarting from byte 0", temp.name, e)
                    os.ftruncate(fd, 0)
                    meter.rollback(cursor.pos)
                    cursor.pos = last = 0
                    hasher = self._new_hasher(algo, size)
                    if attempt >= self.config.retry.attempts:
                        raise TransferError(f"{e} (gave up after {attempt} attempts)") from None
                except _RETRYABLE as e:
                    await self._after_failure(e, attempt, source, url)
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        return str(hasher.hexdigest())

    @staticmethod
    def _next_attempt(attempt: int, before: int, after: int) -> int:
        """Attempts that moved bytes do not count: a flaky but working connection finishes
        (dandi-cli needed DANDI_DOWNLOAD_AGGRESSIVE_RETRY for that)."""
        return 1 if after > before else attempt + 1

    async def _after_failure(self, e: BaseException, attempt: int, source: Source,
                             url: str) -> None:
        """Sleep before the next attempt, or raise TransferError when it is hopeless."""
        retry = self.config.retry
        if isinstance(e, _HTTPStatus):
            if e.status in (403, 404) and await source.refresh():
                return  # expired presigned URL / moved object: ask the API again
            if not retry.is_retryable_status(e.status):
                raise TransferError(str(e)) from None
            delay = retry.delay(attempt, e.retry_after)
        else:
            delay = retry.delay(attempt)
        if attempt >= retry.attempts:
            raise TransferError(f"{_describe(e)} from {display_url(url)} "
                                f"(gave up after {attempt} attempts)") from None
        log.debug("%s: %s; retry %d in %.2fs", display_url(url), _describe(e), attempt, delay)
        await asyncio.sleep(delay)

    async def _get_into(self, url: str, fd: int, start: int, end: int, hasher: Any,
                        meter: Meter, cursor: _Cursor, *, ranged: bool,
                        etag_seen: list[str] | None = None) -> None:
        """GET bytes [start, end) of ``url`` into ``fd`` at their offsets.

        ``cursor.pos`` always holds the offset up to which bytes were written *and* hashed,
        also when the stream breaks mid-way, so the caller resumes exactly there. Raises
        _Restart when the server answered with a body we cannot place (200 to a Range
        request for a non-zero start, mismatched Content-Range).
        """
        headers = {"Accept-Encoding": "identity"}
        if ranged:
            headers["Range"] = f"bytes={start}-{end - 1}"
        async with self.session.get(url, headers=headers, timeout=self.timeout,
                                    auto_decompress=False, allow_redirects=True) as resp:
            if resp.status == 416 and start > 0 and etag_seen is None:
                raise _Restart("server refused the resume range (416)")
            if resp.status not in (200, 206):
                raise _HTTPStatus(resp.status, parse_retry_after(resp.headers.get("Retry-After")),
                                  url)
            if etag_seen is not None:
                et = resp.headers.get("ETag")
                if et:
                    if etag_seen and etag_seen[0] != et:
                        raise _Restart(f"object changed on the server (ETag {et} != "
                                       f"{etag_seen[0]})")
                    if not etag_seen:
                        etag_seen.append(et)
            if ranged:
                if resp.status == 200:
                    if start == 0 and resp.content_length in (None, end):
                        pass  # the whole object, which is what we wanted anyway
                    else:
                        raise _Restart("server ignored the Range header (200)")
                else:
                    m = CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", ""))
                    if not m or int(m.group(1)) != start or int(m.group(2)) > end - 1:
                        raise _Restart(
                            f"bad Content-Range {resp.headers.get('Content-Range')!r} for "
                            f"bytes={start}-{end - 1}")
            elif resp.status == 206:
                raise _Restart("unexpected 206 to a plain GET")
            expected = end - start
            if resp.content_length is not None and resp.content_length != expected:
                raise _Restart(f"Content-Length {resp.content_length} != {expected} expected")
            cursor.pos = start
            async for chunk in resp.content.iter_chunked(self.config.chunk_size):
                n = len(chunk)
                if cursor.pos + n > end:
                    raise _Restart(f"server sent more than the {expected} bytes asked for")
                if n >= THREAD_THRESHOLD:
                    await asyncio.to_thread(_hash_write, fd, cursor.pos, chunk, hasher)
                else:
                    _hash_write(fd, cursor.pos, chunk, hasher)
                cursor.pos += n
                meter.add(n)
            if cursor.pos < end:
                raise aiohttp.ClientPayloadError(
                    f"body ended after {cursor.pos - start} of {expected} bytes")

    # ------------------------------------------------------------------ parallel parts

    def plan_units(self, parts: list[Part]) -> list[Part]:
        """Split etag parts into Range requests so one file uses ``parts_per_file`` streams.

        A file with fewer parts than that (a 200 MB file has 3) would otherwise use only a
        few connections; each capped link (S3 serves ~25-90 MB/s per connection) then
        limits the whole file. Pieces stay at least 8 MiB. A unit's ``index`` is its part's.
        """
        want = self.config.parts_per_file
        if len(parts) >= want:
            return parts
        size = parts[-1].end
        units = []
        for p in parts:
            k = max(1, min(-(-want * p.length // size), p.length // (8 << 20)))
            step = -(-p.length // k)
            for off in range(p.offset, p.end, step):
                units.append(Part(p.index, off, min(step, p.end - off)))
        return units

    async def _fetch_parts(self, source: Source, temp: Path, size: int,
                           meter: Meter) -> str:
        parts = etag_parts(size)
        journal_path = temp.with_name(temp.name + ".json")
        done: dict[int, str] = {}
        try:
            have = temp.stat().st_size
        except FileNotFoundError:
            have = -1
        if have == size:
            done = _load_journal(journal_path, size)
        fd = os.open(temp, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if have != size:
                os.ftruncate(fd, 0)
                os.ftruncate(fd, size)
            resumed = sum(parts[i].length for i in done)
            if resumed:
                meter.resumed(resumed)
            units = [u for u in self.plan_units(parts) if u.index not in done]
            left: dict[int, int] = {}
            for u in units:
                left[u.index] = left.get(u.index, 0) + 1
            etag_seen: list[str] = []
            journal_lock = asyncio.Lock()
            queue: asyncio.Queue[Part] = asyncio.Queue()
            for u in units:
                queue.put_nowait(u)

            async def finish_part(index: int, md5: str) -> None:
                await asyncio.to_thread(os.fdatasync, fd)
                async with journal_lock:
                    done[index] = md5
                    await asyncio.to_thread(_save_journal, journal_path, size, done)

            async def worker() -> None:
                while True:
                    try:
                        unit = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    part = parts[unit.index]
                    whole = unit.length == part.length
                    md5 = await self._fetch_range(source, fd, unit, meter, etag_seen,
                                                  hash_it=whole)
                    left[unit.index] -= 1
                    if whole:
                        await finish_part(unit.index, md5)
                    elif left[unit.index] == 0:  # last piece of a split part: hash it back
                        digest = await asyncio.to_thread(md5_range_digest, temp, part.offset,
                                                         part.length)
                        await finish_part(unit.index, digest.hex())

            n_workers = max(1, min(self.config.parts_per_file, len(units)))
            tasks = [asyncio.create_task(worker()) for _ in range(n_workers)]
            try:
                await asyncio.gather(*tasks)
            except _Restart:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                os.ftruncate(fd, 0)
                journal_path.unlink(missing_ok=True)
                meter.rollback(size)
                raise TransferError("object changed on the server during the download") from None
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        finally:
            os.close(fd)
        return combine_part_digests(bytes.fromhex(done[p.index]) for p in parts)

    async def _fetch_range(self, source: Source, fd: int, unit: Part, meter: Meter,
                           etag_seen: list[str], *, hash_it: bool) -> str:
        """One Range request (a whole part, hashed as it arrives, or a piece of one),
        resuming inside it after a broken connection."""
        hasher: _Hasher = hashlib.md5() if hash_it else _NULL_HASHER
        cursor = _Cursor(unit.offset)
        attempt = 0
        last = cursor.pos
        while cursor.pos < unit.end:
            attempt = self._next_attempt(attempt, last, cursor.pos)
            last = cursor.pos
            url = await source.current()
            try:
                await self._get_into(url, fd, cursor.pos, unit.end, hasher, meter, cursor,
                                     ranged=True, etag_seen=etag_seen)
            except _Restart as e:
                if "object changed" in str(e):
                    raise
                # A misbehaving range response: nothing was written; retry this range.
                log.debug("bytes %d-%d: %s", unit.offset, unit.end - 1, e)
                if attempt >= self.config.retry.attempts:
                    raise TransferError(f"{e} (gave up after {attempt} attempts)") from None
                await asyncio.sleep(self.config.retry.delay(attempt))
            except _RETRYABLE as e:
                await self._after_failure(e, attempt, source, url)
        return hasher.hexdigest() if hash_it else ""  # type: ignore[attr-defined]


class _NullHasher:
    def update(self, data: bytes) -> None:
        pass


_NULL_HASHER = _NullHasher()


# ---------------------------------------------------------------------- helpers


def _digest_bytes(algo: str, data: bytes) -> str:
    if algo == "dandi-etag":
        h = DandiETag(len(data))
        h.update(data)
        return h.hexdigest()
    return hashlib.new(algo, data).hexdigest()


def write_verified(temp: Path, target: Path, data: bytes, mtime_ns: int | None) -> None:
    """Write verified bytes to ``temp``, stamp the mtime, and rename onto ``target``."""
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if mtime_ns is not None:
            os.utime(fd, ns=(time.time_ns(), mtime_ns))
    finally:
        os.close(fd)
    try:
        os.replace(temp, target)
    except IsADirectoryError:
        import shutil

        shutil.rmtree(target)
        os.replace(temp, target)


def _hash_write(fd: int, offset: int, data: bytes, hasher: _Hasher) -> None:
    hasher.update(data)
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _hash_prefix(path: Path, length: int, hasher: _Hasher) -> None:
    with open(path, "rb") as f:
        remaining = length
        while remaining:
            chunk = f.read(min(remaining, 4 << 20))
            if not chunk:
                raise TransferError(f"{path} shrank while resuming")
            hasher.update(chunk)
            remaining -= len(chunk)


def _load_journal(path: Path, size: int) -> dict[int, str]:
    try:
        data = json.loads(path.read_text())
        if data.get("size") != size:
            return {}
        return {int(k): str(v) for k, v in data.get("parts", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _save_journal(path: Path, size: int, done: dict[int, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"size": size, "parts": done}))
    os.replace(tmp, path)


def discard(temp: Path) -> None:
    """Remove a temporary file and its part journal."""
    temp.unlink(missing_ok=True)
    temp.with_name(temp.name + ".json").unlink(missing_ok=True)
