"""An asset listing as unkind as the real one: metadata pages cut off by the server's time
limit, a draft edited between pages, and presigned URLs that refuse HEAD."""

from __future__ import annotations

import dataclasses
import itertools
from urllib.parse import parse_qs

import pytest

from dandiget.download import download
from dandiget.listing import ListingChanged
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, UserSpec, ZarrSpec

from .conftest import FAST, tree

PAGES_OF_10 = dataclasses.replace(FAST, asset_page_size=10)


def asset_pages(archive, identifier: str) -> list[tuple[int, int, int]]:
    """(page, page_size, status) of every asset-listing request, in order."""
    out = []
    for r in archive.requests:
        if r.host == "api" and r.path == f"/api/dandisets/{identifier}/versions/draft/assets/":
            q = parse_qs(r.query)
            out.append((int(q.get("page", ["1"])[0]), int(q["page_size"][0]), r.status))
    return out


def rows_of(pages: list[tuple[int, int, int]], total: int) -> list[tuple[int, int]]:
    """The rows [first, end) each successful page held, sorted by where they start."""
    return sorted(((p - 1) * s, min(p * s, total)) for p, s, status in pages if status == 200)


def assert_each_row_once(pages: list[tuple[int, int, int]], total: int) -> None:
    """The successful pages cover rows 0 .. total-1 exactly once, and no page was asked for
    twice (a page the server could not answer is asked for smaller, never again as is)."""
    rows = rows_of(pages, total)
    assert rows[0][0] == 0 and rows[-1][1] == total
    assert all(a[1] == b[0] for a, b in itertools.pairwise(rows)), rows
    asked = [(p, s) for p, s, _ in pages]
    assert len(asked) == len(set(asked))


def expected_tree(archive, identifier: str) -> dict[str, bytes]:
    return {f"{identifier}/{p}": archive.read_blob(identifier, p)
            for p in archive.expected_files(identifier)}


def test_page_size_shrinks_to_what_the_server_can_answer(archive_factory, dandi_register,
                                                         tmp_path) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[
        DandisetSpec.generated("000010", 3000, size=16, per_dir=500)]))
    archive.limit_metadata_rows(400)
    dandi_register(archive)
    r = download(f"dandi://{archive.instance.name}/000010", tmp_path, format="plain",
                 get_metadata=False, config=FAST)
    assert r.ok and r.files_downloaded == 3000
    assert tree(tmp_path) == expected_tree(archive, "000010")
    pages = asset_pages(archive, "000010")
    assert pages[0] == (1, 125, 200)  # a small first page, then 125, 250, 500, 1000 rows
    assert_each_row_once(pages, 3000)  # no retry of a doomed page
    assert {status for _, _, status in pages} == {200, 503}
    assert all((status == 503) == (s > 400) for _, s, status in pages)
    # every page in flight when the server gave up halves at most twice (1000 -> 250)
    assert len([s for _, s, status in pages if status == 503]) <= 2 * 4
    assert max(s for _, s, status in pages if status == 200) == 250


def test_shrinking_mid_listing_keeps_the_rows_in_place(archive_factory, dandi_register,
                                                       tmp_path) -> None:
    """A page fails after others succeeded: smaller pages cover exactly its rows."""
    archive = archive_factory(ArchiveSpec(dandisets=[
        DandisetSpec.generated("000011", 2500, size=8, per_dir=1000)]))
    dandi_register(archive)
    archive.inject(r"/assets/\?.*page=2&page_size=1000", host="api", status=503)
    r = download(f"dandi://{archive.instance.name}/000011", tmp_path, format="plain",
                 get_metadata=False, config=FAST)
    assert r.ok and r.files_downloaded == 2500
    assert tree(tmp_path) == expected_tree(archive, "000011")
    pages = asset_pages(archive, "000011")
    assert_each_row_once(pages, 2500)
    assert (2, 1000, 503) in pages
    rows = rows_of(pages, 2500)
    # rows 1001-2000 as pages 3 and 4 of 500 (the rows before them came in the ramp-up)
    assert rows[:6] == [(0, 125), (125, 250), (250, 500), (500, 1000), (1000, 1500),
                        (1500, 2000)]


def small_draft(n: int = 30) -> ArchiveSpec:
    return ArchiveSpec(dandisets=[DandisetSpec(identifier="000012", assets=[
        BlobSpec(path=f"f{i:03d}.txt", content=f"file {i}\n".encode()) for i in range(n)])])


def blob_downloads(archive) -> list[str]:
    """The content-host paths fetched (one per file downloaded)."""
    return [r.path for r in archive.requests
            if r.host == "content" and r.method == "GET" and "/blobs/" in r.path]


