"""The ``slow-connection`` benchmark scenario (bench/crawl.py): one connection in 16 crawls.

The comparison with ``aria2c -x16`` is only fair if nginx throttles exactly one connection
in sixteen, whatever tool connects; these tests hold a real nginx to that.
"""

from __future__ import annotations

import http.client
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # appended: bench/profile.py must not shadow the stdlib

import crawl  # noqa: E402
from servers import REGISTRY, Nginx, nginx_binary  # noqa: E402

SIZE = 512 * 1024
RATE = "64k"  # 512 KiB at 64 KiB/s: ~8 s on a crawling connection, milliseconds otherwise
SLOW = 4.0  # seconds: half the crawl; no unthrottled loopback request of 512 KiB is that slow


def test_serial_tails_decide_the_multiples_of_16() -> None:
    tails = set(crawl.serial_tails(16))
    numbers = [*range(1, 30_000), 99_984, 99_999, 100_000, 123_456_784, 123_456_790,
               10**12 + 16, 10**12 + 8]
    # What the first map does: the last four digits, or the whole of a shorter number.
    wrong = [n for n in numbers if (str(n)[-4:] in tails) != (n % 16 == 0)]
    assert wrong == []
    with pytest.raises(ValueError):
        crawl.serial_tails(3)


def _timed_get(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        t0 = time.monotonic()
        conn.request("GET", "/blob.bin")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200 and len(body) == SIZE
        return time.monotonic() - t0
    finally:
        conn.close()


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")
def test_exactly_one_connection_in_sixteen_crawls(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * (SIZE // 256))
    nginx = crawl.start_crawl_nginx(tmp_path, rate=RATE)
    try:
        conf = (nginx.tmp / "nginx.conf").read_text()
        assert "limit_rate $crawl_rate;" in conf and "map $crawl_tail $crawl_rate" in conf
        # Two batches of 16 parallel connections: serials 2-17, then 18-33 (the readiness
        # probe took serial 1). Each batch holds one multiple of 16, so one crawl each.
        for _batch in range(2):
            with ThreadPoolExecutor(16) as pool:
                times = list(pool.map(lambda _i: _timed_get(nginx.port), range(16)))
            slow = [t for t in times if t >= SLOW]
            assert len(slow) == 1, sorted(times)
            # The crawler was throttled to RATE, not merely unlucky with the CPU.
            assert slow[0] >= SIZE / (64 * 1024) * 0.75, sorted(times)
    finally:
        REGISTRY.stop(nginx.proc)
        shutil.rmtree(nginx.tmp, ignore_errors=True)
        if nginx.tmp in REGISTRY.dirs:
            REGISTRY.dirs.remove(nginx.tmp)


def _one_by_one(port: int, n: int) -> None:
    """``n`` connections, each accepted, used and closed before the next: serials in order."""
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("GET", "/tiny.bin")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == b"x"
        finally:
            conn.close()


def _crawled(nginx: Nginx) -> list[int]:
    """The 1-based places (in the order they were logged) of the throttled requests."""
    lines = (nginx.tmp / crawl.ACCESS_LOG).read_text().splitlines()
    return [i + 1 for i, line in enumerate(lines) if " rate=0 " not in line]


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")
def test_every_run_meets_the_crawl_on_its_fifteenth_connection(tmp_path: Path) -> None:
    """The harness restarts nginx before each run: the counter restarts, so each run's
    15th connection crawls, whatever the runs before it did (and the port stays)."""
    (tmp_path / "tiny.bin").write_bytes(b"x")
    nginx = crawl.start_crawl_nginx(tmp_path)
    try:
        _one_by_one(nginx.port, 20)
        assert _crawled(nginx) == [15]
        _one_by_one(nginx.port, 9)  # a run that leaves the counter at serial 30
        assert _crawled(nginx) == [15]
        port = nginx.port
        nginx = crawl.restart(nginx, tmp_path, crawl=True)
        assert nginx.port == port
        _one_by_one(nginx.port, 20)
        assert _crawled(nginx) == [15]
        plain = crawl.restart(nginx, tmp_path, crawl=False)  # the profile's own again
        nginx = plain
        assert plain.port == port and "crawl_rate" not in (plain.tmp / "nginx.conf").read_text()
        _one_by_one(plain.port, 1)
    finally:
        REGISTRY.stop(nginx.proc)
