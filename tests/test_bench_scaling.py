"""The multi-node scaling benchmark (bench/scaling.py, bench/netns.py).

Simulated nodes need root (network namespaces, ``tc``); the end-to-end smoke run also
needs ``dandiget download --dask`` and the ``distributed`` package. Each test says why it
is skipped when something is missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # appended: bench/profile.py must not shadow the stdlib

import netns  # noqa: E402
import scaling  # noqa: E402

needs_netns = pytest.mark.skipif(netns.available() is not None,
                                 reason=f"no simulated nodes here: {netns.available()}")


def _dandiget() -> str:
    return scaling.dandiget_binary()


def _no_dask() -> str | None:
    return scaling.dask_support(_dandiget())


def _leftovers(marker: str) -> list[str]:
    """Namespaces, links and routes of the benchmark, and processes naming ``marker``."""
    found = [f"netns {n}" for n in netns.our_namespaces()]
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    found += [f"link {line.split()[0]}" for line in links.splitlines()
              if line.startswith(netns.PREFIX)]
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    found += [f"route {line}" for line in routes.splitlines() if "198.18." in line]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append(f"process {proc.name}: {cmd[:120]}")
    return found


def _wait_gone(marker: str, timeout: float = 30) -> list[str]:
    """Leftovers once they are gone or ``timeout`` passed (the kernel deletes veth pairs
    of a deleted namespace asynchronously)."""
    deadline = time.monotonic() + timeout
    left = _leftovers(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _leftovers(marker)
    return left


@needs_netns
def test_a_node_is_capped_and_cannot_reach_out(tmp_path: Path) -> None:
    """The cap is what makes N namespaces N nodes: without it the scaling numbers would
    measure nothing. 4 MiB at 40 Mbit/s (5 MB/s) must take ~0.8 s; from the root namespace
    the same file is not capped; and a node has no route off the machine."""
    import servers

    have = servers.ensure_packages({"nginx": "nginx", "curl": "curl"})  # as scaling.py does
    if not all(have.values()) or servers.nginx_binary() is None:
        pytest.skip(f"cannot install what this test needs: {have}")

    data = os.urandom(4 << 20)
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "blob").write_bytes(data)
    nodes = netns.Nodes(1, rate="40mbit")
    try:
        nodes.setup()
        assert any("rate 40Mbit" in q for q in nodes.qdiscs() if q.startswith("dgsc0r"))
        ng = servers.start_nginx(tmp_path / "www", "loopback", host=netns.SERVICE_ADDR)
        url = f"{ng.url}/blob"
        out = tmp_path / "got"
        t0 = time.monotonic()
        subprocess.run([*nodes.exec_prefix(0), "curl", "-sf", "-o", str(out), url],
                       check=True, timeout=60)
        inside = time.monotonic() - t0
        assert out.read_bytes() == data
        assert inside > 0.6, f"4 MiB in {inside:.2f} s through a 5 MB/s cap"
        t0 = time.monotonic()
        subprocess.run(["curl", "-sf", "-o", str(out), url], check=True, timeout=60)
        assert time.monotonic() - t0 < inside / 2
        off = subprocess.run([*nodes.exec_prefix(0), "curl", "-s", "-m", "5", "-o",
                              os.devnull, "http://192.0.2.1/"], timeout=60)
        assert off.returncode == 7  # could not connect: no route out of the namespace
    finally:
        servers.REGISTRY.cleanup()
        nodes.teardown()
    assert _wait_gone(str(tmp_path)) == []


def test_summary_and_verdict() -> None:
    """Speed-up is the median throughput against the 1-worker median; 3 runs or no verdict."""
    def run(config: str, workers: int, wall: float, status: str = "ok") -> scaling.Run:
        return scaling.Run("large", config, workers, 1, 1, status, wall=wall, files=8,
                           bytes=1_000_000_000)

    runs = [run("dask-1", 1, w) for w in (40.0, 44.0, 50.0)]
    runs += [run("dask-4", 4, w) for w in (12.0, 13.0, 20.0)]
    runs += [run("dask-2", 2, 21.0), run("dask-2", 2, 1.0, status="FAILED")]
    rows = {r["config"]: r for r in scaling.summarize(runs)}
    assert rows["dask-1"]["mbs_median"] == pytest.approx(1000 / 44)
    assert rows["dask-4"]["speedup"] == pytest.approx(44 / 13)
    assert rows["dask-2"]["runs"] == 1 and rows["dask-2"]["attempts"] == 2
    assert rows["dask-2"]["speedup"] == pytest.approx(44 / 21)  # the FAILED run is not counted
    (verdict,) = scaling.targets(list(rows.values()), 3)
    assert verdict["verdict"] == "met"  # 3.38x
    runs[4].wall = 14.0  # 44/14 = 3.14x
    (verdict,) = scaling.targets(scaling.summarize(runs), 3)
    assert verdict["verdict"] == "MISSED"
    (verdict,) = scaling.targets(scaling.summarize(runs[1:]), 3)
    assert verdict["verdict"].startswith("not judged")


def test_tc_rates_in_megabytes() -> None:
    """The chart's 'N x cap' line: tc's mbit is megabits, its mbps megabytes."""
    assert scaling.rate_mbs("200mbit") == pytest.approx(25.0)
    assert scaling.rate_mbs("1gbit") == pytest.approx(125.0)
    assert scaling.rate_mbs("25mbps") == pytest.approx(25.0)
    assert scaling.rate_mbs("") is None and scaling.rate_mbs("fast") is None


@needs_netns
@pytest.mark.skipif(_no_dask() is not None, reason=f"no Dask runs possible: {_no_dask()}")
def test_smoke_run_scales_and_cleans_up(tmp_path: Path) -> None:
    """The whole harness on the tiny corpus: 1 and 2 workers, verified trees, a chart, and
    nothing of it left behind."""
    out = tmp_path / "results"
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, str(BENCH / "scaling.py"), "--smoke", "--out", str(out),
                        "--workdir", str(tmp_path), "--seed", "7"],
                       capture_output=True, text=True, timeout=300)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert took < 120, f"the smoke run took {took:.0f} s"
    data = json.loads((out / "results.json").read_text())
    configs = {(r["corpus"], r["config"]) for r in data["runs"] if r["status"] == "ok"}
    for c in ("large", "zarr"):
        for config in ("local", "dask-1", "dask-2"):
            assert (c, config) in configs
    # The bytes went through the workers' capped links, not the coordinator's: a Dask run
    # cannot beat N x 25 MB/s (plus the token bucket's burst), while the uncapped local run
    # of the large files does (it is measured in the same run, as the control).
    for r in data["runs"]:
        if r["config"].startswith("dask-"):
            assert r["bytes"] / r["wall"] / 1e6 < 25 * r["workers"] * 1.3, r
    assert (out / "logs" / "large-dask-1-r1.cmd").read_text().count("--dask tcp://") == 1
    assert data["meta"]["seed"] == 7 and data["meta"]["orders"]
    assert any("rate 200Mbit" in q for q in data["meta"]["qdiscs"])
    assert (out / "scaling.png").stat().st_size > 10_000
    assert "| zarr | dask-2 | 1/1 |" in (out / "results.md").read_text()
    assert _wait_gone(str(tmp_path)) == []


@needs_netns
@pytest.mark.skipif(_no_dask() is not None, reason=f"no Dask runs possible: {_no_dask()}")
def test_interrupted_run_leaves_nothing(tmp_path: Path) -> None:
    """SIGTERM while a cluster runs in the nodes: namespaces, veth pairs, the blackhole
    route and every process (scheduler, workers, nginx, API, dandiget) are gone after."""
    out = tmp_path / "results"
    with open(tmp_path / "log", "wb") as log:
        p = subprocess.Popen([sys.executable, str(BENCH / "scaling.py"), "--smoke", "--out",
                              str(out), "--workdir", str(tmp_path), "--corpora", "zarr",
                              "--no-local", "--workers", "2", "--repeat", "20"],
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not any("dask_worker" in x for x in _leftovers(str(tmp_path))):
            assert p.poll() is None, (tmp_path / "log").read_text()[-2000:]
            assert time.monotonic() < deadline, "no Dask worker started in 120 s"
            time.sleep(0.05)
        assert netns.our_namespaces() != []
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, (tmp_path / "log").read_text()[-2000:]
    assert _wait_gone(str(tmp_path)) == []
