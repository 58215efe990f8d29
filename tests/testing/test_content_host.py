"""The bucket: digests of served content, Range/416/HEAD, presigned URLs, embargo, auth refusal."""

from __future__ import annotations

import hashlib
import re

import pytest

from dandiget.digests import EMPTY_ZARR_CHECKSUM, dandi_etag_bytes
from dandiget.testing import (
    ArchiveSpec,
    BlobSpec,
    DandisetSpec,
    TestArchive,
    UserSpec,
    ZarrSpec,
)
from dandiget.testing.data import GeneratedSource, compute_digests

from .conftest import fetch

MiB = 1 << 20


def test_digest_vectors() -> None:
    assert dandi_etag_bytes(b"") == "d41d8cd98f00b204e9800998ecf8427e-0"
    assert dandi_etag_bytes(b"abc") == "af5da9f45af7a300e3aded972f8ff687-1"
    assert compute_digests(GeneratedSource(0)).etag == "d41d8cd98f00b204e9800998ecf8427e-0"
    assert EMPTY_ZARR_CHECKSUM == "481a2f77ab786a0f45aafd5db0971caa-0--0"


def test_generated_content_is_deterministic_and_parts_differ() -> None:
    a = GeneratedSource(3 * MiB + 5, seed=4)
    data = a.read()
    assert data == GeneratedSource(3 * MiB + 5, seed=4).read()
    assert data != GeneratedSource(3 * MiB + 5, seed=5).read()
    blocks = {data[i:i + MiB] for i in range(0, 3 * MiB, MiB)}
    assert len(blocks) == 3
    # any range is the slice of the whole
    assert b"".join(a.iter_range(MiB - 7, 2 * MiB + 40)) == data[MiB - 7:2 * MiB + 40]
    d = compute_digests(a)
    assert d.md5 == hashlib.md5(data).hexdigest()
    assert d.sha256 == hashlib.sha256(data).hexdigest()
    assert d.etag == dandi_etag_bytes(data)


def test_empty_zarr_checksum_served() -> None:
    spec = ArchiveSpec(dandisets=[DandisetSpec("000001", assets=[ZarrSpec("e.zarr", {})])])
    with TestArchive(spec) as archive:
        info = archive.asset("000001", "e.zarr")
        assert info.digests == {"dandi:dandi-zarr-checksum": EMPTY_ZARR_CHECKSUM}
        assert info.size == 0


def test_multipart_blob_etag_and_metadata(oracle: TestArchive) -> None:
    info = oracle.asset("000001", "sub-04/sub-04_ses-1_ecephys.nwb")
    assert info.digests["dandi:dandi-etag"].endswith("-2")
    r = fetch(info.content_url, "HEAD")
    assert r.status == 200
    assert r.headers["ETag"] == f'"{info.digests["dandi:dandi-etag"]}"'
    assert r.headers["Content-Length"] == "84173800"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert "GMT" in r.headers["Last-Modified"]
    assert r.body == b""


@pytest.mark.parametrize(("rng", "status", "span"), [
    ("bytes=0-9", 206, (0, 9)),
    ("bytes=10-", 206, (10, 18)),
    ("bytes=-5", 206, (14, 18)),
    ("bytes=5-1000", 206, (5, 18)),
    ("bytes=19-", 416, None),
    ("bytes=9-3", 200, None),  # invalid: ignored, whole object
    ("bytes=0-1,4-5", 200, None),  # multi-range: S3 serves the whole object
])
def test_range(text_mod: TestArchive, rng: str, status: int, span: tuple[int, int] | None
               ) -> None:
    info = text_mod.asset("000001", "file.txt")
    data = b"This is test text.\n"
    r = fetch(info.content_url, headers={"Range": rng})
    assert r.status == status
    if status == 206:
        assert span is not None
        a, b = span
        assert r.body == data[a:b + 1]
        assert r.headers["Content-Range"] == f"bytes {a}-{b}/{len(data)}"
        assert r.headers["Content-Length"] == str(b + 1 - a)
    elif status == 416:
        assert b"<Code>InvalidRange</Code>" in r.body
        assert b"<ActualObjectSize>19</ActualObjectSize>" in r.body
        assert r.headers["Content-Type"] == "application/xml"
    else:
        assert r.body == data


def test_head_with_range_and_conditionals(text_mod: TestArchive) -> None:
    info = text_mod.asset("000001", "file.txt")
    r = fetch(info.content_url, "HEAD", {"Range": "bytes=2-"})
    assert r.status == 206 and r.body == b"" and r.headers["Content-Length"] == "17"
    etag = fetch(info.content_url, "HEAD").headers["ETag"]
    assert fetch(info.content_url, headers={"If-None-Match": etag}).status == 304
    assert fetch(info.content_url, headers={"If-Match": etag}).status == 200
    r = fetch(info.content_url, headers={"If-Match": '"0000"'})
    assert r.status == 412 and b"PreconditionFailed" in r.body


