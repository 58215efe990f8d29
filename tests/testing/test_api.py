"""API semantics beyond the golden shapes: auth matrix, pagination quirks, filters, routing."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import pytest

from dandiget.testing import (
    ArchiveSpec,
    BlobSpec,
    DandisetSpec,
    TestArchive,
    UserSpec,
    ZarrSpec,
)

from .conftest import fetch

ALICE = "a" * 40
BOB = "b" * 40
ROOT = "r" * 40


@pytest.fixture(scope="module")
def archive() -> Iterator[TestArchive]:
    paths = ["Foo.txt", "foo/bar.txt", "foobar/baz.nwb", "a/b/c/deep.nwb", "x [1].txt",
             "sub-01/sub-01_ses-1.nwb", "sub-01/sub-01_ses-1.nwb.bak", "Z.TXT"]
    spec = ArchiveSpec(
        dandisets=[
            DandisetSpec("000001", name="Open", assets=[
                *[BlobSpec(p, p.encode()) for p in paths],
                ZarrSpec("img.zarr", {f"k{i:02d}": bytes([i]) * i for i in range(25)}),
            ], published={"0.230101.0000": [BlobSpec("Foo.txt", b"old")]}),
            DandisetSpec("000002", name="Embargoed", embargoed=True, owners=["alice"], assets=[
                BlobSpec("secret.bin", b"s"), ZarrSpec("e.zarr", {"a": b"a"})]),
            DandisetSpec("000003", name="Empty"),
        ],
        users=[UserSpec("alice", ALICE), UserSpec("bob", BOB), UserSpec("root", ROOT, admin=True)],
    )
    with TestArchive(spec) as a:
        yield a


def token(t: str | None) -> dict[str, str]:
    return {"Authorization": f"token {t}"} if t else {}


# --------------------------------------------------------------------------- auth


def test_bad_tokens_fail_everywhere(archive: TestArchive) -> None:
    for path in ("/info/", "/dandisets/", "/dandisets/000001/", "/users/me/"):
        r = fetch(archive.api_url + path, headers=token("0" * 40))
        assert r.status == 401 and r.json() == {"detail": "Invalid token."}
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    r = fetch(archive.api_url + "/info/", headers={"Authorization": "token"})
    assert r.status == 401 and "No credentials" in r.json()["detail"]
    r = fetch(archive.api_url + "/info/", headers={"Authorization": "token a b"})
    assert r.status == 401 and "spaces" in r.json()["detail"]
    # other schemes are not ours: anonymous
    assert fetch(archive.api_url + "/info/", headers={"Authorization": "Bearer x"}).status == 200
    assert fetch(archive.api_url + "/info/", headers={"Authorization": f"Token {ALICE}"}
                 ).status == 200


@pytest.mark.parametrize(("who", "status"), [(None, 401), (BOB, 403), (ALICE, 200),
                                             (ROOT, 200)])
def test_embargo_matrix_dandiset_routes(archive: TestArchive, who: str | None,
                                        status: int) -> None:
    a = archive.asset("000002", "secret.bin").asset_id
    base = f"{archive.api_url}/dandisets/000002"
    for path in ("/", "/versions/", "/versions/draft/", "/versions/draft/info/",
                 "/versions/draft/assets/", "/versions/draft/assets/paths/",
                 f"/versions/draft/assets/{a}/", f"/versions/draft/assets/{a}/info/",
                 f"/versions/draft/assets/{a}/download/"):
        r = fetch(base + path, headers=token(who))
        expected = 302 if status == 200 and path.endswith("download/") else status
        assert r.status == expected, path
    for path in (f"/assets/{a}/", f"/assets/{a}/info/", f"/assets/{a}/download/"):
        r = fetch(archive.api_url + path, headers=token(who))
        assert r.status == (302 if status == 200 and "download" in path else status), path
    if status == 401:
        r = fetch(base + "/", headers=token(who))
        assert r.json() == {"detail": "Authentication credentials were not provided."}
    if status == 403:
        r = fetch(base + "/", headers=token(who))
        assert r.json() == {"detail": "You do not have permission to perform this action."}


@pytest.mark.parametrize(("who", "status"), [(None, 404), (BOB, 404), (ALICE, 200)])
def test_embargo_matrix_zarr(archive: TestArchive, who: str | None, status: int) -> None:
    z = archive.asset("000002", "e.zarr").zarr_id
    assert fetch(f"{archive.api_url}/zarr/{z}/", headers=token(who)).status == status
    # the files listing is not checked (upstream behaviour)
    assert fetch(f"{archive.api_url}/zarr/{z}/files/", headers=token(who)).status == 200
    listed = fetch(f"{archive.api_url}/zarr/", headers=token(who)).json()["results"]
    assert (z in [x["zarr_id"] for x in listed]) == (status == 200)


def test_dandiset_list_and_embargo_filter(archive: TestArchive) -> None:
    ids = [d["identifier"] for d in fetch(f"{archive.api_url}/dandisets/").json()["results"]]
    assert ids == ["000001", "000003"]
    r = fetch(f"{archive.api_url}/dandisets/?embargoed=true")
    assert r.status == 401 and isinstance(r.json(), str)
    r = fetch(f"{archive.api_url}/dandisets/?embargoed=true", headers=token(ALICE))
    assert [d["identifier"] for d in r.json()["results"]] == ["000001", "000002", "000003"]
    r = fetch(f"{archive.api_url}/dandisets/?embargoed=true", headers=token(BOB))
    assert [d["identifier"] for d in r.json()["results"]] == ["000001", "000003"]
    r = fetch(f"{archive.api_url}/dandisets/?draft=false")
    assert [d["identifier"] for d in r.json()["results"]] == ["000001"]
    r = fetch(f"{archive.api_url}/dandisets/?empty=false")
    assert [d["identifier"] for d in r.json()["results"]] == ["000001"]
    r = fetch(f"{archive.api_url}/dandisets/?user=me", headers=token(ALICE))
    assert r.json()["results"] == []
    r = fetch(f"{archive.api_url}/dandisets/?ordering=-id")
    assert [d["identifier"] for d in r.json()["results"]] == ["000003", "000001"]
    r = fetch(f"{archive.api_url}/dandisets/?ordering=bogus")
    assert r.status == 200
    assert fetch(f"{archive.api_url}/dandisets/?draft=maybe").status == 400


def test_users_and_token(archive: TestArchive) -> None:
    assert fetch(f"{archive.api_url}/users/me/").status == 401
    me = fetch(f"{archive.api_url}/users/me/", headers=token(ALICE)).json()
    assert me["name"] == "alice" and me["status"] == "APPROVED" and me["admin"] is False
    assert fetch(f"{archive.api_url}/auth/token/", headers=token(ALICE)).json() == ALICE
    assert fetch(f"{archive.api_url}/auth/token/").status == 401


def test_writes_and_methods(archive: TestArchive) -> None:
    r = fetch(f"{archive.api_url}/dandisets/", "POST", body=b"{}")
    assert r.status == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert fetch(f"{archive.api_url}/dandisets/", "POST", token(ALICE), b"{}").status == 403
    r = fetch(f"{archive.api_url}/dandisets/000001/versions/", "POST", token(ALICE), b"{}")
    assert r.status == 405 and r.json() == {"detail": 'Method "POST" not allowed.'}
    assert fetch(f"{archive.api_url}/info/", "OPTIONS").status == 200


# --------------------------------------------------------------------------- routing


def test_trailing_slash_redirect_keeps_query(archive: TestArchive) -> None:
    z = archive.asset("000001", "img.zarr").zarr_id
    r = fetch(f"{archive.api_url}/zarr/{z}/files?prefix=k0&limit=3")
    assert r.status == 301
    assert r.headers["Location"] == f"/api/zarr/{z}/files/?prefix=k0&limit=3"
    assert fetch(f"{archive.api_url}/dandisets/000001", "HEAD").status == 301


@pytest.mark.parametrize("path", [
    "/assets/not-a-uuid/", "/assets/00000000-0000-0000-0000-000000000000/",
    "/dandisets/1/", "/dandisets/000001/versions/1.0.0/", "/assets/", "/nope/",
    "/dandisets/000001/versions/Draft/",
])
def test_malformed_ids_get_django_html_404(archive: TestArchive, path: str) -> None:
    r = fetch(archive.api_url + path)
    assert r.status == 404
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"<h1>Not Found</h1>" in r.body


def test_not_found_json(archive: TestArchive) -> None:
    missing = "11111111-1111-4111-8111-111111111111"
    for path in ("/dandisets/999999/", "/dandisets/000001/versions/0.999999.9999/",
                 f"/assets/{missing}/", f"/zarr/{missing}/files/",
                 f"/dandisets/000001/versions/draft/assets/{missing}/download/"):
        r = fetch(archive.api_url + path)
        assert r.status == 404 and r.json() == {"detail": "Not found."}, path
    # an asset that exists but not in this version
    old = archive.asset("000001", "Foo.txt", "0.230101.0000").asset_id
    assert fetch(f"{archive.api_url}/dandisets/000001/versions/draft/assets/{old}/").status == 404
    assert fetch(f"{archive.api_url}/assets/{old}/").status == 200  # still resolvable


def test_gzip(archive: TestArchive) -> None:
    r = fetch(f"{archive.api_url}/info/", headers={"Accept-Encoding": "gzip"})
    assert r.headers["Content-Encoding"] == "gzip"
    assert b"cli-minimal-version" in gzip.decompress(r.body)
    assert "Accept-Encoding" in r.headers["Vary"]
    r = fetch(f"{archive.api_url}/dandisets/999999/", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in r.headers  # under 200 bytes


def test_info(archive: TestArchive) -> None:
    info = fetch(f"{archive.api_url}/info/").json()
    assert info["services"]["api"]["url"] == archive.api_url
    assert "webui" not in info["services"]
    assert info["cli-minimal-version"] == "0.60.0" and info["cli-bad-versions"] == []


# --------------------------------------------------------------------------- downloads


def test_download_redirects(archive: TestArchive) -> None:
    info = archive.asset("000001", "x [1].txt")
    r = fetch(info.metadata["contentUrl"][0], "HEAD")
    assert r.status == 302
    assert "filename%3D%22x%20%5B1%5D.txt%22" in r.headers["Location"]
    z = archive.asset("000001", "img.zarr")
    r = fetch(z.metadata["contentUrl"][0])
    assert r.status == 400 and r.json().startswith("Unable to provide download link")
    assert fetch(info.metadata["contentUrl"][0] + "?content_disposition=x").status == 400


# --------------------------------------------------------------------------- pagination


def assets_url(archive: TestArchive, query: str = "") -> str:
    return f"{archive.api_url}/dandisets/000001/versions/draft/assets/" + (
        f"?{query}" if query else "")


def test_lazy_pagination(archive: TestArchive) -> None:
    p1 = fetch(assets_url(archive, "page_size=4&order=path")).json()
    assert p1["count"] == 9 and p1["previous"] is None
    nxt = urlsplit(p1["next"])
    assert nxt.netloc == urlsplit(archive.api_url).netloc  # absolute, from Host
    assert nxt.query == "order=path&page=2&page_size=4"  # re-encoded sorted
    p2 = fetch(p1["next"]).json()
    assert p2["count"] is None and p2["previous"].endswith("?order=path&page_size=4")
    p3 = fetch(p2["next"]).json()
    assert p3["next"] is None and len(p3["results"]) == 1
    assert p3["previous"].endswith("?order=path&page=2&page_size=4")
    past = fetch(assets_url(archive, "page=99")).json()
    assert past == {"count": None, "next": None, "previous": past["previous"], "results": []}
    assert dict(parse_qsl(urlsplit(past["previous"]).query)) == {"page": "98"}
    for bad in ("page=0", "page=abc", "page=-1"):
        r = fetch(assets_url(archive, bad))
        assert r.status == 404 and r.json() == {"detail": "Invalid page."}


@pytest.mark.parametrize(("size", "effective"), [("abc", 100), ("0", 100), ("-3", 100),
                                                 ("5000", 1000), ("2", 2)])
def test_page_size(archive: TestArchive, size: str, effective: int) -> None:
    r = fetch(assets_url(archive, f"page_size={size}")).json()
    assert len(r["results"]) == min(effective, 9)


def test_dandi_pagination(archive: TestArchive) -> None:
    p1 = fetch(f"{archive.api_url}/dandisets/?page_size=1").json()
    assert p1["count"] == 2 and p1["next"].endswith("/api/dandisets/?page=2&page_size=1")
    p2 = fetch(p1["next"]).json()
    assert p2["count"] == 2 and p2["next"] is None
    assert p2["previous"].endswith("/api/dandisets/?page_size=1")
    r = fetch(f"{archive.api_url}/dandisets/?page=3&page_size=1")
    assert r.status == 404 and r.json() == {"detail": "Invalid page."}
    assert fetch(f"{archive.api_url}/dandisets/?page=last&page_size=1").json()["next"] is None


def paths(archive: TestArchive, query: str) -> list[str]:
    r = fetch(assets_url(archive, query))
    assert r.status == 200, r.body
    return [a["path"] for a in r.json()["results"]]


def test_path_filter(archive: TestArchive) -> None:
    # case-insensitive prefix, not folder-aware
    assert sorted(paths(archive, "path=foo")) == ["Foo.txt", "foo/bar.txt", "foobar/baz.nwb"]
    assert paths(archive, "path=FOO/") == ["foo/bar.txt"]
    # exact (case-sensitive) match wins over the prefix
    assert paths(archive, "path=sub-01/sub-01_ses-1.nwb") == ["sub-01/sub-01_ses-1.nwb"]
    assert sorted(paths(archive, "path=sub-01/SUB-01_ses-1.nwb")) == [
        "sub-01/sub-01_ses-1.nwb", "sub-01/sub-01_ses-1.nwb.bak"]
    assert paths(archive, "path=x%20%5B1%5D.txt") == ["x [1].txt"]


def test_glob_filter(archive: TestArchive) -> None:
    assert sorted(paths(archive, "glob=*.nwb")) == ["a/b/c/deep.nwb", "foobar/baz.nwb",
                                                    "sub-01/sub-01_ses-1.nwb"]
    assert sorted(paths(archive, "glob=*.TXT")) == ["Foo.txt", "Z.TXT", "foo/bar.txt",
                                                    "x [1].txt"]
    assert paths(archive, "glob=a*deep.nwb") == ["a/b/c/deep.nwb"]
    assert paths(archive, "glob=x%20[1].txt") == ["x [1].txt"]  # brackets are literal
    assert paths(archive, "glob=?oo.txt") == []  # ? is literal
    assert paths(archive, "glob=deep.nwb") == []  # anchored


def test_order_and_flags(archive: TestArchive) -> None:
    by_path = paths(archive, "order=path")
    assert by_path == sorted(by_path)
    assert paths(archive, "order=-path") == by_path[::-1]
    assert paths(archive, "zarr=true") == ["img.zarr"]
    r = fetch(assets_url(archive, "order=size"))
    assert r.status == 400 and "order" in r.json()
    r = fetch(assets_url(archive, "metadata=yes-please"))
    assert r.status == 400 and r.json() == {"metadata": ["Must be a valid boolean."]}
    items = fetch(assets_url(archive, "metadata=1&page_size=1")).json()["results"]
    assert "digest" in items[0]["metadata"]
    assert list(items[0]) == ["asset_id", "blob", "zarr", "path", "size", "created",
                              "modified", "metadata"]


def test_paths_endpoint(archive: TestArchive) -> None:
    base = f"{archive.api_url}/dandisets/000001/versions/draft/assets/paths/"
    root = fetch(base).json()["results"]
    assert [r["path"] for r in root] == ["Foo.txt", "Z.TXT", "a", "foo", "foobar",
                                         "img.zarr", "sub-01", "x [1].txt"]
    a = next(r for r in root if r["path"] == "a")
    assert a["asset"] is None and a["aggregate_files"] == 1
    z = next(r for r in root if r["path"] == "img.zarr")
    assert z["asset"]["url"].endswith("/")
    sub = fetch(base + "?path_prefix=sub-01/").json()["results"]
    assert [r["path"] for r in sub] == ["sub-01/sub-01_ses-1.nwb", "sub-01/sub-01_ses-1.nwb.bak"]
    r = fetch(base + "?path_prefix=nope")
    assert r.status == 404 and r.json() == {"detail": "Specified path not found."}
    assert fetch(base + "?path_prefix=Foo.txt").json()["results"] == []


# --------------------------------------------------------------------------- zarr listing


def test_zarr_files_listing(archive: TestArchive) -> None:
    z = archive.asset("000001", "img.zarr").zarr_id
    base = f"{archive.api_url}/zarr/{z}/files/"
    everything = fetch(base).json()
    assert set(everything) == {"next", "results"} and everything["next"] is None
    keys = [e["Key"] for e in everything["results"]]
    assert keys == sorted(keys) and len(keys) == 25
    e0 = everything["results"][0]
    assert e0["ETag"] == "d41d8cd98f00b204e9800998ecf8427e" and e0["Size"] == 0
    assert "T" not in e0["LastModified"] and e0["LastModified"].endswith("+00:00")
    page = fetch(base + "?limit=10").json()
    assert page["next"].endswith("?after=k09&limit=10")
    seen = []
    url = base + "?limit=10"
    while url:
        body = fetch(url).json()
        seen += [e["Key"] for e in body["results"]]
        url = body["next"]
    assert seen == keys
    assert [e["Key"] for e in fetch(base + "?prefix=k1").json()["results"]] == [
        f"k{i}" for i in range(10, 20)]
    assert [e["Key"] for e in fetch(base + "?after=k22").json()["results"]] == ["k23", "k24"]
    assert fetch(base + "?limit=0").json() == {"next": None, "results": []}
    for bad in ("1001", "-1", "x"):
        r = fetch(base + f"?limit={bad}")
        assert r.status == 400 and "limit" in r.json()
    r = fetch(base + "?prefix=k03&download=true")
    assert r.status == 302 and f"/zarr/{z}/k03?" in r.headers["Location"]
    assert fetch(r.headers["Location"]).body == bytes([3]) * 3
    r = fetch(base + "?prefix=nope&download=true")  # no existence check: S3 says 404
    assert r.status == 302 and fetch(r.headers["Location"]).status == 404
    assert fetch(base + "?prefix=k03", "HEAD").status == 302
    zinfo = fetch(f"{archive.api_url}/zarr/{z}/").json()
    assert zinfo["status"] == "Complete" and zinfo["file_count"] == 25
    assert list(zinfo) == ["name", "dandiset", "zarr_id", "status", "checksum", "file_count",
                           "size"]


def test_zarr_checksum_pending() -> None:
    spec = ArchiveSpec(dandisets=[DandisetSpec("000001", assets=[
        ZarrSpec("p.zarr", {"a": b"1"}, checksum_pending=True)])])
    with TestArchive(spec) as archive:
        info = archive.asset("000001", "p.zarr")
        assert info.digests == {"dandi:dandi-zarr-checksum": None}
        z = fetch(f"{archive.api_url}/zarr/{info.zarr_id}/").json()
        assert z["status"] != "Complete" and z["checksum"] is None and z["size"] == 0
        files = fetch(f"{archive.api_url}/zarr/{info.zarr_id}/files/").json()["results"]
        assert [f["Key"] for f in files] == ["a"]
