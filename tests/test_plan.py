"""The planner is a pure function: test it exhaustively and with properties."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dandiget.options import DownloadExisting
from dandiget.plan import (
    Action,
    LocalStat,
    RemoteFile,
    StateRecord,
    decide,
    decide_after_hash,
    same_mtime,
    to_ns,
)

T = datetime(2021, 6, 10, 14, 59, 59, 581563, tzinfo=timezone.utc)
REMOTE = RemoteFile(10, T, ("dandi-etag", "x-1"))


def local(size: int = 10, mtime: datetime = T, **kw: object) -> LocalStat:
    return LocalStat(size=size, mtime_ns=to_ns(mtime), ino=1, ctime_ns=5, **kw)  # type: ignore[arg-type]


def test_missing_always_downloads() -> None:
    for mode in DownloadExisting:
        assert decide(mode, None, REMOTE).action is Action.DOWNLOAD


@pytest.mark.parametrize(("mode", "action", "reason"), [
    (DownloadExisting.ERROR, Action.ERROR, "already exists"),
    (DownloadExisting.SKIP, Action.SKIP, "already exists"),
    (DownloadExisting.OVERWRITE, Action.DOWNLOAD, "overwrite"),
    (DownloadExisting.REFRESH, Action.SKIP, "same time and size"),
    (DownloadExisting.OVERWRITE_DIFFERENT, Action.HASH, "compare digest"),
])
def test_existing_modes(mode: DownloadExisting, action: Action, reason: str) -> None:
    d = decide(mode, local(), REMOTE)
    assert (d.action, d.reason) == (action, reason)


def test_refresh_differences() -> None:
    assert decide(DownloadExisting.REFRESH, local(size=11), REMOTE).action is Action.DOWNLOAD
    later = T + timedelta(seconds=5)
    assert decide(DownloadExisting.REFRESH, local(mtime=later), REMOTE).action is Action.DOWNLOAD
    no_mtime = RemoteFile(10, None, REMOTE.digest)
    assert decide(DownloadExisting.REFRESH, local(), no_mtime).action is Action.DOWNLOAD


def test_refresh_tolerates_coarse_filesystems() -> None:
    # FAT/exFAT and some network mounts store whole (or even) seconds
    truncated = T.replace(microsecond=0)
    assert decide(DownloadExisting.REFRESH, local(mtime=truncated), REMOTE).action is Action.SKIP
    assert same_mtime(to_ns(T.replace(microsecond=0) + timedelta(seconds=1)), T)
    # but a precise filesystem with a real difference is a difference
    assert not same_mtime(to_ns(T + timedelta(milliseconds=3)), T)
    assert not same_mtime(to_ns(T.replace(microsecond=0) + timedelta(seconds=3)), T)


def test_overwrite_different() -> None:
    od = DownloadExisting.OVERWRITE_DIFFERENT
    assert decide(od, local(size=3), REMOTE).action is Action.DOWNLOAD
    assert decide_after_hash(REMOTE, "x-1").action is Action.SKIP
    assert decide_after_hash(REMOTE, "y-1").action is Action.DOWNLOAD


def test_state_record_vouches_without_hashing() -> None:
    loc = local(mtime=T + timedelta(days=1))
    rec = StateRecord(loc.signature(), REMOTE.digest)  # type: ignore[arg-type]
    assert decide(DownloadExisting.OVERWRITE_DIFFERENT, loc, REMOTE, rec).action is Action.SKIP
    assert decide(DownloadExisting.REFRESH, loc, REMOTE, rec).action is Action.SKIP
    # touched since it was verified: the record no longer vouches
    touched = LocalStat(loc.size, loc.mtime_ns + 1, loc.ino, loc.ctime_ns + 1)
    assert decide(DownloadExisting.OVERWRITE_DIFFERENT, touched, REMOTE, rec).action is Action.HASH
    # changed on the server: the record no longer vouches
    changed = RemoteFile(10, T, ("dandi-etag", "z-1"))
    assert decide(DownloadExisting.OVERWRITE_DIFFERENT, loc, changed, rec).action is Action.HASH


stats = st.builds(LocalStat, size=st.integers(0, 20), mtime_ns=st.integers(0, 2 * 10**18),
                  ino=st.integers(0, 3), ctime_ns=st.integers(0, 3), is_dir=st.booleans())
remotes = st.builds(RemoteFile, size=st.integers(0, 20),
                    mtime=st.one_of(st.none(), st.datetimes(timezones=st.just(timezone.utc))),
                    digest=st.one_of(st.none(), st.tuples(st.just("md5"), st.sampled_from("ab"))))
records = st.one_of(st.none(), st.builds(
    StateRecord, signature=st.tuples(*[st.integers(0, 3)] * 4),
    digest=st.tuples(st.just("md5"), st.sampled_from("ab"))))


@given(st.sampled_from(list(DownloadExisting)), stats, remotes, records)
def test_protected_files_are_never_overwritten(mode: DownloadExisting, loc: LocalStat,
                                               remote: RemoteFile,
                                               rec: StateRecord | None) -> None:
    d = decide(mode, loc, remote, rec)
    if mode is DownloadExisting.ERROR:  # only dandiget's own verified file is not an error
        trusted = (rec is not None and not loc.is_dir and rec.digest == remote.digest
                   and rec.signature == loc.signature())
        assert d.action is (Action.SKIP if trusted else Action.ERROR)
    if mode is DownloadExisting.SKIP:
        assert d.action is Action.SKIP
    if mode is DownloadExisting.OVERWRITE:
        assert d.action is Action.DOWNLOAD
    if d.action is Action.SKIP and mode is DownloadExisting.OVERWRITE_DIFFERENT:
        # only a record for the *current* remote digest and unchanged file may vouch
        assert rec is not None and rec.digest == remote.digest
        assert rec.signature == loc.signature()
