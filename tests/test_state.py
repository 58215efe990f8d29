"""Local state: no-op re-runs read no file content; a damaged or missing database only
makes a run slower, never wrong; disk full is a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import dandiget.digests
from dandiget.download import download
from dandiget.errors import DownloadFailed
from dandiget.state import STATE_DIR, STATE_FILE

from .conftest import mounted_tmpfs


def no_reads(monkeypatch) -> list[str]:
    """Make every content read fail loudly, and record who tried."""
    attempts: list[str] = []

    def refuse(path, *a, **kw):
        attempts.append(str(path))
        raise AssertionError(f"read file content: {path}")

    monkeypatch.setattr(dandiget.digests, "_read_chunks", refuse)
    return attempts


def test_noop_rerun_with_untouched_files_reads_nothing(text_archive, dandi_url, tmp_path,
                                                       monkeypatch) -> None:
    for ds in ("000001", "000002"):
        download(f"{dandi_url}/{ds}", tmp_path, format="plain")
    attempts = no_reads(monkeypatch)
    for mode in ("refresh", "overwrite-different"):
        for ds in ("000001", "000002"):
            r = download(f"{dandi_url}/{ds}", tmp_path, format="plain", existing=mode)
            assert r.files_downloaded == 0 and r.ok
    assert attempts == []


def test_changed_file_with_same_size_and_mtime_is_caught(text_archive, dandi_url,
                                                         tmp_path) -> None:
    download(f"{dandi_url}/000001", tmp_path, format="plain")
    p = tmp_path / "000001" / "subdir2" / "banana.txt"
    st = p.stat()
    p.write_bytes(b"BANANA\n")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    # the stat signature (ctime, inode) changed, so the state no longer vouches: hashed
    r = download(f"{dandi_url}/000001", tmp_path, format="plain", existing="overwrite-different")
    assert r.files_downloaded == 1 and p.read_bytes() == b"Banana\n"


@pytest.mark.parametrize("damage", ["garbage", "deleted", "truncated"])
def test_damaged_state_degrades_gracefully(text_archive, dandi_url, tmp_path, damage) -> None:
    url = f"{dandi_url}/000001"
    download(url, tmp_path, format="plain")
    db = tmp_path / STATE_DIR / STATE_FILE
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 100)
    elif damage == "deleted":
        db.unlink()
    else:
        db.write_bytes(db.read_bytes()[:100])
    r = download(url, tmp_path, format="plain", existing="overwrite-different")
    assert r.ok and r.files_downloaded == 0 and r.files_skipped == 5  # hashed, not trusted
    r = download(url, tmp_path, format="plain", existing="overwrite-different")
    assert r.ok and r.files_skipped == 5


@pytest.fixture
def tiny_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "tiny", "size=1m") as mnt:
        yield mnt


def test_disk_full(archive_factory, tiny_disk) -> None:
    from dandiget.instances import register_instance, unregister_instance
    from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec

    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000009", assets=[
        BlobSpec(path="fits.txt", content=b"small"),
        BlobSpec(path="huge.bin", size=3 << 20, seed=9)])]))
    register_instance(archive.instance)
    try:
        with pytest.raises(DownloadFailed) as exc:
            # past the up-front check (test_free_space.py), to the late failure it prevents
            download(f"dandi://{archive.instance.name}/000009", tiny_disk, format="plain",
                     ignore_free_space=True)
    finally:
        unregister_instance(archive.instance.name)
    assert not (tiny_disk / "000009" / "huge.bin").exists()
    assert (tiny_disk / "000009" / "fits.txt").read_bytes() == b"small"
    msg = " ".join(o.message for o in exc.value.report.errors)
    assert "No space left on device" in msg


def _fill(folder: Path) -> None:
    """Write a ballast file in ``folder`` until its filesystem has not one byte left."""
    fd = os.open(folder / "ballast", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)


def test_disk_full_fails_only_the_file_that_does_not_fit(archive_factory, tiny_disk) -> None:
    """The small file writes while the large one holds the last byte of the disk: it waits
    for the large one to fail (and remove its temporary), then fits; only the large fails."""
    import threading

    from dandiget.events import Failed, Message
    from dandiget.instances import register_instance, unregister_instance
    from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec

    from .conftest import object_path, wait_until

    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000009", assets=[
        BlobSpec(path="fits.txt", content=b"small"),
        BlobSpec(path="huge.bin", size=3 << 20, seed=9)])]))

    def held(path: str, at: int):
        return archive.inject(object_path(archive, path, "000009"), host="content",
                              pause_at=at)

    small, large = held("fits.txt", 0), held("huge.bin", 256 << 10)
    small_met_full = threading.Event()

    def listen(event: object) -> None:
        if getattr(event, "path", None) == "000009/fits.txt" and (
                isinstance(event, Failed) or (isinstance(event, Message) and "disk full"
                                              in (event.message or ""))):
            small_met_full.set()

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            download(f"dandi://{archive.instance.name}/000009", tiny_disk, format="plain",
                     ignore_free_space=True, quiet=True, listeners=[listen])
            outcome.append(None)
        except BaseException as e:  # handed to the test's thread
            outcome.append(e)

    register_instance(archive.instance)
    worker = threading.Thread(target=run)
    try:
        worker.start()
        assert small.wait_paused() and large.wait_paused()
        folder = tiny_disk / "000009"
        wait_until(lambda: sum(p.stat().st_size for p in folder.glob(".huge.bin.*"))
                   >= 256 << 10, "the large file's first 256 KiB on disk")
        _fill(folder)
        small.release()  # its one write meets a full disk
        assert small_met_full.wait(60)
        large.release()  # its next write fails; its temporary goes, freeing 256 KiB
        worker.join(120)
        assert not worker.is_alive()
    finally:
        small.release()
        large.release()
        unregister_instance(archive.instance.name)
    assert isinstance(outcome[0], DownloadFailed)
    failed = {o.path: o.message for o in outcome[0].report.errors}
    assert list(failed) == ["000009/huge.bin"]
    assert "No space left on device" in failed["000009/huge.bin"]
    assert (folder / "fits.txt").read_bytes() == b"small"
    assert sorted(p.name for p in folder.iterdir()) == ["ballast", "dandiset.yaml", "fits.txt"]
