"""dandi-cli's ``dandi.download`` surface, as thin adapters over dandiget's engine.

Switching is one word: ``from dandi.download import download`` becomes
``from dandiget.download import download``. Same parameters and defaults, with two
deliberate differences: ``download()`` returns a :class:`~dandiget.report.DownloadReport`
instead of None (it still raises when anything failed), and ``jobs`` defaults to None as on the
command line without ``-J``: a number of assets in flight that adapts to the servers, from 6
up (concurrency.py; dandi-cli's Python default of 1 was slower for no reason).

``quiet=True`` prints nothing, for library code where the report is the output. It is not
the default: ``download()`` is a drop-in for dandi-cli's, which always shows its progress
table, and scripts and notebooks that switch by one import should still see their
download happen. Logging is unaffected (logger ``dandiget``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .compat.download_directory import DownloadDirectory
from .compat.downloader import Downloader
from .compat.progress import (
    DLState,
    DownloadProgress,
    ItemsSummary,
    ProgressCombiner,
    PYOUTHelper,
    pairing,
)
from .config import TransferConfig
from .engine import DownloadOptions, Engine
from .events import Listener
from .options import DownloadExisting, DownloadFormat, PathType, SyncMode
from .report import DownloadReport

__all__ = [
    "DLState",
    "DownloadDirectory",
    "DownloadExisting",
    "DownloadFormat",
    "DownloadProgress",
    "Downloader",
    "ItemsSummary",
    "PYOUTHelper",
    "PathType",
    "ProgressCombiner",
    "SyncMode",
    "adownload",
    "download",
    "pairing",
]

log = logging.getLogger("dandiget")
T = TypeVar("T")


def _sync_mode(sync: bool | str | SyncMode | None) -> SyncMode | None:
    if not sync:
        return None
    if sync is True:
        return SyncMode.ASK
    return SyncMode(str(sync))


def build_options(*, existing: DownloadExisting | str = DownloadExisting.ERROR, jobs: int | None = None,
                  jobs_per_zarr: int | None = None, get_metadata: bool = True,
                  get_assets: bool = True, preserve_tree: bool = False,
                  sync: bool | str | SyncMode | None = False,
                  path_type: PathType | str = PathType.EXACT, dry_run: bool = False,
                  fail_fast: bool = False, zarr_filters: Sequence[Any] = (),
                  config: TransferConfig | None = None,
                  ignore_free_space: bool = False, dask: Any = None) -> DownloadOptions:
    cfg = dataclasses.replace(config or TransferConfig(), jobs=jobs, jobs_per_zarr=jobs_per_zarr)
    return DownloadOptions(
        existing=DownloadExisting(str(existing)), jobs=jobs, jobs_per_zarr=jobs_per_zarr,
        get_metadata=get_metadata, get_assets=get_assets, preserve_tree=preserve_tree,
        sync=_sync_mode(sync), path_type=PathType(str(path_type)), dry_run=dry_run,
        fail_fast=fail_fast, zarr_filters=tuple(zarr_filters), config=cfg,
        ignore_free_space=ignore_free_space, dask=dask)


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run to completion, also from code that already runs an event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    if not in_loop:
        return asyncio.run(coro)
    result: list[T] = []
    error: list[BaseException] = []
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = []
    started, finished = threading.Event(), threading.Event()

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        running.append((asyncio.get_running_loop(), task))
        started.set()
        return await coro

    def target() -> None:
        try:
            result.append(asyncio.run(main()))
        except BaseException as e:
            error.append(e)
        finally:
            started.set()
            finished.set()

    t = threading.Thread(target=target, name="dandiget", daemon=True)
    t.start()
    try:
        # An Event, not t.join(): Python 3.11's join() interrupted by Ctrl-C can mark the
        # thread as stopped while it still runs (bpo-45274), and the next join returns early.
        finished.wait()
    except KeyboardInterrupt:
        # Jupyter's "interrupt the kernel" lands in this waiting thread: cancel the download
        # as Ctrl-C does in a terminal, or it goes on writing files after the cell ended.
        started.wait()
        for loop, task in running:
            with contextlib.suppress(RuntimeError):  # the run ended meanwhile: loop closed
                loop.call_soon_threadsafe(task.cancel)
        finished.wait()
        raise
    finally:
        if finished.is_set():
            t.join()
    if error:
        raise error[0]
    return result[0]


async def adownload(urls: Any, output_dir: str | Path, *,
                    format: DownloadFormat | str = DownloadFormat.PYOUT,
                    existing: DownloadExisting | str = DownloadExisting.ERROR,
                    jobs: int | None = None, jobs_per_zarr: int | None = None,
                    get_metadata: bool = True, get_assets: bool = True,
                    preserve_tree: bool = False,
                    sync: bool | str | SyncMode | None = False,
                    path_type: PathType | str = PathType.EXACT,
                    dry_run: bool = False, zarr: Sequence[str] = (),
                    listeners: Sequence[Listener] = (),
                    config: TransferConfig | None = None,
                    ignore_free_space: bool = False,
                    quiet: bool = False, dask: Any = None) -> DownloadReport:
    """The async twin of :func:`download`, for code that already runs an event loop."""
    from .render import make_renderer

    fmt = DownloadFormat(str(format))
    opts = build_options(existing=existing, jobs=jobs, jobs_per_zarr=jobs_per_zarr,
                         get_metadata=get_metadata, get_assets=get_assets,
                         preserve_tree=preserve_tree, sync=sync, path_type=path_type,
                         dry_run=dry_run, fail_fast=fmt is DownloadFormat.DEBUG,
                         zarr_filters=zarr, config=config,
                         ignore_free_space=ignore_free_space, dask=dask)
    renderer = make_renderer(fmt.value, dry_run=dry_run, quiet=quiet)
    opts.prompt = _sync_prompt(renderer, opts.prompt)
    engine = Engine(opts, [renderer, *listeners])
    renderer.start()
    try:
        report = await engine.run(urls, output_dir)
    except BaseException as e:
        renderer.finish(getattr(e, "report", None) or engine.report, e)
        raise
    renderer.finish(report, None)
    return report


def _sync_prompt(renderer: object, ask: Any) -> Any:
    """``--sync ask``'s question, asked after the live display stopped (a question under a
    redrawing table cannot be read), and a word on what happened when nobody answered."""
    from .engine import _stdin_prompt

    ask = ask or _stdin_prompt

    def prompt(question: str) -> str | None:
        suspend = getattr(renderer, "suspend", None)
        if suspend is not None:
            suspend()
        answer: str | None = ask(question)
        if answer is None:
            why = "" if sys.stdin.isatty() else " (stdin is not a terminal)"
            log.warning("Nothing was deleted: no answer to %r%s. To delete without asking, "
                        "use --sync do (sync='do' in Python).", question.split("?")[0] + "?",
                        why)
        return answer

    return prompt


def download(urls: Any, output_dir: str | Path, *,
             format: DownloadFormat | str = DownloadFormat.PYOUT,
             existing: DownloadExisting | str = DownloadExisting.ERROR,
             jobs: int | None = None, jobs_per_zarr: int | None = None,
             get_metadata: bool = True, get_assets: bool = True,
             preserve_tree: bool = False,
             sync: bool | str | SyncMode | None = False,
             path_type: PathType | str = PathType.EXACT,
             dry_run: bool = False, zarr: Sequence[str] = (),
             listeners: Sequence[Listener] = (),
             config: TransferConfig | None = None,
             ignore_free_space: bool = False,
             quiet: bool = False, dask: Any = None) -> DownloadReport:
    """Download DANDI URLs into ``output_dir``; dandi-cli's ``download()`` with a report.

    Raises ``DownloadFailed`` (a ``RuntimeError``, message "Encountered N error(s) while
    downloading.") when any file failed; its ``report`` attribute lists every outcome.
    ``dry_run`` plans without writing; ``zarr`` takes ``--zarr`` filters; ``listeners``
    receive every engine event; ``config`` tunes connections, part sizes and retries;
    ``quiet`` prints nothing (the returned report is the output).
    Too little free space for what is about to be written raises ``NotEnoughSpace`` before
    the first byte, unless ``ignore_free_space``. ``dask`` spreads the work over a Dask
    cluster (``pip install 'dandiget[dask]'``): a ``distributed.Client``, a scheduler
    address such as ``"tcp://head:8786"``, or ``"local:N"`` for N local worker processes;
    the output folder must be shared with every worker.

    Against the built-in test archive (no network)::

        >>> import tempfile
        >>> from dandiget.testing import TestArchive, text_spec
        >>> with TestArchive(text_spec()) as archive, tempfile.TemporaryDirectory() as out:
        ...     url = f"{archive.api_url}/dandisets/000001/"
        ...     report = download(url, out, quiet=True)
        ...     again = download(url, out, existing="refresh", quiet=True)
        >>> report
        DownloadReport(ok=True, downloaded=5, skipped=0, failed=0, deleted=0, bytes_downloaded=..., duration=...s)
        >>> again.summary()
        '0 files downloaded (0 Bytes), 5 skipped, 0 errors in ... s'
        >>> [o.path for o in report.outcomes if o.status == "downloaded"][:2]
        ['000001/dandiset.yaml', '000001/...']
    """
    return run_coroutine(adownload(
        urls, output_dir, format=format, existing=existing, jobs=jobs,
        jobs_per_zarr=jobs_per_zarr, get_metadata=get_metadata, get_assets=get_assets,
        preserve_tree=preserve_tree, sync=sync, path_type=path_type, dry_run=dry_run,
        zarr=zarr, listeners=listeners, config=config, ignore_free_space=ignore_free_space,
        quiet=quiet, dask=dask))
