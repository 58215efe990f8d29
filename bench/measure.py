"""Run one command and measure it: wall time, CPU time, peak RSS of its process tree.

The command runs in its own session (process group). While it runs, ``/proc`` is polled
every ``interval`` seconds and the RSS of every process of that group is summed; the peak
of that sum is the tree's peak RSS. GNU time (``/usr/bin/time -f %M``) wraps the command
when installed: its exact peak RSS of the tool process is a floor for that (the harness's
own ``ru_maxrss`` for the child is useless: Linux records the forked copy of the harness
at exec). CPU time is ``ru_utime + ru_stime`` from ``wait4``: the tool and every
descendant it waited for. On timeout the group gets SIGTERM, then SIGKILL; the same when
``stop_when()`` (polled every ``interval``) returns true: the moment it did is ``event``
(time to first file: the run is stopped once it has shown what is measured).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers import REGISTRY

PAGE = os.sysconf("SC_PAGE_SIZE")
GNU_TIME = Path("/usr/bin/time")


@dataclass
class Measurement:
    returncode: int | None  # None: killed on timeout
    wall: float
    cpu: float
    peak_rss: int  # bytes
    timed_out: bool
    event: float | None = None  # seconds from start until stop_when() held


def _group_rss(pgid: int) -> int:
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2:].split()
        if len(rest) > 21 and int(rest[2]) == pgid:
            total += int(rest[21]) * PAGE
    return total


def _stop_group(pid: int) -> tuple[int, Any]:
    """SIGTERM the group, SIGKILL it after 10 s; the leader's wait status and rusage."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        wpid, st, ru = os.wait4(pid, os.WNOHANG)
        if wpid == pid:
            return st, ru
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _, st, ru = os.wait4(pid, 0)
    return st, ru


def run_measured(cmd: list[str], *, env: dict[str, str], cwd: Path, stdout: Path,
                 stderr: Path, timeout: float, interval: float = 0.05,
                 stop_when: Callable[[], bool] | None = None) -> Measurement:
    rss_file = stderr.with_suffix(".maxrss")
    if GNU_TIME.exists():
        cmd = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *cmd]
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        t0 = time.perf_counter()
        proc = REGISTRY.popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=err)
    pid = proc.pid
    peak = 0
    timed_out = False
    event: float | None = None
    status = None
    rusage = None
    try:
        while True:
            wpid, st, ru = os.wait4(pid, os.WNOHANG)
            if wpid == pid:
                status, rusage = st, ru
                break
            peak = max(peak, _group_rss(pid))
            if stop_when is not None and stop_when():
                event = time.perf_counter() - t0
                status, rusage = _stop_group(pid)
                break
            if time.perf_counter() - t0 > timeout:
                timed_out = True
                status, rusage = _stop_group(pid)
                break
            time.sleep(interval)
        wall = time.perf_counter() - t0
    finally:
        if status is not None:  # else interrupted (Ctrl-C): REGISTRY.cleanup() reaps it
            proc.returncode = os.waitstatus_to_exitcode(status)
            # Stragglers left in the group (daemonised helpers) do not outlive the run.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if proc in REGISTRY.procs:
                REGISTRY.procs.remove(proc)
    assert rusage is not None and status is not None
    try:
        peak = max(peak, int(rss_file.read_text().split()[-1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return Measurement(
        returncode=None if timed_out or event is not None else proc.returncode,
        wall=wall,
        cpu=rusage.ru_utime + rusage.ru_stime,
        peak_rss=peak,
        timed_out=timed_out,
        event=event,
    )
