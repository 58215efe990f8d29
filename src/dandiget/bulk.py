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
:func:`run_batch` starts in milliseconds.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import struct
import time
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


def run_batch(jobs: Sequence[BulkJob], limits: Limits) -> list[Outcome]:
    """Fetch, verify and commit every job; one outcome per job, in order. Never raises for
    a job's own failure (that is its outcome); raises only if the machinery itself fails."""
    if pycurl is None:
        return [(None, "pycurl is not installed")] * len(jobs)
    outcomes: list[Outcome] = [(None, "not attempted")] * len(jobs)
    multi = pycurl.CurlMulti()
    handles = [_handle(limits) for _ in range(max(1, min(limits.connections, len(jobs))))]
    free = list(handles)
    active: dict[Any, _Transfer] = {}
    pending = iter(enumerate(jobs))

    def start(c: Any) -> bool:
        for i, job in pending:
            try:
                t = _Transfer(i, job)
            except OSError as e:
                outcomes[i] = (None, f"{type(e).__name__}: {e}")
                continue
            c.setopt(pycurl.URL, job.url)
            c.setopt(pycurl.WRITEFUNCTION, t.write)
            active[c] = t
            multi.add_handle(c)
            return True
        return False

    def finish(c: Any, error: str) -> None:
        multi.remove_handle(c)
        t = active.pop(c)
        if error:
            t.close()
            outcomes[t.index] = (None, error)
        else:
            try:
                outcomes[t.index] = t.commit(c.getinfo(pycurl.RESPONSE_CODE))
            except OSError as e:
                outcomes[t.index] = (None, f"{type(e).__name__}: {e}")
        free.append(c)

    try:
        while free and start(free[-1]):
            free.pop()
        while active:
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            while True:
                queued, ok, failed = multi.info_read()
                for c in ok:
                    finish(c, "")
                for c, _errno, msg in failed:
                    finish(c, msg or "transfer failed")
                if not queued:
                    break
            while free and start(free[-1]):
                free.pop()
            if active:
                multi.select(1.0)
    finally:
        for c, t in list(active.items()):
            multi.remove_handle(c)
            t.close()
        for c in handles:
            c.close()
        multi.close()
    return outcomes


# --------------------------------------------------------------------------- worker process


def _read_exact(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def send(fd: int, obj: Any) -> None:
    """One length-prefixed pickle on a pipe."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(struct.pack("<Q", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def receive(fd: int) -> Any:
    (n,) = struct.unpack("<Q", _read_exact(fd, 8))
    return pickle.loads(_read_exact(fd, n))


def serve(fd_in: int = 0, fd_out: int = 1) -> None:
    """A worker: batches in on stdin, outcomes out on stdout, until stdin closes.

    Started by executors/bulk.py as ``python -m dandiget.bulk``; the pipes carry only this
    process's own pickles (jobs and outcomes), from the parent that started it.
    """
    while True:
        try:
            jobs, limits = receive(fd_in)
        except EOFError:
            return
        send(fd_out, run_batch(jobs, limits))


if __name__ == "__main__":
    serve()
