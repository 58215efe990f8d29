"""Ctrl-C, then the same command again (default ``-e error``): it resumes instead of failing.

Files the interrupted run finished are "already downloaded" (dandiget verified them and
they are unchanged since); the rest are downloaded. A file dandiget did not write, or one
changed since, is still dandi-cli's "already exists" error.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dandiget.digests import MiB
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, ZarrSpec

from .conftest import object_path

SMALL = {f"small/{c}.txt": f"{c}\n".encode() for c in "abcd"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dandiget.cli", *args]


def interrupt_when(proc: subprocess.Popen[str], ready: Any) -> list[dict[str, Any]]:
    """Read the JSON event stream until ``ready(events)``, then press Ctrl-C (SIGINT)."""
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if ready(events):
            proc.send_signal(signal.SIGINT)
            break
    else:
        raise AssertionError(f"the run ended before it could be interrupted: {events}")
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    return events + [json.loads(line) for line in rest.splitlines()]


def rerun(url: str, out: Path) -> tuple[int, list[dict[str, Any]]]:
    r = subprocess.run(cli("download", url, "-o", str(out), "-f", "json"), capture_output=True,
                       text=True, timeout=120)
    return r.returncode, [json.loads(line) for line in r.stdout.splitlines()]


def by_event(events: list[dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    return {e["path"]: e for e in events if e["event"] == name}


def test_ctrl_c_then_the_same_command_resumes(archive_factory, tmp_path: Path) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000001", assets=[
        *(BlobSpec(p, c) for p, c in SMALL.items()),
        BlobSpec("big.bin", size=24 * MiB, seed=3),
    ])]))
    archive.inject(object_path(archive, "big.bin"), host="content", rate=2 * MiB)
    url = f"{archive.api_url}/dandisets/000001/"
    proc = subprocess.Popen(cli("download", url, "-o", str(tmp_path), "-f", "json"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = interrupt_when(proc, lambda ev: len(
        {e["path"] for e in ev if e["event"] == "done" and "small/" in e["path"]}) == 4
        and any(e["event"] == "progress" and e["path"].endswith("big.bin") for e in ev))
    assert not (tmp_path / "000001" / "big.bin").exists()
    assert first[-1]["event"] == "summary" and first[-1]["ok"] is False
    assert first[-1]["fatal"] == "KeyboardInterrupt: interrupted"

    archive.clear_faults()
    code, events = rerun(url, tmp_path)  # the same command: -e error
    assert code == 0, events[-1]
    skipped = by_event(events, "skipped")
    assert {p: e["reason"] for p, e in skipped.items() if "small/" in p} == {
        f"000001/{p}": "already downloaded" for p in SMALL}
    assert "000001/big.bin" in by_event(events, "done")
    assert (tmp_path / "000001" / "big.bin").stat().st_size == 24 * MiB
    assert events[-1]["ok"] and events[-1]["errors"] == 0

    # A file dandiget did not write, or one changed since it verified it, still errors
    # (so does dandiset.yaml: the new asset changed the server's metadata).
    archive.add_blob("000001", "new.txt", b"from the server\n")
    (tmp_path / "000001" / "new.txt").write_bytes(b"mine, not dandiget's\n")
    with open(tmp_path / "000001" / "small" / "a.txt", "ab") as f:
        f.write(b"edited\n")
    code, events = rerun(url, tmp_path)
    assert code == 1
    errors = {e["path"]: e["message"] for e in events[-1]["error_list"]}
    assert set(errors) == {"000001/new.txt", "000001/small/a.txt", "000001/dandiset.yaml"}
    assert all("already exists" in m for m in errors.values())
    assert (tmp_path / "000001" / "new.txt").read_bytes() == b"mine, not dandiget's\n"
    assert {p for p, e in by_event(events, "skipped").items()
            if e["reason"] == "already downloaded"} == {
        "000001/big.bin", *(f"000001/small/{c}.txt" for c in "bcd")}


def test_interrupted_zarr_resumes_under_error(archive_factory, tmp_path: Path) -> None:
    entries = {".zgroup": b"{}", **{f"a/{i}": bytes([i]) * 64 for i in range(10)},
               "b/big": bytes(6 * MiB)}
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000001", assets=[
        ZarrSpec("s.zarr", entries)])]))
    archive.inject(r"/b/big$", host="content", rate=1 * MiB)
    url = f"{archive.api_url}/dandisets/000001/"
    proc = subprocess.Popen(cli("download", url, "-o", str(tmp_path), "-f", "json", "-J",
                                "1:2"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    root = tmp_path / "000001" / "s.zarr"
    deadline = time.monotonic() + 60
    while not (all((root / "a" / str(i)).exists() for i in range(10))
               and list((root / "b").glob(".big*"))):
        # the Zarr row reports entries as they finish (throttled); the files on disk say it
        # at once: every small entry in place and the big one's partial file started
        assert proc.poll() is None and time.monotonic() < deadline, "not interrupted"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert not (root / "b" / "big").exists()
    archive.clear_faults()
    code, events = rerun(url, tmp_path)
    assert code == 0, events[-1]
    done = by_event(events, "done")["000001/s.zarr"]
    assert done["message"] == "1 done, 11 skipped"  # only b/big was fetched again
    assert (tmp_path / "000001" / "s.zarr" / "b" / "big").stat().st_size == 6 * MiB
    # and the finished Zarr is skipped whole on the next run, still under -e error
    code, events = rerun(url, tmp_path)
    assert code == 0 and "000001/s.zarr" in by_event(events, "skipped")


def test_interrupted_while_a_file_is_renamed_into_place(text_archive, tmp_path: Path) -> None:
    """Ctrl-C can land while a verified file is being renamed into place (in a thread that
    finishes anyway): the file must be recorded too, or the rerun calls it foreign."""
    import asyncio

    import pytest

    from dandiget.download import adownload
    from dandiget.events import Event, Message

    url = f"{text_archive.api_url}/dandisets/000001/"
    target = "000001/subdir2/banana.txt"

    def cancel_at_commit(event: Event) -> None:
        if isinstance(event, Message) and event.path == target and \
                event.status == "setting mtime":
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # delivered at the next await: the rename is already under way

    async def interrupted() -> None:
        await adownload(url, tmp_path, quiet=True, jobs=1, listeners=[cancel_at_commit])

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(interrupted())
    assert (tmp_path / target).read_bytes() == b"Banana\n"
    code, events = rerun(url, tmp_path)
    assert code == 0, events[-1]
    assert by_event(events, "skipped")[target]["reason"] == "already downloaded"