@pytest.mark.parametrize("where", ["before", "after"])
def test_asset_added_between_pages(archive_factory, dandi_register, tmp_path, caplog,
                                   where) -> None:
    """An insertion before the current page repeats a row (detected by the order check),
    after it nothing shifts; either way every asset arrives exactly once."""
    archive = archive_factory(small_draft())
    dandi_register(archive)
    new = "f005a.txt" if where == "before" else "f025a.txt"
    archive.after_asset_page("000012", 1, lambda: archive.add_blob("000012", new, b"new\n"))
    r = download(f"dandi://{archive.instance.name}/000012", tmp_path, format="plain",
                 get_metadata=False, config=PAGES_OF_10)
    assert r.ok and r.files_downloaded == 31
    assert tree(tmp_path) == expected_tree(archive, "000012")  # the final draft, exactly
    fetched = blob_downloads(archive)
    assert len(fetched) == len(set(fetched)) == 31  # nothing downloaded twice
    assert "changed while it was listed" in caplog.text


def test_asset_removed_between_pages(archive_factory, dandi_register, tmp_path,
                                     caplog) -> None:
    """A removal before the current page would skip a row: the count check catches it and
    the re-listing supplies it. The removed asset had been listed (and is downloaded)."""
    archive = archive_factory(small_draft())
    dandi_register(archive)
    original = expected_tree(archive, "000012")
    archive.after_asset_page("000012", 1, lambda: archive.remove_asset("000012", "f003.txt"))
    r = download(f"dandi://{archive.instance.name}/000012", tmp_path, format="plain",
                 get_metadata=False, config=PAGES_OF_10)
    assert r.ok and r.files_downloaded == 30
    assert tree(tmp_path) == original  # f010.txt, the row the shift skipped, is there
    assert "000012/f003.txt" not in expected_tree(archive, "000012")
    fetched = blob_downloads(archive)
    assert len(fetched) == len(set(fetched)) == 30
    assert "page 1 announced 30 assets, 29 arrived" in caplog.text
    assert "removed from 000012/draft while it was listed" in caplog.text


def test_a_draft_that_never_stops_changing_is_a_clear_error(archive_factory, dandi_register,
                                                            tmp_path) -> None:
    archive = archive_factory(small_draft())
    dandi_register(archive)
    counter = iter(range(1000))
    archive.after_asset_page(
        "000012", 1, lambda: archive.add_blob("000012", f"a{next(counter):03d}.txt", b"x"),
        times=None)
    with pytest.raises(ListingChanged, match="kept changing while it was listed"):
        download(f"dandi://{archive.instance.name}/000012", tmp_path, format="plain",
                 get_metadata=False, config=PAGES_OF_10)
    assert len([p for p, _, _ in asset_pages(archive, "000012") if p == 1]) == 4  # 4 passes


def test_no_head_on_presigned_urls(archive_factory, dandi_register, tmp_path,
                                   monkeypatch) -> None:
    """The content host refuses HEAD on presigned URLs, as S3 does. Embargoed data is only
    reachable through them: a whole download (small and multi-part blobs, a Zarr) and a
    re-run that checks what is there never send one."""
    token = "d" * 40
    archive = archive_factory(ArchiveSpec(
        dandisets=[DandisetSpec(identifier="000013", embargoed=True, owners=["alice"], assets=[
            BlobSpec(path="small.txt", content=b"small\n"),
            BlobSpec(path="big.bin", size=70 * 1024 * 1024, seed=3),
            ZarrSpec(path="z.zarr", entries={"0/0": b"a", "0/1": b"bb", ".zattrs": b"{}"})])],
        users=[UserSpec(name="alice", token=token)]))
    dandi_register(archive)
    monkeypatch.setenv("DANDI_API_KEY", token)
    for existing in ("error", "overwrite-different"):
        download(f"dandi://{archive.instance.name}/000013", tmp_path, format="plain",
                 existing=existing, get_metadata=False, config=FAST)
    assert archive.compare_tree(tmp_path / "000013", "000013") == []
    content = [r for r in archive.requests if r.host == "content"]
    assert [r for r in content if r.method == "GET" and "X-Amz-" in r.query]  # exercised
    assert [r for r in content if r.method == "HEAD"] == []


async def test_a_page_that_times_out_is_asked_for_smaller(archive_factory) -> None:
    """The other face of the time limit: no answer at all within the client's read timeout."""
    import aiohttp

    from dandiget.api import ApiClient

    archive = archive_factory(ArchiveSpec(dandisets=[
        DandisetSpec.generated("000014", 1200, size=4, per_dir=1000)]))
    archive.inject(r"page_size=1000", host="api", latency=5)  # a page the server chews on
    async with aiohttp.ClientSession() as session:
        client = ApiClient(archive.instance, session, retry=FAST.retry,
                           timeout=aiohttp.ClientTimeout(sock_read=0.5))
        paths = [a["path"] async for a in client.iter_assets("000014", "draft")]
    assert paths == sorted(archive.expected_files("000014"))
    pages = asset_pages(archive, "000014")
    assert sorted(s for _, s, _ in pages) == [125, 125, 250, 500, 500, 1000]
    assert [(p, s) for p, s, status in pages if s == 1000] == [(2, 1000)]  # timed out
    assert_each_row_once([r for r in pages if r[1] != 1000], 1200)
