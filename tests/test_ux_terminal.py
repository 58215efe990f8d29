"""What a user sees in a terminal when things go wrong (and when they go right).

Each test runs ``dandiget`` in a real pseudo-terminal (80 columns unless said otherwise),
lets a VT100 emulator apply its output, and asserts on the final screen.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from dandiget.digests import MiB
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, ZarrSpec

from .conftest import object_path
from .ux_terminal import Terminal, run_in_terminal

LONG = "sub-01/sub-01_ses-{:02d}_acq-a-rather-long-acquisition-label_ecephys.nwb"


def many_files(n: int) -> ArchiveSpec:
    return ArchiveSpec(dandisets=[DandisetSpec(identifier="000001", assets=[
        BlobSpec(LONG.format(i), f"file {i}\n".encode()) for i in range(1, n + 1)])])


def run_cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dandiget.cli", *args], capture_output=True,
                          text=True, timeout=120, **kw)  # type: ignore[call-overload]


def test_every_failure_is_listed_after_the_live_display(archive_factory, tmp_path) -> None:
    """The table keeps 6 finished rows; the 10 failures are all listed, with reasons."""
    archive = archive_factory(many_files(10))
    url = f"{archive.api_url}/dandisets/000001/"
    assert run_cli("download", url, "-o", str(tmp_path), "-f", "plain").returncode == 0
    shutil.rmtree(tmp_path / ".dandiget")  # the files are no longer known to be ours
    code, lines = run_in_terminal("download", url, "-o", str(tmp_path), cols=120)
    text = "\n".join(lines)
    assert code == 1, text
    start = lines.index("10 files failed:")
    assert lines.index(next(s for s in lines if s.startswith("PATH"))) < start  # table first
    listed = lines[start + 1:start + 11]
    assert sorted(listed) == sorted(f"  000001/{LONG.format(i)}: already exists"
                                    for i in range(1, 11))
    assert "0 files downloaded (0 Bytes), 1 skipped, 10 errors" in text  # dandiset.yaml
    assert "choose skip, refresh or overwrite-different" in " ".join(lines)  # what to do
    assert lines[-1] == "Error: Encountered 10 errors while downloading."


def test_failures_beyond_fifty_say_where_the_rest_are(archive_factory, tmp_path) -> None:
    archive = archive_factory(many_files(55))
    url = f"{archive.api_url}/dandisets/000001/"
    assert run_cli("download", url, "-o", str(tmp_path), "-f", "plain").returncode == 0
    shutil.rmtree(tmp_path / ".dandiget")
    r = run_cli("download", url, "-o", str(tmp_path), "-f", "plain")
    assert r.returncode == 1
    out = r.stdout.splitlines()
    start = out.index("55 files failed:")
    assert all(s.endswith(": already exists") for s in out[start + 1:start + 51])
    assert out[start + 51] == ("  ... and 5 more: the report lists them all (`-f json`: "
                               "error_list in the last line; Python: report.errors)")
    r = run_cli("download", url, "-o", str(tmp_path), "-f", "json")
    assert len(json.loads(r.stdout.splitlines()[-1])["error_list"]) == 55


def test_log_lines_print_above_the_live_display(archive_factory, tmp_path) -> None:
    """A warning during the run (a corrupt transfer, retried) must not tear the display."""
    spec = many_files(2)
    spec.dandisets[0].assets.append(BlobSpec("slow.bin", size=64 * 1024, seed=4))
    archive = archive_factory(spec)
    slow = object_path(archive, "slow.bin")
    archive.inject(slow, host="content", corrupt=True, times=1)
    archive.inject(slow, host="content", rate=64 * 1024)
    term = Terminal(["download", f"{archive.api_url}/dandisets/000001/", "-o", str(tmp_path)])
    term.wait_for(lambda t: any(s.startswith("PATH ") for s in t.lines()))
    assert b"WARNING" not in term.raw  # the table is on screen before the warning comes
    code = term.wait()
    lines = term.lines()
    text = "\n".join(lines)
    assert code == 0, text
    headers = [i for i, s in enumerate(lines) if s.startswith("PATH ")]
    summaries = [i for i, s in enumerate(lines) if s.startswith("Summary: ")]
    assert len(headers) == 1 and len(summaries) == 1, text  # no stale copy left behind
    warning = next(i for i, s in enumerate(lines) if "[WARNING ]" in s)
    assert warning < headers[0]
    assert "dandi-etag mismatch" in text.replace("\n", "")
    rows = lines[headers[0] + 2:summaries[0]]
    assert len(rows) == 4 and all(" done" in r for r in rows), text  # 3 files + dandiset.yaml


def test_fatal_error_prints_only_the_error(text_archive, tmp_path) -> None:
    url = f"{text_archive.api_url}/dandisets/000099/"
    code, lines = run_in_terminal("download", url, "-o", str(tmp_path))
    text = "\n".join(lines)
    assert code == 1
    error = next(i for i, s in enumerate(lines) if s.startswith("Error: "))
    assert "000099" in " ".join(lines[error:])
    assert "downloaded" not in text and "errors" not in text and "PATH" not in text
    r = run_cli("download", url, "-o", str(tmp_path), "-f", "json")
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["ok"] is False and "000099" in summary["fatal"]


def test_paths_are_shortened_in_the_middle(archive_factory, tmp_path) -> None:
    """At 80 columns the rows keep their file names, so siblings stay distinguishable."""
    archive = archive_factory(many_files(4))
    code, lines = run_in_terminal("download", f"{archive.api_url}/dandisets/000001/", "-o",
                                  str(tmp_path))
    assert code == 0
    text = "\n".join(lines)
    header = next(i for i, s in enumerate(lines) if s.startswith("PATH"))
    cells = [s.split()[0] for s in lines[header + 2:header + 7]]
    assert cells[0] == "000001/dandiset.yaml"
    files = sorted(cells[1:])
    assert len(set(files)) == 4, text  # not four identical rows
    for i, cell in enumerate(files, 1):
        assert cell.startswith(f"sub-01_ses-{i:02d}_") and cell.endswith(".nwb"), text
        assert "…" in cell
    assert all(len(s) <= 80 for s in lines)


def test_dry_run_shows_a_plan(text_archive, tmp_path) -> None:
    url = f"{text_archive.api_url}/dandisets/000001/"
    assert run_cli("download", url, "-o", str(tmp_path), "-f", "plain").returncode == 0
    (tmp_path / "000001" / "subdir1" / "apple.txt").unlink()
    (tmp_path / "000001" / "old.txt").write_bytes(b"gone from the server\n")
    code, lines = run_in_terminal("download", url, "-o", str(tmp_path), "--dry-run",
                                  "--sync")
    text = "\n".join(lines)
    assert code == 0, text
    assert "download 000001/subdir1/apple.txt (6 Bytes)" in lines
    assert "skip     000001/subdir2/banana.txt (7 Bytes, already downloaded)" in lines
    assert "delete   000001/old.txt" in lines
    assert lines[-2:] == ["Plan: download 1 file (6 Bytes), skip 4, delete 1, 0 errors",
                          "Nothing was written (--dry-run)."]
    assert "PATH" not in text and "updating" not in text and "%" not in text
    assert not (tmp_path / "000001" / "subdir1" / "apple.txt").exists()


def zarr_spec() -> ArchiveSpec:
    entries = {".zgroup": b"{}", "a/.zarray": b"{}", "a/0": b"0" * 100, "a/1": b"1" * 100}
    return ArchiveSpec(dandisets=[DandisetSpec(identifier="000001", assets=[
        BlobSpec("one.txt", b"one\n"),
        ZarrSpec("s.zarr", entries),
    ])])


def test_counts_and_units_agree(archive_factory, tmp_path) -> None:
    archive = archive_factory(zarr_spec())
    url = f"{archive.api_url}/dandisets/000001/"
    code, lines = run_in_terminal("download", url, "-o", str(tmp_path))
    text = "\n".join(lines)
    assert code == 0, text
    summary = next(s for s in lines if s.startswith("Summary: "))
    assert summary.startswith("Summary: 3/3 files,")  # dandiset.yaml, one.txt, s.zarr
    assert "3 files downloaded (" in text and "4 Zarr entries)" in text
    # a no-op run moves no bytes: no throughput anywhere
    code, lines = run_in_terminal("download", url, "-o", str(tmp_path), "-e", "refresh")
    text = "\n".join(lines)
    assert code == 0, text
    assert not re.search(r"(Bytes|[kMGT]B)/s", text), text
    assert "0 files downloaded (0 Bytes), 3 skipped, 0 errors in" in text
    # one file is "1 file"
    one = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000002", assets=[BlobSpec("a.txt", b"a\n")])]))
    r = run_cli("download", f"{one.api_url}/dandisets/000002/", "-o", str(tmp_path),
                "--download", "assets", "-f", "plain")
    assert r.returncode == 0 and "1 file downloaded (2 Bytes), 0 skipped, 0 errors" in r.stdout


def test_no_row_sits_at_100_percent_downloading(archive_factory, tmp_path) -> None:
    """Once every byte is in, the row says "verifying" while the digest and rename run."""
    from rich.console import Console

    from dandiget.download import download
    from dandiget.events import Event, Progress, Verified
    from dandiget.render.table import TableRenderer

    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000001", assets=[BlobSpec("big.bin", size=3 * MiB, seed=1)])]))
    events: list[Event] = []
    download(f"{archive.api_url}/dandisets/000001/", tmp_path, quiet=True,
             listeners=[events.append])
    last = max(i for i, e in enumerate(events) if isinstance(e, Progress))
    assert events[last].done == 3 * MiB  # type: ignore[attr-defined]
    assert isinstance(events[last + 1], Verified)  # the engine's next word is the verdict
    console = Console(width=80, record=True, force_terminal=True)
    table = TableRenderer(console.file, console=console)
    for e in events[:last + 1]:
        table(e)
    console.print(table.render())
    row = next(s for s in console.export_text().splitlines() if s.startswith("000001/big"))
    assert "verifying" in row and "downloading" not in row


def test_wide_terminal_shows_every_column(text_archive, tmp_path) -> None:
    code, lines = run_in_terminal("download", f"{text_archive.api_url}/dandisets/000001/",
                                  "-o", str(tmp_path), cols=150)
    assert code == 0
    header = next(s for s in lines if s.startswith("PATH"))
    assert re.findall(r"[A-Z%]+", header) == ["PATH", "SIZE", "DONE", "DONE%", "CHECKSUM",
                                              "STATUS", "MESSAGE"]
    assert any("000001/subdir2/coconut.txt" in s and " ok " in s for s in lines)


def test_interrupt_shows_what_was_done(archive_factory, tmp_path) -> None:
    """Ctrl-C typed in the terminal: a word on what was done, no success-looking summary."""
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000001", assets=[
        BlobSpec("a.txt", b"a\n"), BlobSpec("big.bin", size=20 * MiB, seed=2)])]))
    archive.inject(object_path(archive, "big.bin"), host="content", rate=1 * MiB)
    term = Terminal(["download", f"{archive.api_url}/dandisets/000001/", "-o",
                     str(tmp_path)])
    term.wait_for(lambda t: any("big.bin" in s and "downloading" in s for s in t.lines())
                  and (tmp_path / "000001" / "a.txt").exists())
    term.send(b"\x03")
    assert term.wait(30) == 130
    text = term.text()
    assert "Interrupted after: 2 files downloaded" in text  # a.txt and dandiset.yaml
    assert "Interrupted. Partial downloads are kept" in text
    assert "Error" not in text


def test_sync_without_a_terminal_says_nothing_was_deleted(text_archive, tmp_path) -> None:
    url = f"{text_archive.api_url}/dandisets/000001/"
    assert run_cli("download", url, "-o", str(tmp_path), "-f", "plain").returncode == 0
    text_archive.remove_asset("000001", "file.txt")
    r = run_cli("download", url, "-o", str(tmp_path), "--sync", "-f", "plain", "-e", "refresh",
                stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "000001" / "file.txt").exists()
    assert "Nothing was deleted: no answer to 'Delete 1 local asset?' (stdin is not a " \
           "terminal). To delete without asking, use --sync do" in r.stderr
    r = run_cli("download", url, "-o", str(tmp_path), "--sync", "do", "-f", "plain", "-e",
                "refresh")
    assert r.returncode == 0 and not (tmp_path / "000001" / "file.txt").exists()


def test_sync_question_is_asked_below_a_stopped_table(text_archive, tmp_path) -> None:
    url = f"{text_archive.api_url}/dandisets/000001/"
    assert run_cli("download", url, "-o", str(tmp_path), "-f", "plain").returncode == 0
    text_archive.remove_asset("000001", "file.txt")
    term = Terminal(["download", url, "-o", str(tmp_path), "--sync", "-e", "refresh"])
    term.wait_for(lambda t: bool(t.lines()) and t.lines()[-1].startswith(
        "Delete 1 local asset? ([y]es/[n]o/[l]ist):"))
    term.send(b"y\n")
    assert term.wait() == 0
    lines = term.lines()
    assert sum(s.startswith("PATH") for s in lines) == 1
    assert "1 deleted" in lines[-1]
    assert not (tmp_path / "000001" / "file.txt").exists()


def test_numeric_log_levels(text_archive, tmp_path: Path) -> None:
    """dandi-cli takes ``-l 10``; a retried 503 is logged at DEBUG only."""
    url = f"{text_archive.api_url}/dandisets/000001/"
    text_archive.inject(r"/dandisets/000001/$", host="api", status=503, times=1)
    r = run_cli("-l", "10", "download", url, "-o", str(tmp_path), "-f", "plain")
    assert r.returncode == 0 and "[DEBUG   ]" in r.stderr and "HTTP 503" in r.stderr
    text_archive.inject(r"/dandisets/000001/$", host="api", status=503, times=1)
    r = run_cli("-l", "20", "download", url, "-o", str(tmp_path), "-f", "plain", "-e", "skip")
    assert r.returncode == 0 and "503" not in r.stderr
    text_archive.inject(r"/dandisets/000001/$", host="api", status=503, times=1)
    r = run_cli("-l", "debug", "download", url, "-o", str(tmp_path), "-f", "plain", "-e",
                "skip")
    assert r.returncode == 0 and "HTTP 503" in r.stderr
    r = run_cli("-l", "loud", "download", url)
    assert r.returncode == 2 and "'loud' is not a log level" in r.stderr


def test_zarr_failure_names_the_entry(archive_factory, tmp_path) -> None:
    archive = archive_factory(zarr_spec())
    url = f"{archive.api_url}/dandisets/000001/"
    assert run_cli("download", url, "-o", str(tmp_path), "-f", "plain").returncode == 0
    shutil.rmtree(tmp_path / ".dandiget")
    r = run_cli("download", url, "-o", str(tmp_path), "-f", "plain")
    assert r.returncode == 1
    out = r.stdout.splitlines()
    listed = out[out.index("2 files failed:") + 1:][:2]
    assert "  000001/one.txt: already exists" in listed
    zarr = next(s for s in listed if "s.zarr" in s)
    assert re.fullmatch(r"  000001/s\.zarr: already exists \((\.zgroup|a/\.zarray|a/0|a/1)\)",
                        zarr), zarr
