"""dandi-cli, the reference client, downloads from the test archive with every checksum ok.

If the archive and the real Archive disagreed on anything dandi-cli relies on (pagination,
redirects, Range, digests, the zarr listing and checksum), this is where it would show.
The dandi-cli virtualenv comes from ``DANDIGET_PEER_VENV``, else ``<repo>/.peer-venv``
(created with ``pip install dandi`` when missing).
"""

from __future__ import annotations

import ast
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dandiget.testing import (
    ArchiveSpec,
    BlobSpec,
    DandisetSpec,
    TestArchive,
    UserSpec,
    ZarrSpec,
)
from dandiget.testing.demo import ome_zarr_entries
from dandiget.testing.peer import find_dandi_cli

pytestmark = pytest.mark.peer

MiB = 1 << 20


@pytest.fixture(scope="session")
def dandi_bin() -> Path:
    """``DANDIGET_PEER_VENV``, else ``<repo>/.peer-venv`` (created with pip when missing)."""
    return find_dandi_cli()


def peer_spec() -> ArchiveSpec:
    return ArchiveSpec(
        dandisets=[DandisetSpec(
            identifier="000001",
            name="Peer dandiset",
            assets=[
                BlobSpec("README.txt", b"peer test\n"),
                BlobSpec("sub-01/sub-01_ses-01.nwb", size=1_500_000, seed=1),
                BlobSpec("sub-01/deeper/dir/notes with space & amp.txt", b"odd path\n"),
                BlobSpec("sub-02/sub-02_big.nwb", size=64 * MiB + 4321, seed=2),  # two parts
                BlobSpec("sub-02/no-sha.bin", size=4096, seed=3, sha256=False),
                ZarrSpec("sub-01/sample.ome.zarr", ome_zarr_entries()),
            ],
        )],
        users=[UserSpec("alice", "a" * 40)],
    )


@pytest.fixture(scope="module")
def peer_archive() -> Iterator[TestArchive]:
    with TestArchive(peer_spec()) as archive:
        yield archive


def run_dandi(dandi: Path, url: str, out: Path, home: Path, *extra: str,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("DANDI")}
    e.update(DANDI_NO_ET="1", DANDI_CACHE="ignore", HOME=str(home),
             XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"),
             PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    e.update(env or {})
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(dandi), "download", url, "-o", str(out), "-e", "error", *extra],
                          capture_output=True, text=True, env=e, timeout=600)


def test_dandi_cli_downloads_everything(dandi_bin: Path, peer_archive: TestArchive,
                                        tmp_path: Path) -> None:
    url = peer_archive.dandiset_url("000001", "draft")
    r = run_dandi(dandi_bin, url, tmp_path / "out", tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "error" not in (r.stdout + r.stderr).lower().replace("-e error", "")
    assert peer_archive.compare_tree(tmp_path / "out" / "000001", "000001") == []
    assert (tmp_path / "out" / "000001" / "dandiset.yaml").is_file()
    # the token never left for the bucket, and every redirect went to the content host
    content = [q for q in peer_archive.requests if q.host == "content"]
    assert content and all("Authorization" not in q.headers for q in content)


def test_dandi_cli_debug_records_checksums(dandi_bin: Path, peer_archive: TestArchive,
                                           tmp_path: Path) -> None:
    url = peer_archive.dandiset_url("000001", "draft")
    r = run_dandi(dandi_bin, url, tmp_path / "out", tmp_path, "-f", "debug")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    records = [ast.literal_eval(line) for line in r.stdout.splitlines()
               if line.startswith("{")]
    ok = {rec["path"] for rec in records if rec.get("checksum") == "ok"}
    blobs = ["README.txt", "sub-01/sub-01_ses-01.nwb",
             "sub-01/deeper/dir/notes with space & amp.txt", "sub-02/sub-02_big.nwb",
             "sub-02/no-sha.bin", "sub-01/sample.ome.zarr"]
    assert {f"000001/{p}" for p in blobs} <= ok
    assert not [rec for rec in records if rec.get("status") == "error"]
    assert peer_archive.compare_tree(tmp_path / "out" / "000001", "000001") == []


def test_dandi_cli_resumes_through_faults(dandi_bin: Path, peer_archive: TestArchive,
                                          tmp_path: Path) -> None:
    """Dropped connections and 503s: dandi-cli retries (Range resume) and still verifies."""
    big = peer_archive.asset("000001", "sub-02/sub-02_big.nwb")
    # dandi-cli keeps only whole 8 MiB chunks of an interrupted attempt, so cut after 10 MiB
    f1 = peer_archive.inject(big.blob_id or "", host="content", drop_after=10 * MiB, times=2)
    f2 = peer_archive.inject(r"/assets/.*/download/", host="api", status=503, retry_after=0,
                             times=1)
    try:
        url = peer_archive.dandiset_url("000001", "draft")
        r = run_dandi(dandi_bin, url, tmp_path / "out", tmp_path, "-f", "debug")
    finally:
        peer_archive.clear_faults()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f1.hits == 2 and f2.hits == 1
    assert peer_archive.compare_tree(tmp_path / "out" / "000001", "000001") == []
    assert any("Range" in q.headers for q in peer_archive.requests if q.host == "content")


def test_dandi_cli_embargoed_with_token(dandi_bin: Path, tmp_path: Path) -> None:
    spec = ArchiveSpec(
        dandisets=[DandisetSpec(identifier="000003", embargoed=True, owners=["alice"], assets=[
            BlobSpec("secret.nwb", size=200_000, seed=9)])],
        users=[UserSpec("alice", "a" * 40)])
    with TestArchive(spec) as archive:
        url = archive.dandiset_url("000003", "draft")
        anon = run_dandi(dandi_bin, url, tmp_path / "anon", tmp_path)
        assert anon.returncode != 0
        key_var = archive.instance.api.split("//")[1].split("/")[0].upper().replace("-", "_")
        env = {f"{key_var}_API_KEY": "a" * 40}
        r = run_dandi(dandi_bin, url, tmp_path / "out", tmp_path, env=env)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert archive.compare_tree(tmp_path / "out" / "000003", "000003") == []
        content = [q for q in archive.requests if q.host == "content"]
        assert content and all("Authorization" not in q.headers for q in content)
