"""Small public files in batches, on worker processes: the Zarr chunk fast path.

A Zarr's chunks cost per request, and one Python process spends most of its time on that
cost. Here the planner's :class:`~dandiget.units.FileUnit` s for public objects are grouped
into batches; each batch runs :func:`dandiget.bulk.run_batch` (libcurl's multi interface)
on worker processes (one per core but one), so listing, planning and bookkeeping keep a
core in this process while the bytes move on the others. A unit the batch could not commit comes
back and takes the ordinary path (``work.run_unit``: the one request executor with its
retries), so failures are handled in one place.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Literal

from .. import bulk

Stat = tuple[int, int, int, int]
Done = Callable[[bulk.BulkJob, str, Stat], None]
Failed = Callable[[bulk.BulkJob, str, str], Awaitable[None]]
Mode = Literal["process", "thread"]

#: Jobs per batch. A worker ends a batch with its connections draining (the last wave of
#: requests): at 20 ms per request, 128 per batch cost ~15 % on a 50,000-chunk Zarr.
BATCH_SIZE = 512
#: Entries of a Zarr that take the ordinary path before any goes to the workers: a Zarr
#: smaller than this costs less there than starting worker processes.
ORDINARY_FIRST = 256


def bulk_mode() -> Mode | None:
    """``DANDIGET_BULK``: ``process`` (default), ``thread``, or ``0`` (off: aiohttp only)."""
    value = os.environ.get("DANDIGET_BULK", "process").strip().lower()
    if value in ("0", "off", "no", "false") or not bulk.available():
        return None
    return "thread" if value == "thread" else "process"


class _Worker:
    """One ``python -m dandiget.bulk`` child, fed batches over a pipe (no pool machinery:
    no resource tracker, nothing imported but the bulk module)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "dandiget.bulk"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def call(self, jobs: list[bulk.BulkJob], limits: bulk.Limits) -> list[bulk.Outcome]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        bulk.send(self.proc.stdin.fileno(), (jobs, limits))
        outcomes: list[bulk.Outcome] = bulk.receive(self.proc.stdout.fileno())
        return outcomes

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the worker's cue to exit
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class _InThread:
    """The ``thread`` mode: batches run in a thread of this process."""

    def call(self, jobs: list[bulk.BulkJob], limits: bulk.Limits) -> list[bulk.Outcome]:
        return bulk.run_batch(jobs, limits)

    def stop(self) -> None:
        return None


class BulkRunner:
    """The run's bulk workers (started on first use, stopped with the run).

    By default one worker process per core but one (at most 4; ``DANDIGET_BULK_WORKERS=N``):
    this process lists, plans and records beside them. Measured on 2 cores, a Zarr of 50,000
    chunks on tmpfs: 1 worker 3.65 s, 2 workers 2.95 s; but a worker is ~25-30 MB, and with
    two the process tree peaks at ~155 MB, over the 150 MB the benchmark allows.
    """

    def __init__(self, limits: bulk.Limits, mode: Mode, workers: int | None = None):
        self.mode = mode
        self.workers = 1 if mode == "thread" else (
            workers or int(os.environ.get("DANDIGET_BULK_WORKERS", 0))
            or max(1, min(4, (os.cpu_count() or 2) - 1)))
        # The one connection budget, shared by the workers.
        self.limits = bulk.Limits(max(1, limits.connections // self.workers),
                                  limits.connect_timeout, limits.stall, limits.user_agent)
        self._idle: asyncio.Queue[_Worker | _InThread] | None = None
        self._all: list[_Worker | _InThread] = []

    async def call(self, jobs: list[bulk.BulkJob]) -> list[bulk.Outcome]:
        """Run one batch on an idle worker (waiting for one)."""
        if self._idle is None:
            self._idle = asyncio.Queue()
            for _ in range(self.workers):
                w: _Worker | _InThread = _InThread() if self.mode == "thread" else _Worker()
                self._all.append(w)
                self._idle.put_nowait(w)
        idle = self._idle
        worker = await idle.get()
        try:
            return await asyncio.to_thread(worker.call, jobs, self.limits)
        except BaseException:
            # A worker that failed mid-batch (or whose reply was abandoned) is not reused.
            self._all.remove(worker)
            await asyncio.to_thread(worker.stop)
            replacement = _InThread() if self.mode == "thread" else _Worker()
            self._all.append(replacement)
            worker = replacement
            raise
        finally:
            idle.put_nowait(worker)

    def batcher(self, done: Done, failed: Failed) -> Batcher:
        return Batcher(self, done, failed)

    async def close(self) -> None:
        workers, self._all, self._idle = self._all, [], None
        for w in workers:
            await asyncio.to_thread(w.stop)


class Batcher:
    """Collects jobs into batches and runs them, one batch per worker and one waiting.

    ``done(job, tag, stat)`` is called for each committed job; ``failed(job, tag, why)`` is
    awaited for each job a batch handed back.
    """

    def __init__(self, runner: BulkRunner, done: Done, failed: Failed):
        self.runner = runner
        self.done = done
        self.failed = failed
        self.jobs: list[bulk.BulkJob] = []
        self.tags: list[str] = []
        self.slots = asyncio.Semaphore(runner.workers + 1)
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
            outcomes = await self.runner.call(jobs)
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
