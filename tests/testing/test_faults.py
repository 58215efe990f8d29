"""Every fault kind, observed on the wire with a raw client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, TestArchive

from .conftest import Resp, fetch, raw_exchange

SIZE = 200_000


@pytest.fixture(scope="module")
def archive() -> Iterator[TestArchive]:
    spec = ArchiveSpec(dandisets=[DandisetSpec("000001", assets=[
        BlobSpec("data.bin", size=SIZE, seed=42), BlobSpec("small.txt", b"hello\n")])])
    with TestArchive(spec) as a:
        yield a


@pytest.fixture(autouse=True)
def _clean(archive: TestArchive) -> Iterator[None]:
    archive.clear_faults()
    archive.clear_requests()
    yield
    archive.clear_faults()


@pytest.fixture(scope="module")
def data(archive: TestArchive) -> bytes:
    return archive.read_blob("000001", "data.bin")


def url(archive: TestArchive) -> str:
    return archive.asset("000001", "data.bin").content_url


def test_status_on_content_host_with_retry_after(archive: TestArchive, data: bytes) -> None:
    f = archive.inject(r"/blobs/", host="content", status=503, retry_after=7, times=2)
    for _ in range(2):
        r = fetch(url(archive))
        assert r.status == 503
        assert r.headers["Retry-After"] == "7"
        assert b"<Code>SlowDown</Code>" in r.body
    assert fetch(url(archive)).body == data
    assert f.hits == 2


def test_status_on_api_host_is_json(archive: TestArchive) -> None:
    archive.inject(r"/dandisets/", host="api", status=429, retry_after=3, times=1)
    r = fetch(f"{archive.api_url}/dandisets/")
    assert r.status == 429 and r.headers["Retry-After"] == "3"
    assert r.json() == {"detail": "Request was throttled. Expected available in 3 seconds."}
    archive.inject(r"/dandisets/", host="api", status=500, times=1)
    r = fetch(f"{archive.api_url}/dandisets/")
    assert r.status == 500 and "detail" in r.json()
    assert fetch(f"{archive.api_url}/dandisets/").status == 200


def test_matching_by_host_method_and_query(archive: TestArchive) -> None:
    f = archive.inject(r"page_size=7", status=418)
    assert fetch(f"{archive.api_url}/dandisets/?page_size=7").status == 418
    assert fetch(f"{archive.api_url}/dandisets/?page_size=8").status == 200
    g = archive.inject(r"/blobs/", host="api", status=500)
    assert fetch(url(archive)).status == 200  # host mismatch
    h = archive.inject(r"/blobs/", method="HEAD", status=500)
    assert fetch(url(archive)).status == 200
    assert fetch(url(archive), "HEAD").status == 500
    assert (f.hits, g.hits, h.hits) == (1, 0, 1)
    h.remove()
    assert fetch(url(archive), "HEAD").status == 200
    records = archive.requests
    assert [r.status for r in records[:2]] == [418, 200]
    assert records[0].host == "api" and records[0].query == "page_size=7"


def test_drop_after(archive: TestArchive, data: bytes) -> None:
    f = archive.inject(r"/blobs/", host="content", drop_after=1000, times=1)
    r = fetch(url(archive))
    assert r.status == 200 and r.error == "IncompleteRead"
    assert r.body == data[:1000]
    assert f.hits == 1
    assert archive.requests[-1].bytes_sent == 1000
    assert fetch(url(archive)).body == data


def test_drop_after_zero_and_on_api(archive: TestArchive) -> None:
    archive.inject(r"/blobs/", host="content", drop_after=0, times=1)
    r = fetch(url(archive))
    assert r.error == "IncompleteRead" and r.body == b""
    archive.inject(r"/assets/", host="api", drop_after=10, times=1)
    r = fetch(f"{archive.api_url}/dandisets/000001/versions/draft/assets/")
    assert r.error == "IncompleteRead" and len(r.body) == 10


def test_stall(archive: TestArchive, data: bytes) -> None:
    archive.inject(r"/blobs/", host="content", stall=0.6, times=1)
    r = fetch(url(archive))
    assert r.body == data and r.elapsed >= 0.6 and r.header_time < 0.5



def test_stall_longer_than_the_client_timeout(archive: TestArchive) -> None:
    archive.inject(r"/blobs/", host="content", stall=5, times=1)
    r = fetch(url(archive), timeout=0.5)
    # the headers came at once, then the body stopped: the client's read timed out
    assert r.status == 200 and r.header_time < 0.5 and r.error == "TimeoutError"
    assert archive.requests[-1].bytes_sent == 65536  # held after the first 64 KiB


def test_corrupt(archive: TestArchive, data: bytes) -> None:
    archive.inject(r"/blobs/", host="content", corrupt=True, times=1)
    r = fetch(url(archive))
    assert r.status == 200 and len(r.body) == len(data) and r.body != data
    assert sum(a != b for a, b in zip(r.body, data, strict=True)) == 1
    r = fetch(url(archive), headers={"Range": "bytes=100-"})  # times exhausted
    assert r.body == data[100:]


def test_ignore_range(archive: TestArchive, data: bytes) -> None:
    archive.inject(r"/blobs/", host="content", ignore_range=True, times=1)
    r = fetch(url(archive), headers={"Range": "bytes=100-"})
    assert r.status == 200 and r.body == data and "Content-Range" not in r.headers


def test_wrong_content_range(archive: TestArchive, data: bytes) -> None:
    archive.inject(r"/blobs/", host="content", wrong_content_range=True, times=1)
    r = fetch(url(archive), headers={"Range": "bytes=100-199"})
    assert r.status == 206
    start = int(r.headers["Content-Range"].split()[1].split("-")[0])
    assert start != 100
    assert r.body == data[start:200]


def test_short_body(archive: TestArchive, data: bytes) -> None:
    archive.inject(r"/blobs/", host="content", short_body=True, times=1)
    r = fetch(url(archive))
    assert r.headers["Content-Length"] == str(SIZE)
    assert r.error == "IncompleteRead" and r.body == data[:-1]


def test_long_body(archive: TestArchive, data: bytes) -> None:
    archive.inject(r"/blobs/", host="content", long_body=True, times=1)
    raw = raw_exchange(url(archive))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert f"Content-Length: {SIZE}".encode() in head
    assert len(body) > SIZE and body[:SIZE] == data


def test_rate(archive: TestArchive, data: bytes) -> None:
    archive.inject(r"/blobs/", host="content", rate=400_000, times=1)
    t = time.monotonic()
    r = fetch(url(archive))
    assert r.body == data
    assert time.monotonic() - t >= SIZE / 400_000 * 0.8


def test_latency(archive: TestArchive) -> None:
    archive.inject(r"/info/", host="api", latency=0.4, times=1)
    r = fetch(f"{archive.api_url}/info/")
    assert r.status == 200 and r.header_time >= 0.4


def test_faults_combine(archive: TestArchive, data: bytes) -> None:
    archive.inject(r"/blobs/", host="content", latency=0.2, times=1)
    archive.inject(r"/blobs/", host="content", drop_after=500, times=1)
    r = fetch(url(archive))
    assert r.header_time >= 0.2 and r.body == data[:500]


def test_request_log(archive: TestArchive) -> None:
    fetch(f"{archive.api_url}/dandisets/?page=1", headers={"authorization": "Bearer x",
                                                        "x-custom": "1"})
    rec = archive.requests[-1]
    assert rec.method == "GET" and rec.host == "api" and rec.path == "/api/dandisets/"
    assert rec.query == "page=1" and rec.status == 200
    assert rec.headers["Authorization"] == "Bearer x" and rec.headers["X-Custom"] == "1"
    archive.clear_requests()
    assert archive.requests == []


# ------------------------------------------------------------------ pause: a test-driven hold


def fetch_in_thread(target: str, headers: dict[str, str] | None = None) -> tuple[
        threading.Thread, list[Resp]]:
    out: list[Resp] = []
    t = threading.Thread(target=lambda: out.append(fetch(target, headers=headers)))
    t.start()
    return t, out


def test_pause_holds_a_body_until_released(archive: TestArchive, data: bytes) -> None:
    f = archive.inject(r"/blobs/", host="content", pause_at=1000)
    t, out = fetch_in_thread(url(archive))
    assert f.wait_paused(timeout=30)
    rec = archive.requests[-1]
    assert rec.bytes_sent == 1000 and out == [] and t.is_alive()  # held, not finished
    f.release()
    t.join(30)
    assert out[0].body == data and f.paused == 1
    r = fetch(url(archive))  # released: later responses go through without stopping
    assert r.body == data and f.paused == 2


def test_pause_counts_object_offsets_in_ranged_responses(archive: TestArchive,
                                                         data: bytes) -> None:
    f = archive.inject(r"/blobs/", host="content", pause_at=150_000)
    # ranges on either side of the pause point are not held
    assert fetch(url(archive), headers={"Range": "bytes=0-149999"}).body == data[:150_000]
    assert fetch(url(archive), headers={"Range": "bytes=150001-"}).body == data[150_001:]
    assert f.paused == 0
    t, out = fetch_in_thread(url(archive), {"Range": "bytes=100000-"})
    assert f.wait_paused(timeout=30)
    assert archive.requests[-1].bytes_sent == 50_000 and out == []
    f.release()
    t.join(30)
    assert out[0].status == 206 and out[0].body == data[100_000:]


def test_clearing_faults_releases_held_responses(archive: TestArchive) -> None:
    f = archive.inject(r"/info/", host="api", pause_at=0)
    t, out = fetch_in_thread(f"{archive.api_url}/info/")
    assert f.wait_paused(timeout=30)
    assert out == [] and archive.requests[-1].bytes_sent == 0
    archive.clear_faults()
    t.join(30)
    assert out[0].status == 200 and out[0].json()["version"]


def test_wait_paused_times_out_when_nothing_arrives(archive: TestArchive) -> None:
    f = archive.inject(r"/never/", pause_at=0)
    assert f.wait_paused(timeout=0.05) is False


def test_skip_lets_the_first_requests_through(archive: TestArchive, data: bytes) -> None:
    f = archive.inject(r"/blobs/", host="content", drop_after=10, skip=2)
    assert [len(fetch(url(archive)).body) for _ in range(4)] == [SIZE, SIZE, 10, 10]
    assert (f.seen, f.hits) == (4, 2)
