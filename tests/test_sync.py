"""--sync: local files gone from the server are deleted (asked, listed, or done)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from dandiget.download import download

from .conftest import tree


def fetch(url: str, out: Path, **kw):
    kw.setdefault("format", "plain")
    return download(url, out, **kw)


@pytest.mark.parametrize(("answers", "deleted"), [("yes\n", True), ("no\n", False),
                                                   ("l\ny\n", True), ("maybe\nn\n", False)])
def test_sync_ask(text_archive, dandi_url, tmp_path, monkeypatch, capsys, answers,
                  deleted) -> None:
    url = f"{dandi_url}/000001"
    fetch(url, tmp_path)
    text_archive.remove_asset("000001", "file.txt")
    monkeypatch.setattr(sys, "stdin", io.StringIO(answers))
    fetch(url, tmp_path, existing="overwrite", sync=True)
    out = capsys.readouterr().out
    assert out.count("Delete 1 local asset? ([y]es/[n]o/[l]ist): ") == answers.count("\n")
    assert (tmp_path / "000001" / "file.txt").exists() is not deleted
    if answers.startswith("l"):
        assert str(tmp_path / "000001" / "file.txt") in out


def test_sync_do_and_dry_run(text_archive, dandi_url, tmp_path) -> None:
    url = f"{dandi_url}/000001"
    fetch(url, tmp_path)
    text_archive.remove_asset("000001", "file.txt")
    r = fetch(url, tmp_path, existing="refresh", sync="do", dry_run=True)
    assert r.files_deleted == 1 and (tmp_path / "000001" / "file.txt").exists()
    r = fetch(url, tmp_path, existing="refresh", sync="do")
    assert r.files_deleted == 1 and not (tmp_path / "000001" / "file.txt").exists()
    assert "000001/subdir1/apple.txt" in tree(tmp_path)


def test_sync_folder_url_only_touches_its_folder(text_archive, dandi_url, tmp_path) -> None:
    fetch(f"{dandi_url}/000001", tmp_path)
    text_archive.remove_asset("000001", "file.txt")
    text_archive.remove_asset("000001", "subdir2/banana.txt")
    # a folder URL downloaded into the dandiset folder, as dandi-cli's test does
    fetch(f"{dandi_url}/000001/subdir2/", tmp_path / "000001", existing="overwrite", sync="do")
    assert not (tmp_path / "000001/subdir2/banana.txt").exists()
    assert (tmp_path / "000001/file.txt").exists()


def test_sync_nested_folder_fixed(archive_factory, tmp_path) -> None:
    """dandi-cli tested the wrong prefix for nested folder URLs (its §11.2.9 bug)."""
    from dandiget.instances import register_instance, unregister_instance
    from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec

    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000007", assets=[
        BlobSpec(path="foo/bar/a.txt", content=b"a"),
        BlobSpec(path="foo/bar/b.txt", content=b"b"),
        BlobSpec(path="foo/other.txt", content=b"o")])]))
    register_instance(archive.instance)
    try:
        url = f"dandi://{archive.instance.name}/000007/foo/bar/"
        fetch(url, tmp_path)
        assert set(tree(tmp_path)) == {"bar/a.txt", "bar/b.txt"}
        (tmp_path / "unrelated.txt").write_bytes(b"mine")
        archive.remove_asset("000007", "foo/bar/b.txt")
        r = fetch(url, tmp_path, existing="refresh", sync="do")
        assert r.files_deleted == 1
        assert set(tree(tmp_path)) == {"bar/a.txt", "unrelated.txt"}
    finally:
        unregister_instance(archive.instance.name)


def test_sync_glob(text_archive, dandi_url, tmp_path) -> None:
    fetch(f"{dandi_url}/000001", tmp_path)
    text_archive.remove_asset("000001", "file.txt")
    text_archive.remove_asset("000001", "subdir2/banana.txt")
    fetch(f"{text_archive.api_url}/dandisets/000001/versions/draft/assets/?glob=s*.Txt",
          tmp_path / "000001", existing="overwrite", sync="do")
    assert not (tmp_path / "000001/subdir2/banana.txt").exists()
    assert (tmp_path / "000001/file.txt").exists()


def test_sync_zarr(text_archive, dandi_url, tmp_path) -> None:
    fetch(f"{dandi_url}/000002", tmp_path)
    assert (tmp_path / "000002" / "sample.zarr").is_dir()
    text_archive.remove_asset("000002", "sample.zarr")
    fetch(f"{dandi_url}/000002", tmp_path, existing="refresh", sync="do")
    assert not (tmp_path / "000002" / "sample.zarr").exists()
    assert (tmp_path / "000002" / "dandiset.yaml").exists()
