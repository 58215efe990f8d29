"""Asset paths a broken or hostile server could send, through the command line: each is
refused with an error and a non-zero exit, and nothing lands outside the output folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec

EVIL = b"evil bytes"


def hostile_forms(outside: Path) -> list[str]:
    return [
        str(outside / "abs.txt"),  # absolute, naming a real place outside
        "/abs.txt",
        "../escape.txt",
        "a/../../escape.txt",
        "a/..",
        "a\\..\\escape.txt",
        "nul\x00.txt",
        "a//b.txt",
        "x" * 300 + ".txt",
    ]


def run(archive, out: Path, url_tail: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "DANDIGET_EXTRA_INSTANCES":
           f'{{"{archive.instance.name}": {{"api": "{archive.api_url}"}}}}'}
    return subprocess.run([sys.executable, "-m", "dandiget.cli", "download",
                           f"dandi://{archive.instance.name}/{url_tail}", "-o", str(out),
                           "-f", "plain"], capture_output=True, text=True, timeout=120, env=env)


def evil_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.read_bytes() == EVIL]


@pytest.mark.parametrize("index", range(9))
@pytest.mark.parametrize("url_tail", ["000007", "000007/a/"])
def test_hostile_path_is_refused_through_the_cli(archive_factory, tmp_path, index,
                                                 url_tail) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    bad = hostile_forms(outside)[index]
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000007",
        assets=[BlobSpec(path="a/ok.txt", content=b"fine"),
                BlobSpec(path=bad, content=EVIL)])]))
    out = tmp_path / "out"
    out.mkdir()
    r = run(archive, out, url_tail, tmp_path / "home")
    selected = url_tail == "000007" or bad.lower().startswith("a/")
    if not selected:  # a folder URL that the server's path filter does not match
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 1, r.stdout + r.stderr
        assert "Refusing" in r.stdout + r.stderr
    assert evil_files(tmp_path) == []
    assert list(outside.iterdir()) == []
    ok = out / "000007" / "a" / "ok.txt" if url_tail == "000007" else out / "a" / "ok.txt"
    assert ok.read_bytes() == b"fine"  # the good asset still arrives


def test_tilde_is_a_plain_name_inside_the_output_folder(archive_factory, tmp_path) -> None:
    """``~`` is a valid Archive path character and is never expanded to a home folder."""
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000007", assets=[BlobSpec(path="~/tilde.txt", content=EVIL)])]))
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    r = run(archive, out, "000007", home)
    assert r.returncode == 0, r.stderr
    assert evil_files(tmp_path) == [out / "000007" / "~" / "tilde.txt"]
    assert list(home.iterdir()) == []
