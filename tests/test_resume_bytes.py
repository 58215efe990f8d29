"""Resume at the byte: a multi-part download killed with ``kill -9`` part-way continues every
Range where its durable progress (fdatasync + journal) ended, instead of from byte 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dandiget.digests import MiB, etag_parts
from dandiget.download import download
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec

from .conftest import FAST

SIZE = 96 * MiB


def cli(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("dandiget")
    return [*([str(exe)] if exe.exists() else [sys.executable, "-m", "dandiget.cli"]), *args]


def durable(journal: dict) -> int:
    parts = etag_parts(journal["size"])
    return (sum(parts[int(i)].length for i in journal["parts"])
            + sum(end - int(start) for start, end in journal["spans"].items()))


def wait_for(cond, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_mid_download_resumes_at_the_byte(archive_factory, tmp_path) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000070", assets=[
        BlobSpec(path="big.bin", size=SIZE, seed=7)])]))
    slow = archive.inject(r"/blobs/", host="content", rate=2 * MiB)  # ~24 MiB/s over 12 ranges
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(cli("download", archive.dandiset_url("000070"), "-o", str(out),
                                "-f", "plain"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    folder = out / "000070"

    def journal_past_a_third() -> dict | None:
        for p in folder.glob(".big.bin.*.json"):
            try:
                j = json.loads(p.read_text())
            except (OSError, ValueError):
                return None
            if durable(j) >= SIZE // 3:
                return j
        return None

    try:
        wait_for(journal_past_a_third, "a journal recording a third of the file")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert not (folder / "big.bin").exists()
    (journal_path,) = folder.glob(".big.bin.*.json")
    got = durable(json.loads(journal_path.read_text()))  # as it was when the process died
    assert SIZE // 3 <= got < SIZE
    slow.remove()
    archive.clear_requests()
    download(archive.dandiset_url("000070"), out, format="plain", config=FAST)
    content = [q for q in archive.requests if q.host == "content"]
    fetched = sum(q.bytes_sent for q in content)
    # exactly the bytes that were not durable (a hedge under heavy load may add a little)
    assert SIZE - got <= fetched < SIZE - got + 4 * MiB, (fetched, SIZE - got)
    assert not any(q.headers.get("Range", "").startswith("bytes=0-") for q in content)
    assert archive.compare_tree(folder, "000070") == []
    assert {p.name for p in folder.iterdir()} == {"big.bin", "dandiset.yaml"}  # no temp, journal


def test_interrupt_before_the_first_byte_leaves_no_sparse_file(archive_factory,
                                                               tmp_path) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000071", assets=[
        BlobSpec(path="big.bin", size=64 * MiB, seed=7)])]))
    archive.inject(r"/blobs/", host="content", latency=60)  # headers never come
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(cli("download", archive.dandiset_url("000071"), "-o", str(out),
                                "-f", "plain"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(q.host == "content" for q in archive.requests),
                 "the first content request")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = [p for p in (out / "000071").iterdir()] if (out / "000071").exists() else []
    assert not [p for p in leftovers if p.name.startswith(".big.bin")], leftovers
