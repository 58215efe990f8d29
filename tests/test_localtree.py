"""find_local_assets: which local paths sync may propose for deletion (spec §4.10).

The expected sets were checked against dandi-cli's ``Downloader.delete_for_sync`` on the same
trees; the only differences are dandiget's fixes (state names never listed, missing root).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from dandiget.localtree import find_local_assets, is_zarr_name


def make(root: Path, *files: str, dirs: tuple[str, ...] = ()) -> None:
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(f)


def found(root: Path) -> set[str]:
    paths = list(find_local_assets(root))
    assert len(paths) == len(set(paths))
    return set(paths)


def test_basic_tree(tmp_path: Path) -> None:
    make(
        tmp_path,
        "dandiset.yaml",
        "top.txt",
        "sp ace & more.txt",
        "a/b/c.nwb",
        "sub/dandiset.yaml",
        ".hidden.txt",
        "sub/.dotfile",
        "sub/.hidden/f",
        ".git/config",
        "Data.ZARR/f",
        "f.zarr",
        dirs=("empty/sub",),
    )
    assert found(tmp_path) == {
        "top.txt",
        "sp ace & more.txt",
        "a/b/c.nwb",
        "sub/dandiset.yaml",  # only the root one is special
        "Data.ZARR/f",  # suffixes are case-sensitive
        "f.zarr",  # a file, not a Zarr directory
    }


def test_zarr_directories(tmp_path: Path) -> None:
    make(
        tmp_path,
        "data.zarr/.zattrs",
        "data.zarr/arr/0/0",
        "image.ngff/f",
        "nested/deep.zarr/group/k",
        "onlydot.zarr/.zgroup",
        "vcs.zarr/.dandi/f",
        "vcs.zarr/.gitattributes",
        "vcs.zarr/.git/config",
        "vcs.zarr/.datalad/x",
        "vcs.zarr/.gitmodules",
        dirs=("dirsonly.zarr/a/b", "empty.zarr"),
    )
    assert found(tmp_path) == {"data.zarr", "image.ngff", "nested/deep.zarr", "onlydot.zarr"}


def test_bidsignore_only_inside_bids(tmp_path: Path) -> None:
    make(
        tmp_path,
        ".bidsignore",
        "bids/dataset_description.json",
        "bids/.bidsignore",
        "bids/sub-01/.bidsignore",
        "bids/sub-01/anat/x.nii",
        "bids/sub-01/.other",
        "sib/a/dataset_description.json",
        "sib/b/.bidsignore",
    )
    assert found(tmp_path) == {
        "bids/dataset_description.json",
        "bids/.bidsignore",
        "bids/sub-01/.bidsignore",
        "bids/sub-01/anat/x.nii",
        "sib/a/dataset_description.json",
    }
    make(tmp_path, "dataset_description.json")  # now the whole tree is one BIDS dataset
    assert {".bidsignore", "sib/b/.bidsignore"} <= found(tmp_path)


def test_symlinks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make(tmp_path, "real/r.txt", "data.zarr/0", "top.txt")
    (tmp_path / "linkdir").symlink_to("real")
    (tmp_path / "link.zarr").symlink_to("data.zarr")
    (tmp_path / "link.txt").symlink_to("top.txt")
    (tmp_path / "broken.txt").symlink_to("nowhere")
    with caplog.at_level(logging.WARNING, logger="dandiget"):
        assert found(tmp_path) == {"real/r.txt", "data.zarr", "top.txt", "link.txt", "broken.txt"}
    assert f"{tmp_path / 'linkdir'}: Ignoring unsupported symbolic link to directory" in (
        caplog.messages
    )
    assert any("link.zarr: Ignoring unsupported" in m for m in caplog.messages)


def test_download_state_is_never_a_candidate(tmp_path: Path) -> None:
    make(
        tmp_path,
        "foo.nwb.dandidownload/file",
        "foo.nwb.dandidownload/lock",
        "foo.nwb.dandidownload/checksum",
        "sub/bar.nwb.dandidownload/file",
        "data.zarr/0.dandidownload/file",
        "sub/big.nwb.dandiget-part",
        "stray.dandidownload",
        ".dandiget/state.json",
        "sub/real.nwb",
    )
    assert found(tmp_path) == {"sub/real.nwb", "data.zarr"}


def test_missing_or_non_directory_root(tmp_path: Path) -> None:
    assert found(tmp_path / "missing") == set()
    make(tmp_path, "afile")
    assert found(tmp_path / "afile") == set()
    assert found(tmp_path) == {"afile"}


def test_paths_are_posix_relative_and_deterministic(tmp_path: Path) -> None:
    make(tmp_path, "b/2.txt", "a/1.txt", "c.txt", "a/z/9.txt")
    first = list(find_local_assets(tmp_path))
    assert first == list(find_local_assets(tmp_path))
    assert set(first) == {"a/1.txt", "a/z/9.txt", "b/2.txt", "c.txt"}
    assert all(not os.path.isabs(p) and "\\" not in p for p in first)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_directory_is_skipped(tmp_path: Path) -> None:
    make(tmp_path, "locked/f", "ok.txt")
    (tmp_path / "locked").chmod(0)
    try:
        assert found(tmp_path) == {"ok.txt"}
    finally:
        (tmp_path / "locked").chmod(0o755)


def test_is_zarr_name() -> None:
    assert is_zarr_name("a.zarr") and is_zarr_name("b.ngff")
    assert not is_zarr_name("a.ZARR") and not is_zarr_name("zarr") and not is_zarr_name(".zarr")
