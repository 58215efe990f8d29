"""TestArchive as a Python object: specs, mutations, fixtures, materialize, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dandiget.digests import dandi_etag_bytes, local_zarr_checksum
from dandiget.instances import Instance
from dandiget.testing import (
    ArchiveSpec,
    BlobSpec,
    DandisetSpec,
    TestArchive,
    UserSpec,
    ZarrSpec,
    demo_spec,
)
from dandiget.testing.model import check_path

from .conftest import fetch


def test_text_archive_fixture(text_archive: TestArchive) -> None:
    assert text_archive.api_url.startswith("http://127.0.0.1:")
    assert not text_archive.api_url.endswith("/")
    assert text_archive.content_url != text_archive.api_url.removesuffix("/api")
    assert text_archive.instance == Instance(f"dandi-test-{text_archive.api_port}", None,
                                             text_archive.api_url)
    info = text_archive.asset("000001", "file.txt")
    assert info.size == 19 and info.blob_id and info.zarr_id is None
    assert info.digests == {
        "dandi:dandi-etag": dandi_etag_bytes(b"This is test text.\n"),
        "dandi:sha2-256": hashlib.sha256(b"This is test text.\n").hexdigest(),
    }
    assert info.metadata["contentUrl"][1] == info.content_url
    z = text_archive.asset("000002", "sample.zarr")
    assert set(text_archive.zarr_files("000002", "sample.zarr")) == {
        ".zgroup", "arr_0/.zarray", "arr_0/0", "arr_1/.zarray", "arr_1/0"}
    assert z.metadata["encodingFormat"] == "application/x-zarr"


def test_archive_factory_and_blob_options(archive_factory) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec("000009", assets=[
        BlobSpec("x.nwb", b"abc", blob_date_modified="2021-06-10T14:59:59.581563+00:00"),
        BlobSpec("nosha.bin", b"abc", sha256=False),
        BlobSpec("nodate.bin", b"abc", omit_blob_date_modified=True),
    ])]))
    x = archive.asset("000009", "x.nwb")
    assert x.metadata["blobDateModified"] == "2021-06-10T14:59:59.581563+00:00"
    assert x.metadata["encodingFormat"] == "application/x-nwb"
    assert archive.asset("000009", "nosha.bin").digests == {
        "dandi:dandi-etag": "af5da9f45af7a300e3aded972f8ff687-1"}
    assert "blobDateModified" not in archive.asset("000009", "nodate.bin").metadata


def test_mutations(archive_factory) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec("000001", assets=[
        BlobSpec("a.txt", b"A"), ZarrSpec("z.zarr", {"x": b"1"})])]))
    before = archive.asset("000001", "a.txt")
    new = archive.add_blob("000001", "a.txt", b"AA")
    assert new.asset_id != before.asset_id and new.size == 2
    # the superseded asset id still resolves
    assert fetch(f"{archive.api_url}/assets/{before.asset_id}/").status == 200
    added = archive.add_blob("000001", "b/gen.bin", size=5000, seed=3)
    assert added.size == 5000
    assert archive.read_blob("000001", "b/gen.bin") == BlobSpec("q", size=5000, seed=3).read()
    archive.remove_asset("000001", "b/gen.bin")
    with pytest.raises(LookupError):
        archive.asset("000001", "b/gen.bin")
    # replace_object: same URL and digests, other bytes
    archive.replace_object("000001", "a.txt", b"ZZZZ")
    after = archive.asset("000001", "a.txt")
    assert after.digests == new.digests and after.content_url == new.content_url
    r = fetch(after.content_url)
    assert r.body == b"ZZZZ"
    assert r.headers["ETag"] == f'"{dandi_etag_bytes(b"ZZZZ")}"'
    archive.replace_object("000001", "z.zarr/x", b"2")
    assert fetch(archive.asset("000001", "z.zarr").content_url + "x").body == b"2"
    # set_zarr_entries: listing and checksum follow
    z = archive.set_zarr_entries("000001", "z.zarr", {"p/q": b"hello", "r": b""})
    assert z.size == 5
    files = fetch(f"{archive.api_url}/zarr/{z.zarr_id}/files/").json()["results"]
    assert [f["Key"] for f in files] == ["p/q", "r"]
    draft = fetch(f"{archive.api_url}/dandisets/000001/versions/draft/info/").json()
    assert draft["asset_count"] == 2 and draft["status"] == "Valid"


def test_zarr_checksum_matches_local_tree(archive_factory, tmp_path: Path) -> None:
    archive = archive_factory(demo_spec())
    info = archive.asset("000001", "sub-01/sub-01_sample.ome.zarr")
    for key, data in archive.zarr_files("000001", "sub-01/sub-01_sample.ome.zarr").items():
        p = tmp_path / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    assert local_zarr_checksum(tmp_path) == info.digests["dandi:dandi-zarr-checksum"]


def test_generated_zarr(archive_factory) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec("000001", assets=[
        ZarrSpec("big.zarr", generated=(1500, 100, 7))])]))
    info = archive.asset("000001", "big.zarr")
    assert info.size == 150_000
    base = f"{archive.api_url}/zarr/{info.zarr_id}/files/"
    first = fetch(base).json()
    assert len(first["results"]) == 1000 and first["next"]
    second = fetch(first["next"]).json()
    assert len(second["results"]) == 500 and second["next"] is None
    e = second["results"][-1]
    body = fetch(info.content_url + e["Key"]).body
    assert len(body) == 100 and hashlib.md5(body).hexdigest() == e["ETag"]
    assert "/" in e["Key"]


def test_publish(archive_factory) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec("000001", assets=[
        BlobSpec("a.txt", b"A"), ZarrSpec("z.zarr", {"x": b"1"})])]))
    v = archive.publish("000001")
    assert v.startswith("0.") and len(v) == 13
    pub = fetch(f"{archive.api_url}/dandisets/000001/").json()
    assert pub["most_recent_published_version"]["version"] == v
    assert pub["draft_version"]["status"] == "Published"
    assets = fetch(f"{archive.api_url}/dandisets/000001/versions/{v}/assets/").json()
    assert [a["path"] for a in assets["results"]] == ["a.txt"]  # blobs only
    meta = fetch(f"{archive.api_url}/dandisets/000001/versions/{v}/").json()
    assert meta["doi"].endswith(f"/dandi.000001/{v}") and "datePublished" in meta
    a = archive.asset("000001", "a.txt", v)
    assert "datePublished" in a.metadata and a.metadata["publishedBy"]["schemaKey"] == \
        "PublishActivity"
    assert archive.publish("000001") != v  # the next minute


def test_spec_validation() -> None:
    # hostile paths are allowed, so clients can be tested against a misbehaving server
    BlobSpec("a/../../escape.txt", b"x")
    with pytest.raises(ValueError):
        check_path("a/../b")
    with pytest.raises(ValueError):
        BlobSpec("", b"x")
    with pytest.raises(ValueError):
        BlobSpec("a.txt")
    with pytest.raises(ValueError):
        DandisetSpec("1")
    with pytest.raises(ValueError):
        DandisetSpec("000001", published={"1.0": []})
    with pytest.raises(ValueError):
        ArchiveSpec(dandisets=[DandisetSpec("000001", owners=["ghost"])])


def test_spec_json_round_trip_and_stable_ids() -> None:
    spec = demo_spec()
    again = ArchiveSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    a, b = TestArchive(spec), TestArchive(again)
    ids_a = sorted(x.asset_id for x in a.store.assets.values())
    assert ids_a == sorted(x.asset_id for x in b.store.assets.values())
    assert sorted(a.store.blobs) == sorted(b.store.blobs)


def test_from_directory_and_materialize(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub-01").mkdir(parents=True)
    (src / "sub-01" / "a.nwb").write_bytes(b"nwb!")
    (src / "sub-01" / "s.zarr" / "0").mkdir(parents=True)
    (src / "sub-01" / "s.zarr" / ".zgroup").write_bytes(b"{}")
    (src / "sub-01" / "s.zarr" / "0" / "0").write_bytes(b"chunk")
    (src / "dandiset.yaml").write_text("name: My local dandiset\n")
    with TestArchive.from_directory(src, identifier="000042") as archive:
        assert archive.read_blob("000042", "sub-01/a.nwb") == b"nwb!"
        assert archive.zarr_files("000042", "sub-01/s.zarr") == {".zgroup": b"{}", "0/0": b"chunk"}
        meta = fetch(f"{archive.api_url}/dandisets/000042/versions/draft/").json()
        assert meta["name"] == "My local dandiset"
        out = archive.materialize(tmp_path / "bucket")
        blob = archive.asset("000042", "sub-01/a.nwb")
        assert (out / blob.content_url.split("/", 3)[3]).read_bytes() == b"nwb!"
        z = archive.asset("000042", "sub-01/s.zarr")
        assert (out / "zarr" / str(z.zarr_id) / "0" / "0").read_bytes() == b"chunk"
        assert (out / "dandisets" / "000042" / "draft" / "assets.jsonld").is_file()
        assert archive.compare_tree(src, "000042") == []


def test_cli_serve(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "dandiget.testing", "serve", "--demo",
                             "--scale-assets", "50"], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("READY "):
                ready = json.loads(line[6:])
                break
        assert ready is not None
        assert ready["dandisets"] == ["000001", "000100"]
        r = fetch(ready["api_url"] + "/dandisets/000100/versions/draft/assets/")
        assert r.json()["count"] == 50
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_cli_spec_and_materialize(tmp_path: Path) -> None:
    spec = ArchiveSpec(dandisets=[DandisetSpec("000001", assets=[BlobSpec("a.txt", b"A")])],
                       users=[UserSpec("u", "t" * 40)])
    f = tmp_path / "spec.json"
    f.write_text(json.dumps(spec.to_dict()))
    out = subprocess.run([sys.executable, "-m", "dandiget.testing", "materialize",
                          str(tmp_path / "b"), "--spec", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert [p.read_bytes() for p in (tmp_path / "b" / "blobs").rglob("*") if p.is_file()] == \
        [b"A"]
    dumped = subprocess.run([sys.executable, "-m", "dandiget.testing", "spec", "--spec", str(f)],
                            capture_output=True, text=True)
    assert json.loads(dumped.stdout) == spec.to_dict()
