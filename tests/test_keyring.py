"""The keyring is the optional ``dandiget[keyring]`` extra: used when present, and one clear
line naming the extra when a key is needed but the package is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, UserSpec

TOKEN = "c" * 40


@pytest.fixture
def embargoed(archive_factory):
    return archive_factory(ArchiveSpec(
        dandisets=[DandisetSpec(identifier="000005", embargoed=True, owners=["alice"],
                                assets=[BlobSpec(path="secret.nwb", content=b"s" * 100)])],
        users=[UserSpec(name="alice", token=TOKEN)]))


def run(archive, out: Path, keyring_source: str, tmp_path: Path):
    """The CLI with a stand-in ``keyring`` module first on the path (the real package's
    API: ``get_password(service, username)``), and no API key in the environment."""
    lib = tmp_path / "lib"
    lib.mkdir(exist_ok=True)
    (lib / "keyring.py").write_text(keyring_source)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(PYTHONPATH=str(lib), DANDIGET_EXTRA_INSTANCES=(
        f'{{"{archive.instance.name}": {{"api": "{archive.api_url}"}}}}'))
    out.mkdir()
    return subprocess.run([sys.executable, "-m", "dandiget.cli", "download",
                           f"dandi://{archive.instance.name}/000005", "-o", str(out), "-f",
                           "plain"], capture_output=True, text=True, timeout=120, env=env)


def test_key_from_the_keyring(embargoed, tmp_path) -> None:
    service = f"dandi-api-{embargoed.instance.name.lower()}"
    r = run(embargoed, tmp_path / "out", f"def get_password(service, username):\n"
            f"    return {TOKEN!r} if (service, username) == ({service!r}, 'key') else None\n",
            tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "000005" / "secret.nwb").read_bytes() == b"s" * 100


def test_missing_keyring_package_is_one_clear_line(embargoed, tmp_path) -> None:
    r = run(embargoed, tmp_path / "out", "raise ImportError('No module named keyring')\n",
            tmp_path)
    assert r.returncode != 0
    hint = [line for line in r.stderr.splitlines() if "dandiget[keyring]" in line]
    assert len(hint) == 1, r.stderr
    assert "DANDI_API_KEY" in hint[0]
