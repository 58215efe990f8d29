"""Free space is checked before the first byte: one clear error, nothing written, and an
option to go ahead anyway. Real small tmpfs mounts, through the command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dandiget.state import LocalState
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec

from .conftest import mounted_tmpfs

MiB = 1 << 20


@pytest.fixture
def archive(archive_factory):
    return archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000009", assets=[
        BlobSpec(path="a/big.bin", size=3 * MiB, seed=9),
        BlobSpec(path="a/small.txt", content=b"small"),
        BlobSpec(path="b/other.txt", content=b"other")])]))


def cli(archive, out: Path, tail: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DANDIGET_EXTRA_INSTANCES":
           f'{{"{archive.instance.name}": {{"api": "{archive.api_url}"}}}}'}
    return subprocess.run([sys.executable, "-m", "dandiget.cli", "download",
                           f"dandi://{archive.instance.name}/{tail}", "-o", str(out), "-f",
                           "plain", *extra], capture_output=True, text=True, timeout=120,
                          env=env)


def transfers(archive) -> list[str]:
    return [r.path for r in archive.requests if r.host == "content" and r.method == "GET"]


@pytest.mark.parametrize("tail", ["000009", "000009/a/", "000009/a/big.bin"])
def test_too_little_space_is_one_error_before_any_transfer(archive, tmp_path, tail) -> None:
    with mounted_tmpfs(tmp_path / "tiny", "size=1m") as disk:
        r = cli(archive, disk, tail)
        assert r.returncode == 1, r.stdout + r.stderr
        lines = [ln for ln in r.stderr.splitlines() if "Not enough free space" in ln]
        assert len(lines) == 1 and "--ignore-free-space" in lines[0], r.stderr
        assert "No space left on device" not in r.stdout + r.stderr
        assert transfers(archive) == []
        assert list(disk.iterdir()) == []  # not even .dandiget/


def test_ignore_free_space_goes_ahead(archive, tmp_path) -> None:
    with mounted_tmpfs(tmp_path / "tiny", "size=1m") as disk:
        r = cli(archive, disk, "000009", "--ignore-free-space")
        assert r.returncode == 1
        assert "Not enough free space" not in r.stderr
        assert "No space left on device" in r.stdout + r.stderr  # the late failure it risks
        assert [p for p in transfers(archive) if "/blobs/" in p]  # it went ahead
        assert not (disk / "000009" / "a" / "big.bin").exists()


@pytest.mark.parametrize("state", ["recorded", "not recorded"])
def test_bytes_already_there_count(archive, tmp_path, state) -> None:
    """A re-run over a copy on a nearly full disk needs room only for what is new (the
    Dandiset's total alone would not fit): bytes the state recorded, or else found there."""
    with mounted_tmpfs(tmp_path / "disk", "size=4m") as disk:
        assert cli(archive, disk, "000009").returncode == 0
        assert (disk / "000009" / "a" / "big.bin").stat().st_size == 3 * MiB
        if state == "not recorded":  # e.g. a copy made by dandi-cli
            shutil.rmtree(disk / ".dandiget")
        else:  # what the check subtracts without walking the tree
            st = LocalState(disk)
            assert st.recorded_bytes("000009") == 3 * MiB + len(b"small") + len(b"other")
            assert st.recorded_bytes("000009/a") == 3 * MiB + len(b"small")
            st.close()
        archive.add_blob("000009", "c/new.txt", b"new\n")  # so the re-run writes
        r = cli(archive, disk, "000009", "-e", "refresh")
        assert r.returncode == 0, r.stderr
        assert "Not enough free space" not in r.stderr
        assert (disk / "000009" / "c" / "new.txt").read_bytes() == b"new\n"


def test_a_later_file_that_does_not_fit(archive_factory, tmp_path) -> None:
    """A glob's total is not known before its listing ends: the first file that would not
    fit (with those started before it) stops the run, before its own first byte."""
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000009", assets=[
        BlobSpec(path="a/1.bin", size=600 * 1024, seed=1),
        BlobSpec(path="a/2.bin", size=600 * 1024, seed=2)])]))
    with mounted_tmpfs(tmp_path / "tiny", "size=1m") as disk:
        r = cli(archive, disk, "000009/a/*.bin", "-J", "1", "--path-type", "glob")
        assert r.returncode == 1
        assert len([ln for ln in r.stderr.splitlines() if "Not enough free space" in ln]) == 1
        assert (disk / "a" / "1.bin").stat().st_size == 600 * 1024
        assert not list((disk / "a").glob("*2.bin*"))  # no temporary either
        assert len([p for p in transfers(archive) if "/blobs/" in p]) == 1
