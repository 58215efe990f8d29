"""Zarr chunks in bulk (bulk.py, executors/bulk.py): libcurl's multi interface on worker
processes, one attempt each; whatever a batch cannot commit goes through the one request
executor. Against the test archive's real content host.

Which path fetched an entry is read off the request: the ordinary path asks for
``Accept-Encoding: identity``, libcurl sends no ``Accept-Encoding`` at all.
"""

from __future__ import annotations

import logging
import sqlite3

import pytest

from dandiget.download import download
from dandiget.executors import bulk as bulk_executor

from .test_download_zarr import ENTRIES, download_with_corrupt_entry, url, zarr_tree
from .test_download_zarr import zarr_archive as zarr_archive


def chunk_requests(archive) -> list:
    return [q for q in archive.requests if q.host == "content" and q.method == "GET"]


def by_bulk(q) -> bool:
    return "Accept-Encoding" not in q.headers


@pytest.fixture
def small_batches(monkeypatch):
    """Bulk from the first entry, so the 9-entry test Zarr runs on the workers."""
    monkeypatch.setattr(bulk_executor, "ORDINARY_FIRST", 0)
    monkeypatch.delenv("DANDIGET_BULK", raising=False)


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_chunks_go_through_bulk_workers(zarr_archive, tmp_path, small_batches, monkeypatch,
                                        mode) -> None:
    monkeypatch.setenv("DANDIGET_BULK", mode)
    r = download(url(zarr_archive), tmp_path, format="plain")
    assert zarr_tree(tmp_path) == ENTRIES
    gets = chunk_requests(zarr_archive)
    assert len(gets) == len(ENTRIES) and all(by_bulk(q) for q in gets), \
        [(q.path, q.headers) for q in gets if not by_bulk(q)]
    assert r.files_downloaded == len(ENTRIES) + 1
    # every entry is in the state with its stat signature: a re-run reads no listing
    db = sqlite3.connect(tmp_path / ".dandiget" / "state.sqlite")
    n = db.execute("SELECT count(*) FROM files WHERE path LIKE '%sample.zarr/%'").fetchone()[0]
    assert n == len(ENTRIES)
    zarr_archive.clear_requests()
    r2 = download(url(zarr_archive), tmp_path, format="plain", existing="refresh")
    assert r2.files_downloaded == 0
    assert not [q for q in zarr_archive.requests if "/zarr/" in q.path]


def test_failures_are_handed_to_the_request_executor(zarr_archive, tmp_path, small_batches,
                                                     caplog) -> None:
    zarr_archive.inject(r"/arr_0/1$", host="content", status=503, times=1)
    zarr_archive.inject(r"/arr_1/sub/0\.0$", host="content", corrupt=True, times=1)
    zarr_archive.inject(r"/arr_1/\.zarray$", host="content", short_body=True, times=1)
    with caplog.at_level(logging.DEBUG, logger="dandiget.zarr"):
        download(url(zarr_archive), tmp_path, format="plain")
    assert zarr_tree(tmp_path) == ENTRIES
    gets = chunk_requests(zarr_archive)
    for key in ("arr_0/1", "arr_1/sub/0.0", "arr_1/.zarray"):
        tries = [q for q in gets if q.path.endswith("/" + key)]
        # one attempt in bulk, then the ordinary path (which owns retries)
        assert [by_bulk(q) for q in tries] == [True, False], key
    assert len([q for q in gets if by_bulk(q)]) == len(ENTRIES)
    handed_back = [m for m in caplog.messages if "again on the ordinary path" in m]
    assert len(handed_back) == 3 and any("503" in m for m in handed_back)
    assert any("md5 mismatch" in m for m in handed_back)


def test_a_bad_chunk_is_never_left_at_its_name(zarr_archive, tmp_path, small_batches) -> None:
    _root, msg = download_with_corrupt_entry(zarr_archive, tmp_path)
    assert "md5" in msg
    # one bulk attempt, then the ordinary path (whose resumable temporary may stay)
    bulk_tries = [q for q in chunk_requests(zarr_archive)
                  if q.path.endswith("/arr_0/1") and by_bulk(q)]
    assert len(bulk_tries) == 1


