"""The engine: resolve -> list -> plan -> transfer -> verify -> commit -> report.

It emits typed events (``events.py``) and fills a :class:`DownloadReport`; it never prints.
Each selected asset is an independent work unit, pulled from a bounded queue by ``jobs``
workers while the listing is still streaming in. All HTTP goes through one aiohttp session
whose connector is the run's single connection budget.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp

from . import __version__
from .api import ApiClient
from .commit import commit_file, prepare_parent, remove_path
from .config import TransferConfig
from .dandiset_yaml import read_dandiset_yaml, write_dandiset_yaml
from .digests import file_dandi_etag
from .errors import (
    AuthenticationError,
    DandigetError,
    DownloadFailed,
    HTTPError,
    UnsafePathError,
)
from .events import (
    Deleted,
    Done,
    Downloading,
    Event,
    Failed,
    Listener,
    Message,
    Planned,
    Progress,
    Skipped,
    Started,
    Totals,
    Verified,
)
from .instances import Instance
from .listing import (
    BadAsset,
    RemoteAsset,
    iter_selected_assets,
    known_total_size,
    parse_datetime,
)
from .localtree import find_local_assets
from .options import DownloadExisting, PathType, SyncMode
from .paths import Confinement, safe_join, temp_name
from .pipeline import drain
from .plan import Action, LocalStat, RemoteFile, decide, decide_after_hash, to_ns
from .report import DownloadReport, FileOutcome
from .requests import REDIRECT_STATUSES, display_url
from .resolve import (
    ParsedURL,
    URLKind,
    in_download_area,
    output_prefix,
    relative_download_path,
    resolve_url,
)
from .space import NotEnoughSpace, SpaceCheck, bytes_under
from .state import FileRow, LocalState, OutputLock
from .transfer import SMALL_OBJECT, RefusalMemo, Source, Transferer, discard, write_verified

log = logging.getLogger("dandiget")

PROGRESS_INTERVAL = 0.2  # seconds between progress events for one file
#: Files at least this large are fsynced before the rename, so that even a power loss
#: cannot leave a truncated large file at its final path. Smaller files rely on the
#: filesystem's ordering (and are re-checked by size on the next run).
FSYNC_THRESHOLD = 8 << 20


@dataclass
class DownloadOptions:
    """What to download and how; the CLI and ``download()`` both build one."""

    existing: DownloadExisting = DownloadExisting.ERROR
    jobs: int = 6
    jobs_per_zarr: int | None = None
    get_metadata: bool = True
    get_assets: bool = True
    preserve_tree: bool = False
    sync: SyncMode | None = None
    path_type: PathType = PathType.EXACT
    dry_run: bool = False
    #: Raise the first per-file exception instead of recording it (dandi-cli's debug mode).
    fail_fast: bool = False
    #: ``--zarr TYPE:PATTERN`` filters (see zarr.py); empty means whole Zarrs.
    zarr_filters: tuple[Any, ...] = ()
    config: TransferConfig = field(default_factory=TransferConfig)
    #: How ``--sync ask`` asks; returns the user's answer. None reads stdin.
    prompt: Any = None
    #: Skip the free-space check before the first byte (space.py).
    ignore_free_space: bool = False


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


def flatten_urls(urls: Any) -> list[str]:
    """Strings, or (nested) lists/tuples/generators of strings, as one list."""
    if isinstance(urls, str):
        return [urls]
    out: list[str] = []
    for u in urls:
        out.extend(flatten_urls(u))
    return out


class FileMeter:
    """Counts one file's bytes into the report and emits throttled Progress events."""

    __slots__ = ("done", "engine", "last", "path", "size")

    def __init__(self, engine: Engine, path: str, size: int | None):
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


