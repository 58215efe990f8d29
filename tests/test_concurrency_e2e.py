"""Without ``-J``, the assets in flight find their own level against a real (test) archive:
more than 6 when the content host is slow to answer, fewer again when it answers 503."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import re

import pytest

from dandiget.download import download
from dandiget.retry import RetryPolicy
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec

from .conftest import FAST

LATENCY = 0.05
N_FILES = 240


def _archive(archive_factory, dandi_register, identifier: str):
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier=identifier,
        assets=[BlobSpec(path=f"d{i % 8}/f{i:04d}.bin", size=16 * 1024, seed=i)
                for i in range(N_FILES)])]))
    dandi_register(archive)
    archive.inject(r"/blobs/", host="content", latency=LATENCY)
    return archive


def in_flight_at_least(archive) -> int:
    """A lower bound on the content requests in flight at once, from the request log: each
    sleeps ``LATENCY`` after it arrives, so all that arrived within ``LATENCY`` before
    another's arrival were still open then."""
    times = sorted(q.time for q in archive.requests
                   if q.host == "content" and q.path.startswith("/blobs/"))
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - LATENCY:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _limits(caplog) -> tuple[int, list[int], int]:
    line = next(r.getMessage() for r in caplog.records
                if r.getMessage().startswith("assets in flight"))
    m = re.match(r"assets in flight: at most (\d+); limits taken: \[([\d, ]*)\]; "
                 r"cut on errors (\d+) times", line)
    assert m, line
    return int(m[1]), [int(x) for x in m[2].split(",")], int(m[3])


def test_ramps_up_past_six_when_latency_bounds_it(archive_factory, dandi_register,
                                                  tmp_path, caplog) -> None:
    archive = _archive(archive_factory, dandi_register, "000151")
    caplog.set_level(logging.DEBUG, logger="dandiget")
    download(f"dandi://{archive.instance.name}/000151", tmp_path, format="plain",
             config=FAST)
    assert archive.compare_tree(tmp_path / "000151", "000151") == []
    seen = in_flight_at_least(archive)
    peak, history, cuts = _limits(caplog)
    assert seen > 6, (seen, history)  # the server saw more than the old fixed 6 at once
    assert peak > 6 and max(history) > 6 and cuts == 0


def test_fixed_jobs_keeps_its_meaning(archive_factory, dandi_register, tmp_path) -> None:
    """``-J 6``: never more than 6 at once, however slow the host (the bound above can tell)."""
    archive = _archive(archive_factory, dandi_register, "000152")
    download(f"dandi://{archive.instance.name}/000152", tmp_path, format="plain",
             config=FAST, jobs=6)
    assert archive.compare_tree(tmp_path / "000152", "000152") == []
    assert 4 <= in_flight_at_least(archive) <= 6


def test_backs_off_on_503(archive_factory, dandi_register, tmp_path, caplog) -> None:
    """Once it has ramped up, the host answers 503 to a burst of requests: the limit is cut
    (and the download still completes, through requests.py's retries)."""
    archive = _archive(archive_factory, dandi_register, "000153")
    overload = archive.inject(r"/blobs/", host="content", status=503, skip=120, times=12)
    caplog.set_level(logging.DEBUG, logger="dandiget")
    cfg = dataclasses.replace(FAST, retry=RetryPolicy(attempts=20, base_delay=0.01,
                                                      max_delay=0.05))
    download(f"dandi://{archive.instance.name}/000153", tmp_path, format="plain", config=cfg)
    assert archive.compare_tree(tmp_path / "000153", "000153") == []
    assert overload.hits == 12
    _peak, history, cuts = _limits(caplog)
    assert cuts >= 1, history
    # a cut is a step down by 30 %, not a return to an earlier level
    assert any(b < a and b == max(2, math.floor(a * 0.7))
               for a, b in itertools.pairwise(history)), history


pytestmark = pytest.mark.timeout(120)
