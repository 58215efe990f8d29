"""Staged faults: every failure leaves either the right bytes or a clear error, and never a
truncated or unverified file at a final path."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from dandiget.digests import MiB
from dandiget.download import download
from dandiget.errors import DownloadFailed
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec

from .conftest import FAST, LineWatcher, wait_until

BIG = 70 * MiB  # two dandi-etag parts: exercises parallel Range parts


@pytest.fixture
def big_archive(archive_factory, dandi_register):
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000004",
        assets=[BlobSpec(path="big.bin", size=BIG, seed=3),
                BlobSpec(path="small.txt", content=b"hello world\n" * 100)])]))
    dandi_register(archive)
    return archive


def url(archive, suffix: str = "") -> str:
    return f"dandi://{archive.instance.name}/000004{suffix}"


def expected_md5(archive, path: str) -> str:
    info = archive.asset("000004", path)
    return info.digests.get("dandi:dandi-etag") or info.digests.get("dandi-etag")


def file_etag(p: Path) -> str:
    from dandiget.digests import file_dandi_etag

    return file_dandi_etag(p)


def assert_complete(archive, out: Path) -> None:
    for name in ("big.bin", "small.txt"):
        p = out / "000004" / name
        assert file_etag(p) == expected_md5(archive, name)
    assert not list((out / "000004").glob("*dandiget-part*"))


@pytest.mark.parametrize("fault", [
    {"drop_after": 3 * MiB, "times": 3},
    {"status": 503, "retry_after": "0", "times": 2},
    {"status": 500, "times": 2},
    {"status": 429, "times": 1},
    {"short_body": True, "times": 2},
    {"ignore_range": True, "times": 2},
    {"wrong_content_range": True, "times": 2},
])
def test_transient_content_faults_recover(big_archive, tmp_path, fault) -> None:
    f = big_archive.inject(r"/blobs/", host="content", **fault)
    download(url(big_archive), tmp_path, format="plain", config=FAST)
    assert_complete(big_archive, tmp_path)
    assert f.hits >= 1


def test_api_faults_recover(big_archive, tmp_path) -> None:
    f = big_archive.inject(r"/assets/", host="api", status=503, times=2)
    download(url(big_archive), tmp_path, format="plain", config=FAST)
    assert_complete(big_archive, tmp_path)
    assert f.hits == 2


def test_corrupt_bytes_never_reach_final_path(big_archive, tmp_path) -> None:
    target = tmp_path / "000004" / "small.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"my precious local file")
    big_archive.inject(r"/blobs/", host="content", corrupt=True)
    with pytest.raises(DownloadFailed) as exc:
        download(url(big_archive), tmp_path, format="plain", existing="overwrite",
                 config=FAST)
    assert target.read_bytes() == b"my precious local file"
    assert not (tmp_path / "000004" / "big.bin").exists()
    messages = " ".join(o.message for o in exc.value.report.errors)
    assert "dandi-etag: downloaded" in messages


def test_flaky_connection_that_makes_progress_finishes(big_archive, tmp_path) -> None:
    """Attempts that moved bytes do not count against the retry budget."""
    f = big_archive.inject(r"/blobs/", host="content", drop_after=4 * MiB)  # every response
    download(url(big_archive), tmp_path, format="plain", config=FAST)
    assert_complete(big_archive, tmp_path)
    assert f.hits > FAST.retry.attempts


def test_kill_9_then_resume(big_archive, tmp_path) -> None:
    """``kill -9`` mid-file leaves a hidden partial; the next run reuses finished parts."""
    import os
    import signal
    import subprocess
    import sys

    # the first part (64 MiB) goes through; the request reaching into the second is held
    pause = big_archive.inject(r"/blobs/", host="content", pause_at=BIG - MiB)
    env = {**os.environ, "DANDIGET_EXTRA_INSTANCES":
           f'{{"{big_archive.instance.name}": {{"api": "{big_archive.api_url}"}}}}'}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dandiget.cli", "download", url(big_archive), "-o",
         str(tmp_path), "-f", "plain"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    assert pause.wait_paused(timeout=60)

    def journal_with_a_part() -> bool:
        return any(json.loads(p.read_text() or "{}").get("parts")
                   for p in (tmp_path / "000004").glob(".big.bin.*.json"))

    wait_until(journal_with_a_part, "a finished part in the journal before the kill")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "000004" / "big.bin").exists()
    big_archive.clear_faults()
    big_archive.clear_requests()
    download(url(big_archive), tmp_path, format="plain", existing="refresh")
    assert_complete(big_archive, tmp_path)
    ranges = [q.headers.get("Range", "") for q in big_archive.requests
              if q.host == "content" and "/blobs/" in q.path]
    fetched = 0
    for r in ranges:
        a, b = r.removeprefix("bytes=").split("-")
        fetched += int(b) - int(a) + 1
    assert 0 < fetched < BIG  # the journalled part was not fetched again


def test_token_never_reaches_content_host(archive_factory, dandi_register, tmp_path,
                                          monkeypatch) -> None:
    from dandiget.testing import UserSpec

    token = "b" * 40
    archive = archive_factory(ArchiveSpec(
        dandisets=[DandisetSpec(identifier="000005", embargoed=True, owners=["alice"],
                                assets=[BlobSpec(path="secret.nwb", content=b"s" * 1000)])],
        users=[UserSpec(name="alice", token=token)]))
    dandi_register(archive)
    u = f"dandi://{archive.instance.name}/000005"
    monkeypatch.delenv("DANDI_API_KEY", raising=False)
    with pytest.raises(Exception, match="DANDI_API_KEY"):
        download(u, tmp_path / "anon", format="plain")
    monkeypatch.setenv("DANDI_API_KEY", token)
    download(u, tmp_path / "auth", format="plain")
    assert (tmp_path / "auth/000005/secret.nwb").read_bytes() == b"s" * 1000
    content = [q for q in archive.requests if q.host == "content"]
    assert content and not any("authorization" in {k.lower() for k in q.headers}
                               for q in content)
    api_auth = [q for q in archive.requests if q.host == "api"
                and any(k.lower() == "authorization" for k in q.headers)]
    assert api_auth


@pytest.mark.parametrize("bad", ["a/../../escape.txt", "../escape.txt", "a\\b.txt",
                                 "nul\x00.txt", "x" * 300 + ".txt", "a//b.txt",
                                 ".hidden.txt.dandiget-part"])
def test_unsafe_paths_are_refused(archive_factory, dandi_register, tmp_path, bad) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000006",
        assets=[BlobSpec(path="ok.txt", content=b"fine"),
                BlobSpec(path=bad, content=b"evil")])]))
    dandi_register(archive)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DownloadFailed) as exc:
        download(f"dandi://{archive.instance.name}/000006", out, format="plain")
    assert (out / "000006" / "ok.txt").read_bytes() == b"fine"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == b"evil"]
    assert written == []
    assert "Refusing" in exc.value.report.errors[0].message


def test_symlink_out_of_the_tree_is_not_followed(big_archive, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    (out / "000004").mkdir(parents=True)
    (out / "000004" / "sub").symlink_to(outside)
    archive = big_archive
    archive.add_blob("000004", "sub/planted.txt", b"should not escape")
    with pytest.raises(DownloadFailed) as exc:
        download(url(archive), out, format="plain", existing="overwrite")
    assert list(outside.iterdir()) == []
    msgs = " ".join(o.message for o in exc.value.report.errors)
    assert "outside the output folder" in msgs
    assert (out / "000004" / "small.txt").exists()


def test_two_processes_same_output(big_archive, tmp_path) -> None:
    """The second process waits for the first instead of racing it; no corruption."""
    import os
    import subprocess
    import sys

    pause = big_archive.inject(r"/blobs/", host="content", pause_at=MiB)
    env = {**os.environ, "DANDIGET_EXTRA_INSTANCES":
           f'{{"{big_archive.instance.name}": {{"api": "{big_archive.api_url}"}}}}'}
    cmd = [sys.executable, "-m", "dandiget.cli", "download", url(big_archive), "-o",
           str(tmp_path), "-f", "plain", "-e", "refresh"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    assert pause.wait_paused(timeout=60)  # the first process holds the lock, mid-download
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    assert second.stderr is not None
    err = LineWatcher(second.stderr)
    waiting = err.wait_for("Waiting for another dandiget process", timeout=60)
    pause.release()  # only now may the first one finish
    _, err1 = first.communicate(timeout=120)
    second.wait(timeout=120)
    err2 = err.text()
    assert waiting, err2
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert "Waiting for another dandiget process" in err2
    assert_complete(big_archive, tmp_path)


def test_units_split_small_part_counts() -> None:
    """A file with fewer etag parts than parallel streams is split into >= 8 MiB pieces."""
    from dandiget.config import TransferConfig
    from dandiget.digests import etag_parts
    from dandiget.transfer import Transferer

    t = Transferer(None, TransferConfig(parts_per_file=16))  # type: ignore[arg-type]
    for size in (BIG, 200 * MiB, 2 << 30, 64 * MiB + 1):
        parts = etag_parts(size)
        units = t.plan_units(parts)
        assert sum(u.length for u in units) == size
        assert all(a.end == b.offset for a, b in itertools.pairwise(units))
        assert all(u.length >= 8 * MiB or u.length == parts[u.index].length
                   or u.end == parts[u.index].end for u in units)
        assert len(units) >= min(16, size // (8 * MiB))
