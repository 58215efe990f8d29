"""The rest of the fault matrix: stalls, dead hosts, expired presigned URLs, long bodies,
objects replaced mid-download, kill -9 in a Zarr, read-only folders, a hostile API, and
secrets that must never show up anywhere."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web

from dandiget.config import TransferConfig
from dandiget.digests import MiB, file_dandi_etag
from dandiget.download import download
from dandiget.errors import DownloadFailed
from dandiget.retry import RetryPolicy
from dandiget.testing import (
    ArchiveSpec,
    BlobSpec,
    DandisetSpec,
    TestArchive,
    UserSpec,
    ZarrSpec,
)

from .conftest import FAST, mounted_tmpfs, tree, wait_until


def small_spec(**kw) -> ArchiveSpec:
    return ArchiveSpec(dandisets=[DandisetSpec(identifier="000020", assets=[
        BlobSpec(path="a.bin", size=3 * MiB, seed=1),
        BlobSpec(path="b.txt", content=b"b" * 500)], **kw)], users=[UserSpec("alice", "c" * 40)])


def test_stalled_connection_times_out_and_recovers(archive_factory, dandi_register,
                                                   tmp_path) -> None:
    archive = archive_factory(small_spec())
    dandi_register(archive)
    archive.inject(r"/blobs/", host="content", stall=30, times=1)
    cfg = TransferConfig(read_timeout=0.5, retry=FAST.retry)
    t0 = time.monotonic()
    download(f"dandi://{archive.instance.name}/000020", tmp_path, format="plain", config=cfg)
    assert time.monotonic() - t0 < 10
    assert tree(tmp_path / "000020")["b.txt"] == b"b" * 500
    assert file_dandi_etag(tmp_path / "000020" / "a.bin") == \
        archive.asset("000020", "a.bin").digests["dandi:dandi-etag"]


def test_dead_content_host_is_a_clear_error(archive_factory, dandi_register, tmp_path) -> None:
    archive = archive_factory(small_spec(), content_base_url="http://127.0.0.1:9")
    dandi_register(archive)
    cfg = TransferConfig(retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02))
    with pytest.raises(DownloadFailed) as exc:
        download(f"dandi://{archive.instance.name}/000020", tmp_path, format="plain",
                 config=cfg)
    msg = exc.value.report.errors[0].message
    # refused on the first connect: not retried, one line naming the host and the cause
    assert msg == "cannot connect to 127.0.0.1:9: connection refused"
    assert not (tmp_path / "000020" / "a.bin").exists()


def test_expired_presigned_url_is_renewed(archive_factory, dandi_register, tmp_path,
                                          monkeypatch) -> None:
    archive = archive_factory(small_spec(embargoed=True, owners=["alice"]))
    dandi_register(archive)
    monkeypatch.setenv("DANDI_API_KEY", "c" * 40)
    f = archive.inject(r"/download/", host="api", expire_presigned=True, times=2)
    download(f"dandi://{archive.instance.name}/000020", tmp_path, format="plain", config=FAST)
    assert f.hits == 2
    assert tree(tmp_path / "000020")["b.txt"] == b"b" * 500


def test_long_body_is_rejected_then_recovers(archive_factory, dandi_register, tmp_path) -> None:
    archive = archive_factory(small_spec())
    dandi_register(archive)
    f = archive.inject(r"/blobs/", host="content", long_body=True, times=2)
    download(f"dandi://{archive.instance.name}/000020", tmp_path, format="plain", config=FAST)
    assert f.hits == 2
    assert tree(tmp_path / "000020")["b.txt"] == b"b" * 500


def big_archive_21(archive_factory, dandi_register) -> TestArchive:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000021", assets=[
        BlobSpec(path="big.bin", size=70 * MiB, seed=8)])]))
    dandi_register(archive)
    return archive


#: One stream, so the two parts of big.bin are fetched one after the other.
ONE_STREAM = TransferConfig(parts_per_file=1, retry=FAST.retry)


def test_object_replaced_between_parts_is_detected(archive_factory, dandi_register,
                                                   tmp_path) -> None:
    """The second part comes with another S3 ETag than the first: the object changed."""
    archive = big_archive_21(archive_factory, dandi_register)
    pause = archive.inject(r"/blobs/", host="content", pause_at=MiB)  # inside the first part
    errors: list[BaseException] = []

    def run() -> None:
        try:
            download(f"dandi://{archive.instance.name}/000021", tmp_path, format="plain",
                     config=ONE_STREAM)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    assert pause.wait_paused(timeout=60)
    # the held response goes on with the old bytes; the next part's request sees the new ones
    archive.replace_object("000021", "big.bin", os.urandom(70 * MiB))
    pause.release()
    t.join(120)
    assert errors and isinstance(errors[0], DownloadFailed)
    msg = errors[0].report.errors[0].message  # type: ignore[attr-defined]
    assert "changed on the server" in msg
    assert not (tmp_path / "000021" / "big.bin").exists()
    ranges = [q.headers.get("Range") for q in archive.requests if "/blobs/" in q.path]
    assert ranges[:2] == [f"bytes=0-{64 * MiB - 1}", f"bytes={64 * MiB}-{70 * MiB - 1}"]


def test_object_replaced_before_the_download_fails_its_dandi_etag(
        archive_factory, dandi_register, tmp_path) -> None:
    """Every part has the same (new) S3 ETag, so only the dandi-etag can tell."""
    archive = big_archive_21(archive_factory, dandi_register)
    archive.replace_object("000021", "big.bin", os.urandom(70 * MiB))
    with pytest.raises(DownloadFailed) as exc:
        download(f"dandi://{archive.instance.name}/000021", tmp_path, format="plain",
                 config=ONE_STREAM)
    msg = exc.value.report.errors[0].message
    assert "dandi-etag" in msg and "changed on the server" not in msg
    assert not (tmp_path / "000021" / "big.bin").exists()


def rerun_with_refresh(url: str, out: Path) -> dict:
    """Run ``dandiget download -e refresh`` in a fresh process; its JSON summary."""
    r = subprocess.run([sys.executable, "-m", "dandiget.cli", "download", url, "-o", str(out),
                        "-f", "json", "-e", "refresh"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_kill_9_in_a_zarr_then_resume(archive_factory, tmp_path) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000022", assets=[
        ZarrSpec(path="z.zarr", generated=(400, 2048, 3))])]))
    # the first 100 entries go through; every later one is held until the kill
    pause = archive.inject(r"/zarr/", host="content", method="GET", pause_at=0, skip=100)
    url = f"{archive.api_url}/dandisets/000022/"
    proc = subprocess.Popen([sys.executable, "-m", "dandiget.cli", "download", url, "-o",
                             str(tmp_path), "-f", "plain", "-J", "2:4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    zdir = tmp_path / "000022" / "z.zarr"
    assert pause.wait_paused(timeout=60)
    wait_until(lambda: zdir.exists() and sum(1 for p in zdir.rglob("*") if p.is_file()) > 50,
               "50 entries written")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    had = sum(1 for p in zdir.rglob("*") if p.is_file() and "dandiget-part" not in p.name)
    assert 0 < had < 400
    archive.clear_faults()
    archive.clear_requests()
    summary = rerun_with_refresh(url, tmp_path)
    assert summary["ok"] and summary["files_downloaded"] <= 400 - had + 8
    assert sum(1 for p in zdir.rglob("*") if p.is_file()) == 400


def test_kill_9_in_a_many_file_dandiset_then_resume(archive_factory, tmp_path) -> None:
    """``kill -9`` while many files are in flight: every file at a final path is complete and
    verified, and the rerun fetches only what was missing."""
    import random

    contents = {}
    for i in range(150):
        size = 3 * MiB + i if i % 30 == 7 else 32 * 1024 + i  # a few streamed, most whole
        contents[f"sub-{i % 5:02d}/ses-{i % 3}/f{i:03d}.bin"] = random.Random(i).randbytes(size)
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000023", assets=[
        BlobSpec(path=path, content=data) for path, data in contents.items()])]))
    # the first 40 blob requests go through; every later one is held until the kill
    pause = archive.inject(r"/blobs/", host="content", method="GET", pause_at=0, skip=40)
    url = f"{archive.api_url}/dandisets/000023/"
    proc = subprocess.Popen([sys.executable, "-m", "dandiget.cli", "download", url, "-o",
                             str(tmp_path), "-f", "plain", "-J", "6"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = tmp_path / "000023"

    def finals() -> dict[str, bytes]:
        return {k: v for k, v in tree(root).items() if "dandiget-part" not in k
                and k != "dandiset.yaml"}

    assert pause.wait_paused(timeout=60)
    wait_until(lambda: len(finals()) >= 30, "30 files at their final paths")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = finals()
    assert 0 < len(before) < len(contents)
    for path, data in before.items():  # nothing short, nothing unverified at a final path
        assert data == contents[path], path
    archive.clear_faults()
    summary = rerun_with_refresh(url, tmp_path)
    assert summary["ok"]
    assert summary["files_downloaded"] <= len(contents) - len(before) + 1  # + dandiset.yaml
    assert finals() == contents
    assert not [k for k in tree(root) if "dandiget-part" in k]


def test_read_only_output_folder(archive_factory, dandi_register, tmp_path) -> None:
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        archive = archive_factory(small_spec())
        dandi_register(archive)
        with pytest.raises(DownloadFailed) as exc:
            download(f"dandi://{archive.instance.name}/000020", ro, format="plain")
        messages = [o.message for o in exc.value.report.errors]
        # every file is reported with the cause, none is silently dropped
        assert len(messages) == 3 and all("Read-only file system" in m for m in messages)
        assert list(ro.iterdir()) == []


# ---------------------------------------------------------------- a hostile API server


def hostile_app(kind: str) -> web.Application:
    """Just enough of the API to list one dandiset, with one thing badly wrong."""
    app = web.Application()

    async def info(request: web.Request) -> web.Response:
        base = f"http://{request.host}/api"
        return web.json_response({"version": "1", "services": {"api": {"url": base}},
                                  "cli-minimal-version": "0.0.1", "cli-bad-versions": []})

    async def dandiset(request: web.Request) -> web.Response:
        return web.json_response({"identifier": "000030", "modified": "2024-01-01T00:00:00Z",
                                  "most_recent_published_version": None,
                                  "draft_version": {"version": "draft"}})

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"identifier": "DANDI:000030", "id": "DANDI:000030/draft"})

    async def assets(request: web.Request) -> web.Response:
        base = f"http://{request.host}/api/dandisets/000030/versions/draft/assets/"
        if kind == "loop":  # ``next`` points back at itself forever
            return web.json_response({"count": 1, "next": base + "?page=2", "results": []})
        if kind == "invalid-json":
            return web.Response(text="{not json", content_type="application/json")
        row = {"asset_id": "0f0f0f0f-0000-4000-8000-000000000001", "blob": "b", "zarr": None,
               "path": "neg.bin", "size": -5, "modified": "2024-01-01T00:00:00Z",
               "metadata": {"digest": {"dandi:dandi-etag": "x-1"}}}
        return web.json_response({"count": 1, "next": None, "results": [row]})

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app.router.add_get("/server-info", not_found)
    app.router.add_get("/api/info/", info)
    app.router.add_get("/api/dandisets/000030/", dandiset)
    app.router.add_get("/api/dandisets/000030/versions/draft/", version)
    app.router.add_get("/api/dandisets/000030/versions/draft/assets/", assets)
    return app


@pytest.mark.parametrize(("kind", "expect"), [
    ("loop", "Pagination loop"),
    ("invalid-json", "invalid JSON"),
    ("negative-size", "invalid size"),
])
async def test_hostile_api(aiohttp_unused_port, tmp_path, kind, expect) -> None:
    from dandiget.download import adownload

    port = aiohttp_unused_port()
    runner = web.AppRunner(hostile_app(kind))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        with pytest.raises(Exception) as exc:
            await adownload(f"http://127.0.0.1:{port}/api/dandisets/000030/", tmp_path,
                            format="plain", get_metadata=False, config=FAST)
        text = str(exc.value) + " ".join(
            o.message for o in getattr(getattr(exc.value, "report", None), "errors", []))
        assert expect in text
    finally:
        await runner.cleanup()
    assert [p for p in tmp_path.rglob("*") if p.is_file() and ".dandiget" not in p.parts] == []


@pytest.fixture
def aiohttp_unused_port():
    import socket

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return pick


def test_token_never_in_logs_reports_or_events(archive_factory, dandi_register, tmp_path,
                                               monkeypatch, caplog) -> None:
    token = "c" * 40
    archive = archive_factory(small_spec(embargoed=True, owners=["alice"]))
    dandi_register(archive)
    monkeypatch.setenv("DANDI_API_KEY", token)
    archive.inject(r"/blobs/", host="content", status=500, times=1)
    archive.inject(r"/download/", host="api", status=503, times=1)
    events: list[object] = []
    caplog.set_level(logging.DEBUG)
    report = download(f"dandi://{archive.instance.name}/000020", tmp_path, format="debug",
                      config=FAST, listeners=[events.append])
    text = caplog.text + json.dumps(report.to_dict()) + repr(events)
    for p in tmp_path.rglob("*"):
        if p.is_file() and p.suffix != ".sqlite":
            text += p.read_bytes().decode("latin-1")
    assert token not in text
    assert not any("authorization" in {k.lower() for k in q.headers}
                   for q in archive.requests if q.host == "content")
    _ = Path
