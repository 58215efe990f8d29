"""Small public files in batches, on worker processes: the Zarr chunk fast path.

A Zarr's chunks cost per request, and one Python process spends most of its time on that
cost. Here the planner's :class:`~dandiget.units.FileUnit` s for public objects are grouped
into batches; each batch runs :func:`dandiget.bulk.run_batch` (libcurl's multi interface)
on a pool of worker processes, one per core, so listing, planning and bookkeeping stay in
this process while the bytes move on every core. A unit the batch could not commit comes
back and takes the ordinary path (``work.run_unit``: the one request executor with its
retries), so failures are handled in one place.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Literal

from .. import bulk

Stat = tuple[int, int, int, int]
Done = Callable[[bulk.BulkJob, str, Stat], None]
Failed = Callable[[bulk.BulkJob, str, str], Awaitable[None]]
Mode = Literal["process", "thread"]

#: Units per batch: large enough to amortise the hand-off to a worker (~1 ms), small enough
#: that every worker has batches to run and progress moves steadily.
BATCH_SIZE = 128
#: Entries of a Zarr that take the ordinary path before any goes to the workers: a Zarr
#: smaller than this costs less there than starting worker processes.
ORDINARY_FIRST = 256


def bulk_mode() -> Mode | None:
    """``DANDIGET_BULK``: ``process`` (default), ``thread``, or ``0`` (off: aiohttp only)."""
    value = os.environ.get("DANDIGET_BULK", "process").strip().lower()
    if value in ("0", "off", "no", "false") or not bulk.available():
        return None
    return "thread" if value == "thread" else "process"


class BulkRunner:
    """The run's pool of bulk workers (made on first use, closed with the run)."""

    def __init__(self, limits: bulk.Limits, mode: Mode, workers: int | None = None):
        self.mode = mode
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        if mode == "thread":
            self.workers = 1
        # The one connection budget, shared by the workers.
        self.limits = bulk.Limits(max(1, limits.connections // self.workers),
                                  limits.connect_timeout, limits.stall, limits.user_agent)
        self._pool: Executor | None = None

    def pool(self) -> Executor:
        if self._pool is None:
            if self.mode == "thread":
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="dandiget-bulk")
            else:  # spawn: the workers import only dandiget.bulk, never this process's state
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def batcher(self, done: Done, failed: Failed) -> Batcher:
        return Batcher(self, done, failed)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


class Batcher:
    """Collects jobs into batches and runs them, at most two batches per worker at once.

    ``done(job, tag, stat)`` is called for each committed job; ``failed(job, tag, why)`` is
    awaited for each job a batch handed back.
    """

    def __init__(self, runner: BulkRunner, done: Done, failed: Failed):
        self.runner = runner
        self.done = done
        self.failed = failed
        self.jobs: list[bulk.BulkJob] = []
        self.tags: list[str] = []
        self.slots = asyncio.Semaphore(2 * runner.workers)
        self.tasks: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []

    async def add(self, job: bulk.BulkJob, tag: str) -> None:
        self._raise_first()
        self.jobs.append(job)
        self.tags.append(tag)
        if len(self.jobs) >= BATCH_SIZE:
            await self._flush()

    async def _flush(self) -> None:
        if not self.jobs:
            return
        jobs, tags, self.jobs, self.tags = self.jobs, self.tags, [], []
        await self.slots.acquire()
        task = asyncio.create_task(self._run(jobs, tags))
        self.tasks.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]

    def _raise_first(self) -> None:
        if self.errors:
            raise self.errors[0]

    async def _run(self, jobs: list[bulk.BulkJob], tags: list[str]) -> None:
        try:
            loop = asyncio.get_running_loop()
            outcomes: list[bulk.Outcome] = await loop.run_in_executor(
                self.runner.pool(), bulk.run_batch, jobs, self.runner.limits)
        except Exception as e:  # the machinery (e.g. a worker died): all take the usual path
            outcomes = [(None, f"bulk worker: {type(e).__name__}: {e}")] * len(jobs)
        finally:
            self.slots.release()
        retry = []
        for job, tag, (stat, why) in zip(jobs, tags, outcomes, strict=True):
            if stat is not None:
                self.done(job, tag, stat)
            else:
                retry.append(self.failed(job, tag, why))
        if retry:
            await asyncio.gather(*retry)

    async def finish(self) -> None:
        """Run what is left and wait for every batch (and every retry) to end."""
        await self._flush()
        try:
            while self.tasks:
                await asyncio.gather(*list(self.tasks))
        except BaseException:
            await self.cancel()
            raise
        self._raise_first()

    async def cancel(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*list(self.tasks), return_exceptions=True)