def test_missing_key_and_methods(text_mod: TestArchive) -> None:
    r = fetch(text_mod.content_url + "/blobs/aaa/bbb/aaabbb00-0000-4000-8000-000000000000")
    assert r.status == 404 and b"<Code>NoSuchKey</Code>" in r.body
    assert b"<Key>blobs/aaa/bbb/aaabbb00-0000-4000-8000-000000000000</Key>" in r.body
    assert fetch(text_mod.content_url + "/nothing", "HEAD").status == 404
    info = text_mod.asset("000001", "file.txt")
    r = fetch(info.content_url, "PUT", body=b"x")
    assert r.status == 405 and b"MethodNotAllowed" in r.body


def test_zarr_entries_served_with_md5_etag(text_mod: TestArchive) -> None:
    info = text_mod.asset("000002", "sample.zarr")
    assert info.content_url.endswith(f"/zarr/{info.zarr_id}/")
    files = text_mod.zarr_files("000002", "sample.zarr")
    for key, data in files.items():
        r = fetch(info.content_url + key)
        assert r.status == 200 and r.body == data
        assert r.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        assert r.headers["Content-Type"] == "binary/octet-stream"
    assert fetch(info.content_url).status == 404  # the prefix itself is not an object


def test_authorization_header_rejected(text_mod: TestArchive) -> None:
    info = text_mod.asset("000001", "file.txt")
    r = fetch(info.content_url, headers={"Authorization": "token " + "a" * 40})
    assert r.status == 400 and b"<Code>InvalidArgument</Code>" in r.body
    redirect = fetch(info.metadata["contentUrl"][0])
    assert redirect.status == 302
    r = fetch(redirect.headers["Location"], headers={"Authorization": "token x"})
    assert r.status == 400 and b"Only one auth mechanism allowed" in r.body


def test_presigned_urls(text_mod: TestArchive) -> None:
    info = text_mod.asset("000001", "subdir1/apple.txt")
    loc = fetch(info.metadata["contentUrl"][0]).headers["Location"]
    r = fetch(loc)
    assert r.status == 200 and r.body == b"Apple\n"
    assert r.headers["Content-Disposition"] == 'attachment; filename="apple.txt"'
    # tampering with any signed parameter breaks the signature
    tampered = loc.replace("apple.txt%22", "evil.txt%22")
    r = fetch(tampered)
    assert r.status == 403 and b"SignatureDoesNotMatch" in r.body
    # response-* overrides without a signature are refused, as on S3
    r = fetch(info.content_url + "?response-content-type=text%2Fhtml")
    assert r.status == 400 and b"anonymous" in r.body
    inline = fetch(info.metadata["contentUrl"][0] + "?content_disposition=inline")
    r = fetch(inline.headers["Location"])
    assert r.headers["Content-Type"] == "text/plain"
    assert r.headers["Content-Disposition"] == 'inline; filename="apple.txt"'


def test_head_on_presigned_get_url(text_mod: TestArchive) -> None:
    """Download redirects are presigned for GET: a HEAD is refused (403, no body) as on S3,
    while the unsigned public URL and the Zarr HEAD redirect (presigned for HEAD) answer it."""
    info = text_mod.asset("000001", "subdir1/apple.txt")
    for api_url in (info.metadata["contentUrl"][0],
                    f"{text_mod.api_url}/dandisets/000001/versions/draft/assets/"
                    f"{info.asset_id}/download/"):
        for method in ("GET", "HEAD"):  # the API answers both with a GET-signed redirect
            loc = fetch(api_url, method).headers["Location"]
            head = fetch(loc, "HEAD")
            assert head.status == 403 and head.body == b""
            assert fetch(loc).status == 200
    assert fetch(info.content_url, "HEAD").status == 200  # unsigned, public
    zarr = text_mod.asset("000002", "sample.zarr")
    key = sorted(text_mod.zarr_files("000002", "sample.zarr"))[0]
    files = f"{text_mod.api_url}/zarr/{zarr.zarr_id}/files/?prefix={key}"
    assert fetch(fetch(files, "HEAD").headers["Location"], "HEAD").status == 200
    signed_for_head = fetch(files, "HEAD").headers["Location"]
    assert fetch(signed_for_head).status == 403  # and that one is not good for a GET
    get_loc = fetch(files + "&download=true").headers["Location"]
    assert fetch(get_loc, "HEAD").status == 403 and fetch(get_loc).status == 200


def test_expired_presigned_url(text_mod: TestArchive) -> None:
    info = text_mod.asset("000001", "file.txt")
    f = text_mod.inject(r"/download/", host="api", expire_presigned=True, times=1)
    try:
        loc = fetch(info.metadata["contentUrl"][0]).headers["Location"]
        r = fetch(loc)
        assert r.status == 403
        assert b"<Code>AccessDenied</Code>" in r.body and b"Request has expired" in r.body
        assert b"<X-Amz-Expires>21600</X-Amz-Expires>" in r.body
        assert f.hits == 1
        # a fresh URL works again
        assert fetch(fetch(info.metadata["contentUrl"][0]).headers["Location"]).status == 200
        # the content host can also declare a URL expired
        loc = fetch(info.metadata["contentUrl"][0]).headers["Location"]
        text_mod.inject(r"/blobs/", host="content", expire_presigned=True, times=1)
        assert fetch(loc).status == 403
        assert fetch(loc).status == 200
    finally:
        text_mod.clear_faults()


