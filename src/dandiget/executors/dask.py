"""The Dask executor: units run on the workers of a Dask cluster (``distributed``).

Units are shipped in batches (one task runs many Zarr entries or small files), so the
scheduler's per-task cost is amortised. Each worker process keeps one event loop, one
aiohttp session and one request executor for the whole run (:func:`_worker_context`),
reused by every task. Results come back as task results; the coordinator (in the
submitting process) records them, so the state, the report and the events are the same
as in a local run. Workers write straight into the output folder: it must be shared,
which :meth:`DaskExecutor.check_output` proves before the first byte.

A worker that dies mid-task (even SIGKILL) loses nothing: Dask runs the task again on
another worker, where units resume from their temporary files (or start over); no file
reaches its final path unverified. Units a worker cannot connect for (its network cannot
reach the content host) go to another worker. The API token, when the run needs one,
reaches workers once, in a worker plugin whose repr hides it — never in a task, its key or
its arguments — and is withdrawn when the run ends. Progress comes back as worker events,
one per task every PROGRESS_EVERY seconds, never one per chunk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import TransferConfig
from ..errors import DandigetError
from ..instances import Instance
from ..state import STATE_DIR
from ..transfer import Meter, Transferer
from ..units import Batch, RangeUnit, Result, Unit
from .work import UnitInterrupted, WorkerContext, run_unit

log = logging.getLogger("dandiget")

INSTALL_HINT = "The --dask option needs Dask: pip install 'dandiget[dask]'"

#: Units per task: enough to amortise the scheduler's per-task cost (~1 ms), few enough
#: that a lost worker costs little to redo.
BATCH_UNITS = 64
#: A partial batch waits at most this long for more units before it is shipped.
BATCH_WAIT = 0.02
#: Units one task runs at once on its worker.
TASK_CONCURRENCY = 32
#: Tasks in flight per worker thread (one queued behind each running one).
TASKS_PER_THREAD = 2
#: Workers a unit that cannot connect is tried on before its error is reported.
MAX_WORKERS_TRIED = 3
#: Seconds between a task's progress messages (bytes per unit since the last one).
PROGRESS_EVERY = 0.5


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise DandigetError(INSTALL_HINT) from None
    return distributed


class UnitFailed(DandigetError):
    """A unit failed on a worker; ``error_type`` names the worker's exception."""

    def __init__(self, message: str, error_type: str):
        super().__init__(message)
        self.error_type = error_type


class NotShared(DandigetError):
    """The output folder is not the same folder on every worker."""

    def __init__(self, out: Path, detail: str):
        super().__init__(
            f"The output folder {out} is not shared with the Dask workers: {detail}. "
            "Workers write straight into it: use a folder on a filesystem every worker "
            "mounts at the same path.")


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to build its context: no token (see :class:`TokenPlugin`)."""

    config: TransferConfig
    concurrency: int = TASK_CONCURRENCY


# ---------------------------------------------------------------------- the worker side

_TOKENS: dict[str, str] = {}
#: APIs a run shipped a token for (TokenPlugin): their clients follow ``_TOKENS``.
_SHIPPED: set[str] = set()
_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_GUARD = threading.Lock()
_CONTEXTS: dict[bytes, WorkerContext] = {}
#: What this worker process ran (units, of which ranges of a split file): for monitoring.
STATS = {"units": 0, "ranges": 0, "running": 0, "failed": 0}


def _worker_loop() -> asyncio.AbstractEventLoop:
    """This worker process's own event loop, in a thread (not Dask's: file writes and
    hashing must not stall the worker's heartbeats)."""
    global _LOOP
    with _LOOP_GUARD:
        if _LOOP is None or _LOOP.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="dandiget-worker-loop",
                             daemon=True).start()
            _LOOP = loop
        return _LOOP


