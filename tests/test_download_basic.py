"""Black-box downloads of blob assets against the test archive (dandi-cli §10.1 rows)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dandiget.dandiset_yaml import read_dandiset_yaml
from dandiget.download import DownloadExisting, download
from dandiget.errors import DownloadFailed, NotFoundError
from dandiget.listing import parse_datetime
from dandiget.plan import to_ns

from .conftest import tree

TEXT = {
    "file.txt": b"This is test text.\n",
    "subdir1/apple.txt": b"Apple\n",
    "subdir2/banana.txt": b"Banana\n",
    "subdir2/coconut.txt": b"Coconut\n",
}


def get(url: str, out: Path, **kw):
    kw.setdefault("format", "plain")
    return download(url, out, **kw)


def test_download_dandiset(text_archive, tmp_path: Path) -> None:
    report = get(f"{text_archive.api_url}/dandisets/000001/", tmp_path)
    files = tree(tmp_path / "000001")
    assert {k: v for k, v in files.items() if k != "dandiset.yaml"} == TEXT
    md = read_dandiset_yaml(tmp_path / "000001" / "dandiset.yaml")
    assert md["identifier"].endswith(":000001")
    assert report.files_downloaded == 5 and report.ok
    # mtime comes from blobDateModified
    info = text_archive.asset("000001", "subdir1/apple.txt")
    want = parse_datetime(info.metadata["blobDateModified"])
    assert (tmp_path / "000001/subdir1/apple.txt").stat().st_mtime_ns == to_ns(want)
    # no temporary or journal files are left behind
    leftovers = [p for p in (tmp_path / "000001").rglob("*") if "dandiget-part" in p.name]
    assert leftovers == []


def test_existing_modes(text_archive, dandi_url, tmp_path: Path) -> None:
    url = f"{dandi_url}/000001"
    get(url, tmp_path)
    # files dandiget downloaded and verified, untouched since, are "already downloaded" ...
    r = get(url, tmp_path)
    assert r.ok and r.count("skipped") == 5 and r.files_downloaded == 0
    # ... but without that record, an existing file is dandi-cli's error
    shutil.rmtree(tmp_path / ".dandiget")
    with pytest.raises(DownloadFailed, match=r"Encountered 4 errors while downloading\."):
        get(url, tmp_path)
    with pytest.raises(FileExistsError):
        get(url, tmp_path, format="debug")
    r = get(url, tmp_path, existing=DownloadExisting.SKIP)
    assert r.files_skipped == 5 and r.files_downloaded == 0
    r = get(url, tmp_path, existing="refresh")
    assert r.files_skipped == 5
    r = get(url, tmp_path, existing="overwrite-different")
    assert r.files_skipped == 5
    r = get(url, tmp_path, existing="overwrite")
    assert r.files_downloaded == 4  # dandiset.yaml unchanged: skipped "no change"
    assert {k: v for k, v in tree(tmp_path / "000001").items() if k != "dandiset.yaml"} == TEXT


def test_overwrite_different_replaces_changed_file(text_archive, dandi_url, tmp_path) -> None:
    url = f"{dandi_url}/000001"
    get(url, tmp_path)
    target = tmp_path / "000001/subdir2/banana.txt"
    target.write_bytes(b"BANANA\n")  # same size, different bytes
    r = get(url, tmp_path, existing="overwrite-different")
    assert target.read_bytes() == b"Banana\n"
    assert r.files_downloaded == 1 and r.files_skipped == 4


def test_metadata_only_and_assets_only(text_archive, dandi_url, tmp_path: Path) -> None:
    get(f"{dandi_url}/000001", tmp_path / "a", get_assets=False)
    assert list(tree(tmp_path / "a")) == ["000001/dandiset.yaml"]
    get(f"{dandi_url}/000001", tmp_path / "b", get_metadata=False)
    assert tree(tmp_path / "b" / "000001") == TEXT


@pytest.mark.parametrize(("suffix", "expected"), [
    ("/000001/subdir2/", {"subdir2/banana.txt", "subdir2/coconut.txt"}),
    ("/000001/subdir2/coconut.txt", {"coconut.txt"}),
])
def test_folder_and_item(text_archive, dandi_url, tmp_path, suffix, expected) -> None:
    get(dandi_url + suffix, tmp_path)
    assert set(tree(tmp_path)) == expected


@pytest.mark.parametrize(("suffix", "expected"), [
    ("/000001/subdir2/", {"000001/dandiset.yaml", "000001/subdir2/banana.txt",
                          "000001/subdir2/coconut.txt"}),
    ("/000001/subdir2/coconut.txt", {"000001/dandiset.yaml", "000001/subdir2/coconut.txt"}),
])
def test_preserve_tree(text_archive, dandi_url, tmp_path, suffix, expected) -> None:
    get(dandi_url + suffix, tmp_path, preserve_tree=True)
    assert set(tree(tmp_path)) == expected


def test_dandiset_yaml_item(text_archive, dandi_url, tmp_path) -> None:
    get(f"{dandi_url}/000001/dandiset.yaml", tmp_path)
    assert set(tree(tmp_path)) == {"dandiset.yaml"}
    md = read_dandiset_yaml(tmp_path / "dandiset.yaml")
    assert md["id"].endswith(":000001/draft")


def test_asset_id_urls(text_archive, tmp_path) -> None:
    info = text_archive.asset("000001", "subdir2/coconut.txt")
    api = text_archive.api_url
    get(f"{api}/dandisets/000001/versions/draft/assets/{info.asset_id}/download/", tmp_path / "a")
    assert tree(tmp_path / "a") == {"coconut.txt": b"Coconut\n"}
    get(f"{api}/assets/{info.asset_id}/download/", tmp_path / "b")
    assert tree(tmp_path / "b") == {"coconut.txt": b"Coconut\n"}
    get(f"{api}/assets/{info.asset_id}/download/", tmp_path / "c", preserve_tree=True)
    assert tree(tmp_path / "c") == {"subdir2/coconut.txt": b"Coconut\n"}


def test_path_prefix_and_glob(text_archive, tmp_path) -> None:
    api = text_archive.api_url
    get(f"{api}/dandisets/000001/versions/draft/assets/?path=subdir1/apple.txt", tmp_path / "a")
    assert tree(tmp_path / "a") == {"apple.txt": b"Apple\n"}
    get(f"{api}/dandisets/000001/versions/draft/assets/?glob=s*.Txt", tmp_path / "b")
    assert set(tree(tmp_path / "b")) == {"subdir1/apple.txt", "subdir2/banana.txt",
                                         "subdir2/coconut.txt"}


def test_glob_path_type(text_archive, dandi_url, tmp_path) -> None:
    get(f"{dandi_url}/000001/s*.Txt", tmp_path, path_type="glob")
    assert set(tree(tmp_path)) == {"subdir1/apple.txt", "subdir2/banana.txt",
                                   "subdir2/coconut.txt"}


@pytest.mark.parametrize(("suffix", "message"), [
    ("/000001/does/not/exist/", "No assets found under folder 'does/not/exist/'"),
    ("/000001/does/not/exist", "No asset at path 'does/not/exist' in version draft"),
    ("/999999", "No such Dandiset: '999999'"),
    ("/000001@0.999999.9999", "No such version: '0.999999.9999' of Dandiset 000001"),
])
def test_not_found(text_archive, dandi_url, tmp_path, suffix, message) -> None:
    with pytest.raises(NotFoundError, match=message.replace(".", r"\.")):
        get(dandi_url + suffix, tmp_path)
    assert tree(tmp_path) == {}


def test_multiple_urls_and_empty_then_missing(text_archive, dandi_url, tmp_path) -> None:
    get([f"{dandi_url}/000001", f"{dandi_url}/000002"], tmp_path)
    assert "000001/file.txt" in tree(tmp_path)
    assert "000002/dandiset.yaml" in tree(tmp_path)


def test_no_urls(tmp_path) -> None:
    with pytest.raises(NotImplementedError, match="No URLs were provided"):
        download([], tmp_path)


def test_dry_run_writes_nothing(text_archive, dandi_url, tmp_path) -> None:
    r = get(f"{dandi_url}/000001", tmp_path, dry_run=True)
    assert r.dry_run and r.files_downloaded == 5
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "000001"])
    assert tree(tmp_path) == {}


def test_file_where_folder_must_go(text_archive, dandi_url, tmp_path) -> None:
    (tmp_path / "000001").mkdir()
    (tmp_path / "000001" / "subdir1").write_bytes(b"in the way")
    with pytest.raises(DownloadFailed):
        get(f"{dandi_url}/000001", tmp_path)
    assert (tmp_path / "000001" / "subdir1").read_bytes() == b"in the way"  # kept under error
    get(f"{dandi_url}/000001", tmp_path, existing="overwrite")
    assert (tmp_path / "000001/subdir1/apple.txt").read_bytes() == b"Apple\n"


def test_python_api_report(text_archive, dandi_url, tmp_path) -> None:
    r = get(f"{dandi_url}/000001", tmp_path)
    d = r.to_dict()
    assert d["ok"] and d["files_downloaded"] == 5 and d["bytes_downloaded"] > 40
    paths = {o["path"] for o in d["outcomes"]}
    assert "000001/subdir2/banana.txt" in paths
    assert os.sep not in "".join(paths) or os.sep == "/"
