"""One download spread over a real Dask cluster (worker processes) equals the local run:
the same tree, mtimes and state; a worker killed mid-file changes nothing; a folder the
workers do not share is refused before a byte is written."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dandiget.digests import MiB
from dandiget.download import download
from dandiget.errors import DandigetError
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, UserSpec, ZarrSpec

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two worker processes, one thread each (light on a 2-core machine)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as c:
        yield c


@pytest.fixture
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as c:
        yield c


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` (but .dandiget/): its bytes and mtime."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(".dandiget/"):
            out[rel] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def state_rows(root: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The state's file and Zarr records, without what differs between two copies
    (inode, ctime, time of verification)."""
    with sqlite3.connect(root / ".dandiget" / "state.sqlite") as db:
        files = db.execute("SELECT path, size, mtime_ns, algo, digest, asset_id FROM files "
                           "ORDER BY path").fetchall()
        zarrs = db.execute("SELECT path, zarr_id, checksum, entries FROM zarrs "
                           "ORDER BY path").fetchall()
    return files, zarrs


def assert_same_as_local(url: str, tmp_path: Path, dask: Any) -> None:
    local, remote = tmp_path / "local", tmp_path / "dask"
    download(url, local, quiet=True)
    report = download(url, remote, quiet=True, dask=dask)
    assert report.ok
    assert snapshot(remote) == snapshot(local)
    assert state_rows(remote) == state_rows(local)
    assert state_rows(remote)[0]  # something was recorded
    assert not [p for p in remote.rglob("*") if "dandiget-part" in p.name]


def test_blobs_and_zarr_equal_the_local_run(text_archive, cluster, tmp_path) -> None:
    spec_url = f"{text_archive.api_url}/dandisets"
    assert_same_as_local(f"{spec_url}/000001/", tmp_path / "blobs", cluster.scheduler_address)
    assert_same_as_local(f"{spec_url}/000002/", tmp_path / "zarr", cluster.scheduler_address)


def test_many_entries_zarr_in_batches(archive_factory, cluster, client, tmp_path) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000030", assets=[ZarrSpec(path="z.zarr", generated=(300, 512, 3)),
                                     BlobSpec(path="mid.bin", size=3 * MiB, seed=2)])]))
    before = client.run(_units_run)
    assert_same_as_local(f"{archive.api_url}/dandisets/000030/", tmp_path,
                         cluster.scheduler_address)
    after = client.run(_units_run)
    ran = {w: after[w] - before.get(w, 0) for w in after}
    assert sum(ran.values()) == 301  # every entry and the blob ran on a worker
    assert all(ran.values()), ran  # on both workers


def _units_run() -> int:
    from dandiget.executors import dask as ex

    return ex.STATS["units"]


def _running() -> int:
    from dandiget.executors import dask as ex

    return ex.STATS["running"]


def _ranges_run() -> int:
    from dandiget.executors import dask as ex

    return ex.STATS["ranges"]


def test_multipart_file_split_across_workers(archive_factory, cluster, client,
                                             tmp_path) -> None:
    size = 130 * MiB  # three dandi-etag parts of 64 MiB
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000031", assets=[BlobSpec(path="big.bin", size=size, seed=5)])]))
    before = client.run(_ranges_run)
    assert_same_as_local(f"{archive.api_url}/dandisets/000031/", tmp_path,
                         cluster.scheduler_address)
    after = client.run(_ranges_run)
    assert all(after[w] > before.get(w, 0) for w in after), (before, after)


def test_worker_killed_mid_file(archive_factory, cluster, client, tmp_path) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000032", assets=[BlobSpec(path="a.bin", size=5 * MiB, seed=7),
                                     BlobSpec(path="b.txt", content=b"b" * 100)])]))
    url = f"{archive.api_url}/dandisets/000032/"
    # b.txt (100 bytes) never reaches the pause; after release() nothing pauses again
    pause = archive.inject(r"/blobs/", host="content", pause_at=2 * MiB)
    out = tmp_path / "dask"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            download(url, out, quiet=True, dask=cluster.scheduler_address)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    assert pause.wait_paused(timeout=60)
    assert not (out / "000032" / "a.bin").exists()  # bytes go to a hidden temporary first
    busy = [w for w, keys in client.processing().items()
            if any(str(k).startswith("dandiget-batch") for k in keys)]
    assert len(busy) == 1
    pids = client.run(os.getpid)
    os.kill(pids[busy[0]], signal.SIGKILL)  # mid-transfer: 2 MiB of 5 written
    pause.release()
    t.join(timeout=120)
    assert not t.is_alive() and not errors, errors
    download(url, tmp_path / "local", quiet=True)
    assert snapshot(out) == snapshot(tmp_path / "local")
    assert state_rows(out) == state_rows(tmp_path / "local")
    assert not [p for p in out.rglob("*") if "dandiget-part" in p.name]


