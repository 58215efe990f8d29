"""Commit: a verified temporary file becomes the real file, atomically, with its mtime."""

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


def commit_file(temp: Path, target: Path, mtime: datetime | None, *, sync: bool) -> None:
    """Rename a verified temporary onto ``target`` (replacing a file, link or folder)."""
    if sync:
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(temp, target)
    if mtime is not None:
        set_mtime(target, mtime)


def set_mtime(path: Path, mtime: datetime) -> None:
    """Set the modification time (access time becomes now, as in dandi-cli)."""
    os.utime(path, ns=(time.time_ns(), to_ns(mtime)))


def remove_path(path: Path) -> None:
    """Delete a file, link or whole folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
