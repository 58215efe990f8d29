"""`dandiget download` and `dandi download` produce identical trees: bytes, mtimes and
dandiset.yaml, for the same dandiset from the test archive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, TestArchive, ZarrSpec

pytestmark = pytest.mark.peer
MiB = 1 << 20


@pytest.fixture(scope="module")
def dandi_cli() -> Path:
    from dandiget.testing.peer import find_dandi_cli

    return find_dandi_cli()


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """path -> (bytes, mtime_ns) for every file, without either tool's bookkeeping."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and ".dandiget" not in rel.split("/")[0:2]:
            out[rel] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def test_identical_trees(dandi_cli: Path, tmp_path: Path) -> None:
    spec = ArchiveSpec(dandisets=[DandisetSpec(identifier="000001", name="Same tree", assets=[
        BlobSpec("README.txt", b"peer test\n"),
        BlobSpec("sub-01/sub-01_ses-01.nwb", size=1_500_000, seed=1),
        BlobSpec("sub-01/deeper/notes with space & amp.txt", b"odd path\n"),
        BlobSpec("sub-02/sub-02_big.nwb", size=64 * MiB + 4321, seed=2),
        ZarrSpec("sub-01/sample.zarr", {".zgroup": b"{}", "a/.zarray": b"{}", "a/0.0": b"xy",
                                        "a/1/0": b"z" * 100, "empty": b""}),
    ])])
    with TestArchive(spec) as archive:
        url = f"{archive.api_url}/dandisets/000001/"
        theirs, ours = tmp_path / "dandi", tmp_path / "dandiget"
        theirs.mkdir()
        ours.mkdir()
        env = {**os.environ, "DANDI_NO_ET": "1", "DANDI_CACHE": "ignore",
               "HOME": str(tmp_path / "home")}
        r = subprocess.run([str(dandi_cli), "download", url, "-o", str(theirs)], env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        r = subprocess.run([sys.executable, "-m", "dandiget.cli", "download", url, "-o",
                            str(ours), "-f", "plain"], capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    a, b = snapshot(theirs), snapshot(ours)
    assert sorted(a) == sorted(b)
    for path in a:
        assert a[path][0] == b[path][0], f"bytes differ: {path}"
        # dandi-cli sets mtimes through a float (±1 µs); dandiget sets the exact microsecond
        assert abs(a[path][1] - b[path][1]) <= 1000, f"mtime differs: {path}"
    assert "000001/dandiset.yaml" in a


def test_dandi_upload_ignores_dandiget_state_and_temporaries(dandi_cli: Path,
                                                            tmp_path: Path) -> None:
    """dandi-cli's upload file discovery never picks up dandiget's bookkeeping."""
    root = tmp_path / "000001"
    (root / "sub").mkdir(parents=True)
    (root / "dandiset.yaml").write_text("identifier: DANDI:000001\n")
    (root / "sub" / "a.nwb").write_bytes(b"x")
    (root / ".dandiget").mkdir()
    (root / ".dandiget" / "state.sqlite").write_bytes(b"y")
    (root / "sub" / ".a.nwb.0123456789ab.dandiget-part").write_bytes(b"z")
    code = ("import sys; from dandi.files import find_dandi_files as f; "
            "print('\\n'.join(str(x.filepath) for x in f(sys.argv[1], dandiset_path=sys.argv[1],"
            " allow_all=True)))")
    r = subprocess.run([str(dandi_cli.parent / "python"), "-c", code, str(root)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    found = {Path(p).relative_to(root).as_posix() for p in r.stdout.split()}
    assert found == {"dandiset.yaml", "sub/a.nwb"}
