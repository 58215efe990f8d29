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
    assert not list((remote / ".dandiget").glob("probe-*"))  # the run's probe is gone


def test_blobs_and_zarr_equal_the_local_run(text_archive, cluster, tmp_path) -> None:
    spec_url = f"{text_archive.api_url}/dandisets"
    assert_same_as_local(f"{spec_url}/000001/", tmp_path / "blobs", cluster.scheduler_address)
    assert_same_as_local(f"{spec_url}/000002/", tmp_path / "zarr", cluster.scheduler_address)


def test_events_equal_the_local_run(text_archive, client, tmp_path) -> None:
    """Per file, the same events in the same order (progress aside: its rate differs)."""
    from dandiget.events import Progress, Totals, ZarrUpdate

    def events_of(out: Path, **kw: Any) -> dict[str, list[str]]:
        seen: list[Any] = []
        for ds in ("000001", "000002"):
            download(f"{text_archive.api_url}/dandisets/{ds}/", out, quiet=True,
                     listeners=[seen.append], **kw)
        per: dict[str, list[str]] = {}
        for e in seen:
            if not isinstance(e, (Progress, Totals, ZarrUpdate)):
                per.setdefault(e.path, []).append(type(e).__name__)
        return per

    local = events_of(tmp_path / "local")
    assert events_of(tmp_path / "dask", dask=client) == local  # a Client works as well
    assert "Verified" in local["000001/file.txt"]


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


def test_a_corrupted_range_gets_one_fresh_try(archive_factory, client, tmp_path,
                                              caplog) -> None:
    """A byte flipped in one range of a split file: the combined dandi-etag does not match,
    and as on the one-process path the file is fetched once more from scratch, not failed."""
    size = 130 * MiB
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000037", assets=[BlobSpec(path="big.bin", size=size, seed=7)])]))
    bad = archive.inject(r"/blobs/", host="content", corrupt=True, times=1, range=r"^bytes=0-")
    with caplog.at_level("WARNING", logger="dandiget"):
        r = download(f"{archive.api_url}/dandisets/000037/", tmp_path, quiet=True,
                     dask=client)
    assert r.ok and r.files_downloaded == 2 and bad.hits == 1  # dandiset.yaml and big.bin
    assert "dandi-etag mismatch" in caplog.text and "retrying from scratch" in caplog.text
    assert (tmp_path / "000037" / "big.bin").read_bytes() == archive.read_blob("000037",
                                                                               "big.bin")
    assert sorted(p.name for p in (tmp_path / "000037").iterdir()) == ["big.bin",
                                                                        "dandiset.yaml"]


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
                                                            client, dandi_register,
                                                            monkeypatch, tmp_path) -> None:
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
    # after the run, no worker holds the token any more
    assert not any(client.run(_tokens).values())


def _tokens() -> dict[str, str]:
    from dandiget.executors import dask as ex

    return dict(ex._TOKENS)


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


def test_a_worker_joining_later_checks_the_probe(client, tmp_path) -> None:
    """The probe stays for the run: a task on a worker that cannot see it writes nothing."""
    from dandiget.config import TransferConfig
    from dandiget.executors.dask import NotShared, WorkerSettings, run_batch
    from dandiget.units import Batch

    settings = WorkerSettings(TransferConfig())
    probe = tmp_path / ".dandiget" / "probe-x"
    probe.parent.mkdir()
    probe.write_bytes(b"")
    assert client.submit(run_batch, Batch(()), settings, None, str(probe),
                         pure=False).result()[1] == []
    probe.unlink()
    with pytest.raises(NotShared, match=str(tmp_path)):
        client.submit(run_batch, Batch(()), settings, None, str(probe), pure=False).result()


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


def coordinator_process(url: str, out: Path, cluster: Any) -> subprocess.Popen[bytes]:
    """``dandiget download URL -o OUT`` on the cluster, in a process a test can SIGKILL."""
    env = {**os.environ, "DANDIGET_DASK": cluster.scheduler_address}
    return subprocess.Popen([sys.executable, "-m", "dandiget.cli", "download", url, "-o",
                             str(out), "-f", "json"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


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
    proc = coordinator_process(url, out, cluster)
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


def test_a_unit_failing_on_a_worker_is_reported_not_lost(archive_factory, client,
                                                         tmp_path) -> None:
    from dandiget.config import TransferConfig
    from dandiget.errors import DownloadFailed
    from dandiget.retry import RetryPolicy

    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000036", assets=[BlobSpec(path="ok.txt", content=b"fine"),
                                     BlobSpec(path="gone.bin", size=3 * MiB, seed=4)])]))
    cfg = TransferConfig(retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02))
    url = f"{archive.api_url}/dandisets/000036/"
    reports = {}
    for name, kw in (("local", {}), ("dask", {"dask": client})):
        archive.clear_faults()
        archive.inject(r"/blobs/", host="content", status=500)  # every blob, every time
        with pytest.raises(DownloadFailed) as exc:
            download(url, tmp_path / name, quiet=True, config=cfg, **kw)
        reports[name] = exc.value.report
    for name, report in reports.items():
        assert {o.path for o in report.errors} == {"000036/gone.bin", "000036/ok.txt"}, name
    assert (sorted((o.path, o.message) for o in reports["dask"].errors)
            == sorted((o.path, o.message) for o in reports["local"].errors))


