"""The command line: dandi-cli's options, exit codes, output formats, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from dandiget.cli import main
from dandiget.digests import MiB

from .conftest import tree

ANSI = re.compile(r"\x1b\[")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dandiget.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_bad_download_kind() -> None:
    r = CliRunner().invoke(main, ["download", "--download", "foo", "DANDI:000027"])
    assert r.exit_code == 2
    assert "'foo': invalid value; must be one of: assets, dandiset.yaml, all" in r.output


def test_bad_jobs() -> None:
    r = CliRunner().invoke(main, ["download", "-J", "x:2", "DANDI:000027"])
    assert r.exit_code == 2 and "Value must be of the form `N[:M]`" in r.output


def test_unknown_url_is_a_clear_error(tmp_path) -> None:
    r = CliRunner().invoke(main, ["download", "-o", str(tmp_path), "DANDI:27"])
    assert r.exit_code == 1
    assert "We do not know how to map URL DANDI:27 to our servers." in r.output


def test_instance_conflict(tmp_path) -> None:
    r = CliRunner().invoke(main, ["download", "-o", str(tmp_path), "-i", "dandi",
                                  "http://localhost:8000/api/dandisets/123456/"])
    assert r.exit_code != 0
    assert ("http://localhost:8000/api/dandisets/123456/ does not point to 'dandi' instance"
            in r.output)


def test_json_format(text_archive, tmp_path) -> None:
    r = run_cli("download", f"{text_archive.api_url}/dandisets/000001/", "-o", str(tmp_path),
                "-f", "json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert all(d["schema"] == "dandiget.event/1" for d in lines)
    assert {"started", "done", "verified", "summary"} <= {d["event"] for d in lines}
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["ok"] is True
    assert summary["files_downloaded"] == 5 and summary["errors"] == 0
    done = [d for d in lines if d["event"] == "done"]
    assert {d["path"] for d in done} >= {"000001/file.txt", "000001/subdir2/coconut.txt"}


def test_json_errors_and_exit_code(text_archive, tmp_path) -> None:
    url = f"{text_archive.api_url}/dandisets/000001/"
    assert run_cli("download", url, "-o", str(tmp_path), "-f", "json").returncode == 0
    shutil.rmtree(tmp_path / ".dandiget")  # files dandiget did not record are not its own
    r = run_cli("download", url, "-o", str(tmp_path), "-f", "json")
    assert r.returncode == 1
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["ok"] is False and summary["errors"] == 4
    assert "already exists" in summary["error_list"][0]["message"]
    assert "Encountered 4 errors while downloading." in r.stderr


def test_not_a_terminal_has_no_escape_codes(text_archive, tmp_path) -> None:
    r = run_cli("download", f"{text_archive.api_url}/dandisets/000001/", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert not ANSI.search(r.stdout) and not ANSI.search(r.stderr)
    assert "5 files downloaded" in r.stdout


def test_debug_format_records(text_archive, tmp_path) -> None:
    r = run_cli("download", f"{text_archive.api_url}/dandisets/000001/", "-o", str(tmp_path),
                "-f", "debug")
    assert r.returncode == 0, r.stderr
    assert "{'path': '000001/dandiset.yaml', 'message': 'updating'}" in r.stdout
    assert "{'checksum': 'ok', 'path': '000001/subdir1/apple.txt'}" in r.stdout
    assert "{'status': 'done', 'path': '000001/subdir1/apple.txt'}" in r.stdout


def test_dry_run_cli(text_archive, tmp_path) -> None:
    r = run_cli("download", f"{text_archive.api_url}/dandisets/000001/", "-o", str(tmp_path),
                "--dry-run", "-f", "plain")
    assert r.returncode == 0, r.stderr
    assert "download 000001/subdir2/banana.txt" in r.stdout
    assert tree(tmp_path) == {}


def test_table_in_a_pseudo_terminal(text_archive, tmp_path) -> None:
    """The live table renders in a terminal: header, rows and the summary row."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on a terminal
        os.execvpe(sys.executable, [sys.executable, "-m", "dandiget.cli", "download",
                                    f"{text_archive.api_url}/dandisets/000001/", "-o",
                                    str(tmp_path)], {**os.environ, "COLUMNS": "150"})
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    for header in ("PATH", "SIZE", "DONE", "CHECKSUM", "STATUS", "MESSAGE"):
        assert header in plain
    assert "Summary:" in plain and "5/5 files" in plain
    assert "000001/subdir2/coconut.txt" in plain
    assert ANSI.search(screen)  # it really is the live (styled) display


