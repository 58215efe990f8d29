"""The coordinator: the one place that merges what units produced.

It alone writes ``.dandiget/state.sqlite``, fills the report and emits the events; it takes
the output folder's lock and checks free space before the first byte; it combines the part
md5s of a range-split file into its dandi-etag and commits the file once every range is in.
Units themselves (units.py) run on an executor (executors/), here or on other machines.
The engine (engine.py) plans a run's URLs on top of it; zarr.py plans a Zarr's entries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from . import __version__
from .api import ApiClient
from .bulk import BULK_MAX_SIZE, BulkJob, Limits, refused
from .commit import commit_file
from .digests import combine_part_digests
from .errors import ChecksumError
from .events import Event, Failed, Listener, Message, Progress, Verified
from .executors import Executor
from .executors.bulk import BulkRunner, bulk_mode
from .executors.local import LocalExecutor
from .executors.work import UnitInterrupted, WorkerContext, mark_verified, to_the_end
from .instances import Instance
from .listing import RemoteAsset, known_total_size
from .options import DownloadOptions
from .paths import Confinement
from .plan import LocalStat
from .report import DownloadReport, FileOutcome
from .resolve import ParsedURL, URLKind, relative_download_path
from .space import FullDisk, NotEnoughSpace, SpaceCheck, bytes_under
from .state import FileRow, LocalState, OutputLock
from .transfer import Meter, RefusalMemo, Transferer, discard, range_journal_of
from .units import Fetch, FileUnit, RangeUnit, Result, Unit

log = logging.getLogger("dandiget")

#: Small public files a run fetches on the ordinary path before it sends them to bulk
#: workers (executors/bulk.py).
BULK_AFTER_FILES = 64

PROGRESS_INTERVAL = 0.2  # seconds between progress events for one file


@dataclass
class UrlJob:
    """One URL's slice of the run (dandi-cli's ``Downloader``)."""

    parsed: ParsedURL
    output_dir: Path
    prefix: str
    #: Relative (posix) paths of every selected asset, for ``--sync``.
    asset_paths: set[str] = field(default_factory=set)
    client: ApiClient | None = None
    dandiset: dict[str, Any] | None = None
    version: str | None = None
    #: State records below this URL's prefix, keyed by path relative to ``output_dir``.
    records: dict[str, Any] = field(default_factory=dict)
    #: Folders seen missing when this job first looked (asset paths within a job are unique,
    #: so nothing in them can be a local copy of a later asset): saves a failing ``lstat``
    #: per asset on a first download or a dry run of a large dandiset.
    missing_dirs: dict[Path, bool] = field(default_factory=dict)

    def local_stat(self, target: Path) -> LocalStat | None:
        parent = target.parent
        missing = self.missing_dirs.get(parent)
        if missing:
            return None
        local = LocalStat.of(target)
        if local is None and missing is None:
            self.missing_dirs[parent] = not os.path.isdir(parent)
        return local

    @property
    def output_path(self) -> Path:
        return self.output_dir / self.prefix if self.prefix else self.output_dir

    def record_path(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel


class FileMeter:
    """Counts one file's bytes into the report and emits throttled Progress events."""

    __slots__ = ("done", "engine", "last", "path", "size")

    def __init__(self, engine: Coordinator, path: str, size: int | None):
        self.engine = engine
        self.path = path
        self.size = size
        self.done = 0
        self.last = 0.0

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_INTERVAL or self.done == self.size:
            self.last = now
            self.engine.emit(Progress(self.path, self.done, self.size))

    def add(self, n: int) -> None:
        self.done += n
        self.engine.report.bytes_transferred += n
        self._tick()

    def resumed(self, n: int) -> None:
        self.done += n
        self._tick()

    def rollback(self, n: int) -> None:
        self.done = max(0, self.done - n)

    def verified(self) -> None:
        """The bytes matched: the file is about to be renamed into place."""
        self.engine.emit(Verified(self.path, "ok"))
        self.engine.emit(Message(self.path, status="setting mtime"))



