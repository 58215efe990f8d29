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
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from .config import TransferConfig
from .digests import DandiETag, Part, combine_part_digests, etag_parts, md5_range_digest
from .errors import ChecksumError, ResponseError, TransferError
from .requests import Requester, display_url

log = logging.getLogger("dandiget")

__all__ = ["SMALL_OBJECT", "MemoryBudget", "RefusalMemo", "Source", "Transferer", "discard", "display_url"]

CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

#: Objects up to this size are fetched into memory and verified before they are written.
SMALL_OBJECT = 2 << 20

#: Bytes of small objects held in memory at once (:class:`MemoryBudget`): past it, a small
#: object streams to its temporary file like a large one. Without it, memory grows with the
#: files in flight (a slow link holds many): 40 files of 1 MiB in flight held ~80 MB.
SMALL_BUDGET = 32 << 20

#: Chunks at least this large are hashed and written in a worker thread, so hashing (which
#: releases the GIL) overlaps with the event loop reading the next chunk.
THREAD_THRESHOLD = 256 * 1024

#: Seconds between durable progress records of a multi-part download (fdatasync + journal).
JOURNAL_INTERVAL = 2.0
#: How often the hedger looks for a straggling part once every part has started.
HEDGE_CHECK_INTERVAL = 0.2


class _Hasher(Protocol):
    def update(self, data: bytes) -> None: ...


class RefusalMemo:
    """Content prefixes that refuse unsigned reads (403), learnt during the run.

    Against an archive whose bucket refuses anonymous reads under a prefix while presigned
    URLs work, every direct attempt there costs a refused request. After ``threshold``
    refusals under one prefix, sources under it ask the API for a presigned URL first.
    A prefix is a Zarr (``zarr/<id>/``) or a top-level folder (``blobs/``).
    """

    def __init__(self, threshold: int = 3):
        self.threshold = threshold
        self._counts: dict[str, int] = {}

    @staticmethod
    def prefix(url: str) -> str:
        p = urlsplit(url)
        segs = p.path.lstrip("/").split("/")
        n = 2 if segs and segs[0] == "zarr" else 1
        return f"{p.netloc}/{'/'.join(segs[:n])}/"

    def refused(self, url: str) -> None:
        key = self.prefix(url)
        n = self._counts[key] = self._counts.get(key, 0) + 1
        if n == self.threshold:
            log.debug("%s refuses unsigned reads: asking the API first from now on", key)

    def avoid(self, url: str) -> bool:
        return bool(self._counts) and self._counts.get(self.prefix(url), 0) >= self.threshold


