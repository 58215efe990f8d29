"""``plan.decide`` under ``existing=error``: dandiget's own verified file is "already downloaded"."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dandiget.options import DownloadExisting
from dandiget.plan import Action, LocalStat, RemoteFile, StateRecord, decide

T = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
REMOTE = RemoteFile(10, T, ("dandi-etag", "x-1"))
LOCAL = LocalStat(size=10, mtime_ns=1_700_000_000_123_456_789, ino=7, ctime_ns=99)
OURS = StateRecord(LOCAL.signature(), ("dandi-etag", "x-1"))
ERROR = DownloadExisting.ERROR


def test_our_verified_unchanged_file_is_already_downloaded() -> None:
    d = decide(ERROR, LOCAL, REMOTE, OURS)
    assert (d.action, d.reason) == (Action.SKIP, "already downloaded")


@pytest.mark.parametrize(("local", "remote", "record", "why"), [
    (LOCAL, REMOTE, None, "no record: a file dandiget did not download"),
    (LocalStat(10, LOCAL.mtime_ns + 1, 7, 100), REMOTE, OURS, "touched since"),
    (LocalStat(10, LOCAL.mtime_ns, 8, 99), REMOTE, OURS, "replaced (another inode)"),
    (LocalStat(11, LOCAL.mtime_ns, 7, 99), RemoteFile(11, T, ("dandi-etag", "x-1")), OURS,
     "grown since"),
    (LOCAL, RemoteFile(10, T, ("dandi-etag", "y-1")), OURS, "changed on the server"),
    (LOCAL, RemoteFile(10, T, None), OURS, "nothing to compare with"),
    (LocalStat(10, LOCAL.mtime_ns, 7, 99, is_dir=True), REMOTE, OURS, "a folder"),
])
def test_anything_else_that_exists_is_an_error(local: LocalStat, remote: RemoteFile,
                                               record: StateRecord | None, why: str) -> None:
    d = decide(ERROR, local, remote, record)
    assert (d.action, d.reason) == (Action.ERROR, "already exists"), why


def test_missing_file_is_downloaded_even_with_a_stale_record() -> None:
    assert decide(ERROR, None, REMOTE, OURS).action is Action.DOWNLOAD