class Engine:
    """Runs one download: many URLs, one session, one report."""

    def __init__(self, options: DownloadOptions, listeners: Sequence[Listener] = ()):
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
        #: id(job) -> the job's known total size (None: not known before its listing ends).
        self._job_totals: dict[int, int | None] = {}

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

    # ------------------------------------------------------------------ run

    async def run(self, urls: Any, output_dir: str | Path) -> DownloadReport:
        url_list = flatten_urls(urls)
        if not url_list:
            raise NotImplementedError("No URLs were provided.  Cannot download anything")
        out = Path(output_dir)
        self.state = LocalState(out, readonly=self.options.dry_run)
        return await self._run(url_list, out)

    async def _run(self, url_list: list[str], out: Path) -> DownloadReport:
        assert self.state is not None
        cfg = self.options.config
        connector = aiohttp.TCPConnector(limit=cfg.max_connections, limit_per_host=0,
                                         ttl_dns_cache=300)
        async with aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": f"dandiget/{__version__}"},
            auto_decompress=True,
        ) as session:
            self.session = session
            self.transferer = Transferer(session, cfg)
            glob = self.options.path_type is PathType.GLOB
            # Every URL is parsed before anything is written (dandi-cli does the same).
            parsed_urls = [await resolve_url(u, glob=glob, session=session) for u in url_list]
            jobs = [
                UrlJob(p, out, output_prefix(p, preserve_tree=self.options.preserve_tree))
                for p in parsed_urls
            ]
            # The lock (and .dandiget/) comes with the first write: see prepare_output.
            self._out = None if self.options.dry_run else out
            try:
                for job in jobs:
                    await self._run_url(job)
                if self.options.sync:
                    await self._sync(jobs)
            finally:
                self.report.finished = time.time()
                await asyncio.to_thread(self.state.close)
                if self._output_lock is not None:
                    self._output_lock.release()
                    self._output_lock = None
        if self.report.errors:
            n = len(self.report.errors)
            first = self.report.errors[0]
            log.error("Encountered %d error%s while downloading. The first error: %s: %s",
                      n, "" if n == 1 else "s", first.path, first.message)
            raise DownloadFailed(
                f"Encountered {n} error{'' if n == 1 else 's'} while downloading.", self.report)
        return self.report

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

    async def _run_url(self, job: UrlJob) -> None:
        parsed = job.parsed
        client = job.client = self.client_for(parsed.instance)
        if parsed.kind is not URLKind.BASE_ASSET_ID:  # a bare asset id has no dandiset
            assert parsed.dandiset_id
            job.dandiset = await client.get_dandiset(parsed.dandiset_id)
            job.version = await self._pick_version(client, job.dandiset, parsed)
        is_yaml_item = parsed.kind is URLKind.ITEM and parsed.path == "dandiset.yaml"
        wants_yaml = (parsed.kind is URLKind.DANDISET or is_yaml_item
                      or self.options.preserve_tree) and parsed.dandiset_id is not None
        if wants_yaml and self.options.get_metadata:
            await self._dandiset_yaml(job)
            if is_yaml_item:
                return
        if not self.options.get_assets:
            return
        if self.state is not None and not parsed.is_single_asset:
            job.records = await asyncio.to_thread(self.state.load_prefix, job.prefix,
                                                  blobs_only=True)
        await self._download_assets(job)

    async def _pick_version(self, client: ApiClient, dandiset: dict[str, Any],
                            parsed: ParsedURL) -> str:
        """dandi-cli's rule: the URL's version, else the latest published, else the draft."""
        assert parsed.dandiset_id
        wanted = parsed.version_id
        published = dandiset.get("most_recent_published_version") or None
        if wanted is None:
            return str(published["version"]) if published else "draft"
        if wanted == "draft" or (published and published.get("version") == wanted):
            return wanted
        await client.get_version_info(parsed.dandiset_id, wanted)  # raises "No such version"
        return wanted

    # ------------------------------------------------------------------ dandiset.yaml

    async def _dandiset_yaml(self, job: UrlJob) -> None:
        assert job.client and job.dandiset and job.version and job.parsed.dandiset_id
        metadata = await job.client.get_version_metadata(job.parsed.dandiset_id, job.version)
        rec = job.record_path("dandiset.yaml")
        if not metadata:
            log.warning("Got completely empty metadata record for dandiset, not producing "
                        "dandiset.yaml")
            return
        target = job.output_path / "dandiset.yaml"
        mtime = parse_datetime(job.dandiset.get("modified"))
        self._totals_files += 1  # the summary counts dandiset.yaml as a file, like a row
        self.emit(Totals("", self._totals_files, self._totals_bytes))
        self.emit(Message(rec, message="updating"))
        try:
            existing_yaml = None
            exists = target.exists() or target.is_symlink()
            if exists:
                existing_yaml = read_dandiset_yaml(target)
                if existing_yaml == metadata:
                    self.emit(Skipped(rec, reason="no change", kind="dandiset.yaml"))
                    self._count_skip(rec, "dandiset.yaml", 0, "no change")
                    return
                mode = self.options.existing
                if mode is DownloadExisting.ERROR:
                    self.emit(Failed(rec, message="already exists", error_type="FileExistsError",
                                     kind="dandiset.yaml"))
                    self.outcome(rec, "would-fail" if self.options.dry_run else "failed",
                                 "dandiset.yaml", 0, "already exists")
                    return
                local = LocalStat.of(target)
                newer = (mtime is not None and local is not None
                         and local.mtime_ns >= to_ns(mtime))
                if mode is DownloadExisting.SKIP or (mode is DownloadExisting.REFRESH and newer):
                    self.emit(Skipped(rec, reason="already exists", kind="dandiset.yaml"))
                    self._count_skip(rec, "dandiset.yaml", 0, "already exists")
                    return
            if self.options.dry_run:
                self.emit(Planned(rec, "download", None, "metadata", kind="dandiset.yaml"))
                self.report.files_downloaded += 1
                self.outcome(rec, "would-download", "dandiset.yaml")
                return
            await self.prepare_output(job)
            job.output_path.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(write_dandiset_yaml, target, metadata,
                                    mtime or datetime.now(timezone.utc))
            size = target.stat().st_size
            self._totals_bytes += size
            self.emit(Totals("", self._totals_files, self._totals_bytes))
            self.report.files_downloaded += 1
            self.report.bytes_downloaded += size
            self.emit(Done(rec, size, message="updated" if existing_yaml != metadata else "same",
                           kind="dandiset.yaml"))
            self.outcome(rec, "downloaded", "dandiset.yaml", size)
        except (OSError, ValueError) as e:
            self._fail(rec, e, "dandiset.yaml")

    # ------------------------------------------------------------------ assets

    async def _download_assets(self, job: UrlJob) -> None:
        async def handle(item: dict[str, Any]) -> None:
            await self._process_asset(job, item)

        jobs = max(1, self.options.jobs)
        await drain(self._listed(job), handle, workers=jobs, queue_size=max(2 * jobs, 16))

    async def _listed(self, job: UrlJob) -> AsyncIterator[dict[str, Any]]:
        """The URL's assets as they are listed, keeping the running totals up to date."""
        assert job.client
        try:
            async for item in iter_selected_assets(
                    job.client, job.parsed, job.parsed.dandiset_id, job.version,
                    page_size=self.options.config.asset_page_size):
                size = item.get("size")
                self._totals_files += 1
                self._totals_bytes += size if isinstance(size, int) else 0
                self.emit(Totals("", self._totals_files, self._totals_bytes))
                yield item
        finally:
            self.emit(Totals("", self._totals_files, self._totals_bytes, listing_done=True))

    async def _process_asset(self, job: UrlJob, item: dict[str, Any]) -> None:
        assert job.client
        raw_path = item.get("path") if isinstance(item, dict) else None
        try:
            asset = RemoteAsset.from_api(item, job.client.instance.api)
            rel = relative_download_path(job.parsed, asset.path,
                                         preserve_tree=self.options.preserve_tree)
            job.asset_paths.add(rel)
            rec = job.record_path(rel)
            target = safe_join(job.output_path, rel)
        except (BadAsset, UnsafePathError, ValueError) as e:
            rec = job.record_path(str(raw_path or item.get("asset_id", "?")))
            self._fail(rec, e, "blob")
            return
        kind = "zarr" if asset.is_zarr else "blob"
        try:
            if asset.is_zarr:
                from .zarr import download_zarr

                await download_zarr(self, job, asset, target, rec)
            else:
                await self._download_blob(job, asset, target, rec)
        except (asyncio.CancelledError, NotEnoughSpace):
            raise  # one error for the run, not one per file
        except (DandigetError, OSError, ValueError, aiohttp.ClientError,
                asyncio.TimeoutError) as e:
            if self.options.fail_fast and not isinstance(e, DandigetError):
                raise
            self._fail(rec, e, kind)

    def _fail(self, rec: str, e: BaseException, kind: str) -> None:
        msg = str(e) or type(e).__name__
        client_tokens = [c.token for c in self._clients.values() if c.token]
        for tok in client_tokens:
            msg = msg.replace(tok, "<redacted>")
        self.emit(Failed(rec, message=msg, error_type=type(e).__name__,
                         checksum_differs=type(e).__name__ == "ChecksumError",
                         kind=kind))  # type: ignore[arg-type]
        self.outcome(rec, "would-fail" if self.options.dry_run else "failed", kind, 0, msg)

    def _count_skip(self, rec: str, kind: str, size: int, reason: str) -> None:
        self.report.files_skipped += 1
        self.report.bytes_skipped += size
        self.outcome(rec, "would-skip" if self.options.dry_run else "skipped", kind, size, reason)

    async def _download_blob(self, job: UrlJob, asset: RemoteAsset, target: Path,
                             rec: str) -> None:
        etag = asset.etag
        if not etag:
            raise DandigetError(
                f"dandi-etag not available for asset. Known digests: {asset.digests}")
        remote = RemoteFile(asset.size, asset.mtime, ("dandi-etag", etag))
        local = job.local_stat(target)
        record = job.records.get(rec) or (
            self.state.get(rec) if self.state and job.parsed.is_single_asset else None)
        decision = decide(self.options.existing, local, remote, record)
        if decision.action is Action.HASH:
            digest = await asyncio.to_thread(file_dandi_etag, target)
            decision = decide_after_hash(remote, digest)
            if decision.action is Action.SKIP and local is not None and not self.options.dry_run:
                self.remember(rec, local, "dandi-etag", etag, asset.asset_id)
        if self.options.dry_run:
            self._plan(rec, decision.action, asset.size, decision.reason, "blob")
            return
        if decision.action is Action.SKIP:
            self.emit(Skipped(rec, reason=decision.reason, size=asset.size))
            self._count_skip(rec, "blob", asset.size, decision.reason)
            return
        if decision.action is Action.ERROR:
            raise FileExistsError(f"File {str(target)!r} already exists")
        self.emit(Started(rec, asset.size))
        await self.prepare_output(job, asset.size, rec)
        await asyncio.to_thread(
            prepare_parent, target, job.output_dir, self.confinement(job.output_dir),
            may_replace_files=self.options.existing is not DownloadExisting.ERROR)
        self.emit(Downloading(rec))
        temp = target.with_name(temp_name(target.name, etag[:12]))
        assert self.transferer is not None
        source = self.source_for(job, asset)
        meter = FileMeter(self, rec, asset.size)
        mtime = asset.mtime
        if asset.size <= SMALL_OBJECT:
            data = await self.transferer.fetch_small(source, asset.size, ("dandi-etag", etag),
                                                     meter)
            self.emit(Verified(rec, "ok"))
            self.emit(Message(rec, status="setting mtime"))
            commit = asyncio.to_thread(write_verified, temp, target, data,
                                       to_ns(mtime) if mtime is not None else None)
        else:
            await self.transferer.fetch(source, temp, asset.size, ("dandi-etag", etag), meter)
            self.emit(Verified(rec, "ok"))
            self.emit(Message(rec, status="setting mtime"))
            commit = asyncio.to_thread(commit_file, temp, target, mtime,
                                       sync=asset.size >= FSYNC_THRESHOLD)
        interrupted = await _to_the_end(commit)
        if asset.size > SMALL_OBJECT:
            discard(temp)  # the part journal, if any
        stat = LocalStat.of(target)
        if stat is not None:
            self.remember(rec, stat, "dandi-etag", etag, asset.asset_id)
        if interrupted:  # recorded first: the rerun knows this file is ours (-e error)
            raise asyncio.CancelledError
        self.report.files_downloaded += 1
        self.report.bytes_downloaded += asset.size
        self.emit(Done(rec, asset.size))
        self.outcome(rec, "downloaded", "blob", asset.size)

    def remember(self, rec: str, stat: LocalStat, algo: str, digest: str,
                 asset_id: str | None = None) -> None:
        """Record a verified file in the local state (batched)."""
        if self.state is not None:
            self.state.record(FileRow(rec, stat, algo, digest, asset_id))

    def _plan(self, rec: str, action: Action, size: int, reason: str, kind: str) -> None:
        word = {Action.DOWNLOAD: "download", Action.SKIP: "skip",
                Action.ERROR: "error", Action.HASH: "download"}[action]
        self.emit(Planned(rec, word, size, reason, kind=kind))  # type: ignore[arg-type]
        if action is Action.SKIP:
            self._count_skip(rec, kind, size, reason)
        elif action is Action.ERROR:
            self.outcome(rec, "would-fail", kind, size, f"File {rec!r} already exists")
        else:
            self.report.files_downloaded += 1
            self.report.bytes_downloaded += size
            self.outcome(rec, "would-download", kind, size, reason)

    def source_for(self, job: UrlJob, asset: RemoteAsset) -> Source:
        """Open data straight from the content host; embargoed data via the API redirect."""
        assert job.client
        client = job.client

        async def resolve() -> str:
            return await self.resolve_redirect(client, asset.download_url)

        url = None if asset.embargoed else asset.content_url
        return Source(url=url, resolve=resolve, refusals=self._refusals)

    async def resolve_redirect(self, client: ApiClient, url: str) -> str:
        """Ask the API where the bytes are (a presigned URL), without following it.

        The redirect is read, not followed: the token must never travel to the content host.
        Hops that stay on the API (a missing trailing slash) are followed, a few at most.
        """
        for _hop in range(MAX_API_HOPS):
            target = await client.requester.send(
                "GET", url, _location, auth=client.auth, accept=REDIRECT_STATUSES,
                error=lambda status, u, body: self._redirect_error(client, status, u, body))
            if client.auth.on_api_origin(target) and "/download" in target:
                url = target  # an API-internal hop (e.g. trailing slash)
                continue
            return target
        raise DandigetError(f"{display_url(url)} did not redirect to the content")

    @staticmethod
    def _redirect_error(client: ApiClient, status: int, url: str, body: bytes) -> Exception:
        """One line; the server's words included (the executor takes any token out)."""
        detail = " ".join(body[:300].decode("utf-8", "replace").split())
        if status == 401:
            return AuthenticationError(
                f"{display_url(url)} requires authentication. Set "
                f"{client.instance.api_key_env} or DANDI_API_KEY.", status=401,
                url=display_url(url))
        if status == 403:
            return AuthenticationError(f"HTTP 403 from {display_url(url)}: you do not have "
                                       f"access to this resource ({detail})", status=403,
                                       url=display_url(url))
        return HTTPError(f"HTTP {status} from {display_url(url)}: {detail}", status=status,
                         url=display_url(url))

    def confinement(self, root: Path) -> Confinement:
        """The (cached) check that writes under ``root`` stay under it."""
        conf = self._confinements.get(root)
        if conf is None:
            root.mkdir(parents=True, exist_ok=True)
            conf = self._confinements[root] = Confinement(root)
        return conf

    # ------------------------------------------------------------------ sync

    async def _sync(self, jobs: Iterable[UrlJob]) -> None:
        """Delete local files under each URL's download area that the server no longer has."""
        candidates: list[tuple[UrlJob, str]] = []
        for job in jobs:
            if job.parsed.is_single_asset:
                continue
            for rel in find_local_assets(job.output_path):
                if rel in job.asset_paths or not in_download_area(
                        job.parsed, rel, preserve_tree=self.options.preserve_tree):
                    continue
                candidates.append((job, rel))
        if not candidates:
            return
        if self.options.dry_run:
            for job, rel in candidates:
                self.emit(Planned(job.record_path(rel), "delete"))
                self.outcome(job.record_path(rel), "would-delete", "blob")
            self.report.files_deleted += len(candidates)
            return
        if self.options.sync is SyncMode.ASK and not self._confirm_delete(candidates):
            return
        await self.prepare_output()
        if self.state is not None:
            await asyncio.to_thread(self.state.forget,
                                    [job.record_path(rel) for job, rel in candidates])
        for job, rel in candidates:
            path = job.output_path / rel
            await asyncio.to_thread(remove_path, path)
            self.report.files_deleted += 1
            self.emit(Deleted(job.record_path(rel)))
            self.outcome(job.record_path(rel), "deleted", "blob")

    def _confirm_delete(self, candidates: list[tuple[UrlJob, str]]) -> bool:
        n = len(candidates)
        question = f"Delete {n} local asset{'s' if n != 1 else ''}? ([y]es/[n]o/[l]ist): "
        ask = self.options.prompt or _stdin_prompt
        while True:
            answer = ask(question)
            if answer is None:
                return False
            answer = answer.strip().lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False
            if answer in ("l", "list"):
                for job, rel in candidates:
                    print(job.output_path / rel)