class MemoryBudget:
    """Bytes this process may hold for small objects read whole into memory. Never waits:
    :meth:`take` says no and the caller streams instead, so the budget bounds memory
    without slowing anything down."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


@dataclass
class Source:
    """Where a file's bytes come from.

    ``url`` is fetched anonymously (a public content URL, or a presigned one). For data that
    needs the API's redirect (embargoed, or a direct URL that stopped working),
    ``resolve`` returns a fresh URL; it is asked again when a presigned URL expires (a few
    times at most, so a server that keeps answering 403 still ends in an error). A direct
    URL under a prefix that kept refusing (``refusals``) is skipped for the API at once.
    """

    url: str | None
    resolve: Callable[[], Awaitable[str]] | None = None
    refreshes: int = 0
    max_refreshes: int = 3
    refusals: RefusalMemo | None = None
    direct: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.direct = self.url

    def __repr__(self) -> str:  # a presigned URL's signature is a credential too
        return f"Source({display_url(self.url) if self.url else None!r})"

    async def current(self) -> str:
        url = self.url
        if url is not None and url is self.direct and self.resolve is not None \
                and self.refusals is not None and self.refusals.avoid(url):
            url = None
        if url is None:
            if self.resolve is None:
                raise TransferError("no download URL")
            url = self.url = await self.resolve()
        return url

    async def refresh(self, status: int = 403) -> bool:
        """Get a new URL from the API after a 403/404. False when there is no way to."""
        if self.resolve is None or self.refreshes >= self.max_refreshes:
            return False
        if (status == 403 and self.url is not None and self.url is self.direct
                and self.refusals is not None):
            self.refusals.refused(self.url)
        self.refreshes += 1
        self.url = await self.resolve()
        return True


@dataclass
class _Cursor:
    pos: int = 0


class _Restart(Exception):
    """The temporary file is unusable (server ignored Range, object changed): start over."""


class _ObjectChanged(_Restart):
    pass


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


class StallClock:
    """How long a content response may send nothing before it counts as stalled.

    Derived from what the run has seen (a multiple of the slowest recent time to first
    byte), never below ``floor`` nor above the configured read timeout. Before anything was
    seen, ``initial``. aiohttp applies it as the socket read timeout, so it costs nothing
    per chunk.
    """

    def __init__(self, config: TransferConfig):
        self.floor = min(config.stall_floor, config.read_timeout)
        self.initial = min(config.stall_initial, config.read_timeout)
        self.cap = config.read_timeout
        self._recent: list[float] = []

    def seen(self, ttfb: float) -> None:
        self._recent.append(ttfb)
        if len(self._recent) > 64:
            del self._recent[:32]

    def deadline(self) -> float:
        if not self._recent:
            return self.initial
        return max(self.floor, min(self.cap, 20 * max(self._recent)))


class _Writes:
    """Thread writes in flight for one file descriptor: the fd is closed only after every
    write handed to a thread has finished, even when the awaiting task was cancelled (a
    hedge that lost, Ctrl-C) — otherwise a late ``pwrite`` could hit a reused fd."""

    __slots__ = ("fd", "pending")

    def __init__(self, fd: int):
        self.fd = fd
        self.pending: set[asyncio.Future[None]] = set()

    async def hash_write(self, offset: int, data: bytes, hasher: _Hasher) -> None:
        if len(data) < THREAD_THRESHOLD:
            _hash_write(self.fd, offset, data, hasher)
            return
        fut = asyncio.get_running_loop().run_in_executor(None, _hash_write, self.fd, offset,
                                                         data, hasher)
        self.pending.add(fut)
        fut.add_done_callback(self.pending.discard)
        await asyncio.shield(fut)

    async def settle(self) -> None:
        if self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)


class Transferer:
    """Fetches files into temporary paths through the run's one request executor."""

    def __init__(self, session: aiohttp.ClientSession, config: TransferConfig,
                 requester: Requester | None = None):
        self.session = session
        self.config = config
        self.requester = requester or Requester(session, config.retry,
                                                connect_timeout=config.connect_timeout,
                                                read_timeout=config.read_timeout)
        self.stall = StallClock(config)
        #: Hedged requests started (a straggling part fetched a second time).
        self.hedges = 0
        #: Small objects held in memory at once (bounded; past it they stream).
        self.memory = MemoryBudget(SMALL_BUDGET)

    def _timeout(self) -> aiohttp.ClientTimeout:
        return self.requester.with_timeouts(sock_read=self.stall.deadline())

    # ------------------------------------------------------------------ public

    async def fetch(self, source: Source, temp: Path, size: int,
                    digest: tuple[str, str] | None, meter: Meter) -> str | None:
        """Download into ``temp`` and return the computed digest (verified against ``digest``).

        Raises :class:`ChecksumError` when the bytes do not match (after one fresh retry),
        :class:`~dandiget.errors.RequestError` or :class:`TransferError` when they cannot be
        fetched. ``temp`` is left in place on those (to resume later) and removed on
        ChecksumError.
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

        async def read(resp: aiohttp.ClientResponse) -> bytes:
            if resp.status == 206:
                raise ResponseError("a partial response (206) to a plain GET")
            if resp.content_length is not None and resp.content_length != size:
                raise ResponseError(f"Content-Length {resp.content_length} != {size} expected")
            data = await resp.read()
            if len(data) != size:
                raise ResponseError(f"body ended after {len(data)} of {size} bytes")
            return data

        for fresh_try in range(2):
            data = await self.requester.send("GET", source, read, headers=_IDENTITY,
                                             timeout=self._timeout(), decompress=False)
            meter.add(len(data))
            if len(data) >= THREAD_THRESHOLD:
                got = await asyncio.to_thread(_digest_bytes, algo, data)
            else:
                got = _digest_bytes(algo, data)
            if got == expected:
                return data
            log.warning("%s: %s mismatch (got %s, expected %s)%s",
                        display_url(source.url or ""), algo, got, expected,
                        "; retrying" if fresh_try == 0 else "")
            meter.rollback(len(data))
        raise ChecksumError(algo, got, expected)

    # ------------------------------------------------------------------ one stream

    def _new_hasher(self, algo: str, size: int) -> Any:
        return DandiETag(size) if algo == "dandi-etag" else hashlib.new(algo)

    async def _fetch_stream(self, source: Source, temp: Path, size: int, algo: str,
                            meter: Meter) -> str:
        hasher = self._new_hasher(algo, size)
        try:
            have = temp.stat().st_size
        except FileNotFoundError:
            have = 0
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT, 0o644)
        writes = _Writes(fd)
        cursor = _Cursor(0)
        try:
            if have > size:
                os.ftruncate(fd, 0)  # longer than the object: cannot be a prefix of it
                have = 0
            if have:
                # Resume: the prefix on disk feeds the hasher first (it is verified too).
                await asyncio.to_thread(_hash_prefix, temp, have, hasher)
                cursor.pos = have
                meter.resumed(have)
            box = [hasher]

            async def body(resp: aiohttp.ClientResponse) -> None:
                try:
                    await self._write_body(resp, writes, cursor.pos, size, box[0], meter,
                                           cursor, ranged=cursor.pos > 0)
                except _Restart as e:
                    log.debug("%s: %s; restarting from byte 0", temp.name, e)
                    os.ftruncate(fd, 0)
                    meter.rollback(cursor.pos)
                    cursor.pos = 0
                    box[0] = self._new_hasher(algo, size)
                    raise ResponseError(str(e)) from None

            if cursor.pos < size:
                await self._send_range(source, body, cursor, size)
            os.ftruncate(fd, size)
        finally:
            await writes.settle()
            os.close(fd)
        return str(box[0].hexdigest())

    async def _send_range(self, source: Source, body: Callable[[aiohttp.ClientResponse],
                          Awaitable[None]], cursor: _Cursor, end: int,
                          *, force_range: bool = False) -> None:
        """One logical GET of bytes [cursor.pos, end) through the executor, resuming inside
        it after a broken connection (the Range follows ``cursor``)."""

        def headers() -> dict[str, str]:
            if cursor.pos > 0 or force_range:
                return {"Accept-Encoding": "identity", "Range": f"bytes={cursor.pos}-{end - 1}"}
            return _IDENTITY

        await self.requester.send("GET", source, body, headers=headers,
                                  progress=lambda: cursor.pos, timeout=self._timeout(),
                                  accept=_BODY_STATUSES, decompress=False)

    async def _write_body(self, resp: aiohttp.ClientResponse, writes: _Writes, start: int,
                          end: int, hasher: _Hasher, meter: Meter, cursor: _Cursor, *,
                          ranged: bool, etag_seen: list[str] | None = None) -> None:
        """Write a response's bytes [start, end) at their offsets, hashing as they arrive.

        ``cursor.pos`` always holds the offset up to which bytes were written *and* hashed,
        also when the stream breaks mid-way, so the next attempt resumes exactly there.
        Raises _Restart when the server answered with a body we cannot place (200 to a Range
        request for a non-zero start, mismatched Content-Range), _ObjectChanged when its
        ETag differs from the other parts'.
        """
        if resp.status == 416 and start > 0 and etag_seen is None:
            raise _Restart("server refused the resume range (416)")
        if resp.status not in (200, 206):
            raise _Restart(f"HTTP {resp.status} to a range request")
        if etag_seen is not None:
            et = resp.headers.get("ETag")
            if et:
                if etag_seen and etag_seen[0] != et:
                    raise _ObjectChanged(f"object changed on the server (ETag {et} != "
                                         f"{etag_seen[0]})")
                if not etag_seen:
                    etag_seen.append(et)
        if ranged:
            if resp.status == 200:
                if not (start == 0 and resp.content_length in (None, end)):
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
        t0 = time.monotonic()
        first = True
        async for chunk in resp.content.iter_chunked(self.config.chunk_size):
            if first:  # how long a healthy response makes us wait: the stall clock learns
                self.stall.seen(time.monotonic() - t0)
                first = False
            n = len(chunk)
            if cursor.pos + n > end:
                raise _Restart(f"server sent more than the {expected} bytes asked for")
            await writes.hash_write(cursor.pos, chunk, hasher)
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
        """Parallel Range requests, journalled at the byte, with straggler hedging.

        The temporary is not preallocated: it grows as bytes land (an early interrupt leaves
        no full-size sparse file). Every ``JOURNAL_INTERVAL`` the file is fdatasync'ed and the
        journal records finished parts (with their md5) and, for parts in flight, how far
        each range got; a resumed run (even after ``kill -9``) continues every range at that
        byte and re-hashes from disk only the parts it did not hash in one go.
        """
        parts = etag_parts(size)
        journal_path = journal_of(temp)
        journal = _load_journal(journal_path, size) if temp.exists() else None
        if journal is None and temp.exists():  # left by ranges on other processes?
            journal = _adopt_range_journals(temp, size, journal_path)
        done: dict[int, str] = dict(journal.parts) if journal else {}
        spans: dict[int, int] = dict(journal.spans) if journal else {}
        fd = os.open(temp, os.O_RDWR | os.O_CREAT, 0o644)
        writes = _Writes(fd)
        if journal is None:
            os.ftruncate(fd, 0)
            journal_path.unlink(missing_ok=True)
        try:
            units = []
            rehash: set[int] = set()
            resumed = sum(parts[i].length for i in done)
            for u in self.plan_units(parts):
                if u.index in done:
                    continue
                got = spans.get(u.offset, u.offset)
                if got > u.offset:
                    resumed += got - u.offset
                    rehash.add(u.index)
                if u.length != parts[u.index].length:
                    rehash.add(u.index)
                units.append((u, _Cursor(got)))
            if resumed:
                meter.resumed(resumed)
            run = _PartsRun(self, source, writes, temp, size, parts, units, rehash, done,
                            meter, journal_path)
            try:
                await run.go()
            except BaseException:
                if not journal_path.exists():  # nothing durable: no sparse file left
                    temp.unlink(missing_ok=True)
                raise
            os.ftruncate(fd, size)
        finally:
            await writes.settle()
            os.close(fd)
        return combine_part_digests(bytes.fromhex(done[p.index]) for p in parts)

    async def fetch_parts(self, source: Source, temp: Path, size: int, first: int, last: int,
                          meter: Meter) -> dict[int, str]:
        """Fetch dandi-etag parts ``first..last`` of a file into the shared ``temp`` at their
        offsets; return each part's md5 (hex).

        One range of a file split over several processes (executors/dask.py): the caller
        combines every range's md5s into the dandi-etag. Finished parts are journalled
        beside ``temp`` (after ``fdatasync``) so a range that is run again (its worker was
        killed) fetches only the parts it had not finished.
        """
        parts = etag_parts(size)[first:last + 1]
        journal_path = range_journal_of(temp, first)
        done: dict[int, str] = {}
        if temp.exists():  # this range's own journal, or one of a single-process run
            for path in (journal_path, journal_of(temp)):
                journal = _load_journal(path, size)
                if journal is not None:
                    done.update((i, d) for i, d in journal.parts.items() if first <= i <= last)
        if done:
            meter.resumed(sum(p.length for p in parts if p.index in done))
        fd = os.open(temp, os.O_RDWR | os.O_CREAT, 0o644)
        writes = _Writes(fd)
        lock = asyncio.Lock()
        todo = [p for p in parts if p.index not in done]

        async def one(part: Part) -> None:
            md5 = await self._fetch_range(source, writes, part, _Cursor(part.offset), meter,
                                          [], hash_it=True)
            async with lock:
                done[part.index] = md5
                await asyncio.to_thread(os.fdatasync, fd)
                await asyncio.to_thread(_save_journal, journal_path, size, dict(done), {})

        try:
            n = max(1, min(self.config.parts_per_file, len(todo)))
            for i in range(0, len(todo), n):
                await asyncio.gather(*(one(p) for p in todo[i:i + n]))
        finally:
            await writes.settle()
            os.close(fd)
        return done

    async def _fetch_range(self, source: Source, writes: _Writes, unit: Part, cursor: _Cursor,
                           meter: Meter, etag_seen: list[str], *, hash_it: bool) -> str:
        """One Range request for [cursor.pos, unit.end), resuming inside it after a broken
        connection; the md5 of the whole unit when ``hash_it`` (it started at its offset)."""
        hasher: _Hasher = hashlib.md5() if hash_it else _NULL_HASHER

        async def body(resp: aiohttp.ClientResponse) -> None:
            try:
                await self._write_body(resp, writes, cursor.pos, unit.end, hasher, meter,
                                       cursor, ranged=True, etag_seen=etag_seen)
            except _ObjectChanged:
                raise
            except _Restart as e:
                raise ResponseError(f"bytes {cursor.pos}-{unit.end - 1}: {e}") from None

        if cursor.pos < unit.end:
            await self._send_range(source, body, cursor, unit.end, force_range=True)
        return hasher.hexdigest() if hash_it else ""  # type: ignore[attr-defined]


class _Unit:
    """One Range unit in flight: its main request and, if it straggles, a hedge."""

    __slots__ = ("cursor", "hedge", "hedge_cursor", "hedge_from", "main", "part", "started")

    def __init__(self, part: Part, cursor: _Cursor):
        self.part = part
        self.cursor = cursor
        self.started = time.monotonic()
        self.main: asyncio.Task[str] | None = None
        self.hedge: asyncio.Task[str] | None = None
        self.hedge_cursor: _Cursor | None = None
        self.hedge_from = 0

    @property
    def covered(self) -> int:
        """Bytes of the unit on disk from its offset without a gap."""
        pos = self.cursor.pos
        if self.hedge_cursor is not None and self.hedge_from <= pos:
            pos = max(pos, self.hedge_cursor.pos)
        return pos


class _PartsRun:
    """The parallel parts of one file: workers, the journal, and the hedger."""

    def __init__(self, t: Transferer, source: Source, writes: _Writes, temp: Path, size: int,
                 parts: list[Part], units: list[tuple[Part, _Cursor]], rehash: set[int],
                 done: dict[int, str], meter: Meter, journal_path: Path):
        self.t = t
        self.source = source
        self.writes = writes
        self.temp = temp
        self.size = size
        self.parts = parts
        self.queue = list(reversed(units))
        self.rehash = rehash
        self.done = done
        self.meter = meter
        self.journal_path = journal_path
        self.left: dict[int, int] = {}
        for u, _c in units:
            self.left[u.index] = self.left.get(u.index, 0) + 1
        self.running: list[_Unit] = []
        #: finished units of parts not finished yet: unit offset -> end
        self.complete: dict[int, int] = {}
        self.durations: list[float] = []
        self.etag_seen: list[str] = []
        self.journal_lock = asyncio.Lock()
        self.n_workers = max(1, min(t.config.parts_per_file, len(units)))
        self.finished = asyncio.Event()

    async def go(self) -> None:
        workers = [asyncio.create_task(self.worker()) for _ in range(self.n_workers)]
        keeper = asyncio.create_task(self.keep_journal())
        hedger = asyncio.create_task(self.hedger())
        try:
            await asyncio.gather(*workers)
        except _ObjectChanged:
            await self._cancel(workers)
            os.ftruncate(self.writes.fd, 0)
            self.journal_path.unlink(missing_ok=True)
            self.meter.rollback(self.size)
            raise TransferError("object changed on the server during the download") from None
        except BaseException:
            await self._cancel(workers)
            raise
        finally:
            self.finished.set()
            await self._cancel([keeper, hedger])

    @staticmethod
    async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def worker(self) -> None:
        while self.queue:
            part, cursor = self.queue.pop()
            u = _Unit(part, cursor)
            whole = part.offset == cursor.pos and part.index not in self.rehash
            u.main = asyncio.create_task(self.t._fetch_range(
                self.source, self.writes, part, cursor, self.meter, self.etag_seen,
                hash_it=whole))
            self.running.append(u)
            try:
                md5 = await self._race(u)
            finally:
                self.running.remove(u)
            self.durations.append(time.monotonic() - u.started)
            self.complete[part.offset] = part.end
            self.left[part.index] -= 1
            if md5 and whole:
                await self.finish_part(part.index, md5)
            elif self.left[part.index] == 0:  # the part's last unit: hash it back from disk
                p = self.parts[part.index]
                digest = await asyncio.to_thread(md5_range_digest, self.temp, p.offset,
                                                 p.length)
                await self.finish_part(part.index, digest.hex())

    async def _race(self, u: _Unit) -> str:
        """The unit's result: its main request's, or its hedge's if that finishes first."""
        assert u.main is not None
        try:
            return await self._first_of(u)
        finally:
            await self._cancel([t for t in (u.main, u.hedge) if t is not None and not t.done()])

    async def _first_of(self, u: _Unit) -> str:
        assert u.main is not None
        while True:
            tasks = [t for t in (u.main, u.hedge) if t is not None and not t.done()]
            finished = [t for t in (u.main, u.hedge) if t is not None and t.done()]
            for t in finished:
                if t.cancelled():
                    continue
                if t.exception() is None:
                    other = u.hedge if t is u.main else u.main
                    if other is not None and not other.done():
                        await self._cancel([other])
                    if t is u.hedge:  # the hedge's bytes the main request never got
                        assert u.hedge_cursor is not None
                        self.meter.add(max(0, u.hedge_cursor.pos - max(u.cursor.pos,
                                                                      u.hedge_from)))
                        self.rehash.add(u.part.index)
                        u.cursor.pos = u.part.end
                        return ""
                    return t.result()
            if not tasks:  # every request failed: the main's error is the unit's error
                err = u.main.exception() if not u.main.cancelled() else None
                if err is None and u.hedge is not None and not u.hedge.cancelled():
                    err = u.hedge.exception()
                raise err or asyncio.CancelledError()
            hedge_before = u.hedge
            waker = asyncio.ensure_future(self._hedged(u, hedge_before))
            try:
                await asyncio.wait([*tasks, waker], return_when=asyncio.FIRST_COMPLETED)
            finally:
                waker.cancel()

    @staticmethod
    async def _hedged(u: _Unit, before: asyncio.Task[str] | None) -> None:
        while u.hedge is before:
            await asyncio.sleep(HEDGE_CHECK_INTERVAL)

    async def hedger(self) -> None:
        """Once every unit has started, give a second request to a unit far behind."""
        while not self.finished.is_set():
            await asyncio.sleep(HEDGE_CHECK_INTERVAL)
            if self.queue or not self.durations:
                continue
            busy = sum(1 + (u.hedge is not None and not u.hedge.done()) for u in self.running)
            if busy >= self.n_workers:
                continue
            typical = statistics.median(self.durations)
            now = time.monotonic()
            for u in list(self.running):
                if u.hedge is not None or u.main is None or u.main.done():
                    continue
                elapsed = now - u.started
                got = u.cursor.pos - u.part.offset
                left = u.part.end - u.cursor.pos
                rate = got / elapsed if elapsed > 0 else 0.0
                eta = left / rate if rate > 0 else float("inf")
                if elapsed > max(1.0, 2 * typical) and eta > max(1.0, 2 * typical):
                    self._start_hedge(u)
                    break

    def _start_hedge(self, u: _Unit) -> None:
        u.hedge_from = u.cursor.pos
        u.hedge_cursor = _Cursor(u.hedge_from)
        rest = Part(u.part.index, u.hedge_from, u.part.end - u.hedge_from)
        self.t.hedges += 1
        log.debug("%s: bytes %d-%d straggle; hedging with a second request", self.temp.name,
                  u.hedge_from, u.part.end - 1)
        u.hedge = asyncio.create_task(self.t._fetch_range(
            self.source, self.writes, rest, u.hedge_cursor, NullMeter(), self.etag_seen,
            hash_it=False))

    async def finish_part(self, index: int, md5: str) -> None:
        async with self.journal_lock:
            self.done[index] = md5
        await self.save_journal()

    async def save_journal(self) -> None:
        """fdatasync, then record what is durable: finished parts and in-flight spans."""
        async with self.journal_lock:
            done = dict(self.done)
            spans = {off: end for off, end in self.complete.items()
                     if self._part_of(off) not in done}
            spans.update({u.part.offset: u.covered for u in self.running
                          if u.covered > u.part.offset})
            await asyncio.to_thread(os.fdatasync, self.writes.fd)
            await asyncio.to_thread(_save_journal, self.journal_path, self.size, done, spans)

    def _part_of(self, offset: int) -> int:
        return offset // self.parts[0].length if self.parts[0].length else 0

    async def keep_journal(self) -> None:
        while True:
            await asyncio.sleep(JOURNAL_INTERVAL)
            await self.save_journal()


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


