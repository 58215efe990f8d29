"""DownloadDirectory: dandi-cli's temp-dir / lock / resume protocol (spec §5.3, rows 41-42)."""

from __future__ import annotations

import json
import logging
import multiprocessing
from pathlib import Path

import pytest

from dandiget.compat import download_directory
from dandiget.compat.download_directory import DOWNLOAD_SUFFIX, DownloadDirectory


def _try_to_lock(target: str) -> str:
    """Run in another process: enter the same DownloadDirectory and report what happened."""
    try:
        with DownloadDirectory(target, {}):
            return "acquired"
    except RuntimeError as exc:
        return str(exc)


def _lock_from_another_process(target: Path) -> str:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_try_to_lock, (str(target),))


def test_DownloadDirectory_basic(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file"
    with DownloadDirectory(target, {}) as dl:
        assert dl.dirpath == tmp_path / "sub" / f"file{DOWNLOAD_SUFFIX}"
        assert dl.dirpath.is_dir()
        assert dl.writefile.exists()
        assert dl.offset == 0
        dl.append(b"123")
        dl.append(b"456")
        inode = dl.writefile.stat().st_ino
        assert _lock_from_another_process(target) == (
            f"Could not acquire download lock for {target}"
        )
    assert target.read_bytes() == b"123456"
    assert target.stat().st_ino == inode  # renamed, not copied
    assert not dl.dirpath.exists()
    assert list(target.parent.iterdir()) == [target]

    # a new download over an existing file replaces it
    with DownloadDirectory(target, {}) as dl:
        assert dl.offset == 0
        dl.append(b"789")
    assert target.read_bytes() == b"789"

    # ... and so it does over a directory
    target.unlink()
    (target / "nested").mkdir(parents=True)
    (target / "nested" / "f").write_text("x")
    with DownloadDirectory(target, {}) as dl:
        dl.append(b"abc")
    assert target.is_file() and target.read_bytes() == b"abc"
    assert not dl.dirpath.exists()

    # the lock is free again
    assert _lock_from_another_process(target) == "acquired"


def test_DownloadDirectory_exc(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "file"
    caplog.set_level(logging.DEBUG, logger="dandiget")
    with pytest.raises(RuntimeError, match=r"^Boom$"), DownloadDirectory(target, {}) as dl:
        dl.append(b"123")
        raise RuntimeError("Boom")
    assert (
        f"{dl.dirpath} - entered __exit__ with position 3 with exception: "
        "<class 'RuntimeError'>, Boom"
    ) in caplog.messages
    assert dl.dirpath.exists()
    assert dl.writefile.read_bytes() == b"123"
    assert not target.exists()
    # the lock was released: another process can take over
    assert _lock_from_another_process(target) == "acquired"


def test_same_process_cannot_lock_twice(tmp_path: Path) -> None:
    """flock locks belong to the open file, so even this process is refused."""
    target = tmp_path / "file"
    with (
        DownloadDirectory(target, {}),
        pytest.raises(RuntimeError, match="Could not acquire download lock for"),
        DownloadDirectory(target, {}),
    ):
        pass  # pragma: no cover


class Interrupted(Exception):
    pass


def _interrupted(target: Path, digests: dict[str, str], data: bytes) -> None:
    with pytest.raises(Interrupted), DownloadDirectory(target, digests) as dl:
        dl.append(data)
        raise Interrupted


@pytest.mark.parametrize(
    ("first", "second", "resumes"),
    [
        ({"md5": "aa"}, {"md5": "aa"}, True),
        ({"dandi-etag": "e-1", "sha256": "s"}, {"dandi-etag": "e-1"}, True),
        ({"md5": "aa"}, {"md5": "aa", "sha256": "s"}, True),
        ({"md5": "aa"}, {"md5": "bb"}, False),
        ({"dandi-etag": "e-1", "sha256": "s"}, {"dandi-etag": "e-1", "sha256": "t"}, False),
        ({"md5": "aa"}, {"sha256": "s"}, False),
        ({}, {}, False),
        ({"md5": "aa"}, {}, False),
    ],
)
def test_resume_only_when_shared_digests_agree(
    tmp_path: Path, first: dict[str, str], second: dict[str, str], resumes: bool
) -> None:
    target = tmp_path / "file"
    _interrupted(target, first, b"abc")
    with DownloadDirectory(target, second) as dl:
        assert json.loads((dl.dirpath / "checksum").read_text()) == second
        assert dl.offset == (3 if resumes else 0)
        dl.append(b"def")
    assert target.read_bytes() == (b"abcdef" if resumes else b"def")


@pytest.mark.parametrize("content", ["not json", "[1, 2]", ""])
def test_unreadable_checksum_restarts(tmp_path: Path, content: str) -> None:
    target = tmp_path / "file"
    _interrupted(target, {"md5": "aa"}, b"abc")
    (tmp_path / f"file{DOWNLOAD_SUFFIX}" / "checksum").write_text(content)
    with DownloadDirectory(target, {"md5": "aa"}) as dl:
        assert dl.offset == 0


def test_replaces_symlink_not_its_target(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"keep")
    target = tmp_path / "file"
    target.symlink_to(elsewhere)
    with DownloadDirectory(target, {}) as dl:
        dl.append(b"new")
    assert not target.is_symlink() and target.read_bytes() == b"new"
    assert elsewhere.read_bytes() == b"keep"


def test_temp_dir_removed_before_lock_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spec §11.2 item 15: nobody may lock a directory that is about to be deleted."""
    seen: list[bool] = []
    real_rmtree = download_directory.shutil.rmtree

    def rmtree(path: Path, *args: object, **kwargs: object) -> None:
        seen.append(dl.lock is not None and not dl.lock.closed)
        real_rmtree(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(download_directory.shutil, "rmtree", rmtree)
    with DownloadDirectory(tmp_path / "file", {}) as dl:
        dl.append(b"x")
    assert seen == [True]
    assert dl.lock is None


def test_append_outside_context_fails(tmp_path: Path) -> None:
    dl = DownloadDirectory(tmp_path / "file", {})
    with pytest.raises(ValueError, match="not inside the context"):
        dl.append(b"x")
