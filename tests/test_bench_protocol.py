"""The benchmark protocol (bench/): API latency model, verdict rules, first-file detection.

The harness itself is exercised end to end by ``python bench/run.py --smoke`` in CI; these
tests pin the pieces whose mistakes would silently make the comparison unfair.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # appended: bench/profile.py must not shadow the stdlib

import api_latency  # noqa: E402
import report  # noqa: E402
import tools  # noqa: E402
from verify import first_expected_file  # noqa: E402

from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, TestArchive  # noqa: E402


def test_api_cost_matches_the_measured_pages() -> None:
    cost = api_latency.ApiCost()
    n = {"000004": 100_000, "000002": 1_500}
    count = lambda did, _v: n[did]  # noqa: E731
    page = "/api/dandisets/000004/versions/draft/assets/?metadata=true&page_size={}&page=3"
    # dandisets#236: ~0.72 s for 100 assets with metadata, ~1.38 s for 1,000.
    assert api_latency.request_cost(cost, page.format(100), count) == pytest.approx(0.673)
    assert api_latency.request_cost(cost, page.format(1000), count) == pytest.approx(1.33)
    # The last page holds only the rest; page_size is capped at 1,000 as the archive does.
    last = "/api/dandisets/000002/versions/draft/assets/?metadata=true&page_size=5000&page=2"
    assert api_latency.request_cost(cost, last, count) == pytest.approx(
        0.05 + 0.55 + 500 * 0.00073)
    bare = "/api/dandisets/000004/versions/draft/assets/?order=created&page=7"
    assert api_latency.request_cost(cost, bare, count) == pytest.approx(0.05 + 0.55 + 0.005)
    assert api_latency.request_cost(cost, "/api/zarr/abc/files/?limit=1000", count) == \
        pytest.approx(0.2)
    redirect = "/api/zarr/abc/files/?prefix=0/0/1&download=true"
    assert api_latency.request_cost(cost, redirect, count) == pytest.approx(0.05)
    assert api_latency.request_cost(cost, "/api/dandisets/000004/", count) == \
        pytest.approx(0.05)


def test_api_latency_delays_the_real_archive() -> None:
    spec = ArchiveSpec(dandisets=[DandisetSpec("000001", assets=[
        BlobSpec(f"f{i}.bin", size=10, seed=i) for i in range(3)])])
    archive = TestArchive(spec)
    cost = api_latency.ApiCost(request=0.3, page=0.4, row_metadata=0.1, row=0.0, zarr_page=0)
    archive.faults = api_latency.ApiLatency(cost, lambda did, _v: 3)
    with archive:
        def timed(url: str) -> float:
            t0 = time.monotonic()
            with urllib.request.urlopen(url, timeout=30) as r:
                assert r.status == 200
                r.read()
            return time.monotonic() - t0

        assert timed(archive.api_url + "/info/") >= 0.3
        assert timed(archive.api_url + "/dandisets/000001/versions/draft/assets/"
                     "?metadata=true&page_size=2&page=2") >= 0.3 + 0.4 + 0.1
        # The content host is not the API: no API latency there.
        blob = archive.asset("000001", "f0.bin").content_url
        assert timed(blob) < 0.3


def _meta(kind: str = "full") -> dict:
    scen = {"migration-files-refresh": {"mode": "refresh", "dataset": "files"},
            "first-file": {"mode": "first-file", "dataset": "plan"}}
    return {"kind": kind, "min_runs": 3, "scenarios": scen,
            "tools": {"dandiget": {"kind": "dandiget"}, "dandi-cli -J6": {"kind": "dandi-cli"}}}


def _run(tool: str, wall: float, scenario: str = "migration-files-refresh",
         profile: str = "loopback", **kw: object) -> dict:
    r = {"profile": profile, "scenario": scenario, "tool": tool, "status": "ok", "wall": wall,
         "cpu": wall, "peak_rss": 50_000_000, "expected_files": 1000,
         "expected_bytes": 1 << 30, "ok_files": 1000, "ok_bytes": 1 << 30, "note": "",
         "problems": "", "prime": False, "first_file": None}
    r.update(kw)
    return r


def _verdict(summary: dict, scenario: str) -> str:
    return next(t["verdict"] for t in summary["targets"] if t["scenario"] == scenario)


def test_a_verdict_needs_three_verified_runs_of_each_tool() -> None:
    runs = [_run("dandiget", 1.0), _run("dandiget", 1.1), _run("dandiget", 0.9),
            _run("dandi-cli -J6", 3.0), _run("dandi-cli -J6", 3.2)]
    s = report.summarize(_meta(), runs)
    assert _verdict(s, "migration-files-refresh").startswith("not judged (dandi-cli -J6: 2")
    s = report.summarize(_meta(), [*runs, _run("dandi-cli -J6", 2.9)])
    assert _verdict(s, "migration-files-refresh") == "met"
    row = next(r for r in s["rows"] if r["tool"] == "dandi-cli -J6")
    assert row["dandiget_speedup"] == pytest.approx(3.0 / 1.0)
    assert row["cpu_per_gib"] == pytest.approx(3.0)  # median CPU s over 1 GiB
    # A run stopped at the cap is no run, and nothing is extrapolated from it.
    stopped = _run("dandi-cli -J6", 120.0, status="timeout", ok_files=10)
    s = report.summarize(_meta(), [*runs, stopped])
    assert _verdict(s, "migration-files-refresh").startswith("not judged")
    smoke = report.summarize(_meta("smoke"), [*runs, _run("dandi-cli -J6", 2.9)])
    assert _verdict(smoke, "migration-files-refresh").startswith("not judged (smoke corpus")


def test_first_file_target_uses_the_time_to_the_first_file() -> None:
    runs = [_run("dandiget", 9.0, "first-file", "s3like", first_file=f) for f in (1.5, 1.7, 1.9)]
    s = report.summarize(_meta(), runs)
    assert _verdict(s, "first-file") == "met"
    slow = [_run("dandiget", 9.0, "first-file", "s3like", first_file=2.5) for _ in range(3)]
    assert _verdict(report.summarize(_meta(), slow), "first-file") == "missed"


def test_first_expected_file_ignores_temporary_and_partial_files(tmp_path: Path) -> None:
    files = {"sub-01/a.nwb": [4, "etag", "x", "k1"], "sub-01/b.nwb": [3, "etag", "y", "k2"]}
    assert first_expected_file(tmp_path / "missing", files) is None
    d = tmp_path / "sub-01"
    (d / "a.nwb.dandidownload").mkdir(parents=True)
    (d / "a.nwb.dandidownload" / "file").write_bytes(b"abcd")
    (d / "a.nwb").write_bytes(b"ab")  # not complete yet
    (d / "other.bin").write_bytes(b"xyz")
    assert first_expected_file(tmp_path, files) is None
    (d / "b.nwb").write_bytes(b"xyz")
    assert first_expected_file(tmp_path, files) == "sub-01/b.nwb"


def test_dandi_cli_keeps_its_digest_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DANDI_CACHE", "ignore")
    ctx = tools.Ctx(api_url="http://x/api", content_url="http://y", did="000002",
                    dataset="files", files={}, out=tmp_path, home=tmp_path / "h",
                    mode="overwrite-different")
    env = tools.DandiCli("/bin/dandi", None).env(ctx)
    assert "DANDI_CACHE" not in env
    assert env["XDG_CACHE_HOME"] == str(tmp_path / "h" / ".cache")


def test_charts_are_drawn(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import charts

    meta = {**_meta(), "date": "today"}
    runs = [_run("dandiget", 1.0), _run("dandi-cli -J6", 3.0),
            _run("dandiget", 9.0, "first-file", "s3like", first_file=1.2)]
    paths = charts.draw(meta, runs, [], tmp_path)
    assert [p.name for p in paths] == ["throughput.png", "cpu_per_gib.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
