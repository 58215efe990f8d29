"""Commit: a verified temporary file becomes the real file, atomically, with its mtime.

The one final IO step of every file — blob, range-split large file, or Zarr entry — on
whichever process executed its unit.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime
from pathlib import Path

from .paths import Confinement
from .plan import to_ns


def prepare_parent(target: Path, root: Path, confinement: Confinement, *,
                   may_replace_files: bool) -> None:
    """Make ``target``'s folder exist, inside the output root.

    A local *file* standing where the server now has a folder blocks the download. dandi-cli
    deleted it silently even with ``--existing error`` (§4.7); we delete it only when the
    policy allows replacing local files, and otherwise raise FileExistsError.
    """
    parent = target.parent
    probe = parent
    while probe != root and not probe.exists():
        if probe.is_symlink():  # a dangling link where a folder must go
            break
        probe = probe.parent
    if probe != root and (probe.is_file() or probe.is_symlink()) and not probe.is_dir():
        if not may_replace_files:
            raise FileExistsError(f"File {str(probe)!r} already exists where a folder is needed")
        confinement.check_dir(probe.parent)
        probe.unlink()
    parent.mkdir(parents=True, exist_ok=True)
    confinement.check_dir(parent)


def commit_file(temp: Path, target: Path, mtime: datetime | int | None, *, sync: bool,
                size: int | None = None) -> None:
    """Rename a verified temporary onto ``target`` (replacing a file, link or folder).

    ``mtime`` is a datetime or nanoseconds; ``size`` truncates the temporary first (a file
    written in ranges by several processes ends exactly where the object does).
    """
    if sync or size is not None:
        fd = os.open(temp, os.O_RDWR if size is not None else os.O_RDONLY)
        try:
            if size is not None:
                os.ftruncate(fd, size)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(temp, target)
    if mtime is not None:
        os.utime(target, ns=(time.time_ns(), mtime if isinstance(mtime, int) else to_ns(mtime)))


def write_verified(temp: Path, target: Path, data: bytes, mtime_ns: int | None) -> None:
    """Write verified bytes to ``temp``, stamp the mtime, and rename onto ``target``."""
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if mtime_ns is not None:
            os.utime(fd, ns=(time.time_ns(), mtime_ns))
    finally:
        os.close(fd)
    try:
        os.replace(temp, target)
    except IsADirectoryError:
        shutil.rmtree(target)
        os.replace(temp, target)


def set_mtime(path: Path, mtime: datetime) -> None:
    """Set the modification time (access time becomes now, as in dandi-cli)."""
    os.utime(path, ns=(time.time_ns(), to_ns(mtime)))


def remove_path(path: Path) -> None:
    """Delete a file, link or whole folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