def test_a_small_zarr_never_starts_workers(zarr_archive, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DANDIGET_BULK", raising=False)
    download(url(zarr_archive), tmp_path, format="plain")  # 9 entries < ORDINARY_FIRST
    assert zarr_tree(tmp_path) == ENTRIES
    gets = chunk_requests(zarr_archive)
    assert gets and not any(by_bulk(q) for q in gets)


def test_the_first_entries_take_the_ordinary_path(zarr_archive, tmp_path, small_batches,
                                                  monkeypatch) -> None:
    monkeypatch.setattr(bulk_executor, "ORDINARY_FIRST", 4)
    download(url(zarr_archive), tmp_path, format="plain")
    assert zarr_tree(tmp_path) == ENTRIES
    assert [by_bulk(q) for q in chunk_requests(zarr_archive)].count(False) == 4


def test_a_prefix_refusing_unsigned_reads_is_not_tried_in_bulk(archive_factory, dandi_register,
                                                               tmp_path, small_batches,
                                                               monkeypatch) -> None:
    """Once the ordinary path learnt that the bucket refuses unsigned reads (RefusalMemo),
    no chunk goes to the workers, which can only read public URLs."""
    from dandiget.testing import ArchiveSpec, DandisetSpec, ZarrSpec

    monkeypatch.setattr(bulk_executor, "ORDINARY_FIRST", 6)
    entries = {f"0/{i}": bytes([i]) * (50 + i) for i in range(40)}
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000061", assets=[
        ZarrSpec(path="z.zarr", entries=entries)])]))
    dandi_register(archive)
    archive.inject(r"^/zarr/", host="content", refuse_unsigned=True)
    download(f"dandi://{archive.instance.name}/000061", tmp_path, format="plain",
             jobs_per_zarr=2)
    assert archive.compare_tree(tmp_path / "000061", "000061") == []
    assert not any(by_bulk(q) for q in chunk_requests(archive))


def test_bulk_can_be_turned_off(zarr_archive, tmp_path, small_batches, monkeypatch) -> None:
    monkeypatch.setenv("DANDIGET_BULK", "0")
    download(url(zarr_archive), tmp_path, format="plain")
    assert zarr_tree(tmp_path) == ENTRIES
    assert not any(by_bulk(q) for q in chunk_requests(zarr_archive))


def _job(tmp_path, name: str, url: str = "http://127.0.0.1:9/x") -> object:
    from dandiget import bulk

    # nothing listens on port 9 of 127.0.0.1 here: a job there can only fail
    return bulk.BulkJob(url, str(tmp_path / f".{name}.part"), str(tmp_path / name), 3, "md5",
                        "0" * 32, None)


async def test_a_dead_worker_hands_its_jobs_back_and_is_replaced(tmp_path) -> None:
    from dandiget import bulk

    runner = bulk_executor.BulkRunner(bulk.Limits(4, 2.0, 5.0, "dandiget-test"), "process",
                                      workers=1)
    done: list = []
    failed: list = []

    async def on_failed(j, tag, why) -> None:
        failed.append((tag, why))

    try:
        (worker,) = await runner._workers()
        worker.proc.kill()
        worker.proc.wait()
        batcher = runner.batcher(lambda j, t, s: done.append(t), on_failed)
        await batcher.add(_job(tmp_path, "a"), "a")
        await batcher.finish()
        assert not done and [t for t, _ in failed] == ["a"]
        assert failed[0][1].startswith("bulk worker: "), failed
        # a replacement takes the next job (which fails on its own merits)
        failed.clear()
        batcher = runner.batcher(lambda j, t, s: done.append(t), on_failed)
        await batcher.add(_job(tmp_path, "b"), "b")
        await batcher.finish()
        (replacement,) = runner._all
        assert replacement is not worker and replacement.proc.returncode is None
        assert [t for t, _ in failed] == ["b"] and not failed[0][1].startswith("bulk worker")
        assert not list(tmp_path.iterdir())  # no temporary, no target
    finally:
        await runner.close()
    assert worker.proc.returncode is not None and replacement.proc.returncode is not None


