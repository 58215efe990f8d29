"""``dandiget download --dask``: through the environment, with ``local:N``, and the one-line
hint when Dask is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, env: dict[str, str] | None = None, lib: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    if lib is not None:
        full["PYTHONPATH"] = str(lib)
    return subprocess.run([sys.executable, "-m", "dandiget.cli", "download", *args],
                          capture_output=True, text=True, timeout=180, env=full)


def test_without_dask_the_option_says_how_to_get_it(text_archive, tmp_path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "distributed.py").write_text("raise ImportError('No module named distributed')\n")
    out = tmp_path / "out"
    out.mkdir()
    r = cli(f"{text_archive.api_url}/dandisets/000001/", "-o", str(out), "--dask",
            "tcp://127.0.0.1:1", lib=lib)
    assert r.returncode == 1
    assert "pip install 'dandiget[dask]'" in r.stderr
    assert len([x for x in r.stderr.splitlines() if "dandiget[dask]" in x]) == 1
    assert not any(out.iterdir())  # nothing written


@pytest.mark.slow
def test_dask_local_cluster_from_the_environment(text_archive, tmp_path) -> None:
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    out.mkdir()
    r = cli(f"{text_archive.api_url}/dandisets/000002/", "-o", str(out), "-f", "json",
            env={"DANDIGET_DASK": "local:2"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"event": "summary", "ok": true' in r.stdout
    zarr = out / "000002" / "sample.zarr"
    assert sorted(p.relative_to(zarr).as_posix() for p in zarr.rglob("*") if p.is_file()) == [
        ".zgroup", "arr_0/.zarray", "arr_0/0", "arr_1/.zarray", "arr_1/0"]
    assert "distributed" not in r.stderr  # the cluster's INFO chatter stays quiet