class Coordinator:
    """Merges results into the state, the report and the events; owns the output lock."""

    def __init__(self, options: DownloadOptions, listeners: Sequence[Listener] = (),
                 executor: Executor | None = None):
        self.options = options
        self.listeners = list(listeners)
        self.report = DownloadReport(dry_run=options.dry_run)
        self.session: aiohttp.ClientSession | None = None
        self.transferer: Transferer | None = None
        self._clients: dict[Instance, ApiClient] = {}
        self._totals_files = 0
        self._totals_bytes = 0
        self.state: LocalState | None = None
        self._confinements: dict[Path, Confinement] = {}
        #: Content prefixes that refused unsigned reads: go to the API first there.
        self._refusals = RefusalMemo()
        #: The download root whose lock :meth:`prepare_output` takes (None: no lock wanted).
        self._out: Path | None = None
        self._output_lock: OutputLock | None = None
        self._output_ready = False
        self._output_guard = asyncio.Lock()
        self._space: SpaceCheck | None = None
        self._space_guard = asyncio.Lock()
        self._space_error: NotEnoughSpace | None = None
        self.full_disk = FullDisk(lambda rec, msg: self.emit(Message(rec, message=msg)))
        #: id(job) -> the job's known total size (None: not known before its listing ends).
        self._job_totals: dict[int, int | None] = {}
        #: Runs the units (None: a local executor on this run's session, made on first use).
        self._executor = executor
        self._bulk: BulkRunner | None = None
        self._small_files = 0

    # ------------------------------------------------------------------ plumbing

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)

    def client_for(self, instance: Instance) -> ApiClient:
        assert self.session is not None
        client = self._clients.get(instance)
        if client is None:
            requester = self.transferer.requester if self.transferer is not None else None
            client = ApiClient(instance, self.session, retry=self.options.config.retry,
                               requester=requester)
            self._clients[instance] = client
        return client

    def outcome(self, path: str, status: str, kind: str, size: int = 0, message: str = "") -> None:
        self.report.add(FileOutcome(path, status, kind, size, message))  # type: ignore[arg-type]

    async def prepare_output(self, job: UrlJob | None = None, size: int = 0, what: str = "",
                             *, present: Path | None = None) -> None:
        """Just before a write: check free space for ``size`` bytes of ``job`` (``present``:
        a folder whose bytes are already there), then take the output folder's lock (once).

        Nothing is created earlier, so a run that fails before writing a file (unknown
        Dandiset, missing token, unreachable server, too little space) leaves the output
        folder as it was.
        """
        if self._out is None:
            return
        if job is not None and not self.options.ignore_free_space:
            async with self._space_guard:
                await self._check_space(self._out, job, size, what, present)
        if self._output_ready:
            return
        async with self._output_guard:
            if not self._output_ready:
                self._output_lock = await self._lock(self._out)
                self._output_ready = True

    async def _check_space(self, out: Path, job: UrlJob, size: int, what: str,
                           present: Path | None) -> None:
        """space.py's rule: a job's known total once, else each file before its first byte."""
        if self._space_error is not None:  # other workers must not write either
            raise self._space_error
        space = self._space = self._space or SpaceCheck(out)
        key = id(job)
        if key not in self._job_totals:
            total = self._job_totals[key] = await self._known_total(job)
            if total is not None:
                area = job.output_path
                if job.parsed.kind is URLKind.FOLDER:  # where the folder's files land
                    probe = relative_download_path(
                        job.parsed, (job.parsed.path or "").rstrip("/") + "/x",
                        preserve_tree=self.options.preserve_tree)
                    area = area / probe.rpartition("/")[0]
                rel = area.relative_to(out).as_posix()
                recorded = (await asyncio.to_thread(self.state.recorded_bytes,
                                                    "" if rel == "." else rel)
                            if self.state is not None else 0)
                try:
                    await asyncio.to_thread(
                        space.check_total, total, area,
                        job.parsed.original or f"Dandiset {job.parsed.dandiset_id}", recorded)
                except NotEnoughSpace as e:
                    self._space_error = e
                    raise
        if self._job_totals[key] is None and size:
            if present is not None:
                size = max(0, size - await asyncio.to_thread(bytes_under, present))
            try:
                space.check_file(size, what or "the next file")
            except NotEnoughSpace as e:
                self._space_error = e
                raise

    async def _known_total(self, job: UrlJob) -> int | None:
        """The bytes a job writes, when known before its listing ends (listing.py)."""
        if not self.options.get_assets:
            return 0
        if job.client is None or not job.version:
            return None
        return await known_total_size(job.client, job.parsed, job.version)

    async def _lock(self, out: Path) -> OutputLock | None:
        """Wait until no other dandiget process writes into ``out``."""
        lock = OutputLock(out)
        waited = 0.0
        try:
            while not lock.try_acquire():
                if waited % 10 < 0.2:
                    log.warning("Waiting for another dandiget process (pid %s) that is writing "
                                "into %s", lock.holder(), out)
                await asyncio.sleep(0.2)
                waited += 0.2
        except OSError as e:  # e.g. a read-only output folder: the write will say so
            log.debug("No lock in %s: %s", out, e)
            return None
        return lock

    def fail(self, rec: str, e: BaseException, kind: str) -> None:
        msg = str(e) or type(e).__name__
        client_tokens = [c.token for c in self._clients.values() if c.token]
        for tok in client_tokens:
            msg = msg.replace(tok, "<redacted>")
        error_type = getattr(e, "error_type", None) or type(e).__name__
        self.emit(Failed(rec, message=msg, error_type=error_type,
                         checksum_differs=error_type == "ChecksumError",
                         kind=kind))  # type: ignore[arg-type]
        self.outcome(rec, "would-fail" if self.options.dry_run else "failed", kind, 0, msg)

    def count_skip(self, rec: str, kind: str, size: int, reason: str) -> None:
        self.report.files_skipped += 1
        self.report.bytes_skipped += size
        self.outcome(rec, "would-skip" if self.options.dry_run else "skipped", kind, size, reason)

    def remember(self, rec: str, stat: LocalStat, algo: str, digest: str,
                 asset_id: str | None = None) -> None:
        """Record a verified file in the local state (batched)."""
        if self.state is not None:
            self.state.record(FileRow(rec, stat, algo, digest, asset_id))

    def fetch_for(self, job: UrlJob, asset: RemoteAsset) -> Fetch:
        """Data straight from the content host; embargoed data via the API redirect."""
        assert job.client
        url = None if asset.embargoed else asset.content_url
        return Fetch(url, asset.download_url, job.client.instance)

    def confinement(self, root: Path) -> Confinement:
        """The (cached) check that writes under ``root`` stay under it."""
        conf = self._confinements.get(root)
        if conf is None:
            root.mkdir(parents=True, exist_ok=True)
            conf = self._confinements[root] = Confinement(root)
        return conf

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            assert self.transferer is not None
            self._executor = LocalExecutor(self.worker_context())
        return self._executor

    @property
    def refusals(self) -> RefusalMemo:
        """Content prefixes that refused unsigned reads in this run."""
        return self._refusals

    def bulk_runner(self) -> BulkRunner | None:
        """The pool for batches of small public files (executors/bulk.py), made on first
        use; None where units run elsewhere (Dask) or pycurl is missing or it is turned off
        (``DANDIGET_BULK=0``)."""
        if self._bulk is None:
            mode = bulk_mode()
            if mode is None or not isinstance(self.executor, LocalExecutor):
                return None
            cfg = self.options.config
            limits = Limits(cfg.zarr_jobs if cfg.jobs_per_zarr else cfg.max_connections,
                            cfg.connect_timeout, cfg.read_timeout, f"dandiget/{__version__}")
            self._bulk = BulkRunner(limits, mode)
        return self._bulk

    async def close_bulk(self) -> None:
        if self._bulk is not None:
            await self._bulk.close()

    def worker_context(self) -> WorkerContext:
        """This process's context for units: the run's session, clients and memo."""
        assert self.transferer is not None
        return WorkerContext(self.transferer, self.client_for, self._refusals)

    async def share_token(self, client: ApiClient) -> None:
        """Before units that need the API's redirect with auth (embargoed data): hand the
        token to an executor whose workers cannot ask this process for it."""
        share = getattr(self.executor, "share_token", None)
        if share is None:
            return
        if client.token is None:
            await client.authenticate()
        await share(client.instance, client.token)

    async def run_file(self, unit: FileUnit, meter: Meter) -> Result:
        """A file in one piece: a small public one on a bulk worker (one attempt; what it
        could not commit takes the ordinary path), any other through the executor."""
        job = self._bulk_job(unit)
        if job is not None:
            runner = self.bulk_runner()
            assert runner is not None
            outcome = await runner.fetch(job)
            stat, why = outcome or (None, "")
            if stat is not None:
                meter.add(unit.size)
                mark_verified(meter)
                return Result(unit.rec, digest=unit.digest[1], stat=stat, bytes=unit.size)
            if why:
                log.debug("%s: again on the ordinary path (%s)", unit.rec, why)
            if refused(why):
                self._refusals.refused(job.url)
        return await self.run_unit(unit, meter)

    def _bulk_job(self, unit: FileUnit) -> BulkJob | None:
        """The unit as a bulk job, if it may be one: public, small, in one part, not to be
        fsynced, past the run's first :data:`BULK_AFTER_FILES` such files (a download of
        a few files never starts a worker) and not under a prefix that refused."""
        url = unit.source.url
        algo, digest = unit.digest
        if (url is None or unit.size > BULK_MAX_SIZE or unit.sync
                or (algo == "dandi-etag" and not digest.endswith("-1"))
                or self._refusals.avoid(url)):
            return None
        self._small_files += 1
        if self._small_files <= BULK_AFTER_FILES or self.bulk_runner() is None:
            return None
        return BulkJob(url, str(unit.temp), str(unit.target), unit.size, algo, digest,
                       unit.mtime_ns)

    async def run_unit(self, unit: Unit, meter: Meter) -> Result:
        """Run one unit on the executor; a file committed before a cancellation is still
        recorded (a rerun knows it is ours)."""
        try:
            return await self.executor.run(unit, meter)
        except UnitInterrupted as e:
            self.record(e.result, unit)
            raise asyncio.CancelledError from None

    def record(self, result: Result, unit: Unit, asset_id: str | None = None) -> None:
        """Record a committed file of a unit's result in the state (no re-read)."""
        if result.stat is not None and isinstance(unit, FileUnit):
            self.remember(result.rec, LocalStat(*result.stat), unit.digest[0], result.digest,
                          asset_id)

    async def fetch_ranges(self, unit: FileUnit, ranges: list[tuple[int, int]],
                           meter: Meter) -> Result:
        """A large file as ranges of dandi-etag parts, run as separate units (on several
        workers), then combined into the dandi-etag from their part md5s (no re-read) and
        committed once every range is in — through the one commit path."""
        temp, target = unit.temp, unit.target
        for fresh_try in range(2):  # as the one-process path: a mismatch gets one fresh try
            results = await asyncio.gather(*(
                self.run_unit(RangeUnit(unit.rec, temp, unit.size, first, last, unit.source),
                              meter) for first, last in ranges))
            md5s = dict(p for r in results for p in r.part_md5s)
            etag = combine_part_digests(bytes.fromhex(md5s[i]) for i in sorted(md5s))
            if etag == unit.digest[1]:
                break
            log.warning("%s: dandi-etag mismatch (got %s, expected %s)%s", unit.rec, etag,
                        unit.digest[1], "; retrying from scratch" if fresh_try == 0 else "")
            await asyncio.to_thread(discard_ranges, temp, ranges)
            meter.rollback(unit.size)
        else:
            raise ChecksumError(unit.digest[0], etag, unit.digest[1])
        mark_verified(meter)
        interrupted = await to_the_end(asyncio.to_thread(
            commit_file, temp, target, unit.mtime_ns, sync=unit.sync, size=unit.size))
        await asyncio.to_thread(discard_ranges, temp, ranges)
        stat = LocalStat.of(target)
        result = Result(unit.rec, digest=etag, stat=stat.signature() if stat else None)
        if interrupted:
            self.record(result, unit)
            raise asyncio.CancelledError
        return result



def discard_ranges(temp: Path, ranges: list[tuple[int, int]]) -> None:
    """Remove a file split into ranges: its temporary and every range's journal."""
    discard(temp)  # and a journal a single-process run left
    for first, _last in ranges:
        range_journal_of(temp, first).unlink(missing_ok=True)