#: Redirect hops within the API before the content URL (a trailing-slash 301, at most).
MAX_API_HOPS = 4


async def _location(resp: aiohttp.ClientResponse) -> str:
    """Where a redirect points (absolute)."""
    loc = resp.headers.get("Location")
    if not loc:
        raise HTTPError(f"HTTP {resp.status} without a Location from {display_url(str(resp.url))}",
                        status=resp.status, url=display_url(str(resp.url)))
    return urljoin(str(resp.url), loc)


async def _to_the_end(work: Any) -> bool:
    """Await ``work`` (a rename into place, in a thread that finishes anyway) even when the
    caller is cancelled meanwhile; True when it was, so the caller records the file before
    it re-raises."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if task.cancelled() or task.exception() is not None:
            raise  # the rename did not happen: nothing to record, stop all the same
        return True
    return False


def _stdin_prompt(question: str) -> str | None:
    sys.stdout.write(question)
    sys.stdout.flush()
    line = sys.stdin.readline()
    return line if line else None


async def run_download(urls: Any, output_dir: str | Path, options: DownloadOptions,
                       listeners: Sequence[Listener] = ()) -> DownloadReport:
    """Run a download to completion; raise DownloadFailed (with the report) on errors."""
    return await Engine(options, listeners).run(urls, output_dir)