@pytest.mark.parametrize("mode", ["process", "thread"])
async def test_jobs_stream_while_others_run(zarr_archive, tmp_path, mode) -> None:
    """A job handed over while another is held mid-body is fetched and reported before
    that one ends: jobs and outcomes stream, nothing waits for a group to finish."""
    import asyncio
    import hashlib

    from dandiget import bulk

    info = zarr_archive.asset("000003", "sample.zarr")
    files = zarr_archive.zarr_files("000003", "sample.zarr")
    slow, fast = sorted(k for k in files if len(files[k]) > 2)[:2]

    def job(key: str, name: str) -> bulk.BulkJob:
        data = files[key]
        return bulk.BulkJob(info.content_url.rstrip("/") + "/" + key,
                            str(tmp_path / f".{name}.part"), str(tmp_path / name), len(data),
                            "md5", hashlib.md5(data).hexdigest(), None)

    hold = zarr_archive.inject("/" + slow.replace(".", r"\.") + "$", host="content",
                               pause_at=1)
    runner = bulk_executor.BulkRunner(bulk.Limits(4, 2.0, 30.0, "dandiget-test"), mode,
                                      workers=1)
    order: list[str] = []
    fast_done = asyncio.Event()

    def done(j, tag, stat) -> None:
        order.append(tag)
        if tag == "fast":
            fast_done.set()

    async def on_failed(j, tag, why) -> None:
        order.append(f"{tag} failed: {why}")

    try:
        batcher = runner.batcher(done, on_failed)
        await batcher.add(job(slow, "slow"), "slow")
        assert await asyncio.to_thread(hold.wait_paused, 1, 30)
        await batcher.add(job(fast, "fast"), "fast")
        await asyncio.wait_for(fast_done.wait(), 30)
        assert order == ["fast"] and not (tmp_path / "slow").exists()
        hold.release()
        await batcher.finish()
    finally:
        hold.release()
        await runner.close()
    assert order == ["fast", "slow"]
    assert (tmp_path / "slow").read_bytes() == files[slow]
    assert (tmp_path / "fast").read_bytes() == files[fast]


@pytest.fixture
def blob_archive(archive_factory, dandi_register):
    from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec

    blobs = [BlobSpec(f"sub-{i % 3}/f{i:02d}.bin", bytes([i]) * (1000 + i)) for i in range(12)]
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000062",
                                                                  assets=blobs)]))
    dandi_register(archive)
    return archive


def test_small_blobs_go_through_bulk_workers(blob_archive, tmp_path, monkeypatch) -> None:
    """Past the first few, small public files take the bulk path: mtime set, state
    recorded, a re-run skips them without a request; a failure gets the ordinary path."""
    import os

    from dandiget import coordinator

    monkeypatch.delenv("DANDIGET_BULK", raising=False)
    monkeypatch.setattr(coordinator, "BULK_AFTER_FILES", 4)
    blob_archive.inject(r"/blobs/", host="content", status=503, times=1, skip=6)
    r = download(f"dandi://{blob_archive.instance.name}/000062", tmp_path, format="plain",
                 jobs=2)
    assert blob_archive.compare_tree(tmp_path / "000062", "000062") == []
    assert r.files_downloaded == 13  # + dandiset.yaml
    gets = [q for q in chunk_requests(blob_archive) if "/blobs/" in q.path]
    assert [by_bulk(q) for q in gets].count(False) == 4 + 1  # the first 4, the one retry
    assert [by_bulk(q) for q in gets].count(True) == 12 - 4
    for a in blob_archive.assets("000062"):
        mtime = a.metadata["blobDateModified"]
        from datetime import datetime

        assert os.stat(tmp_path / "000062" / a.path).st_mtime == pytest.approx(
            datetime.fromisoformat(mtime).timestamp(), abs=1e-3)
    blob_archive.clear_requests()
    r2 = download(f"dandi://{blob_archive.instance.name}/000062", tmp_path, format="plain",
                  existing="refresh")
    assert r2.files_downloaded == 0 and not chunk_requests(blob_archive)