@dataclass
class _Journal:
    parts: dict[int, str]
    #: unit offset -> the byte up to which it is on disk (durably)
    spans: dict[int, int]


def journal_of(temp: Path) -> Path:
    return temp.with_name(temp.name + ".json")


def range_journal_of(temp: Path, first: int) -> Path:
    """The journal of the range starting at part ``first`` (fetch_parts)."""
    return temp.with_name(f"{temp.name}.r{first}.json")


def _load_journal(path: Path, size: int) -> _Journal | None:
    try:
        data = json.loads(path.read_text())
        if data.get("size") != size:
            return None
        return _Journal({int(k): str(v) for k, v in data.get("parts", {}).items()},
                        {int(k): int(v) for k, v in data.get("spans", {}).items()})
    except (OSError, ValueError, AttributeError):
        return None


def _adopt_range_journals(temp: Path, size: int, journal_path: Path) -> _Journal | None:
    """The finished parts that ranges run by other processes journalled (fetch_parts),
    merged into this file's own journal (the range journals are removed)."""
    found = list(temp.parent.glob(f"{glob_escape(temp.name)}.r*.json"))
    parts: dict[int, str] = {}
    for path in found:
        journal = _load_journal(path, size)
        if journal is not None:
            parts.update(journal.parts)
    if not parts:
        return None
    _save_journal(journal_path, size, parts, {})
    for path in found:
        path.unlink(missing_ok=True)
    return _Journal(parts, {})


def _save_journal(path: Path, size: int, done: dict[int, str], spans: dict[int, int]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"size": size, "parts": done, "spans": spans}))
    os.replace(tmp, path)


def discard(temp: Path) -> None:
    """Remove a temporary file and its part journal."""
    temp.unlink(missing_ok=True)
    journal_of(temp).unlink(missing_ok=True)
    journal_of(temp).with_name(journal_of(temp).name + ".tmp").unlink(missing_ok=True)


_IDENTITY = {"Accept-Encoding": "identity"}
#: Range responses are judged by the body writer (a 416 restarts a resume).
_BODY_STATUSES = frozenset({200, 206, 416})
