"""More of dandi-cli's download test inventory (§10.1), plus dandiget's own fixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dandiget.digests import MiB, dandi_etag_bytes, file_dandi_etag
from dandiget.download import Downloader, download
from dandiget.errors import NotFoundError
from dandiget.instances import register_instance, unregister_instance
from dandiget.listing import parse_datetime
from dandiget.plan import to_ns
from dandiget.resolve import parse_url
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, ZarrSpec

from .conftest import FAST, tree


@pytest.fixture
def make(archive_factory):
    names: list[str] = []

    def build(*dandisets: DandisetSpec):
        archive = archive_factory(ArchiveSpec(dandisets=list(dandisets)))
        register_instance(archive.instance)
        names.append(archive.instance.name)
        return archive, f"dandi://{archive.instance.name}"

    yield build
    for n in names:
        unregister_instance(n)


def get(url, out, **kw):
    kw.setdefault("format", "plain")
    return download(url, out, **kw)


def test_newest_version(make, tmp_path) -> None:
    archive, base = make(DandisetSpec(identifier="000010", assets=[
        BlobSpec(path="a.txt", content=b"first\n")]))
    get(f"{base}/000010", tmp_path / "before")
    assert tree(tmp_path / "before" / "000010")["a.txt"] == b"first\n"
    version = archive.publish("000010")
    archive.add_blob("000010", "b.txt", b"only in the draft\n")
    get(f"{base}/000010", tmp_path / "after")
    files = tree(tmp_path / "after" / "000010")
    assert "b.txt" not in files and files["a.txt"] == b"first\n"
    get(f"{base}/000010@draft", tmp_path / "draft")
    assert "b.txt" in tree(tmp_path / "draft" / "000010")
    get(f"{base}/000010@{version}", tmp_path / "pinned")
    assert "b.txt" not in tree(tmp_path / "pinned" / "000010")


def test_no_blob_date_modified(make, tmp_path) -> None:
    archive, base = make(DandisetSpec(identifier="000011", assets=[
        BlobSpec(path="a.txt", content=b"x", omit_blob_date_modified=True)]))
    get(f"{base}/000011", tmp_path)
    info = archive.asset("000011", "a.txt")
    assert "blobDateModified" not in info.metadata
    import json
    import urllib.request

    with urllib.request.urlopen(
            f"{archive.api_url}/dandisets/000011/versions/draft/assets/") as resp:
        row = json.load(resp)["results"][0]
    listing_modified = parse_datetime(row["modified"])
    assert (tmp_path / "000011" / "a.txt").stat().st_mtime_ns == to_ns(listing_modified)


def test_empty_dandiset_and_then_missing_folder(make, tmp_path) -> None:
    _, base = make(DandisetSpec(identifier="000012", assets=[]))
    get(f"{base}/000012", tmp_path / "a")
    assert set(tree(tmp_path / "a")) == {"000012/dandiset.yaml"}
    with pytest.raises(NotFoundError, match="No assets found under folder 'nope/'"):
        get([f"{base}/000012", f"{base}/000012/nope/"], tmp_path / "b")
    assert set(tree(tmp_path / "b")) == {"000012/dandiset.yaml"}


def test_zarr_by_asset_id_and_only_subdirs(make, tmp_path) -> None:
    entries = {".zgroup": b"{}", "dirs/a/b/0": b"deep", "dirs/c/d/1": b"deeper"}
    archive, _base = make(DandisetSpec(identifier="000013", assets=[
        ZarrSpec(path="sample.zarr", entries=entries)]))
    info = archive.asset("000013", "sample.zarr")
    get(f"{archive.api_url}/assets/{info.asset_id}/download/", tmp_path)
    assert tree(tmp_path / "sample.zarr") == entries


def test_blob_replaces_local_zarr_dir(make, tmp_path) -> None:
    _, base = make(DandisetSpec(identifier="000014", assets=[
        BlobSpec(path="sample.zarr", content=b"now a file")]))
    zdir = tmp_path / "000014" / "sample.zarr"
    (zdir / "arr").mkdir(parents=True)
    (zdir / "arr" / "0").write_bytes(b"old chunk")
    get(f"{base}/000014", tmp_path, existing="overwrite-different")
    assert zdir.read_bytes() == b"now a file"


def test_zarr_overwrite_different_keeps_excluded_dotfiles(make, tmp_path) -> None:
    entries = {".zgroup": b"{}", "arr_0/.zarray": b"{}", "arr_0/0": b"abc"}
    _archive, base = make(DandisetSpec(identifier="000015", assets=[
        ZarrSpec(path="sample.zarr", entries=entries)]))
    zdir = tmp_path / "000015" / "sample.zarr"
    (zdir / ".dandi").mkdir(parents=True)
    (zdir / ".dandi" / "x").write_bytes(b"keep")
    (zdir / ".datalad").mkdir()
    (zdir / ".git").write_bytes(b"gitdir: elsewhere")
    (zdir / ".gitattributes").write_bytes(b"* annex")
    (zdir / "arr_0").mkdir()
    (zdir / "arr_0" / ".gitmodules").write_bytes(b"keep too")
    (zdir / "arr_0" / "0").write_bytes(b"xyz")
    (zdir / "stale").write_bytes(b"gone soon")
    get(f"{base}/000015", tmp_path, existing="overwrite-different")
    files = tree(zdir)
    assert {k: files[k] for k in entries} == entries
    assert files[".dandi/x"] == b"keep" and files[".git"] == b"gitdir: elsewhere"
    assert files["arr_0/.gitmodules"] == b"keep too"
    assert "stale" not in files


@pytest.mark.parametrize("cut", ["zero", "half", "full", "longer"])
@pytest.mark.parametrize("corrupt", [False, True])
def test_resume_matrix(make, tmp_path, cut, corrupt) -> None:
    """dandi-cli's resume test, with dandiget's fix: a corrupt partial is not left in place."""
    size = 5 * MiB  # a streamed (not in-memory, not multi-part) download
    archive, base = make(DandisetSpec(identifier="000016", assets=[
        BlobSpec(path="f.bin", size=size, seed=4)]))
    etag = archive.asset("000016", "f.bin").digests["dandi:dandi-etag"]
    full = archive.read_blob("000016", "f.bin")
    assert dandi_etag_bytes(full) == etag
    partial = {"zero": b"", "half": full[: size // 2], "full": full,
               "longer": full + b"tail"}[cut]
    if corrupt and partial:
        partial = partial[:-3] + b"bad"
    folder = tmp_path / "000016"
    folder.mkdir()
    (folder / f".f.bin.{etag[:12]}.dandiget-part").write_bytes(partial)
    get(f"{base}/000016", tmp_path, config=FAST)
    assert file_dandi_etag(folder / "f.bin") == etag
    assert not list(folder.glob(".f.bin*"))


def test_downloader_adapter_yields_records(text_archive, dandi_url, tmp_path) -> None:
    parsed = parse_url(f"{dandi_url}/000001")
    d = Downloader(url=parsed, output_dir=tmp_path, on_error="yield")
    records = list(d.download_generator())
    assert {"path": "000001/dandiset.yaml", "message": "updating"} in records
    assert {"status": "done", "path": "000001/subdir1/apple.txt"} in records
    assert "subdir1/apple.txt" in d.asset_download_paths
    (tmp_path / "000001" / "stale.txt").write_bytes(b"x")
    assert d.delete_for_sync() == [tmp_path / "000001" / "stale.txt"]


def test_compat_surface() -> None:
    import dandiget.download as dl

    for name in ("download", "pairing", "DLState", "DownloadDirectory", "DownloadExisting",
                 "DownloadFormat", "DownloadProgress", "Downloader", "ItemsSummary",
                 "PYOUTHelper", "PathType", "ProgressCombiner"):
        assert hasattr(dl, name), name
    assert dl.DownloadExisting("overwrite-different") is dl.DownloadExisting.OVERWRITE_DIFFERENT
    assert [s.name for s in dl.DLState] == ["STARTING", "DOWNLOADING", "SKIPPED", "ERROR",
                                             "DONE"]
    _ = Path