def test_local_rerun_resumes_the_parts_workers_finished(archive_factory, cluster, client,
                                                        tmp_path) -> None:
    """A file split over workers, its coordinator and busy worker killed mid-way: a local
    rerun takes over the parts the workers journalled instead of fetching them again."""
    from .conftest import wait_until

    size = 130 * MiB  # parts: [0, 64 MiB), [64, 128 MiB), [128, 130 MiB)
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000037", assets=[BlobSpec(path="big.bin", size=size, seed=13)])]))
    url = f"{archive.api_url}/dandisets/000037/"
    pause = archive.inject(r"/blobs/", host="content", pause_at=65 * MiB)  # in part 1 only
    out = tmp_path / "out"
    out.mkdir()
    proc = coordinator_process(url, out, cluster)
    try:
        assert pause.wait_paused(timeout=60)
        wait_until(lambda: any('"0"' in p.read_text() for p in out.rglob("*.r0.json")),
                   "part 0 journalled by its worker")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    busy = [w for w, n in client.run(_running).items() if n]
    pids = client.run(os.getpid)
    for w in busy:
        os.kill(pids[w], signal.SIGKILL)
    pause.remove()
    wait_until(lambda: not set(busy) & set(client.scheduler_info()["workers"]), "workers gone")
    client.wait_for_workers(2, timeout=60)
    archive.clear_requests()
    report = download(url, out, quiet=True)  # locally, this time
    assert report.ok and report.bytes_downloaded == size  # big.bin (dandiset.yaml was there)
    fetched = 0
    for q in archive.requests:
        if q.host == "content" and "/blobs/" in q.path:
            a, b = q.headers["Range"].removeprefix("bytes=").split("-")
            fetched += int(b) - int(a) + 1
    assert 0 < fetched <= size - 64 * MiB  # part 0 was not fetched again
    assert not [p for p in out.rglob("*") if "dandiget-part" in p.name]


def _failed_units() -> int:
    from dandiget.executors import dask as ex

    return ex.STATS["failed"]


@pytest.fixture
def cut_off_worker() -> Iterator[Any]:
    """A cluster whose second worker lives in its own network namespace: it reaches the
    scheduler over a veth pair, but this host's 127.0.0.1 — where the test archive's
    content host listens — is not its loopback. It really cannot reach the content."""
    ns, a, b = f"dg{os.getpid() % 10000}", f"dg{os.getpid() % 10000}a", f"dg{os.getpid() % 10000}b"
    setup = [["ip", "netns", "add", ns], ["ip", "link", "add", a, "type", "veth", "peer",
                                             "name", b],
             ["ip", "link", "set", b, "netns", ns], ["ip", "addr", "add", "10.231.7.1/24",
                                                     "dev", a],
             ["ip", "link", "set", a, "up"],
             ["ip", "netns", "exec", ns, "ip", "addr", "add", "10.231.7.2/24", "dev", b],
             ["ip", "netns", "exec", ns, "ip", "link", "set", b, "up"],
             ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]]
    try:
        for cmd in setup:
            if subprocess.run(cmd, capture_output=True).returncode != 0:
                pytest.skip("cannot make a network namespace here")
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                      host="0.0.0.0", dashboard_address=":0") as c:
            port = c.scheduler_address.rsplit(":", 1)[1]
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m",
                 "distributed.cli.dask_worker", f"tcp://10.231.7.1:{port}", "--host",
                 "10.231.7.2", "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                with distributed.Client(f"tcp://127.0.0.1:{port}") as client:
                    client.wait_for_workers(2, timeout=60)
                    far = [w for w in client.nthreads() if "10.231.7.2" in w]
                    assert len(far) == 1
                    yield client, far[0]
            finally:
                proc.kill()
                proc.wait()
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", a], capture_output=True)


def test_units_of_a_worker_cut_off_from_the_content_go_elsewhere(archive_factory,
                                                                 cut_off_worker,
                                                                 tmp_path) -> None:
    client, far = cut_off_worker
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec.generated(
        "000038", 400, size=256)]))
    url = f"{archive.api_url}/dandisets/000038/"
    address = client.scheduler.address
    report = download(url, tmp_path / "dask", quiet=True, dask=address)
    assert report.ok and report.files_downloaded == 401
    assert client.run(_failed_units)[far] > 0  # it did get units, and could not fetch them
    download(url, tmp_path / "local", quiet=True)
    assert snapshot(tmp_path / "dask") == snapshot(tmp_path / "local")
