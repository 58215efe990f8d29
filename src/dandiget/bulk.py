"""Many small public objects at once, through libcurl's multi interface (pycurl).

Why: a Zarr is tens of thousands of chunks of kilobytes, so the cost is per request, not
per byte. Measured side by side (``bench/http_paths.py``, 50,000 x 16 KiB on loopback,
md5-verified and renamed into place), aiohttp spends ~88 µs of CPU per object and
libcurl's multi interface ~41 µs, the md5 and the file's system calls included.

This is a fast path, not a second policy: each object gets one attempt, with the run's
connect and stall timeouts, no redirects, no proxy, no auth (only public content URLs come
here). Whatever does not end verified and committed — an HTTP error, a short body, a
digest that differs, a timeout — is handed back, and the caller sends it through the one
request executor (``requests.py``), which owns retries and everything else.

The module imports only the standard library and pycurl, so a worker process that runs
:func:`serve` starts in milliseconds.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import selectors
import shutil
import struct
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

try:
    import pycurl
except ImportError:  # pragma: no cover - pycurl has wheels for Linux; elsewhere: aiohttp
    pycurl = None

#: Objects larger than this take the streaming path (one dandi-etag part at most anyway).
BULK_MAX_SIZE = 8 * 1024 * 1024


def available() -> bool:
    return pycurl is not None


@dataclass(frozen=True, slots=True)
class BulkJob:
    """One object: GET ``url`` into ``temp``, check ``digest``, rename onto ``target``."""

    url: str
    temp: str
    target: str
    size: int
    #: "md5", or "dandi-etag" of one part (md5 of the md5, then "-1").
    algo: str
    digest: str
    mtime_ns: int | None


@dataclass(frozen=True, slots=True)
class Limits:
    connections: int
    connect_timeout: float
    #: Seconds without a byte before the attempt is given up (and handed back).
    stall: float
    user_agent: str


#: Per job, in order: the committed file's stat signature (size, mtime_ns, ino, ctime_ns),
#: or None and why it was handed back.
Outcome = tuple[tuple[int, int, int, int] | None, str]


def refused(why: str) -> bool:
    """Whether a handed-back outcome was the content host refusing the unsigned read."""
    return why == "HTTP 403"


def _matches(algo: str, h: Any, want: str) -> bool:
    if algo == "md5":
        return bool(h.hexdigest() == want)
    return hashlib.md5(h.digest()).hexdigest() + "-1" == want


class _Transfer:
    __slots__ = ("fd", "got", "hasher", "index", "job")

    def __init__(self, index: int, job: BulkJob):
        self.index = index
        self.job = job
        self.fd = os.open(job.temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.hasher = hashlib.md5()
        self.got = 0

    def write(self, data: bytes) -> int | None:
        self.got += len(data)
        if self.got > self.job.size:
            return 0  # more than announced: abort this transfer (curl reports an error)
        self.hasher.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        return None

    def commit(self, status: int) -> Outcome:
        job = self.job
        try:
            if status != 200:
                return None, f"HTTP {status}"
            if self.got != job.size:
                return None, f"body ended after {self.got} of {job.size} bytes"
            if not _matches(job.algo, self.hasher, job.digest):
                return None, f"{job.algo} mismatch"
            if job.mtime_ns is not None:
                os.utime(self.fd, ns=(time.time_ns(), job.mtime_ns))
            os.close(self.fd)
            self.fd = -1
            try:
                os.replace(job.temp, job.target)
            except IsADirectoryError:
                shutil.rmtree(job.target)
                os.replace(job.temp, job.target)
            st = os.stat(job.target)
            return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns), ""
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            try:
                os.unlink(self.job.temp)
            except OSError:
                pass


def _handle(limits: Limits) -> Any:
    c = pycurl.Curl()
    c.setopt(pycurl.NOSIGNAL, 1)
    c.setopt(pycurl.FOLLOWLOCATION, 0)
    c.setopt(pycurl.FAILONERROR, 1)  # an HTTP error is the outcome, its body is not data
    c.setopt(pycurl.PROXY, "")  # as the aiohttp session: the environment's proxy is not used
    c.setopt(pycurl.USERAGENT, limits.user_agent)
    c.setopt(pycurl.CONNECTTIMEOUT_MS, int(limits.connect_timeout * 1000))
    c.setopt(pycurl.LOW_SPEED_LIMIT, 1)
    c.setopt(pycurl.LOW_SPEED_TIME, max(1, int(limits.stall)))
    return c


class Multi:
    """A libcurl multi handle fed one job at a time: at most ``limits.connections``
    transfers at once, the rest waiting in order. :meth:`step` moves bytes and returns the
    outcomes of the transfers that ended, so a caller can keep adding jobs while others run
    (no batch ends with its connections draining).

    Event-driven (libcurl's socket interface on a selector): each step costs what is ready,
    not a pass over every connection, which matters when most wait on a slow link.
    """

    def __init__(self, limits: Limits):
        if pycurl is None:  # pragma: no cover - callers check available() first
            raise RuntimeError("pycurl is not installed")
        self.multi = pycurl.CurlMulti()
        self.selector = selectors.DefaultSelector()
        self.extra: set[int] = set()
        self.ready: list[tuple[int, int]] = []
        self.deadline: float | None = None
        self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self.multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self.handles = [_handle(limits) for _ in range(max(1, limits.connections))]
        self.free = list(self.handles)
        self.active: dict[Any, _Transfer] = {}
        self.waiting: deque[tuple[int, BulkJob]] = deque()
        self.ended: list[tuple[int, Outcome]] = []

    def _on_socket(self, what: int, fd: int, multi: Any, data: Any) -> None:
        if what == pycurl.POLL_REMOVE:
            if fd in self.selector.get_map():
                self.selector.unregister(fd)
            return
        events = ((selectors.EVENT_READ if what in (pycurl.POLL_IN, pycurl.POLL_INOUT) else 0)
                  | (selectors.EVENT_WRITE if what in (pycurl.POLL_OUT, pycurl.POLL_INOUT)
                     else 0))
        if fd in self.selector.get_map():
            self.selector.modify(fd, events)
        else:
            self.selector.register(fd, events)

    def _on_timer(self, ms: int) -> None:
        self.deadline = None if ms < 0 else time.monotonic() + ms / 1000

    def add(self, seq: int, job: BulkJob) -> None:
        self.waiting.append((seq, job))

    @property
    def busy(self) -> bool:
        return bool(self.active or self.waiting or self.ended)

    def _start(self) -> None:
        while self.free and self.waiting:
            seq, job = self.waiting.popleft()
            try:
                t = _Transfer(seq, job)
            except OSError as e:
                self.ended.append((seq, (None, f"{type(e).__name__}: {e}")))
                continue
            c = self.free.pop()
            c.setopt(pycurl.URL, job.url)
            c.setopt(pycurl.WRITEFUNCTION, t.write)
            self.active[c] = t
            self.multi.add_handle(c)  # libcurl sets a timer of 0: the next step starts it

    def _finish(self, c: Any, error: str) -> None:
        self.multi.remove_handle(c)
        t = self.active.pop(c)
        self.free.append(c)
        if error:
            t.close()
            status = c.getinfo(pycurl.RESPONSE_CODE)  # FAILONERROR: say which status
            self.ended.append((t.index, (None, f"HTTP {status}" if status >= 400 else error)))
            return
        try:
            self.ended.append((t.index, t.commit(c.getinfo(pycurl.RESPONSE_CODE))))
        except OSError as e:
            self.ended.append((t.index, (None, f"{type(e).__name__}: {e}")))

    def step(self) -> list[tuple[int, Outcome]]:
        """Start what can start, act on what :meth:`wait` found ready, and hand over what
        ended."""
        self._start()
        ready, self.ready = self.ready, []
        for fd, mask in ready:
            self.multi.socket_action(fd, mask)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.deadline = None
            self.multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)
        while True:
            queued, ok, failed = self.multi.info_read()
            for c in ok:
                self._finish(c, "")
            for c, _errno, msg in failed:
                self._finish(c, msg or "transfer failed")
            if not queued:
                break
        self._start()
        ended, self.ended = self.ended, []
        return ended

    def wait(self, extra: Sequence[int] = (), timeout: float = 1.0) -> list[int]:
        """Block until a transfer's socket (or one of ``extra``) is ready, libcurl's timer
        is due, or ``timeout`` ends (idle with ``extra``: until one of them is); returns
        which of ``extra`` are readable."""
        for fd in extra:
            if fd not in self.extra:
                self.extra.add(fd)
                self.selector.register(fd, selectors.EVENT_READ)
        wait: float | None = timeout
        if self.ended:
            wait = 0
        elif self.deadline is not None:
            wait = min(timeout, max(0.0, self.deadline - time.monotonic()))
        elif not self.active and extra:
            wait = None
        out = []
        for key, events in self.selector.select(wait):
            if key.fd in self.extra:
                out.append(key.fd)
            else:
                self.ready.append((key.fd, (pycurl.CSELECT_IN if events & selectors.EVENT_READ
                                            else 0)
                                   | (pycurl.CSELECT_OUT if events & selectors.EVENT_WRITE
                                      else 0)))
        return out

    def close(self) -> None:
        """Abort what runs (its temporaries go) and free libcurl's handles."""
        for c, t in list(self.active.items()):
            self.multi.remove_handle(c)
            t.close()
        self.active.clear()
        self.waiting.clear()
        for c in self.handles:
            c.close()
        self.multi.close()
        self.selector.close()


# --------------------------------------------------------------------------- worker process


#: Jobs or outcomes per frame, at most (a frame costs each side a wake-up and a pickle).
GROUP = 64
#: Seconds an outcome may wait for others to share its frame.
FLUSH_AFTER = 0.01
#: A frame on the pipes: a length, then a pickle.
HEADER = struct.Struct("<Q")


def frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def unframe(data: bytes) -> Any:
    return pickle.loads(data)


def _read_exact(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def send(fd: int, obj: Any) -> None:
    """One frame on a pipe."""
    view = memoryview(frame(obj))
    while view:
        view = view[os.write(fd, view):]


def receive(fd: int) -> Any:
    (n,) = HEADER.unpack(_read_exact(fd, HEADER.size))
    return unframe(_read_exact(fd, n))


def serve(fd_in: int = 0, fd_out: int = 1) -> None:
    """A worker: jobs stream in on ``fd_in``, outcomes stream out on ``fd_out``.

    In: one :class:`Limits`, then lists of ``(seq, job)``. Out: lists of ``(seq, outcome)``
    as transfers end. New jobs are taken while others run, so the connections never drain
    between groups. When ``fd_in`` closes the worker aborts what still runs (removing its
    temporaries) and exits. Started by executors/bulk.py as ``python -m dandiget.bulk`` (or
    in a thread, over pipes); the pipes carry only pickles from the process that started it.
    """
    try:
        limits: Limits = receive(fd_in)
    except EOFError:
        return
    m = Multi(limits)
    ended: list[tuple[int, Outcome]] = []
    sent = time.monotonic()
    try:
        while True:
            # Outcomes go back in groups (a frame costs both sides a wake-up), but none
            # waits longer than FLUSH_AFTER.
            for _fd in m.wait([fd_in], FLUSH_AFTER if ended else 1.0):
                try:
                    for seq, job in receive(fd_in):
                        m.add(seq, job)
                except EOFError:
                    return
            ended += m.step()
            now = time.monotonic()
            if ended and (len(ended) >= GROUP or now - sent >= FLUSH_AFTER or not m.active):
                send(fd_out, ended)
                ended, sent = [], now
    finally:
        m.close()


if __name__ == "__main__":
    serve()