def test_ctrl_c_exits_130_and_rerun_completes(archive_factory, tmp_path) -> None:
    from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec

    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000008", assets=[BlobSpec(path="big.bin", size=40 * MiB, seed=5)])]))
    # the request covering byte 1 MiB is held there: the transfer is surely under way
    pause = archive.inject(r"/blobs/", host="content", pause_at=MiB)
    url = f"{archive.api_url}/dandisets/000008/"
    proc = subprocess.Popen([sys.executable, "-m", "dandiget.cli", "download", url, "-o",
                             str(tmp_path), "-f", "plain"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert pause.wait_paused(timeout=60), "the download never reached the blob"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 2.0
    assert proc.returncode == 130, err
    assert "Interrupted" in err
    assert not (tmp_path / "000008" / "big.bin").exists()
    archive.clear_faults()
    r = run_cli("download", url, "-o", str(tmp_path), "-e", "refresh", "-f", "plain")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "000008" / "big.bin").stat().st_size == 40 * MiB


def test_verify_and_status(text_archive, tmp_path) -> None:
    url = f"{text_archive.api_url}/dandisets/000001/"
    assert run_cli("download", url, "-o", str(tmp_path), "-f", "plain").returncode == 0
    r = run_cli("verify", str(tmp_path / "000001"), url)
    assert r.returncode == 0, r.stdout + r.stderr
    # a change that keeps size and mtime is invisible to refresh, but not to verify
    p = tmp_path / "000001" / "subdir2" / "banana.txt"
    st = p.stat()
    p.write_bytes(b"BANANA\n")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = run_cli("verify", str(tmp_path / "000001"), url)
    assert r.returncode == 1 and "DIFFERENT subdir2/banana.txt: dandi-etag" in r.stdout
    r = run_cli("verify", str(tmp_path / "000001"))  # offline, from the local state
    assert r.returncode == 1 and "DIFFERENT subdir2/banana.txt: dandi-etag" in r.stdout
    text_archive.remove_asset("000001", "file.txt")
    text_archive.add_blob("000001", "new.txt", b"new\n")
    r = run_cli("status", url, "-o", str(tmp_path), "--json")
    assert r.returncode == 1, r.stderr  # something differs
    found = json.loads(r.stdout)
    assert "MISSING new.txt" in found["details"] and "EXTRA file.txt" in found["details"]
    assert found["ok"] == 3  # the banana keeps its size and mtime: status reads no byte


def test_state_is_ignored_by_sync_scan(text_archive, tmp_path) -> None:
    url = f"{text_archive.api_url}/dandisets/000001/"
    (tmp_path / "x").mkdir()
    assert run_cli("download", url, "-o", str(tmp_path / "x"), "-f", "plain").returncode == 0
    from dandiget.localtree import find_local_assets

    assert not [p for p in find_local_assets(tmp_path / "x") if ".dandiget" in p]
    assert (tmp_path / "x" / ".dandiget" / "state.sqlite").exists()


def test_missing_output_dir_is_a_usage_error(tmp_path: Path) -> None:
    r = run_cli("download", "DANDI:000027", "-o", str(tmp_path / "nope"))
    assert r.returncode == 2 and "does not exist" in r.stderr
