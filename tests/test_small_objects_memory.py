"""Small objects are read whole into memory only within a budget (transfer.MemoryBudget):
past it they stream to their temporary file, so memory does not grow with the files in
flight. Against the test archive's real content host."""

from __future__ import annotations

from dandiget import transfer
from dandiget.download import download
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec


class _InMemory:
    """Counts the bytes of small objects being read into memory at once."""

    now = 0
    peak = 0


def _counting(fetch_small):
    async def wrapper(self, source, size, digest, meter):
        _InMemory.now += size
        _InMemory.peak = max(_InMemory.peak, _InMemory.now)
        try:
            return await fetch_small(self, source, size, digest, meter)
        finally:
            _InMemory.now -= size

    return wrapper


def test_small_objects_in_memory_stay_within_the_budget(archive_factory, dandi_register,
                                                        tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DANDIGET_BULK", "0")  # every file on the ordinary path
    monkeypatch.setattr(transfer, "SMALL_BUDGET", 2500)
    monkeypatch.setattr(transfer.Transferer, "fetch_small",
                        _counting(transfer.Transferer.fetch_small))
    blobs = [BlobSpec(f"f{i:02d}.bin", bytes([i]) * (1000 + i)) for i in range(12)]
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000063",
                                                                  assets=blobs)]))
    dandi_register(archive)
    # every response waits at its first byte until all twelve are in flight
    hold = archive.inject(r"/blobs/", host="content", pause_at=1, times=12)
    import threading

    released = threading.Thread(target=lambda: (hold.wait_paused(12, 30), hold.release()))
    released.start()
    try:
        download(f"dandi://{archive.instance.name}/000063", tmp_path, format="plain", jobs=12)
    finally:
        hold.release()
        released.join()
    assert archive.compare_tree(tmp_path / "000063", "000063") == []
    # at most two of the twelve were in memory at once; the others streamed to disk
    assert 1000 <= _InMemory.peak <= 2500 and _InMemory.now == 0
