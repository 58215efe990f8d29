"""The engine: resolve -> list -> plan -> units -> executor -> results -> report.

It emits typed events (``events.py``) and fills a :class:`DownloadReport`; it never prints.
Each selected asset is planned as it is listed (a bounded queue drained by ``jobs``
workers), and what must be fetched becomes a work unit (units.py) that an executor runs —
here, on this run's one aiohttp session, or on a Dask cluster (``--dask``). What the units
return is recorded by the coordinator (coordinator.py), which the engine extends.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp

from . import __version__
from .api import ApiClient
from .commit import prepare_parent, remove_path
from .config import DEFAULT_JOBS
from .coordinator import Coordinator, FileMeter, UrlJob, discard_ranges
from .dandiset_yaml import read_dandiset_yaml, write_dandiset_yaml
from .digests import etag_parts, file_dandi_etag
from .errors import DandigetError, DownloadFailed, UnsafePathError
from .events import (
    Deleted,
    Done,
    Downloading,
    Failed,
    Listener,
    Message,
    Planned,
    Skipped,
    Started,
    Totals,
)
from .listing import BadAsset, RemoteAsset, iter_selected_assets, parse_datetime
from .localtree import find_local_assets
from .options import DownloadExisting, DownloadOptions, PathType, SyncMode
from .paths import safe_join, temp_name
from .pipeline import drain
from .plan import Action, LocalStat, RemoteFile, decide, decide_after_hash, to_ns
from .report import DownloadReport
from .resolve import (
    ParsedURL,
    URLKind,
    in_download_area,
    output_prefix,
    relative_download_path,
    resolve_url,
)
from .space import NotEnoughSpace
from .state import LocalState
from .transfer import Transferer, discard
from .units import FileUnit, Result
from .zarr import download_zarr

__all__ = ["DownloadOptions", "Engine", "FileMeter", "UrlJob", "run_download"]

log = logging.getLogger("dandiget")

#: Files at least this large are fsynced before the rename, so that even a power loss
#: cannot leave a truncated large file at its final path. Smaller files rely on the
#: filesystem's ordering (and are re-checked by size on the next run).
FSYNC_THRESHOLD = 8 << 20


def flatten_urls(urls: Any) -> list[str]:
    """Strings, or (nested) lists/tuples/generators of strings, as one list."""
    if isinstance(urls, str):
        return [urls]
    out: list[str] = []
    for u in urls:
        out.extend(flatten_urls(u))
    return out


class Engine(Coordinator):
    """Runs one download: many URLs, one session, one report."""

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
                if self.options.dask is not None and not self.options.dry_run:
                    from .executors.dask import DaskExecutor

                    self._executor = await DaskExecutor.connect(self.options.dask, cfg)
                    await self._executor.check_output(out)
                for job in jobs:
                    await self._run_url(job)
                if self.options.sync:
                    await self._sync(jobs)
            finally:
                await self.close_bulk()
                if self._executor is not None:
                    await self._executor.close()
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
                    self.count_skip(rec, "dandiset.yaml", 0, "no change")
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
                    self.count_skip(rec, "dandiset.yaml", 0, "already exists")
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
            self.fail(rec, e, "dandiset.yaml")

    # ------------------------------------------------------------------ assets

    async def _download_assets(self, job: UrlJob) -> None:
        async def handle(item: dict[str, Any]) -> None:
            await self._process_asset(job, item)

        gate = None
        if self.options.jobs is None and not self.options.dry_run:
            gate = self.executor.adaptive(self._adaptive_sample)
        if gate is not None:
            jobs = gate.maximum
        else:
            jobs = max(1, self.options.jobs or DEFAULT_JOBS)
            if not self.options.dry_run:
                jobs = self.executor.concurrency(jobs)
        await drain(self._listed(job), handle, workers=jobs, queue_size=max(2 * jobs, 16),
                    gate=gate)
        if gate is not None:
            log.debug("assets in flight: at most %d; limits taken: %s; cut on errors %d "
                      "times", gate.peak, gate.controller.history, gate.controller.backoffs)

    def _adaptive_sample(self) -> tuple[int, int]:
        """What the adaptive limit learns from: bytes moved so far, retries so far."""
        retries = self.transferer.requester.retries if self.transferer is not None else 0
        return self.report.bytes_transferred, retries

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
            self.fail(rec, e, "blob")
            return
        kind = "zarr" if asset.is_zarr else "blob"
        try:
            if asset.is_zarr:
                await download_zarr(self, job, asset, target, rec)
            else:
                await self._download_blob(job, asset, target, rec)
        except (asyncio.CancelledError, NotEnoughSpace):
            raise  # one error for the run, not one per file
        except (DandigetError, OSError, ValueError, aiohttp.ClientError,
                asyncio.TimeoutError) as e:
            if self.options.fail_fast and not isinstance(e, DandigetError):
                raise
            self.fail(rec, e, kind)

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
            self.count_skip(rec, "blob", asset.size, decision.reason)
            return
        if decision.action is Action.ERROR:
            raise FileExistsError(f"File {str(target)!r} already exists")
        self.emit(Started(rec, asset.size))
        await self.prepare_output(job, asset.size, rec)
        await asyncio.to_thread(
            prepare_parent, target, job.output_dir, self.confinement(job.output_dir),
            may_replace_files=self.options.existing is not DownloadExisting.ERROR)
        self.emit(Downloading(rec))
        if asset.embargoed:
            assert job.client is not None
            await self.share_token(job.client)
        temp = target.with_name(temp_name(target.name, etag[:12]))
        meter = FileMeter(self, rec, asset.size)
        unit = FileUnit(rec, target, temp, asset.size, ("dandi-etag", etag),
                        to_ns(asset.mtime) if asset.mtime is not None else None,
                        self.fetch_for(job, asset), "blob",
                        sync=asset.size >= FSYNC_THRESHOLD)
        ranges = (self.executor.ranges(asset.size, len(etag_parts(asset.size)))
                  if asset.size >= self.options.config.multipart_threshold else None)

        def attempt() -> Awaitable[Result]:
            meter.rollback(meter.done)  # a second try after a full disk counts from zero
            return (self.fetch_ranges(unit, ranges, meter) if ranges
                    else self.run_file(unit, meter))

        result = await self.full_disk.write(
            rec, target.parent, asset.size, attempt,
            lambda: discard_ranges(temp, ranges) if ranges else discard(temp))
        self.record(result, unit, asset.asset_id)
        self.report.files_downloaded += 1
        self.report.bytes_downloaded += asset.size
        self.emit(Done(rec, asset.size))
        self.outcome(rec, "downloaded", "blob", asset.size)

    def _plan(self, rec: str, action: Action, size: int, reason: str, kind: str) -> None:
        word = {Action.DOWNLOAD: "download", Action.SKIP: "skip",
                Action.ERROR: "error", Action.HASH: "download"}[action]
        self.emit(Planned(rec, word, size, reason, kind=kind))  # type: ignore[arg-type]
        if action is Action.SKIP:
            self.count_skip(rec, kind, size, reason)
        elif action is Action.ERROR:
            self.outcome(rec, "would-fail", kind, size, f"File {rec!r} already exists")
        else:
            self.report.files_downloaded += 1
            self.report.bytes_downloaded += size
            self.outcome(rec, "would-download", kind, size, reason)

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


def _stdin_prompt(question: str) -> str | None:
    sys.stdout.write(question)
    sys.stdout.flush()
    line = sys.stdin.readline()
    return line if line else None


async def run_download(urls: Any, output_dir: str | Path, options: DownloadOptions,
                       listeners: Sequence[Listener] = ()) -> DownloadReport:
    """Run a download to completion; raise DownloadFailed (with the report) on errors."""
    return await Engine(options, listeners).run(urls, output_dir)
