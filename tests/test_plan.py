"""The planner is a pure function: test it exhaustively and with properties."""

from __future__ import annotations

import ast
import contextlib
import inspect
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any

import pytest
from hypothesis import event, given, settings
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


# ------------------------------------------------------------------ properties that reach
#
# Strategies draw the remote file and the state record *from* the local stat, so equal sizes,
# equal (or coarsely equal) mtimes and a record that still vouches actually occur; random
# independent draws almost never make a record's signature equal the file's.

present = st.tuples(st.just("dandi-etag"), st.sampled_from(["a-1", "b-1"]))
digests = st.one_of(st.none(), present, present)  # mostly present: most clauses need one


@st.composite
def situations(draw: st.DrawFn) -> tuple[LocalStat | None, RemoteFile, StateRecord | None]:
    if draw(st.integers(0, 9)) == 0:
        return None, draw(st.builds(RemoteFile, st.integers(0, 20), st.none(), digests)), None
    local = draw(st.builds(LocalStat, size=st.integers(0, 20),
                           mtime_ns=st.integers(0, 2 * 10**18), ino=st.integers(0, 3),
                           ctime_ns=st.integers(0, 3),
                           is_dir=st.integers(0, 4).map(lambda i: i == 0)))
    size = draw(st.one_of(st.just(local.size), st.integers(0, 20)))
    exact = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(
        microseconds=local.mtime_ns // 1000)
    mtime = draw(st.one_of(
        st.none(), st.just(exact),
        st.integers(-2_500_000, 2_500_000).map(lambda us: exact + timedelta(microseconds=us)),
        st.datetimes(timezones=st.just(timezone.utc))))
    remote = RemoteFile(size, mtime, draw(digests))
    record = None
    if draw(st.integers(0, 3)):  # mostly with a record: it is what most clauses look at
        sig = draw(st.one_of(st.just(local.signature()), st.just(local.signature()),
                             st.tuples(*[st.integers(0, 3)] * 4)))
        record = StateRecord(sig, draw(st.one_of(
            st.just(remote.digest or ("dandi-etag", "a-1")), present)))
    return local, remote, record


def vouches(local: LocalStat, remote: RemoteFile, rec: StateRecord | None) -> bool:
    """A record for the current remote digest and the file exactly as it was verified."""
    return (rec is not None and not local.is_dir and remote.digest is not None
            and rec.digest == remote.digest and rec.signature == local.signature())


def check_decide(
        mode: DownloadExisting,
        situation: tuple[LocalStat | None, RemoteFile, StateRecord | None]) -> None:
    loc, remote, rec = situation
    with recording_returns():
        d = decide(mode, loc, remote, rec)
    event(f"{mode.value}: {d.action.value} ({d.reason})")
    if loc is None:
        assert d.action is Action.DOWNLOAD
        return
    trusted = vouches(loc, remote, rec)
    if mode is DownloadExisting.ERROR:
        # only dandiget's own verified, unchanged file is not an error; never touches it
        assert d.action is (Action.SKIP if trusted else Action.ERROR)
    if mode is DownloadExisting.SKIP:
        assert d.action is Action.SKIP
    if mode is DownloadExisting.OVERWRITE:
        assert d.action is Action.DOWNLOAD
    if trusted and (mode is DownloadExisting.REFRESH or (
            mode is DownloadExisting.OVERWRITE_DIFFERENT and loc.size == remote.size)):
        assert d.action is Action.SKIP  # the record spares hashing or trusting the mtime
    if mode is DownloadExisting.REFRESH:
        assert d.action in (Action.SKIP, Action.DOWNLOAD)
        if d.action is Action.SKIP and not trusted:
            assert remote.mtime is not None and not loc.is_dir and loc.size == remote.size
            assert same_mtime(loc.mtime_ns, remote.mtime)
    if mode is DownloadExisting.OVERWRITE_DIFFERENT:
        if loc.is_dir or loc.size != remote.size:
            assert d.action is Action.DOWNLOAD
        if d.action is Action.SKIP:  # only a record for the current digest may vouch
            assert trusted
        if d.action is Action.HASH:
            assert remote.digest is not None and not trusted


def check_decide_after_hash(remote: RemoteFile, local_digest: str) -> None:
    with recording_returns():
        d = decide_after_hash(remote, local_digest)
    event(d.action.value)
    equal = remote.digest is not None and remote.digest[1] == local_digest
    assert d.action is (Action.SKIP if equal else Action.DOWNLOAD)


def decide_properties(**config: Any) -> Callable[[], None]:
    return settings(**{"max_examples": 500, **config})(
        given(st.sampled_from(list(DownloadExisting)), situations())(check_decide))


def after_hash_properties(**config: Any) -> Callable[[], None]:
    return settings(max_examples=50, **config)(given(
        st.builds(RemoteFile, st.integers(0, 20), st.none(), digests),
        st.sampled_from(["a-1", "b-1"]))(check_decide_after_hash))


test_protected_files_are_never_overwritten = decide_properties()
test_after_hash_skips_only_equal_digests = after_hash_properties()


# ------------------------------------------------------------------ showing that they reach
#
# The return statements are read from the functions' source, so a clause added to
# ``decide`` that these strategies never reach makes the check below fail.

REACHED: set[tuple[str, int]] = set()
TRACED = {decide.__code__, decide_after_hash.__code__}


def _trace_calls(frame: FrameType, event_: str, arg: object) -> Any:
    if event_ != "call" or frame.f_code not in TRACED:
        return None

    def on_return(frame: FrameType, event_: str, arg: object) -> Any:
        if event_ == "return":
            REACHED.add((frame.f_code.co_name, frame.f_lineno))
        return on_return

    return on_return


@contextlib.contextmanager
def recording_returns() -> Iterator[None]:
    previous = sys.gettrace()
    sys.settrace(_trace_calls)
    try:
        yield
    finally:
        sys.settrace(previous)


def return_statements(fn: Callable[..., Any]) -> dict[str, tuple[int, int]]:
    """``"decide:<first line>" -> (first line, last line)`` of every return statement."""
    lines, start = inspect.getsourcelines(fn)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    return {f"{fn.__name__}:{start + n.lineno - 1}": (start + n.lineno - 1,
                                                     start + (n.end_lineno or n.lineno) - 1)
            for n in ast.walk(tree) if isinstance(n, ast.Return)}


def test_strategies_reach_every_return_statement() -> None:
    REACHED.clear()
    # the same strategies, derandomized so that what they reach does not depend on luck
    decide_properties(derandomize=True, database=None, max_examples=1500)()
    after_hash_properties(derandomize=True, database=None)()
    missed = []
    for fn in (decide, decide_after_hash):
        statements = return_statements(fn)
        assert len(statements) >= 2
        for name, (first, last) in statements.items():
            if not any(f == fn.__name__ and first <= line <= last for f, line in REACHED):
                missed.append(name)
    assert missed == []