async def _worker_context(settings: WorkerSettings) -> WorkerContext:
    """One session and request executor per worker process and settings, reused."""
    key = pickle.dumps(settings)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        import aiohttp

        from ..api import ApiClient

        cfg = settings.config
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=cfg.max_connections, limit_per_host=0,
                                           ttl_dns_cache=300),
            headers={"User-Agent": f"dandiget/{__version__}"}, auto_decompress=True)
        transferer = Transferer(session, cfg)
        clients: dict[Instance, ApiClient] = {}

        def client_for(instance: Instance) -> ApiClient:
            client = clients.get(instance)
            if client is None:
                client = clients[instance] = ApiClient(
                    instance, session, requester=transferer.requester)
            if instance.api in _SHIPPED:  # the shipping run's token; none once it ended
                client.token = _TOKENS.get(instance.api)
            return client

        ctx = _CONTEXTS[key] = WorkerContext(transferer, client_for)
    return ctx


class _Counter:
    """A worker-side meter: counts bytes moved (returned in the result)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def add(self, n: int) -> None:
        self.n += n

    def resumed(self, n: int) -> None:
        pass

    def rollback(self, n: int) -> None:
        pass


def unit_key(unit: Unit) -> str:
    """A unit's name in progress messages (the ranges of one file are told apart)."""
    return f"{unit.rec}#{unit.first}" if isinstance(unit, RangeUnit) else unit.rec


async def _report_progress(counters: dict[str, _Counter],
                           report: Callable[[dict[str, int]], None]) -> None:
    """Every PROGRESS_EVERY seconds, one message with the bytes each unit moved since."""
    sent: dict[str, int] = {}
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        deltas = {k: c.n - sent.get(k, 0) for k, c in counters.items()
                  if c.n != sent.get(k, 0)}
        if deltas:
            sent.update({k: counters[k].n for k in deltas})
            report(deltas)


async def _run_batch(batch: Batch, settings: WorkerSettings,
                     report: Callable[[dict[str, int]], None] | None = None) -> list[Result]:
    ctx = await _worker_context(settings)
    gate = asyncio.Semaphore(max(1, settings.concurrency))
    counters: dict[str, _Counter] = {}
    reporter = (asyncio.ensure_future(_report_progress(counters, report))
                if report is not None else None)

    async def one(unit: Unit) -> Result:
        async with gate:
            counter = counters[unit_key(unit)] = _Counter()
            try:
                result = await run_unit(ctx, unit, counter)
            except UnitInterrupted as e:
                result = e.result
            except Exception as e:  # reported per unit; the others go on
                from ..space import NotEnoughSpace

                STATS["failed"] += 1
                return Result(unit.rec, bytes=counter.n, error=str(e) or type(e).__name__,
                              error_type=type(e).__name__,
                              fatal=isinstance(e, NotEnoughSpace))
            STATS["units"] += 1
            STATS["ranges"] += isinstance(unit, RangeUnit)
            return replace(result, bytes=counter.n)

    try:
        return list(await asyncio.gather(*(one(u) for u in batch.units)))
    finally:
        if reporter is not None:
            reporter.cancel()


def run_batch(batch: Batch, settings: WorkerSettings, topic: str | None = None,
              probe: str | None = None) -> tuple[str, list[Result]]:
    """The Dask task: run a batch of units on this worker's loop; progress goes to the
    submitting process as worker events on ``topic``, a few a second per task. A worker
    that does not see the run's ``probe`` (it joined after the check) writes nothing."""
    if probe is not None and not os.path.isfile(probe):
        raise NotShared(Path(probe).parent.parent, "a worker that joined the run cannot see it")
    from distributed import get_worker

    worker = get_worker()
    report = None
    if topic is not None:
        def report(deltas: dict[str, int]) -> None:  # from our loop: hand to the worker's
            worker.loop.add_callback(worker.log_event, topic, deltas)

    STATS["running"] += 1
    try:
        return worker.address, asyncio.run_coroutine_threadsafe(
            _run_batch(batch, settings, report), _worker_loop()).result()
    finally:
        STATS["running"] -= 1


def sees_file(path: str) -> bool:
    """Run on every worker by the shared-folder check."""
    return os.path.isfile(path)


# ---------------------------------------------------------------------- the coordinator side


