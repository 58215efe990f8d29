"""The asset listing fetches pages in parallel once page 1 has given the count, and still
hands the assets out in path order, each once, with the first page's assets handed out
before the rest of the listing has arrived."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

import aiohttp

from dandiget.api import ASSET_PAGES_IN_FLIGHT, ApiClient
from dandiget.download import download
from dandiget.listing import iter_consistent_assets
from dandiget.testing import ArchiveSpec, DandisetSpec

from .conftest import FAST, tree, wait_until
from .test_listing_unkind import assert_each_row_once


def page_requests(archive, identifier: str) -> list[tuple[int, int, int]]:
    """(page, page_size, status) of every asset-listing request, in arrival order."""
    out = []
    for r in archive.requests:
        if r.host == "api" and r.path == f"/api/dandisets/{identifier}/versions/draft/assets/":
            q = parse_qs(r.query)
            out.append((int(q["page"][0]), int(q["page_size"][0]), r.status))
    return out


def generated(identifier: str, count: int) -> ArchiveSpec:
    return ArchiveSpec(dandisets=[DandisetSpec.generated(identifier, count, size=4,
                                                         per_dir=700)])


async def listed(archive, identifier: str, **kwargs) -> list[dict]:
    async with aiohttp.ClientSession() as session:
        client = ApiClient(archive.instance, session, retry=FAST.retry)
        return [a async for a in iter_consistent_assets(client, identifier, "draft", **kwargs)]


async def test_pages_are_fetched_in_parallel_and_handed_out_from_the_first(
        archive_factory) -> None:
    """While every page after the first is held by the server, exactly ASSET_PAGES_IN_FLIGHT
    of them are in flight, and the first page's assets have already been handed out."""
    archive = archive_factory(generated("000020", 6000))
    held = archive.inject(r"/assets/\?.*page=(?!1&)", host="api", pause_at=0)
    first_page = asyncio.Event()
    paths: list[str] = []

    async def consume() -> None:
        async with aiohttp.ClientSession() as session:
            client = ApiClient(archive.instance, session, retry=FAST.retry)
            async for page in client.asset_pages("000020", "draft"):
                paths.extend(a["path"] for a in page["results"])
                first_page.set()

    consumer = asyncio.ensure_future(consume())
    try:
        await asyncio.wait_for(first_page.wait(), 30)
        assert len(paths) == 125  # page 1 only, handed out while the others are pending
        assert await asyncio.to_thread(held.wait_paused, ASSET_PAGES_IN_FLIGHT, 30)
        assert [(p, s) for p, s, _ in page_requests(archive, "000020")] == [
            (1, 125), (2, 125), (2, 250), (2, 500), (2, 1000)]
        assert len(paths) == 125
    finally:
        held.release()
    await asyncio.wait_for(consumer, 60)
    assert paths == sorted(archive.expected_files("000020"))  # in order, each once
    sizes = [(p, s) for p, s, _ in page_requests(archive, "000020")]
    assert sizes == [(1, 125), (2, 125), (2, 250), (2, 500)] + [(p, 1000) for p in range(2, 7)]


async def test_pages_answered_out_of_order_are_handed_out_in_order(archive_factory) -> None:
    """The second page is held until the server has answered every later one (the last one
    short: 3,210 rows): the assets still come in path order, none twice, none missing."""
    archive = archive_factory(generated("000021", 3210))
    held = archive.inject(r"/assets/\?.*page=2&page_size=125", host="api", pause_at=0)
    consumer = asyncio.ensure_future(listed(archive, "000021"))
    try:
        assert await asyncio.to_thread(held.wait_paused, 1, 30)

        def later_pages_answered() -> bool:
            done = {(p, s) for p, s, status in page_requests(archive, "000021")
                    if status == 200}
            return {(2, 250), (2, 500), (2, 1000)} <= done

        await asyncio.to_thread(wait_until, later_pages_answered, "the later pages")
    finally:
        held.release()
    items = await asyncio.wait_for(consumer, 60)
    paths = [a["path"] for a in items]
    assert paths == sorted(archive.expected_files("000021"))
    assert len({a["asset_id"] for a in items}) == 3210


async def test_a_page_cut_off_mid_listing_is_asked_for_smaller(archive_factory) -> None:
    """Page 3 of 1,000 rows fails while pages 2 and 4 are in flight: its rows arrive as
    pages 5 and 6 of 500, later pages are asked for at 500, and nothing is repeated."""
    archive = archive_factory(generated("000022", 5432))
    archive.inject(r"/assets/\?.*page=3&page_size=1000", host="api", status=503)
    items = await listed(archive, "000022")
    assert [a["path"] for a in items] == sorted(archive.expected_files("000022"))
    pages = page_requests(archive, "000022")
    assert (3, 1000, 503) in pages
    assert {(5, 500, 200), (6, 500, 200)} <= set(pages)  # rows 2,000-2,999
    assert_each_row_once(pages, 5432)


def test_a_draft_changed_during_a_parallel_listing_is_listed_again(
        archive_factory, dandi_register, tmp_path, caplog) -> None:
    """An asset added at the front and one removed after page 2 (of any size) is produced,
    while later pages are in flight: the listing notices, lists again, and the download is
    exactly the draft as it was, plus the new asset, each file fetched once."""
    archive = archive_factory(generated("000023", 2600))
    dandi_register(archive)
    first = sorted(archive.expected_files("000023"))

    def edit() -> None:
        archive.add_blob("000023", "dir0000/file0000000a.bin", b"new\n")
        archive.remove_asset("000023", first[1500])

    archive.after_asset_page("000023", 2, edit)
    r = download(f"dandi://{archive.instance.name}/000023", tmp_path, format="plain",
                 get_metadata=False, config=FAST)
    assert r.ok
    got = tree(tmp_path)
    want = {f"000023/{p}": archive.read_blob("000023", p)
            for p in archive.expected_files("000023")}
    # the removed asset had been listed (and downloaded) before it was removed, or not
    extra = set(got) - set(want)
    assert extra <= {f"000023/{first[1500]}"}
    assert {k: got[k] for k in want} == want
    fetched = [r.path for r in archive.requests
               if r.host == "content" and r.method == "GET" and "/blobs/" in r.path]
    assert len(fetched) == len(set(fetched)) == len(got)
    assert "changed while it was listed" in caplog.text
    assert len([p for p, _, _ in page_requests(archive, "000023") if p == 1]) == 2  # 2 passes


def test_the_draft_stamp_read_for_the_total_size_starts_the_first_pass(
        archive_factory, dandi_register, tmp_path) -> None:
    """One request less before page 1: the version info read for the total size is the
    listing's "before" stamp; the "after" one is still read when the listing ends."""
    archive = archive_factory(generated("000024", 300))
    dandi_register(archive)
    r = download(f"dandi://{archive.instance.name}/000024", tmp_path, format="plain",
                 config=FAST)
    assert r.ok and r.files_downloaded == 301  # and dandiset.yaml
    api = [(r.path, parse_qs(r.query).get("page")) for r in archive.requests if r.host == "api"]
    info = "/api/dandisets/000024/versions/draft/info/"
    first_page = api.index(("/api/dandisets/000024/versions/draft/assets/", ["1"]))
    assert [p for p, _ in api[:first_page]].count(info) == 1
    assert [p for p, _ in api[first_page:]].count(info) == 1
