"""dandi-cli's ``<name>.dandidownload/`` temporary-directory protocol (spec §5.3).

dandiget's own engine writes ``.dandiget-part`` files and never uses this class; it exists so
that code written against ``dandi.download.DownloadDirectory`` keeps working and so that the
on-disk layout stays interchangeable with dandi-cli (a dandi-cli partial download can be
resumed through this class and vice versa).

Layout for target ``X/name``::

    X/name.dandidownload/file      data received so far
    X/name.dandidownload/checksum  JSON object of the expected digests (resume key)
    X/name.dandidownload/lock      inter-process lock (fcntl.flock, never blocks)

Deviation from dandi-cli (spec §11.2 item 15): on success the working directory is removed
*before* the lock is released, so a concurrent process can never lock a directory that is
about to disappear.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["DOWNLOAD_SUFFIX", "DownloadDirectory"]

DOWNLOAD_SUFFIX = ".dandidownload"

lgr = logging.getLogger(__name__)


class DownloadDirectory:
    """Context manager around one file's temporary download directory.

    On entry the lock is taken (``RuntimeError`` if another process holds it) and the
    partial ``file`` is kept for resuming only when the stored digests agree with
    ``digests`` on every algorithm both name; ``offset`` is where writing continues.
    On a clean exit the data is renamed onto ``filepath`` (replacing a file, symlink or
    directory); on an exception the directory is kept so a later run can resume.
    """

    def __init__(self, filepath: str | Path, digests: dict[str, str]) -> None:
        self.filepath = Path(filepath)
        self.digests = digests
        self.dirpath = self.filepath.with_name(self.filepath.name + DOWNLOAD_SUFFIX)
        self.writefile = self.dirpath / "file"
        self.checksum_file = self.dirpath / "checksum"
        self.lock: IO[bytes] | None = None
        self.fp: IO[bytes] | None = None
        self.offset: int | None = None

    def __enter__(self) -> DownloadDirectory:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._open_file()
        except BaseException:
            self._release_lock()
            raise
        return self

    def _acquire_lock(self) -> None:
        lock = open(self.dirpath / "lock", "ab")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise RuntimeError(f"Could not acquire download lock for {self.filepath}") from None
        self.lock = lock

    def _release_lock(self) -> None:
        if self.lock is not None:
            # Closing the descriptor drops the flock.
            self.lock.close()
            self.lock = None

    def _stored_digests(self) -> dict[str, Any]:
        try:
            stored = json.loads(self.checksum_file.read_text())
        except (OSError, ValueError):
            return {}
        return stored if isinstance(stored, dict) else {}

    def _can_resume(self) -> bool:
        stored = self._stored_digests()
        shared = stored.keys() & self.digests.keys()
        return bool(shared) and all(stored[name] == self.digests[name] for name in shared)

    def _open_file(self) -> None:
        if self._can_resume():
            lgr.debug("%s: resuming partial download", self.dirpath)
        else:
            try:
                self.writefile.unlink()
            except FileNotFoundError:
                pass
        self.checksum_file.write_text(json.dumps(self.digests))
        self.fp = open(self.writefile, "ab")  # noqa: SIM115 - closed in __exit__
        self.offset = self.fp.tell()

    def append(self, blob: bytes) -> None:
        """Write the next chunk of data (no flush: the OS buffers, rename publishes)."""
        if self.fp is None:
            raise ValueError("DownloadDirectory.fp is None; not inside the context")
        self.fp.write(blob)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        assert self.fp is not None
        position = self.fp.tell()
        self.fp.close()
        lgr.debug(
            "%s - entered __exit__ with position %d with exception: %s, %s",
            self.dirpath,
            position,
            exc_type,
            exc_val,
        )
        try:
            if exc_type is None:
                self._publish()
                shutil.rmtree(self.dirpath, ignore_errors=True)
        finally:
            self._release_lock()

    def _publish(self) -> None:
        """Atomically move the data onto the target, replacing even a directory there."""
        try:
            os.replace(self.writefile, self.filepath)
        except (IsADirectoryError, PermissionError, OSError) as exc:
            if not self.filepath.is_dir() or self.filepath.is_symlink():
                raise
            lgr.debug("%s is a directory (%s); removing it before renaming", self.filepath, exc)
            shutil.rmtree(self.filepath)
            os.replace(self.writefile, self.filepath)