class DaskExecutor:
    """Ships batches of units to a Dask cluster and resolves each unit's result."""

    def __init__(self, client: Any, settings: WorkerSettings, *, cluster: Any = None,
                 batch_units: int = BATCH_UNITS, threads: int = 1):
        self.client = client
        self.settings = settings
        self.cluster = cluster
        self.batch_units = batch_units
        self._pending: list[tuple[Unit, asyncio.Future[Result]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._token_apis: set[str] = set()
        self._token_plugins: list[str] = []
        #: unit key -> [its meter, bytes already reported by progress messages]
        self._live: dict[str, list[Any]] = {}
        self.topic = f"dandiget-progress-{uuid.uuid4().hex}"
        #: The shared-folder probe (check_output) and the folders made for it.
        self.probe: Path | None = None
        self._created: list[Path] = []
        if client is not None:
            client.subscribe_topic(self.topic, self._on_progress)
        #: Worker threads when the run started (the ranges of a large file spread over them).
        self.threads = max(1, threads)

    @classmethod
    async def connect(cls, target: Any, config: TransferConfig) -> DaskExecutor:
        """``target``: a ``distributed.Client``, a scheduler address (``tcp://head:8786``)
        or ``local:N`` (a LocalCluster of N worker processes, closed with the run)."""
        distributed = _import_distributed()
        if not log.isEnabledFor(logging.DEBUG):  # the cluster's chatter is not the user's
            logging.getLogger("distributed").setLevel(logging.WARNING)
        cluster = None
        if isinstance(target, str) and target.startswith("local:"):
            try:
                n = int(target.split(":", 1)[1])
            except ValueError:
                raise DandigetError(f"--dask {target}: expected local:N (N worker processes)")\
                    from None
            cluster = await distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, asynchronous=True,
                dashboard_address=None, silence_logs=logging.WARNING)
            address = cluster.scheduler_address
        elif isinstance(target, str):
            address = target
        else:  # a Client (or anything with a scheduler address) the caller made
            address = target.scheduler.address
        try:
            client = await distributed.Client(address, asynchronous=True, timeout="30s")
        except (OSError, asyncio.TimeoutError) as e:
            if cluster is not None:
                await cluster.close()
            raise DandigetError(f"Cannot reach the Dask scheduler at {address}: {e}") from None
        try:
            if not await client.nthreads():
                await client.wait_for_workers(1, timeout=60)
            threads = sum((await client.nthreads()).values())
            from .dask_plugins import SessionPlugin

            await client.register_plugin(SessionPlugin(), name=SessionPlugin.name)
        except BaseException:
            await client.close()
            if cluster is not None:
                await cluster.close()
            raise
        return cls(client, WorkerSettings(config), cluster=cluster, threads=threads)

    def concurrency(self, default: int) -> int:
        # Enough units queued to fill a batch for every task in flight.
        return max(default, self.batch_units * self.threads * TASKS_PER_THREAD)

    def adaptive(self, sample: Callable[[], tuple[int, int]]) -> None:
        return None  # batches over a cluster: the fixed concurrency above keeps them full

    def ranges(self, size: int, n_parts: int) -> list[tuple[int, int]] | None:
        """A file of several parts spreads over the workers, a few parts a range."""
        if n_parts < 2:
            return None
        per = max(1, -(-n_parts // (4 * self.threads)))  # a few ranges a thread: balance
        return [(i, min(n_parts, i + per) - 1) for i in range(0, n_parts, per)]

    async def check_output(self, out: Path) -> None:
        """Every worker must see a probe file written here, before a byte is written.

        The probe stays for the run: a worker that joins later (an adaptive cluster) checks
        it before each task. The folder is created for it only if it did not exist, and
        removed again when nothing else was written, so a failed run leaves nothing behind.
        """
        folder = out / STATE_DIR  # hidden state: a killed run's probe is out of the tree
        probe_dir = folder
        while not probe_dir.exists():
            self._created.append(probe_dir)
            probe_dir = probe_dir.parent
        folder.mkdir(parents=True, exist_ok=True)
        probe = self.probe = folder / f"probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        # a worker lost meanwhile answers with an error: it writes nothing either
        answers = await self.client.run(sees_file, str(probe), on_error="return")
        seen = {w: ok for w, ok in answers.items() if isinstance(ok, bool)}
        blind = sorted(w for w, ok in seen.items() if not ok)
        if blind:
            raise NotShared(out, f"{len(blind)} of {len(seen)} worker(s) cannot see it "
                                 f"({', '.join(blind)})")

    def _remove_probe(self) -> None:
        if self.probe is not None:
            self.probe.unlink(missing_ok=True)
            self.probe = None
        for d in self._created:
            try:
                d.rmdir()  # only when the run wrote nothing there
            except OSError:
                break

    async def share_token(self, instance: Instance, token: str | None) -> None:
        """Hand the API token to the workers once (only runs that need it call this)."""
        if not token or instance.api in self._token_apis:
            return
        self._token_apis.add(instance.api)
        from .dask_plugins import TokenPlugin

        name = f"dandiget-token-{self.topic[-12:]}-{len(self._token_apis)}"
        self._token_plugins.append(name)
        await self.client.register_plugin(TokenPlugin({instance.api: token}), name=name)

    def _on_progress(self, event: tuple[float, dict[str, int]]) -> None:
        for key, n in event[1].items():
            live = self._live.get(key)
            if live is not None:
                live[0].add(n)
                live[1] += n

    async def run(self, unit: Unit, meter: Meter) -> Result:
        key = unit_key(unit)
        live = self._live[key] = [meter, 0]
        try:
            result = await self._submit(unit)
        finally:
            del self._live[key]
        if result.bytes > live[1]:
            meter.add(result.bytes - live[1])
        if not result.ok:
            if result.fatal:
                from ..space import NotEnoughSpace

                raise NotEnoughSpace(result.error)
            raise UnitFailed(result.error, result.error_type)
        verified = getattr(meter, "verified", None)
        if verified is not None and not isinstance(unit, RangeUnit):
            verified()  # the events a local run emits between the last byte and the rename
        return result

    async def _submit(self, unit: Unit) -> Result:
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        if isinstance(unit, RangeUnit):  # large: a task of its own, to spread over workers
            self._start(self._ship([(unit, fut)]))
        else:
            self._pending.append((unit, fut))
        if len(self._pending) >= self.batch_units:
            self._flush()
        elif self._pending and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_WAIT, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            chunk, self._pending = (self._pending[:self.batch_units],
                                    self._pending[self.batch_units:])
            self._start(self._ship(chunk))

    def _start(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ship(self, chunk: list[tuple[Unit, asyncio.Future[Result]]],
                    tried: frozenset[str] = frozenset()) -> None:
        """Run a batch as one task. Units its worker could not connect for go to a worker
        that has not tried them; their error is reported once no such worker is left."""
        batch = Batch(tuple(u for u, _ in chunk))
        try:
            others = [w for w in await self.client.nthreads() if w not in tried]
            future = self.client.submit(run_batch, batch, self.settings, self.topic,
                                        str(self.probe) if self.probe else None, pure=False,
                                        key=f"dandiget-batch-{uuid.uuid4().hex}",
                                        workers=others if tried else None,
                                        allow_other_workers=False)
            worker, results = await future
            others = [w for w in await self.client.nthreads() if w not in tried | {worker}]
        except BaseException as e:
            for _, fut in chunk:
                if not fut.done():
                    fut.set_exception(
                        UnitFailed(f"the Dask task running it failed: {e}", type(e).__name__)
                        if isinstance(e, Exception) else asyncio.CancelledError())
            if not isinstance(e, Exception):
                raise
            return
        again = []
        for (unit, fut), result in zip(chunk, results, strict=True):
            if (result.error_type == "ConnectError" and others
                    and len(tried) + 1 < MAX_WORKERS_TRIED):
                again.append((unit, fut))
            elif not fut.done():
                fut.set_result(result)
        if again:
            log.debug("%d unit(s) could not connect from %s: trying another worker",
                      len(again), worker)
            self._start(self._ship(again, tried | {worker}))

    async def close(self) -> None:
        self._remove_probe()
        self.client.unsubscribe_topic(self.topic)
        for name in self._token_plugins:  # the token does not outlive the run on the cluster
            try:
                await self.client.unregister_worker_plugin(name)
            except Exception as e:  # a worker gone meanwhile: it took the token with it
                log.debug("unregistering %s: %s", name, e)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()
        if self.cluster is not None:
            await self.cluster.close()
