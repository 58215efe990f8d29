"""The decision for one local path: download, skip, or refuse. A pure function.

Like pooch's ``download_action``, :func:`decide` looks only at values handed to it (the
``existing`` policy, a stat of the local path, what the server says, and what the local
state recorded when dandiget last verified this path) and never touches the disk or the
network. That makes it exhaustively testable and is what ``--dry-run`` prints.

Under ``existing=error`` a file dandiget itself downloaded and verified, unchanged since
(its state record matches the server's digest and the file's stat signature), is not an
error but "already downloaded": re-running a command after Ctrl-C resumes instead of
failing on every file the first run finished. Any other existing file is refused, as
dandi-cli does.

When only a digest of the local file can settle the question (``overwrite-different``
without a matching state record), :func:`decide` answers ``HASH`` and the caller hashes the
file and asks :func:`decide_after_hash`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum

from .options import DownloadExisting

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_ns(dt: datetime) -> int:
    """Exact nanoseconds since the epoch (naive datetimes are taken as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1000


class Action(str, Enum):
    DOWNLOAD = "download"
    SKIP = "skip"
    HASH = "hash"  # compare a local digest first, then skip or download
    ERROR = "error"  # refuse: the policy forbids touching this path


@dataclass(frozen=True)
class LocalStat:
    """What ``lstat``/``stat`` said about a local path."""

    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int
    is_dir: bool = False
    is_symlink: bool = False

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> LocalStat | None:
        """Stat a path (following symlinks; a broken symlink still "exists"), or None."""
        try:
            st = os.lstat(path)  # one syscall for the common cases: missing, or a plain file
        except (FileNotFoundError, NotADirectoryError):
            return None
        is_link = stat.S_ISLNK(st.st_mode)
        if is_link:
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):  # a broken link still "exists"
                return cls(size=-1, mtime_ns=0, ino=0, ctime_ns=0, is_symlink=True)
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, ino=st.st_ino,
                   ctime_ns=st.st_ctime_ns, is_dir=stat.S_ISDIR(st.st_mode), is_symlink=is_link)

    def signature(self) -> tuple[int, int, int, int]:
        return (self.size, self.mtime_ns, self.ino, self.ctime_ns)


@dataclass(frozen=True)
class RemoteFile:
    """What the server says about a file (a blob, or one Zarr entry)."""

    size: int
    mtime: datetime | None
    #: The digest we verify against: ("dandi-etag", value) for blobs, ("md5", value) for entries.
    digest: tuple[str, str] | None


@dataclass(frozen=True)
class StateRecord:
    """What dandiget recorded the last time it verified this path."""

    signature: tuple[int, int, int, int]
    digest: tuple[str, str]


@dataclass(frozen=True)
class Decision:
    action: Action
    #: dandi-cli's message for skips ("already exists", "same time and size"), or why.
    reason: str = ""


def same_mtime(local_ns: int, remote: datetime) -> bool:
    """Equal modification times, tolerating coarse filesystem timestamps.

    dandi-cli demanded equality within 1 µs, which never holds on FAT/exFAT (2 s), some
    network mounts or WSL's /mnt drives (whole seconds), so ``refresh`` re-downloaded
    everything every night (dandi-cli #1907). When the local value carries no sub-second
    part we accept a difference below the coarsest common granularity (2 s).
    """
    remote_ns = to_ns(remote)
    diff = abs(local_ns - remote_ns)
    if diff <= 1000:
        return True
    if local_ns % 1_000_000_000 == 0:  # a whole-second (or 2-second) filesystem
        return diff < 2_000_000_000
    return False


def decide(existing: DownloadExisting, local: LocalStat | None, remote: RemoteFile,
           record: StateRecord | None = None) -> Decision:
    """What to do with one target path. See the module docstring."""
    if local is None:
        return Decision(Action.DOWNLOAD, "new")
    trusted = (
        record is not None
        and not local.is_dir
        and remote.digest is not None
        and record.digest == remote.digest
        and record.signature == local.signature()
    )
    if existing is DownloadExisting.ERROR:
        if trusted:
            return Decision(Action.SKIP, "already downloaded")
        return Decision(Action.ERROR, "already exists")
    if existing is DownloadExisting.SKIP:
        return Decision(Action.SKIP, "already exists")
    if existing is DownloadExisting.OVERWRITE:
        return Decision(Action.DOWNLOAD, "overwrite")
    if existing is DownloadExisting.REFRESH:
        if trusted:
            return Decision(Action.SKIP, "same time and size")
        if remote.mtime is None:
            return Decision(Action.DOWNLOAD, "no remote mtime")
        if (not local.is_dir and local.size == remote.size
                and same_mtime(local.mtime_ns, remote.mtime)):
            return Decision(Action.SKIP, "same time and size")
        return Decision(Action.DOWNLOAD, "time or size differs")
    # OVERWRITE_DIFFERENT
    if local.is_dir or local.size != remote.size:
        return Decision(Action.DOWNLOAD, "size differs")
    if trusted:
        return Decision(Action.SKIP, "already exists")
    if remote.digest is None:
        return Decision(Action.DOWNLOAD, "no remote digest")
    return Decision(Action.HASH, "compare digest")


def decide_after_hash(remote: RemoteFile, local_digest: str) -> Decision:
    """Second half of ``overwrite-different``: equal digests mean the file is already there."""
    if remote.digest is not None and local_digest == remote.digest[1]:
        return Decision(Action.SKIP, "already exists")
    return Decision(Action.DOWNLOAD, "content differs")
