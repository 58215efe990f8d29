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
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .compat.humanize import naturalsize
from .errors import DandigetError

#: How to go ahead anyway (named in the error).
OVERRIDE = "--ignore-free-space"


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