def test_embargoed_data_token_reaches_workers_only_by_plugin(archive_factory, cluster,
                                                            dandi_register, monkeypatch,
                                                            tmp_path) -> None:
    token = "d" * 40
    archive = archive_factory(ArchiveSpec(
        dandisets=[DandisetSpec(identifier="000033", embargoed=True, owners=["alice"],
                                assets=[BlobSpec(path="secret.bin", content=b"s" * 999)])],
        users=[UserSpec(name="alice", token=token)]))
    dandi_register(archive)
    # the workers were started before the key was set: they can only have it from us
    monkeypatch.setenv("DANDI_API_KEY", token)
    url = f"dandi://{archive.instance.name}/000033"
    download(url, tmp_path / "dask", quiet=True, dask=cluster.scheduler_address)
    assert (tmp_path / "dask/000033/secret.bin").read_bytes() == b"s" * 999
    content = [q for q in archive.requests if q.host == "content"]
    assert content and not any("authorization" in {k.lower() for k in q.headers}
                               for q in content)
    from dandiget.executors.dask_plugins import TokenPlugin

    assert token not in repr(TokenPlugin({archive.api_url: token}))


@pytest.fixture
def blind_worker(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A cluster whose second worker runs in its own mount namespace, where ``tmp_path``
    is an empty tmpfs: that worker really does not see the folder the others see."""
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as c:
        probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("no mount namespaces here")
        script = (f"mount -t tmpfs tmpfs {tmp_path} && exec {sys.executable} -m "
                  f"distributed.cli.dask_worker {c.scheduler_address} --nthreads 1 "
                  "--no-nanny --no-dashboard")
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with distributed.Client(c) as client:
                client.wait_for_workers(2, timeout=60)
            yield c, out
        finally:
            proc.kill()
            proc.wait()


def test_unshared_output_folder_is_refused(text_archive, blind_worker) -> None:
    cluster, out = blind_worker
    with pytest.raises(DandigetError, match="not shared with the Dask workers") as exc:
        download(f"{text_archive.api_url}/dandisets/000001/", out, quiet=True,
                 dask=cluster.scheduler_address)
    assert str(out) in str(exc.value)
    assert not out.exists()  # nothing written, no .dandiget/ left


def test_progress_from_workers_is_live_and_batched(archive_factory, cluster,
                                                   tmp_path) -> None:
    from dandiget.events import Done, Progress

    size = 3 * MiB
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000034", assets=[BlobSpec(path="slow.bin", size=size, seed=9)])]))
    archive.inject(r"/blobs/", host="content", rate=MiB)  # ~3 s on the wire
    events: list[Any] = []
    download(f"{archive.api_url}/dandisets/000034/", tmp_path, quiet=True,
             dask=cluster.scheduler_address, listeners=[events.append])
    done = [e.done for e in events if isinstance(e, Progress) and e.path.endswith("slow.bin")]
    assert done and done[-1] == size
    assert done == sorted(done)
    # seen while the file was still moving, not only at the end ...
    assert any(0 < d < size for d in done), done
    # ... and a few messages a second, not one per chunk (3 MiB is ~50 chunks)
    assert len(done) <= 12, done
    kinds = [type(e) for e in events if getattr(e, "path", "").endswith("slow.bin")
             and isinstance(e, (Progress, Done))]
    assert kinds[-1] is Done and Done not in kinds[:-1]  # progress first, then done


def test_coordinator_killed_then_rerun_resumes(archive_factory, cluster, client,
                                               tmp_path) -> None:
    """SIGKILL of the submitting process (and of the worker it left running) mid-file: a
    rerun on the cluster resumes the partial file where it stopped and records the tree."""
    from .conftest import wait_until

    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000035", assets=[BlobSpec(path="a.bin", size=6 * MiB, seed=11),
                                     BlobSpec(path="c.txt", content=b"c" * 10)])]))
    url = f"{archive.api_url}/dandisets/000035/"
    pause = archive.inject(r"/blobs/", host="content", pause_at=3 * MiB)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "DANDIGET_DASK": cluster.scheduler_address}
    proc = subprocess.Popen([sys.executable, "-m", "dandiget.cli", "download", url, "-o",
                             str(out), "-f", "json"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert pause.wait_paused(timeout=60)
        wait_until(lambda: any(p.stat().st_size for p in out.rglob("*dandiget-part*")),
                   "bytes of a.bin in its temporary file")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Dask cannot stop the task it left running: its worker goes too (the nanny restarts it)
    busy = [w for w, n in client.run(_running).items() if n]
    assert len(busy) == 1
    os.kill(client.run(os.getpid)[busy[0]], signal.SIGKILL)
    pause.remove()
    wait_until(lambda: busy[0] not in client.scheduler_info()["workers"], "the worker gone")
    client.wait_for_workers(2, timeout=60)
    assert not (out / "000035" / "a.bin").exists()
    archive.clear_requests()
    # c.txt may be complete but unrecorded (the state is written in batches): compared
    download(url, out, quiet=True, existing="overwrite-different",
             dask=cluster.scheduler_address)
    ranges = [q.headers.get("Range", "") for q in archive.requests
              if q.host == "content" and "/blobs/" in q.path]
    assert any(r.startswith("bytes=") and not r.startswith("bytes=0-") for r in ranges), ranges
    download(url, tmp_path / "local", quiet=True)
    assert snapshot(out) == snapshot(tmp_path / "local")
    assert state_rows(out) == state_rows(tmp_path / "local")
    assert not [p for p in out.rglob("*") if "dandiget-part" in p.name]
