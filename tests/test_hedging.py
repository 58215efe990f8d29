"""Stalls and tail hedging: a response that stops sending bytes is noticed in seconds, not
after the 60 s read timeout, and one crawling Range part does not hold a file hostage."""

from __future__ import annotations

import time

from dandiget.config import TransferConfig
from dandiget.digests import MiB
from dandiget.download import download
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec

from .conftest import FAST


def test_stalled_response_is_recovered_within_seconds(archive_factory, dandi_register,
                                                      tmp_path) -> None:
    """A content response that hangs forever after 64 KiB: stall deadline, then a resume
    from the byte reached (default read timeout: 60 s)."""
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000040", assets=[
        BlobSpec(path="one.bin", size=1 * MiB, seed=1),
        BlobSpec(path="two.bin", size=6 * MiB, seed=2)])]))
    dandi_register(archive)
    f = archive.inject(r"/blobs/", host="content", stall=3600, times=2)
    cfg = TransferConfig(retry=FAST.retry)
    assert cfg.read_timeout == 60
    t0 = time.monotonic()
    download(f"dandi://{archive.instance.name}/000040", tmp_path, format="plain", config=cfg)
    assert time.monotonic() - t0 < 15
    assert f.hits == 2
    stalled = [q for q in archive.requests if q.host == "content" and q.bytes_sent == 65536]
    assert len(stalled) == 2  # both files hung after 64 KiB, and both were recovered
    assert archive.compare_tree(tmp_path / "000040", "000040") == []


def test_one_crawling_range_is_hedged(archive_factory, dandi_register, tmp_path) -> None:
    """Sixteen 8 MiB Range parts, the first served at 256 KiB/s (32 s for its 8 MiB): a
    second request for the rest of it wins, the crawl is abandoned part-way."""
    size = 128 * MiB
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000041", assets=[
        BlobSpec(path="big.bin", size=size, seed=4)])]))
    dandi_register(archive)
    crawl = archive.inject(r"/blobs/", host="content", range=r"^bytes=0-", rate=256 * 1024,
                           times=1)
    cfg = TransferConfig(retry=FAST.retry, parts_per_file=16)
    download(f"dandi://{archive.instance.name}/000041", tmp_path, format="plain", config=cfg)
    assert crawl.hits == 1
    content = [q for q in archive.requests if q.host == "content"]
    slow = [q for q in content if (q.headers.get("Range") or "").startswith("bytes=0-")]
    assert len(slow) == 1
    unit = 8 * MiB
    # the crawl was abandoned long before it sent its 8 MiB (it would have taken 32 s)
    assert slow[0].bytes_sent < unit * 3 // 4, slow[0].bytes_sent
    hedges = [q for q in content
              if (r := q.headers.get("Range")) and 0 < int(r[6:].split("-")[0]) < unit]
    assert len(hedges) == 1  # the rest of the slow part, from the byte it had reached
    assert hedges[0].bytes_sent == unit - int(hedges[0].headers["Range"][6:].split("-")[0])
    assert archive.compare_tree(tmp_path / "000041", "000041") == []
