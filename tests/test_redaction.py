"""The API token never leaves the API origin and never shows up in what dandiget prints,
logs, reports or raises — even when a server echoes it back in error bodies and headers."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dandiget.download import download
from dandiget.errors import DownloadFailed
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, UserSpec, ZarrSpec

from .conftest import FAST

TOKEN = "e1" * 20


@pytest.fixture
def archive(archive_factory, monkeypatch):
    monkeypatch.setenv("DANDI_API_KEY", TOKEN)
    return archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000050", embargoed=True, owners=["alice"], assets=[
            BlobSpec(path="a.bin", size=50_000, seed=1),
            BlobSpec(path="b.bin", size=60_000, seed=2),
            ZarrSpec(path="z.zarr", entries={"0": b"0" * 100, "1": b"1" * 100})])],
        users=[UserSpec("alice", TOKEN)]))


def echo_faults(archive) -> None:
    """Every error the API sends back quotes the Authorization header it got."""
    archive.inject(r"/assets/[^/]+/download/", host="api", status=403, echo_auth=True,
                   times=1)  # one blob fails for good (403 is not retried)
    archive.inject(r"/zarr/[^/]+/files/.*download=true", host="api", status=503,
                   echo_auth=True, times=1)  # retried
    archive.inject(r"/dandisets/000050/$", host="api", status=502, echo_auth=True, times=1)


def test_echoed_token_absent_from_logs_events_report_and_exception(archive, tmp_path,
                                                                   caplog) -> None:
    # the first request is anonymous (401), then the key; make the key's requests fail too
    echo_faults(archive)
    caplog.set_level(logging.DEBUG)
    events: list[object] = []
    with pytest.raises(DownloadFailed) as exc:
        download(archive.dandiset_url("000050"), tmp_path, format="debug", config=FAST,
                 listeners=[events.append])
    echoed = [q for q in archive.requests if q.status in (403, 502, 503)
              and q.headers.get("Authorization") == f"token {TOKEN}"]
    assert echoed, "the faults never saw the token: the test proves nothing"
    report = exc.value.report
    assert report is not None and report.errors  # the 403 blob
    text = "\n".join([caplog.text, repr(events), str(report.to_dict()), str(exc.value),
                      repr(exc.value), *(str(c) for c in _chain(exc.value))])
    assert "<redacted>" in report.errors[0].message  # the echo reached the report, redacted
    assert TOKEN not in text
    # and the bucket never saw it
    assert not any(q.headers.get("Authorization") for q in archive.requests
                   if q.host == "content")


def test_cli_json_events_and_debug_log_never_carry_the_token(archive, tmp_path) -> None:
    echo_faults(archive)
    # a listing error whose body (quoted in the final message) echoes the token
    archive.inject(r"/versions/draft/assets/\?", host="api", status=400, echo_auth=True)
    env = {**os.environ, "DANDI_API_KEY": TOKEN}
    exe = Path(sys.executable).with_name("dandiget")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dandiget.cli"]
    r = subprocess.run([*cmd, "-l", "debug", "download", archive.dandiset_url("000050"),
                        "-o", str(tmp_path), "-f", "json"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "<redacted>" in out  # the echo reached the message, without the secret
    assert TOKEN not in out
    assert any(q.status == 400 and q.headers.get("Authorization") == f"token {TOKEN}"
               for q in archive.requests)


def _chain(e: BaseException) -> list[BaseException]:
    out = []
    cur: BaseException | None = e
    while cur is not None and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out
