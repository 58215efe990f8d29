"""Find (or install) dandi-cli, the reference client, in a virtualenv of its own.

Used by the peer tests and the benchmark: ``DANDIGET_PEER_VENV`` if set, else
``.peer-venv`` at the repository root, created with ``pip install dandi`` when missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def peer_venv() -> Path:
    env = os.environ.get("DANDIGET_PEER_VENV")
    return Path(env) if env else REPO / ".peer-venv"


def find_dandi_cli(*, install: bool = True) -> Path:
    """Path of the ``dandi`` executable; skips the calling test when it cannot be had."""
    import pytest

    venv = peer_venv()
    exe = venv / "bin" / "dandi"
    if exe.exists():
        return exe
    if not install:
        pytest.skip(f"no dandi-cli in {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "dandi"],
                       capture_output=True, text=True, timeout=1200)
    if r.returncode != 0 or not exe.exists():
        pytest.skip(f"could not install dandi-cli: {r.stderr[-500:]}")
    return exe
