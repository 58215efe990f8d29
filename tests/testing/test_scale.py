"""Scale: 100,000 assets and 200,000 zarr entries are served quickly from compact records."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dandiget.testing import (
    ArchiveSpec,
    BlobSpec,
    DandisetSpec,
    TestArchive,
    UserSpec,
    ZarrSpec,
    scale_spec,
)
from dandiget.testing import metadata as md
from dandiget.testing.fastjson import asset_item_json

from .conftest import fetch


def test_fast_listing_json_is_byte_identical() -> None:
    spec = ArchiveSpec(
        dandisets=[
            DandisetSpec("000001", assets=[
                BlobSpec('odd "quoted" ünïcode\\path.txt', b"x"),
                BlobSpec("sub-07/sub-07_ses-1.nwb", size=3000, seed=1),
                BlobSpec("nosha.bin", b"y", sha256=False),
                BlobSpec("nodate.bin", b"z", omit_blob_date_modified=True),
                BlobSpec("dated.bin", b"w", blob_date_modified="2021-06-10T14:59:59Z"),
                BlobSpec("extra.bin", b"v", metadata={"keywords": ["k"]}),
                ZarrSpec("a.zarr", {"k": b"1"}),
                ZarrSpec("p.zarr", {"k": b"1"}, checksum_pending=True),
            ], published={"0.240101.0000": [BlobSpec("nosha.bin", b"y", sha256=False)]}),
            DandisetSpec("000002", embargoed=True, owners=["u"], assets=[BlobSpec("e.bin", b"e")]),
        ],
        users=[UserSpec("u", "u" * 40)])
    archive = TestArchive(spec, content_base_url="http://example.org:9/bucket")
    site = md.Site(api_url="http://127.0.0.1:1/api", content_base="http://example.org:9/bucket")
    rows = list(archive.store.assets.values())
    assert len(rows) == 9  # the published nosha.bin row is shared with the draft
    for a in rows:
        for with_metadata in (False, True):
            fast = asset_item_json(site, a, with_metadata)
            slow = json.dumps(md.asset_item(site, a, with_metadata), separators=(",", ":"),
                              ensure_ascii=False)
            assert fast == slow, a.path


@pytest.mark.slow
def test_100k_asset_listing_with_metadata() -> None:
    t0 = time.monotonic()
    with TestArchive(scale_spec(100_000)) as archive:
        built = time.monotonic() - t0
        base = f"{archive.api_url}/dandisets/000100/versions/draft/assets/"
        first = fetch(base + "?metadata=true&page_size=1000").json()
        assert first["count"] == 100_000
        t1 = time.monotonic()
        # like dandi-cli: page 1, then the rest in parallel from the count
        with ThreadPoolExecutor(4) as ex:
            pages = list(ex.map(
                lambda p: fetch(base + f"?metadata=true&page={p}&page_size=1000").json(),
                range(2, 101)))
        listed = time.monotonic() - t1
        results = first["results"] + [r for p in pages for r in p["results"]]
        assert len(results) == 100_000
        assert len({r["asset_id"] for r in results}) == 100_000
        assert all(p["count"] is None for p in pages) and pages[-1]["next"] is None
        assert all("dandi:sha2-256" in r["metadata"]["digest"] for r in results[::997])
        print(f"100k assets: built in {built:.1f}s, listed with metadata in {listed:.1f}s")
        assert listed < 120


@pytest.mark.slow
def test_200k_entry_zarr_listing() -> None:
    with TestArchive(scale_spec(0, 200_000, entry_size=16)) as archive:
        info = archive.asset("000101", "big.zarr")
        assert info.size > 200_000 * 16  # plus the .zgroup
        url: str | None = f"{archive.api_url}/zarr/{info.zarr_id}/files/"
        keys: list[str] = []
        while url:
            body = fetch(url).json()
            keys += [e["Key"] for e in body["results"]]
            url = body["next"]
        assert len(keys) == 200_001 and keys == sorted(keys)
        last = fetch(info.content_url + keys[-1])
        assert last.status == 200 and len(last.body) == 16
