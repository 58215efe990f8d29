"""Find dandi-cli, the reference client, in a virtualenv of its own.

Used by the peer tests and the benchmark: ``DANDIGET_PEER_VENV`` if set, else
``.peer-venv`` at the repository root. It is installed once, before the tests, by
:data:`INSTALL_COMMAND` (``.ci/run`` and the README's test command run it); a test never
installs it, so a missing peer is a clear failure rather than a slow network step mid-run.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

#: The documented way to install the peer, with everything else the tests need (run from
#: the repository root; it makes ``.peer-venv`` with ``pip install dandi``).
INSTALL_COMMAND = "bash .ci/setup"


def peer_venv() -> Path:
    env = os.environ.get("DANDIGET_PEER_VENV")
    return Path(env) if env else REPO / ".peer-venv"


def find_dandi_cli() -> Path:
    """Path of the ``dandi`` executable; fails the calling test, naming the install command,
    when the peer is not installed."""
    import pytest

    venv = peer_venv()
    exe = venv / "bin" / "dandi"
    if not exe.exists():
        where = ("" if "DANDIGET_PEER_VENV" not in os.environ
                 else f" (DANDIGET_PEER_VENV={os.environ['DANDIGET_PEER_VENV']})")
        pytest.fail(f"dandi-cli, the reference peer, is not installed at {exe}{where}. "
                    f"Install it once from the repository root: {INSTALL_COMMAND}",
                    pytrace=False)
    return exe
