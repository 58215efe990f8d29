"""A run that fails before writing a file leaves the output folder exactly as it was; the
state folder, once made, ignores itself for git."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dandiget.download import download
from dandiget.errors import DandigetError
from dandiget.instances import Instance, register_instance, unregister_instance

from .conftest import FAST


def snapshot(root: Path) -> dict[str, tuple[bool, int]]:
    """Every path below ``root`` (and root itself): is it a folder, and its mtime."""
    out = {".": (True, root.stat().st_mtime_ns)}
    for p in root.rglob("*"):
        out[p.relative_to(root).as_posix()] = (p.is_dir(), p.lstat().st_mtime_ns)
    return out


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run([sys.executable, "-m", "dandiget.cli", *args], capture_output=True,
                          text=True, timeout=120, env={**base, **(env or {})})


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An output folder that already holds something of the user's."""
    d = tmp_path / "out"
    d.mkdir()
    (d / "notes.txt").write_text("mine\n")
    return d


def test_unknown_dandiset_leaves_no_trace(text_archive, out) -> None:
    before = snapshot(out)
    r = cli("download", f"{text_archive.api_url}/dandisets/999999/", "-o", str(out), "-f",
            "plain")
    assert r.returncode != 0
    assert "999999" in r.stderr + r.stdout
    assert snapshot(out) == before


def test_embargoed_without_token_leaves_no_trace(text_archive, out) -> None:
    text_archive.set_embargo("000001", True)
    before = snapshot(out)
    r = cli("download", f"{text_archive.api_url}/dandisets/000001/", "-o", str(out), "-f",
            "plain")
    assert r.returncode != 0
    assert "authentication" in (r.stderr + r.stdout).lower()
    assert snapshot(out) == before


def test_bad_url_leaves_no_trace(out) -> None:
    before = snapshot(out)
    r = cli("download", "DANDI:27", "-o", str(out))
    assert r.returncode != 0 and "We do not know how to map URL" in r.stdout + r.stderr
    assert snapshot(out) == before


def test_unreachable_server_leaves_no_trace(tmp_path) -> None:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    register_instance(Instance("notthere", None, f"http://127.0.0.1:{port}/api"))
    target = tmp_path / "new-folder"  # the Python API would create it: not for a failure
    try:
        with pytest.raises((DandigetError, OSError)):
            download("dandi://notthere/000001", target, format="plain", config=FAST)
    finally:
        unregister_instance("notthere")
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_successful_run_makes_state_that_git_ignores(text_archive, tmp_path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "ds"
    repo.mkdir()
    subprocess.run([git, "init", "-q", str(repo)], check=True)
    r = cli("download", f"{text_archive.api_url}/dandisets/000001/", "-o", str(repo), "-f",
            "plain")
    assert r.returncode == 0, r.stderr
    assert (repo / ".dandiget" / "state.sqlite").exists()
    assert (repo / ".dandiget" / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run([git, "status", "--porcelain", "--untracked-files=all"], cwd=repo,
                            capture_output=True, text=True, check=True).stdout
    untracked = sorted(line[3:] for line in status.splitlines())
    expected = sorted(f"000001/{p}" for p in text_archive.expected_files("000001"))
    assert untracked == sorted([*expected, "000001/dandiset.yaml"])
    assert not [u for u in untracked if ".dandiget" in u]
