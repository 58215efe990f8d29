"""Learning from refusals: a bucket prefix that refuses unsigned reads (403) while presigned
URLs from the API work costs three requests per object only for the first few objects;
after that dandiget asks the API first (two requests per object)."""

from __future__ import annotations

from dandiget.download import download
from dandiget.testing import ArchiveSpec, DandisetSpec, ZarrSpec

from .conftest import FAST

N = 120


def test_prefix_refusing_unsigned_reads_is_learnt(archive_factory, dandi_register,
                                                  tmp_path) -> None:
    entries = {f"0/{i}": bytes([i % 251]) * (100 + i) for i in range(N)}
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000060", assets=[
        ZarrSpec(path="z.zarr", entries=entries)])]))
    dandi_register(archive)
    refuse = archive.inject(r"^/zarr/", host="content", refuse_unsigned=True)
    jobs = 4
    download(f"dandi://{archive.instance.name}/000060", tmp_path, format="plain", config=FAST,
             jobs_per_zarr=jobs)
    assert archive.compare_tree(tmp_path / "000060", "000060") == []
    log = archive.requests
    unsigned = [q for q in log if q.host == "content" and "X-Amz-Signature" not in q.query]
    signed = [q for q in log if q.host == "content" and "X-Amz-Signature" in q.query]
    redirects = [q for q in log if q.host == "api" and "download=true" in q.query]
    assert all(q.status == 403 for q in unsigned)
    assert refuse.hits == len(signed) + len(unsigned)
    assert len(signed) == N and len(redirects) == N
    # only the first few objects (threshold + those already in flight) tried the direct URL
    assert len(unsigned) <= 3 + jobs, len(unsigned)
    per_entry = (len(unsigned) + len(signed) + len(redirects)) / N
    assert per_entry < 2.1, per_entry
