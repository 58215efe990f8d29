"""Small public files streamed to worker processes: the fast path for many small objects.

A Zarr's chunks cost per request, and one Python process spends most of its time on that
cost. Here jobs for public objects (:class:`dandiget.bulk.BulkJob`) stream to worker
processes (one per core but one) that run libcurl's multi interface
(:func:`dandiget.bulk.serve`), so listing, planning and bookkeeping keep a core in this
process while the bytes move on the others. Jobs flow continuously, a window per worker:
no batch ends with its connections draining. A job the worker could not commit comes back
and takes the ordinary path (``work.run_unit``: the one request executor with its
retries), so failures are handled in one place.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import IO, Any, Literal, Protocol

from .. import bulk

Stat = tuple[int, int, int, int]
Done = Callable[[bulk.BulkJob, str, Stat], None]
Failed = Callable[[bulk.BulkJob, str, str], Coroutine[Any, Any, None]]
Mode = Literal["process", "thread"]

#: Jobs a worker holds at most (running and waiting there), per connection it has: enough
#: that its connections never wait for the next group, few enough that a worker that dies
#: hands back little.
WINDOW_PER_CONNECTION = 4
#: Awaited single jobs (small files, :meth:`BulkRunner.fetch`) the workers take at once;
#: more go on the ordinary path meanwhile.
SHARED = int(os.environ.get("DANDIGET_BULK_SHARED", 8))
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
    """One :func:`bulk.serve` loop, in a ``python -m dandiget.bulk`` child (no pool
    machinery: no resource tracker, nothing imported but the bulk module) or in a thread,
    and the jobs it holds. Both speak the same protocol over two pipes."""

    def __init__(self, mode: Mode, limits: bulk.Limits, window: int):
        self.window = window
        self.held: dict[int, tuple[bulk.BulkJob, str, Settler]] = {}
        self.outbox: list[tuple[int, bulk.BulkJob]] = []
        self.wake = asyncio.Event()
        self.dead: BaseException | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.thread: threading.Thread | None = None
        if mode == "process":
            self.proc = subprocess.Popen([sys.executable, "-m", "dandiget.bulk"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self._to, self._from = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        else:
            jobs_r, self._to = os.pipe()
            self._from, out_w = os.pipe()
            self.thread = threading.Thread(target=self._serve_in_thread, args=(jobs_r, out_w),
                                           name="dandiget-bulk", daemon=True)
            self.thread.start()
        self._limits = limits
        self._in: asyncio.BaseTransport | None = None
        self._out: asyncio.WriteTransport | None = None
        self.tasks: list[asyncio.Task[None]] = []

    @staticmethod
    def _serve_in_thread(fd_in: int, fd_out: int) -> None:
        try:
            bulk.serve(fd_in, fd_out)
        finally:
            os.close(fd_in)
            os.close(fd_out)

    @property
    def room(self) -> int:
        return 0 if self.dead else self.window - len(self.held)

    async def start(self, on_outcomes: Callable[[_Worker, list[Any]], None],
                    on_death: Callable[[_Worker, BaseException], None]) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**26, loop=loop)
        to_pipe = self.proc.stdin if self.proc else os.fdopen(self._to, "wb", buffering=0)
        from_pipe = self.proc.stdout if self.proc else os.fdopen(self._from, "rb", buffering=0)
        self._in, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), from_pipe)
        self._out, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                             to_pipe)
        writer = asyncio.StreamWriter(self._out, protocol, None, loop)

        async def send() -> None:
            writer.write(bulk.frame(self._limits))
            while True:
                await self.wake.wait()
                self.wake.clear()
                # Jobs go in groups, except when the worker has fewer than it has
                # connections: then at once, whatever there is.
                unsent = len(self.outbox)
                if not unsent or (unsent < bulk.GROUP
                                  and len(self.held) - unsent >= self._limits.connections):
                    continue
                group, self.outbox = self.outbox, []
                writer.write(bulk.frame(group))
                await writer.drain()

        async def receive() -> None:
            while True:
                (n,) = bulk.HEADER.unpack(await reader.readexactly(bulk.HEADER.size))
                on_outcomes(self, bulk.unframe(await reader.readexactly(n)))

        async def guard(coro: Awaitable[None]) -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except BaseException as e:  # the pipe broke, the worker died
                if self.dead is None:
                    self.dead = e
                    on_death(self, e)

        self.tasks = [asyncio.create_task(guard(send())), asyncio.create_task(guard(receive()))]

    def submit(self, seq: int, job: bulk.BulkJob, tag: str, settler: Settler) -> None:
        self.held[seq] = (job, tag, settler)
        self.outbox.append((seq, job))
        self.wake.set()

    async def stop(self) -> None:
        """Close its jobs pipe (the worker's cue to exit: it aborts what still runs, removing
        the temporaries), wait for it, then close the rest."""
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        _close_end(self._out, self.proc.stdin if self.proc else None, self._to)
        if self.proc is not None:
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        if self.thread is not None:
            await asyncio.to_thread(self.thread.join)
        _close_end(self._in, self.proc.stdout if self.proc else None, self._from)


def _close_end(transport: asyncio.BaseTransport | None, pipe: IO[bytes] | None,
               fd: int) -> None:
    """Close one end of a worker's pipe through whatever owns it."""
    if transport is not None:
        transport.close()
    elif pipe is not None:
        pipe.close()
    else:
        os.close(fd)


