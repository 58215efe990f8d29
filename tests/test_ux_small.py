"""Small things a user hit: the test archive's hints and errors, the demo's disk use."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_busy_port_is_one_line_and_nonzero() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "dandiget.testing", "serve", "--port",
                            str(port)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: address already in use (choose another "
        "--port/--content-port, or 0 for a free one)"]
    assert r.stdout == ""


def test_server_hint_and_readme_get_the_draft(tmp_path: Path) -> None:
    """The startup hint gives one URL for both clients; it (like the README's example) is
    the draft the demo shows, not the small published version."""
    server = subprocess.Popen([sys.executable, "-m", "dandiget.testing", "serve", "--demo"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        lines = []
        for line in server.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("READY "):
                break
        info = json.loads(lines[-1][len("READY "):])
        ours = next(s for s in lines if "try: dandiget download" in s)
        theirs = next(s for s in lines if "or: dandi download" in s)
        url = ours.split("download ", 1)[1].split(" -o")[0]
        assert url == theirs.split("download ", 1)[1].split(" -o")[0]
        assert url == f"{info['api_url']}/dandisets/000001/versions/draft/"
        r = subprocess.run([sys.executable, "-m", "dandiget.cli", "download", url, "-o",
                            str(tmp_path), "-f", "plain"], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "000001" / "sub-01" / "sub-01_sample.ome.zarr").is_dir()
        assert (tmp_path / "000001" / "sub-02" / "sub-02_ses-01_ecephys.nwb").is_file()
    finally:
        server.terminate()
        server.wait(30)
    readme = README.read_text()
    section = readme[readme.index("## The test archive"):]
    example = re.search(r"dandiget download (\S+)", section)
    assert example and example.group(1) == ("http://127.0.0.1:8000/api/dandisets/000001/"
                                            "versions/draft/")


def test_demo_cleans_up_its_temporary_folder(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "dandiget.cli", "demo", "-f", "plain"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert list(tmp_path.iterdir()) == []  # the ~72 MB are gone
    folder = re.search(r"Removed (\S+) \(use -o DIR to keep the files\)\.", r.stdout)
    assert folder and folder.group(1).startswith(str(tmp_path / "dandiget-demo-"))
    assert "Downloaded 8 files (" in r.stdout and "the re-run skipped 8 in" in r.stdout


def test_demo_keeps_what_it_was_asked_to_keep(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "dandiget.cli", "demo", "-f", "json", "-o",
                        str(tmp_path / "keep")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "keep" / "000001" / "README.md").is_file()
    assert "Removed" not in r.stdout
