"""dandi-cli's per-URL ``Downloader``, as an adapter over dandiget's engine."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import Engine, UrlJob
from ..events import Event, Totals
from ..localtree import find_local_assets
from ..options import DownloadExisting
from ..resolve import ParsedURL, in_download_area, output_prefix

__all__ = ["Downloader"]


@dataclass
class Downloader:
    """dandi-cli's per-URL downloader, as an adapter: records come from dandiget's engine.

    ``download_generator()`` yields dandi-cli's record dicts (``{"path": ..., "status": ...}``)
    while the engine runs in a background thread.
    """

    url: ParsedURL
    output_dir: str | Path
    existing: DownloadExisting = DownloadExisting.ERROR
    get_metadata: bool = True
    get_assets: bool = True
    preserve_tree: bool = False
    jobs_per_zarr: int | None = None
    on_error: str = "raise"
    jobs: int = 6
    asset_download_paths: set[str] = field(default_factory=set)

    @property
    def output_prefix(self) -> Path:
        return Path(output_prefix(self.url, preserve_tree=self.preserve_tree))

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir) / self.output_prefix

    def is_dandiset_yaml(self) -> bool:
        return self.url.path == "dandiset.yaml"

    def download_generator(self) -> Iterator[dict[str, Any]]:
        from ..download import build_options  # the public module builds options; it imports us

        records: queue.Queue[dict[str, Any] | BaseException | None] = queue.Queue()
        opts = build_options(existing=self.existing, jobs=self.jobs,
                             jobs_per_zarr=self.jobs_per_zarr, get_metadata=self.get_metadata,
                             get_assets=self.get_assets, preserve_tree=self.preserve_tree,
                             fail_fast=self.on_error == "raise")

        def listener(event: Event) -> None:
            if isinstance(event, Totals):
                return
            body = event.record()
            if body:
                records.put({**body, "path": event.path})

        engine = Engine(opts, [listener])
        job = UrlJob(self.url, Path(self.output_dir),
                     output_prefix(self.url, preserve_tree=self.preserve_tree))

        async def run() -> None:
            import aiohttp

            from ..transfer import Transferer

            async with aiohttp.ClientSession() as session:
                engine.session = session
                engine.transferer = Transferer(session, opts.config)
                await engine._run_url(job)

        def target() -> None:
            try:
                asyncio.run(run())
            except BaseException as e:
                records.put(e)
            finally:
                records.put(None)

        t = threading.Thread(target=target, daemon=True)
        t.start()
        while (item := records.get()) is not None:
            if isinstance(item, BaseException):
                t.join()
                raise item
            yield item
        t.join()
        self.asset_download_paths = set(job.asset_paths)

    def delete_for_sync(self) -> list[Path]:
        """Local paths under this URL's download area that the run did not download."""
        if self.url.is_single_asset:
            return []
        return [self.output_path / rel for rel in find_local_assets(self.output_path)
                if rel not in self.asset_download_paths
                and in_download_area(self.url, rel, preserve_tree=self.preserve_tree)]

