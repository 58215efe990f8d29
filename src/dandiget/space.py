"""Free space, checked before the first byte instead of discovered by a failing write.

A transfer writes into a temporary file of the full size (sparse, filled in parallel), so a
disk that is too small is otherwise found late, mid-way through a large file. The rule:

* a Dandiset (or folder) URL: its total size (from the API) must fit, less the bytes already
  under its folder: first those the local state recorded (one query), and only when that
  is not enough, those a walk of the folder finds (files of another tool, unrecorded);
* a single asset, folder, prefix or glob URL, whose total is not known before its listing
  ends: every file, before its first byte, must fit with all files this run started
  before it in the space that was free when the run first wrote.

Both give one :class:`NotEnoughSpace` that stops the run. Temporaries need no extra room
(each becomes its file by a rename); a file being replaced briefly exists twice, which the
check ignores. ``--ignore-free-space`` skips it all.

When a disk fills anyway (the check skipped, another program writing), :class:`FullDisk`
makes the failure fall on the files that do not fit rather than on whichever file happened
to write while a larger one held the space.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from .compat.humanize import naturalsize
from .errors import DandigetError

#: How to go ahead anyway (named in the error).
OVERRIDE = "--ignore-free-space"


T = TypeVar("T")


class NotEnoughSpace(DandigetError):
    """The output filesystem cannot hold what the run is about to write."""


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def free_bytes(path: Path) -> int | None:
    """Free bytes (for an unprivileged writer) of the filesystem ``path`` is or would be on;
    None on a read-only filesystem, where the first write gives the clearer error."""
    p = _existing(path)
    if os.statvfs(p).f_flag & os.ST_RDONLY:
        return None
    return shutil.disk_usage(p).free


def bytes_under(root: Path) -> int:
    """Sum of the sizes of the files under ``root`` (0 if it does not exist)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


class SpaceCheck:
    """The free-space rule for one run writing under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self._free_at_start: int | None = None
        self._started = 0

    def _error(self, need: int, free: int, what: str) -> NotEnoughSpace:
        return NotEnoughSpace(
            f"Not enough free space in {self.root}: {what} needs {naturalsize(need)} "
            f"({need} bytes), {naturalsize(free)} ({free} bytes) are free. Free some space, "
            f"choose another output folder, or pass {OVERRIDE} to try anyway.")

    def check_total(self, total: int, area: Path, what: str, recorded: int = 0) -> None:
        """Before the first write of a selection whose total size is known; ``recorded``:
        bytes the local state knows are already under ``area``."""
        free = free_bytes(self.root)
        if free is None or total - recorded <= free:
            return
        need = total - bytes_under(area)
        if need > free:
            raise self._error(need, free, what)

    def check_file(self, size: int, what: str) -> None:
        """Before the first byte of one file of a selection whose total is not known."""
        if self._free_at_start is None:
            self._free_at_start = free_bytes(self.root)
            if self._free_at_start is None:
                self._free_at_start = -1  # read-only: nothing to check
        if self._free_at_start < 0:
            return
        if self._started + size > self._free_at_start:
            raise self._error(self._started + size, self._free_at_start,
                              f"{what} (with the {self._started} bytes started before it)"
                              if self._started else what)
        self._started += size


class FullDisk:
    """One more try for a file whose write met a full disk, once every file that was being
    written at that moment has ended (committed, or failed and removed its temporary), and
    only if it fits then: tries run one at a time, so they cannot fill the disk for each
    other again. A file that does not fit fails with its original error.

    A file that met a full disk loses its temporary (``clean``): its bytes are the room the
    others need, and with the free-space check on, only something outside the run or
    ``--ignore-free-space`` lets a disk fill mid-run."""

    def __init__(self, announce: Callable[[str, str], None]):
        self._announce = announce
        self._ids = itertools.count()
        self._writing: set[int] = set()
        self._waiting: list[tuple[set[int], asyncio.Event]] = []
        self._retry = asyncio.Lock()

    async def write(self, rec: str, folder: Path, size: int,
                    attempt: Callable[[], Awaitable[T]], clean: Callable[[], None]) -> T:
        """``attempt()``, and once more after a full disk if ``size`` bytes fit then."""
        try:
            return await self._tracked(attempt, clean)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            full = e
        others = set(self._writing)
        if others:
            self._announce(rec, f"disk full: waiting for {len(others)} other file(s) "
                                "being written to end")
            entry = (others, asyncio.Event())
            self._waiting.append(entry)
            try:
                await entry[1].wait()
            finally:
                self._waiting.remove(entry)
        async with self._retry:
            free = free_bytes(folder)
            if free is not None and free < size:
                raise full
            return await self._tracked(attempt, clean)

    async def _tracked(self, attempt: Callable[[], Awaitable[T]],
                       clean: Callable[[], None]) -> T:
        me = next(self._ids)
        self._writing.add(me)
        try:
            return await attempt()
        except OSError as e:
            if e.errno == errno.ENOSPC:
                await asyncio.to_thread(clean)  # before the waiters look at the free space
            raise
        finally:
            self._writing.discard(me)
            for others, ended in self._waiting:
                if not others & self._writing:
                    ended.set()
