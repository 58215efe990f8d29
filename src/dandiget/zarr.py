"""Zarr assets: thousands to millions of small entries, each cheap to fetch.

Per entry: no temporary folder, no lock, no sidecar — one hidden temporary file beside the
target, renamed into place after its md5 matched. The listing streams (1000 keys a
request) into a bounded queue that ``jobs_per_zarr`` workers drain, so transfers start on
the first page. After the entries, local files the server does not have are removed and
the whole tree is verified against ``dandi:dandi-zarr-checksum`` — also when entries were
skipped (dandi-cli then verified nothing), from digests already known where possible.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .bulk import BULK_MAX_SIZE, BulkJob, refused
from .commit import remove_path
from .coordinator import Coordinator, UrlJob
from .digests import (
    ZARR_EXCLUDED,
    file_hexdigest,
    iter_local_zarr,
    walk_local_zarr,
    zarr_checksum,
)
from .errors import ChecksumError, DandigetError
from .events import Done, Message, Planned, Skipped, Started, Verified, ZarrUpdate
from .executors import bulk as bulk_executor
from .listing import RemoteAsset, ZarrEntry
from .options import DownloadExisting
from .paths import check_relpath, temp_name
from .pipeline import drain
from .plan import Action, LocalStat, RemoteFile, decide, decide_after_hash, to_ns
from .transfer import NullMeter
from .units import Fetch, FileUnit

log = logging.getLogger(__name__)

UPDATE_INTERVAL = 0.5

#: Names that make up a Zarr's metadata (``--zarr metadata``), V2 and V3.
ZARR_METADATA_NAMES = frozenset({".zattrs", ".zgroup", ".zarray", ".zmetadata", "zarr.json"})


@dataclass(frozen=True)
class ZarrFilter:
    """One ``--zarr TYPE:PATTERN`` filter; several are OR-combined."""

    type: str  # glob | path | regex | metadata
    pattern: str = ""

    @classmethod
    def parse(cls, spec: str) -> ZarrFilter:
        if spec == "metadata":
            return cls("metadata")
        kind, sep, pattern = spec.partition(":")
        if not sep or kind not in ("glob", "path", "regex"):
            raise ValueError(f"Invalid Zarr filter {spec!r}: expected glob:PATTERN, "
                             "path:PATH, regex:REGEX or metadata")
        if kind == "regex":
            re.compile(pattern)
        return cls(kind, pattern)

    def matches(self, key: str) -> bool:
        if self.type == "metadata":
            return key.rsplit("/", 1)[-1] in ZARR_METADATA_NAMES
        if self.type == "path":
            p = self.pattern.strip("/")
            return key == p or key.startswith(p + "/")
        if self.type == "regex":
            return re.search(self.pattern, key) is not None
        return _glob_match(self.pattern, key)


def _glob_match(pattern: str, key: str) -> bool:
    """``*`` stays within a path segment, ``**`` crosses segments."""
    rx = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            rx += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            rx += ".*"
            i += 2
        elif pattern[i] == "*":
            rx += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            rx += "[^/]"
            i += 1
        else:
            rx += re.escape(pattern[i])
            i += 1
    return re.fullmatch(rx, key) is not None or fnmatch.fnmatchcase(key, pattern)


class ZarrTracker:
    """O(1)-per-entry accounting, emitted as dandi-cli-shaped Zarr records (throttled)."""

    def __init__(self, engine: Coordinator, rec: str, size: int):
        self.engine = engine
        self.rec = rec
        self.size = size
        self.done = self.errored = self.skipped = 0
        self.bytes = 0
        self.last = 0.0
        self.status: str | None = None
        self.first_error: str | None = None

    def message(self) -> str:
        parts = [f"{n} {w}" for n, w in ((self.done, "done"), (self.errored, "errored"),
                                         (self.skipped, "skipped")) if n]
        return ", ".join(parts)

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < UPDATE_INTERVAL:
            return
        self.last = now
        fields: dict[str, Any] = {"done": self.bytes}
        if self.size:
            fields["done%"] = 100.0 * self.bytes / self.size
        if self.status != "downloading" and (self.done or self.errored):
            self.status = fields["status"] = "downloading"
        msg = self.message()
        if msg:
            fields["message"] = msg
        self.engine.emit(ZarrUpdate(self.rec, fields))

    def add_bytes(self, n: int) -> None:
        self.bytes += n

    def entry_done(self) -> None:
        self.done += 1
        self.tick()

    def entry_skipped(self, size: int) -> None:
        self.skipped += 1
        self.bytes += size
        self.tick()

    def entry_failed(self, key: str, e: BaseException) -> None:
        self.errored += 1
        if self.first_error is None:
            self.first_error = f"{key}: {e}"
        self.tick()


class _EntryMeter(NullMeter):
    __slots__ = ("engine", "tracker")

    def __init__(self, engine: Coordinator, tracker: ZarrTracker):
        self.engine = engine
        self.tracker = tracker

    def add(self, n: int) -> None:
        self.tracker.bytes += n
        self.engine.report.bytes_transferred += n

    def rollback(self, n: int) -> None:
        self.tracker.bytes -= n


async def download_zarr(engine: Coordinator, job: UrlJob, asset: RemoteAsset, target: Path,
                        rec: str) -> None:
    """Download (or plan) one Zarr asset into the folder ``target``."""
    opts = engine.options
    assert job.client is not None and asset.zarr_id is not None
    client = job.client
    filters = [f if isinstance(f, ZarrFilter) else ZarrFilter.parse(f) for f in opts.zarr_filters]
    partial = bool(filters)
    if (target.exists() or target.is_symlink()) and not target.is_dir():
        if opts.existing is DownloadExisting.ERROR:
            raise FileExistsError(f"File {str(target)!r} already exists where the Zarr goes")
        if not opts.dry_run:
            await engine.prepare_output(job)
            await asyncio.to_thread(remove_path, target)
    tracker = ZarrTracker(engine, rec, asset.size)
    state = engine.state
    records: dict[str, Any] = {}
    if state is not None:
        if (not partial and opts.existing in (DownloadExisting.REFRESH,
                                              DownloadExisting.OVERWRITE_DIFFERENT,
                                              DownloadExisting.SKIP, DownloadExisting.ERROR)
                and asset.zarr_checksum and target.is_dir()):
            zrow = await asyncio.to_thread(state.get_zarr, rec)
            unchanged = False
            if (zrow is not None and zrow.zarr_id == asset.zarr_id
                    and zrow.checksum == asset.zarr_checksum):
                if zrow.fingerprint is not None:  # one walk, no per-entry records
                    unchanged = (await asyncio.to_thread(tree_fingerprint, target)
                                 == zrow.fingerprint)
                else:  # a state database from before fingerprints
                    records = await asyncio.to_thread(state.load_prefix, rec)
                    unchanged = await asyncio.to_thread(_unchanged, target, rec, records,
                                                        zrow.entries)
            if unchanged:
                reason = "checksum unchanged since the last verified download"
                if opts.dry_run:
                    engine.emit(Planned(rec, "skip", asset.size, reason, kind="zarr"))
                else:
                    engine.emit(Skipped(rec, reason=reason, size=asset.size, kind="zarr"))
                engine.count_skip(rec, "zarr", asset.size, reason)
                return
        if not records:
            records = await asyncio.to_thread(state.load_prefix, rec)
    engine.emit(Started(rec, asset.size, kind="zarr"))
    if not opts.dry_run:
        if asset.embargoed:
            await engine.share_token(client)
        await engine.prepare_output(job, asset.size, rec, present=target)
        target.mkdir(parents=True, exist_ok=True)
        engine.confinement(job.output_dir).check_dir(target)
    listed: dict[str, tuple[str, int]] = {}
    local_md5: dict[str, str] = {}
    target_s = str(target)
    made_dirs: set[str] = {target_s}
    fresh_dirs: set[str] = set()  # created by this run: nothing in them we did not write
    jobs = opts.config.zarr_jobs if opts.dry_run else engine.executor.concurrency(
        opts.config.zarr_jobs)
    base_url = asset.content_url if (asset.content_url and not asset.embargoed) else None
    if base_url and not base_url.endswith("/"):
        base_url += "/"
    would_download = would_bytes = 0

    async def entries() -> AsyncIterator[ZarrEntry]:
        async for item in client.iter_zarr_files(asset.zarr_id,  # type: ignore[arg-type]
                                                 limit=opts.config.zarr_page_size):
            entry = ZarrEntry.from_api(item)
            check_relpath(entry.key, what="Zarr key")
            if entry.key.split("/")[0] in ZARR_EXCLUDED:
                continue
            if filters and not any(f.matches(entry.key) for f in filters):
                continue
            listed[entry.key] = (entry.md5, entry.size)
            yield entry

    redirect = client.url(f"zarr/{asset.zarr_id}/files/?prefix=")

    def fetch_of(key: str) -> Fetch:
        return Fetch((base_url + quote(key)) if base_url else None, redirect, client.instance,
                     key)

    meter = _EntryMeter(engine, tracker)

    async def process(entry: ZarrEntry) -> None:
        nonlocal would_download, would_bytes
        # Strings, not Paths, on this per-entry path (tens of thousands of entries).
        rel_parent, _, name = entry.key.rpartition("/")
        parent_s = f"{target_s}/{rel_parent}" if rel_parent else target_s
        path_s = f"{parent_s}/{name}"
        remote = RemoteFile(entry.size, entry.modified, ("md5", entry.md5))
        # A folder this run created holds only what this run wrote (keys are unique), so
        # skip the stat there: on a fresh download that is one syscall less per entry.
        local = None if parent_s in fresh_dirs else LocalStat.of(path_s)
        erec = f"{rec}/{entry.key}"
        record = records.get(erec)
        decision = decide(opts.existing, local, remote, record)
        if decision.action is Action.HASH:
            got = await asyncio.to_thread(file_hexdigest, Path(path_s), "md5")
            decision = decide_after_hash(remote, got)
            if decision.action is Action.SKIP:
                local_md5[entry.key] = got
                if local is not None and not opts.dry_run:
                    engine.remember(erec, local, "md5", got)
        elif (decision.action is Action.SKIP and record is not None and local is not None
              and record.signature == local.signature()):
            local_md5[entry.key] = record.digest[1]  # the state vouches: no re-hash
        if decision.action is Action.ERROR:
            raise FileExistsError(f"File {path_s!r} already exists")
        if decision.action is Action.SKIP:
            tracker.entry_skipped(entry.size)
            return
        if opts.dry_run:
            would_download += 1
            would_bytes += entry.size
            return
        if parent_s not in made_dirs:  # no await between the check and the add: no race
            parent = Path(parent_s)
            fresh_dirs.update(str(d) for d in _make_dir(parent, target))
            engine.confinement(job.output_dir).check_dir(parent)
            made_dirs.add(parent_s)
        temp_s = f"{parent_s}/{temp_name(name, entry.md5[:8])}"
        mtime_ns = to_ns(entry.modified) if entry.modified is not None else None
        if batcher is not None and base_url is not None and entry.size <= BULK_MAX_SIZE:
            if bulk_after[0] > 0:
                bulk_after[0] -= 1
            else:
                chunk_url = base_url + quote(entry.key)
                if not refusals.avoid(chunk_url):
                    await batcher.add(BulkJob(chunk_url, temp_s, path_s, entry.size, "md5",
                                              entry.md5, mtime_ns), erec)
                    return
        await fetch_entry(FileUnit(erec, Path(path_s), Path(temp_s), entry.size,
                                   ("md5", entry.md5),
                                   mtime_ns, fetch_of(entry.key), "zarr"))

    async def fetch_entry(unit: FileUnit) -> None:
        """The ordinary path: one unit on the executor, through the request executor."""
        result = await engine.run_unit(unit, meter)
        downloaded(unit)
        engine.record(result, unit)

    def downloaded(unit: FileUnit) -> None:
        local_md5[unit.rec[len(rec) + 1:]] = unit.digest[1]
        engine.report.files_downloaded += 1
        engine.report.bytes_downloaded += unit.size
        tracker.entry_done()

    def committed_in_bulk(job: BulkJob, erec: str, stat: tuple[int, int, int, int]) -> None:
        meter.add(job.size)
        local_md5[erec[len(rec) + 1:]] = job.digest
        engine.report.files_downloaded += 1
        engine.report.bytes_downloaded += job.size
        tracker.entry_done()
        engine.remember(erec, LocalStat(*stat), "md5", job.digest)

    async def not_in_bulk(job: BulkJob, erec: str, why: str) -> None:
        key = erec[len(rec) + 1:]
        log.debug("%s: again on the ordinary path (%s)", erec, why)
        if refused(why):
            refusals.refused(job.url)
        try:
            async with retry_slots:  # -J N:M holds for these too
                await fetch_entry(FileUnit(erec, Path(job.target), Path(job.temp), job.size,
                                           ("md5", job.digest), job.mtime_ns, fetch_of(key),
                                           "zarr"))
        except (FileExistsError, asyncio.CancelledError):
            raise
        except Exception as e:
            tracker.entry_failed(key, e)

    # Public chunks stream to worker processes (executors/bulk.py); the rest, and
    # whatever a worker could not commit, one by one through the executor.
    # The first entries take the ordinary path: a small Zarr never starts a worker, and
    # the run learns meanwhile whether the content host refuses unsigned reads.
    runner = None if (opts.dry_run or base_url is None) else engine.bulk_runner()
    batcher = runner.batcher(committed_in_bulk, not_in_bulk) if runner else None
    bulk_after = [bulk_executor.ORDINARY_FIRST]
    refusals = engine.refusals
    retry_slots = asyncio.Semaphore(jobs)

    async def handle(entry: ZarrEntry) -> None:
        try:
            await process(entry)
        except (FileExistsError, asyncio.CancelledError):
            raise  # dandi-cli aborts the whole Zarr on an existing entry under -e error
        except Exception as e:
            tracker.entry_failed(entry.key, e)

    try:
        await drain(entries(), handle, workers=jobs, queue_size=jobs * 4)
        if batcher is not None:
            await batcher.finish()
    finally:
        if batcher is not None:
            await batcher.cancel()

    if opts.dry_run:
        action = "download" if would_download else "skip"
        engine.emit(Planned(rec, action, would_bytes,
                            f"{would_download} entr{'y' if would_download == 1 else 'ies'} to "
                            f"download, {tracker.skipped} skipped",
                            kind="zarr"))
        engine.report.files_downloaded += would_download
        engine.report.bytes_downloaded += would_bytes
        engine.report.files_skipped += tracker.skipped
        engine.outcome(rec, "would-download" if would_download else "would-skip", "zarr",
                       would_bytes, tracker.message())
        return

    tracker.tick(force=True)
    if tracker.errored:
        raise DandigetError(f"{tracker.message()}; first error: {tracker.first_error}")

    if not partial:
        deleted = await asyncio.to_thread(_remove_extras, target, set(listed))
        if deleted:
            engine.emit(Message(rec, status="deleting extra files"))
    # Verify the tree against the server's checksum, whatever was skipped.
    checksum_note = ""
    if partial:
        checksum_note = "partial download: Zarr checksum not verified"
        engine.emit(Verified(rec, "-"))
    elif asset.zarr_checksum is None:
        checksum_note = "server has no Zarr checksum yet: not verified"
        engine.emit(Verified(rec, "-"))
    else:
        local = await asyncio.to_thread(_local_checksum, target, listed, local_md5)
        if local != asset.zarr_checksum:
            raise ChecksumError("Zarr checksum", local, asset.zarr_checksum)
        engine.emit(Verified(rec, "ok"))
        if state is not None:
            fingerprint = await asyncio.to_thread(tree_fingerprint, target)
            await asyncio.to_thread(state.record_zarr, rec, asset.zarr_id, local, len(listed),
                                    fingerprint)
    message = tracker.message() or "empty Zarr"
    if checksum_note:
        message = f"{message}; {checksum_note}"
    if tracker.done == 0 and tracker.skipped:
        engine.emit(Skipped(rec, reason=message, size=asset.size, kind="zarr"))
        engine.count_skip(rec, "zarr", asset.size, message)
        return
    engine.emit(Done(rec, asset.size, message=message, kind="zarr"))
    engine.outcome(rec, "downloaded", "zarr", asset.size, message)


def _unchanged(root: Path, rec: str, records: dict[str, Any], expected: int) -> bool:
    """True when the local Zarr holds exactly the recorded files, none touched since."""
    seen = 0
    for key, path in iter_local_zarr(root):
        r = records.get(f"{rec}/{key}")
        if r is None:
            return False
        try:
            st = path.stat()
        except OSError:
            return False
        if (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns) != r.signature:
            return False
        seen += 1
    return seen == expected


def tree_fingerprint(root: Path) -> str:
    """A hash of every local file's key and stat signature (size, mtime, inode, ctime).

    Recorded when a Zarr is verified; equal on a later run means no file was added, removed,
    replaced or written since (writing changes ctime, even when mtime is put back), so the
    Zarr can be skipped whole after one ``lstat`` per file and no per-entry bookkeeping.
    """
    rows = []
    for key, de in walk_local_zarr(root):
        st = de.stat(follow_symlinks=False)
        rows.append(f"{key}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_ctime_ns}")
    rows.sort()
    h = hashlib.blake2b(digest_size=16)
    h.update("\n".join(rows).encode("utf-8", "surrogateescape"))
    return f"{h.hexdigest()}-{len(rows)}"


def _make_dir(parent: Path, root: Path) -> list[Path]:
    """Create an entry's folder; a local file in the way (inside the Zarr) is replaced.

    Returns the folders that did not exist before.
    """
    created = []
    probe = parent
    while probe != root and not probe.exists():
        created.append(probe)
        probe = probe.parent
    if probe != root and not probe.is_dir():
        probe.unlink()
        created.append(probe)
    parent.mkdir(parents=True, exist_ok=True)
    return created


def _remove_extras(root: Path, keys: set[str]) -> int:
    """Delete local files the server does not list; prune folders left empty."""
    deleted = 0
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        rel_dir = os.path.relpath(dirpath, root)
        rel_parts = [] if rel_dir == "." else rel_dir.split(os.sep)
        if any(p in ZARR_EXCLUDED for p in rel_parts):
            continue
        for name in filenames:
            if name in ZARR_EXCLUDED or (rel_parts == [] and name in ZARR_EXCLUDED):
                continue
            key = "/".join([*rel_parts, name])
            if key not in keys:
                os.unlink(os.path.join(dirpath, name))
                deleted += 1
        if rel_parts:
            try:
                os.rmdir(dirpath)  # only succeeds when empty
            except OSError:
                pass
    return deleted


def _local_checksum(root: Path, listed: dict[str, tuple[str, int]],
                    known: dict[str, str]) -> str:
    """Checksum of the local tree for the listed keys, hashing only unverified files."""
    entries = []
    for key, (_md5, listed_size) in listed.items():
        md5 = known.get(key)
        if md5 is not None:  # committed or verified by this run: its size is the listed one
            entries.append((key, md5, listed_size))
            continue
        path = root.joinpath(*key.split("/"))
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        entries.append((key, file_hexdigest(path, "md5"), size))
    return zarr_checksum(entries)


__all__ = ["ZarrFilter", "download_zarr"]