class BulkRunner:
    """The run's bulk workers (started on first use, stopped with the run).

    By default one worker process per core but one (at most 4; ``DANDIGET_BULK_WORKERS=N``):
    this process lists, plans and records beside them. Measured on 2 cores, a Zarr of 50,000
    chunks on tmpfs, jobs streamed: 1 worker 3.42 s, 2 workers 3.39 s (the two cores are
    full either way), and a worker is ~25-30 MB more at the peak.
    """

    def __init__(self, limits: bulk.Limits, mode: Mode, workers: int | None = None):
        self.mode = mode
        self.workers = 1 if mode == "thread" else (
            workers or int(os.environ.get("DANDIGET_BULK_WORKERS", 0))
            or max(1, min(4, (os.cpu_count() or 2) - 1)))
        # The one connection budget, shared by the workers.
        per_worker = max(1, limits.connections // self.workers)
        self.limits = bulk.Limits(per_worker, limits.connect_timeout, limits.stall,
                                  limits.user_agent)
        self.window = per_worker * WINDOW_PER_CONNECTION
        self._all: list[_Worker] = []
        self._seq = itertools.count()
        self._slots: asyncio.Semaphore | None = None
        self._starting: asyncio.Lock | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._fetching = 0

    async def _workers(self) -> list[_Worker]:
        if len(self._all) == self.workers:
            return self._all
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            while len(self._all) < self.workers:
                w = _Worker(self.mode, self.limits, self.window)
                self._all.append(w)
                await w.start(self._outcomes, self._died)
        return self._all

    async def submit(self, job: bulk.BulkJob, tag: str, batcher: Settler) -> None:
        """Hand one job to the worker with the most room, once there is room (first come,
        first served: one wake-up per job that ends, not one per waiter)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers * self.window)
        await self._slots.acquire()
        try:
            worker = max(await self._workers(), key=lambda w: w.room)
        except BaseException:
            self._slots.release()
            raise
        worker.submit(next(self._seq), job, tag, batcher)

    def _outcomes(self, worker: _Worker, ended: list[tuple[int, bulk.Outcome]]) -> None:
        assert self._slots is not None
        worker.wake.set()  # it may be short of jobs now
        for seq, outcome in ended:
            entry = worker.held.pop(seq, None)
            if entry is not None:
                self._slots.release()
                job, tag, batcher = entry
                batcher.settle(job, tag, outcome)

    def _died(self, worker: _Worker, error: BaseException) -> None:
        """A worker that failed is not reused: what it held takes the ordinary path."""
        if worker in self._all:
            self._all.remove(worker)
        held, worker.held = worker.held, {}
        why = f"bulk worker: {type(error).__name__}: {error}"
        for job, tag, batcher in held.values():
            if self._slots is not None:
                self._slots.release()
            batcher.settle(job, tag, (None, why))
        stopping = asyncio.get_running_loop().create_task(worker.stop())
        self._stopping.add(stopping)
        stopping.add_done_callback(self._stopping.discard)

    def batcher(self, done: Done, failed: Failed) -> Batcher:
        return Batcher(self, done, failed)

    async def fetch(self, job: bulk.BulkJob) -> bulk.Outcome | None:
        """One job, awaited: its outcome (a stat signature, or None and why); None at once
        when :data:`SHARED` jobs of this kind already run (the caller takes the ordinary
        path: the bytes of large-ish files are hashed on both sides, on all the cores)."""
        if self._fetching >= SHARED:
            return None
        self._fetching += 1
        try:
            one = _One()
            await self.submit(job, "", one)
            return await one.future
        finally:
            self._fetching -= 1

    async def close(self) -> None:
        workers, self._all = self._all, []
        for w in workers:
            w.dead = w.dead or RuntimeError("closed")
        await asyncio.gather(*(w.stop() for w in workers), *self._stopping)


class Settler(Protocol):
    def settle(self, job: bulk.BulkJob, tag: str, outcome: bulk.Outcome) -> None: ...


class _One:
    """The settler of one awaited job."""

    def __init__(self) -> None:
        self.future: asyncio.Future[bulk.Outcome] = asyncio.get_running_loop().create_future()

    def settle(self, job: bulk.BulkJob, tag: str, outcome: bulk.Outcome) -> None:
        if not self.future.done():
            self.future.set_result(outcome)


class Batcher:
    """One caller's jobs on the runner's workers (a Zarr's public chunks).

    ``done(job, tag, stat)`` is called for each committed job; ``failed(job, tag, why)`` is
    awaited, as a task, for each job a worker handed back.
    """

    def __init__(self, runner: BulkRunner, done: Done, failed: Failed):
        self.runner = runner
        self.done = done
        self.failed = failed
        self.pending = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []
        self.cancelled = False

    async def add(self, job: bulk.BulkJob, tag: str) -> None:
        self._raise_first()
        self.pending += 1
        self.idle.clear()
        try:
            await self.runner.submit(job, tag, self)
        except BaseException:
            self._one_less()
            raise

    def settle(self, job: bulk.BulkJob, tag: str, outcome: bulk.Outcome) -> None:
        stat, why = outcome
        if not self.cancelled:
            if stat is not None:
                try:
                    self.done(job, tag, stat)
                except Exception as e:
                    self.errors.append(e)
            else:
                task = asyncio.get_running_loop().create_task(self.failed(job, tag, why))
                self.tasks.add(task)
                task.add_done_callback(self._retried)
                return
        self._one_less()

    def _retried(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]
        self._one_less()

    def _one_less(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.idle.set()

    def _raise_first(self) -> None:
        if self.errors:
            raise self.errors[0]

    async def finish(self) -> None:
        """Wait for every job (and every retry) to end."""
        try:
            await self.idle.wait()
        except BaseException:
            await self.cancel()
            raise
        self._raise_first()

    async def cancel(self) -> None:
        """Stop caring: outcomes still to come are dropped, retries are cancelled."""
        self.cancelled = True
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*list(self.tasks), return_exceptions=True)