def test_embargoed_objects_need_presigned_urls() -> None:
    token = "c" * 40
    spec = ArchiveSpec(
        dandisets=[DandisetSpec("000007", embargoed=True, owners=["carol"], assets=[
            BlobSpec("s.bin", b"secret"), ZarrSpec("z.zarr", {"a/b": b"zz"})])],
        users=[UserSpec("carol", token)])
    with TestArchive(spec) as archive:
        blob = archive.asset("000007", "s.bin")
        zarr = archive.asset("000007", "z.zarr")
        assert blob.metadata["access"][0]["status"] == "dandi:EmbargoedAccess"
        r = fetch(blob.content_url)
        assert r.status == 403 and b"<Code>AccessDenied</Code>" in r.body
        assert fetch(zarr.content_url + "a/b").status == 403
        assert fetch(blob.metadata["contentUrl"][0]).status == 401
        auth = {"Authorization": f"token {token}"}
        loc = fetch(blob.metadata["contentUrl"][0], headers=auth).headers["Location"]
        assert fetch(loc).body == b"secret"
        # zarr files listing is not embargo-checked and hands out presigned URLs (as upstream)
        files = f"{archive.api_url}/zarr/{zarr.zarr_id}/files/"
        assert fetch(files).json()["results"][0]["Key"] == "a/b"
        loc = fetch(files + "?prefix=a/b&download=true").headers["Location"]
        assert fetch(loc).body == b"zz"


def test_manifests(oracle: TestArchive) -> None:
    base = f"{oracle.content_url}/dandisets/000002/0.261125.2202/"
    r = fetch(base + "assets.jsonld")
    assert r.status == 200
    assets = r.json()
    assert len(assets) == 7 and all("digest" in a and "datePublished" in a for a in assets)
    meta = fetch(base + "dandiset.jsonld").json()
    assert meta["version"] == "0.261125.2202"
    assert meta["manifestLocation"] == [base + "assets.yaml"]
    assert fetch(base + "assets.yaml").body.startswith(b"- ")
    assert fetch(f"{oracle.content_url}/dandisets/000002/0.999999.9999/assets.jsonld").status \
        == 404


def test_content_base_url_points_elsewhere() -> None:
    spec = ArchiveSpec(dandisets=[DandisetSpec("000001", assets=[BlobSpec("a.txt", b"a")])])
    with TestArchive(spec, content_base_url="http://127.0.0.1:8081/") as archive:
        info = archive.asset("000001", "a.txt")
        assert info.content_url.startswith("http://127.0.0.1:8081/blobs/")
        loc = fetch(info.metadata["contentUrl"][0]).headers["Location"]
        assert loc.startswith("http://127.0.0.1:8081/blobs/")
        assert re.search(r"X-Amz-Signature=[0-9a-f]{64}", loc)


def test_bucket_listing_v2(text_mod: TestArchive) -> None:
    z = text_mod.asset("000002", "sample.zarr")
    prefix = f"zarr/{z.zarr_id}/"

    def ls(query: str) -> tuple[list[str], list[str], str | None]:
        r = fetch(f"{text_mod.content_url}/?list-type=2&{query}")
        assert r.status == 200 and r.headers["Content-Type"] == "application/xml"
        body = r.body.decode()
        keys = re.findall(r"<Key>(.*?)</Key>", body)
        common = re.findall(r"<CommonPrefixes><Prefix>(.*?)</Prefix>", body)
        token = re.search(r"<NextContinuationToken>(.*?)</NextContinuationToken>", body)
        return keys, common, token.group(1) if token else None

    keys, _, token = ls(f"prefix={prefix}")
    assert keys == [prefix + k for k in sorted(text_mod.zarr_files("000002", "sample.zarr"))]
    assert token is None
    assert ls(f"prefix={prefix}&delimiter=/")[:2] == (
        [prefix + ".zgroup"], [prefix + "arr_0/", prefix + "arr_1/"])
    assert ls(f"prefix={prefix}arr_1/")[0] == [prefix + "arr_1/.zarray", prefix + "arr_1/0"]
    first, _, token = ls(f"prefix={prefix}&max-keys=3")
    assert len(first) == 3 and token
    rest, _, token2 = ls(f"prefix={prefix}&max-keys=3&continuation-token={token}")
    assert first + rest == keys and token2 is None
    blobs = ls("prefix=blobs/")[0]
    assert len(blobs) == 4 and blobs == sorted(blobs)
    assert fetch(f"{text_mod.content_url}/").status == 400
