"""The tools being compared, and how each is invoked on each scenario.

* ``dandiget``: ``dandiget download URL -o DIR -f json`` with its defaults.
* ``dandi-cli -J6``: ``dandi download -o DIR URL`` (its default, ``-J 6``), in its own venv;
  ``dandi ls -r -f json_lines`` for the plan (dandi-cli has no dry run). Not run on the
  50,000-entry Zarr (three runs would take ~20 min): it is compared on the smaller Zarr.
* ``dandi-cli -J16:16``: the same with a generous ``-J 16:16`` (downloads of many files and
  of the smaller Zarr only: for one file dandi-cli uses one connection whatever ``-J``
  says, and a no-op re-run is bound by hashing, not by connections).
* ``curl``: ``curl --parallel --parallel-max 64`` over the list of content URLs (the
  content host directly: no API, no verification); the machine's limit for many files
  (not run on the single file: one URL is one connection, aria2c is that limit).
* ``aria2c``: ``aria2c -x16 -s16`` for the single large file: the limit for one file.

dandi-cli runs with ``DANDI_NO_ET=1`` (no telemetry) and its digest cache on, as a user
has it. Every tool gets its own ``HOME``: an empty one for a download (cold, nothing of a
previous run helps or hurts), and for a re-run the ``HOME`` that made the tree, kept
between runs (see ``run.py``), so dandi-cli's cache counts as dandiget's state does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from servers import BENCH_DIR

REPO = BENCH_DIR.parent


@dataclass
class Ctx:
    """Everything a tool needs for one run."""

    api_url: str
    content_url: str
    did: str
    dataset: str
    files: dict[str, list]  # expected.json's "files" of this dandiset
    out: Path  # the -o directory (empty for a download, a complete copy for a no-op)
    home: Path
    mode: str  # "download", "refresh", "overwrite-different", "plan", "first-file"

    @property
    def dandiset_url(self) -> str:
        return f"{self.api_url}/dandisets/{self.did}/"

    @property
    def root(self) -> Path:
        """Where the dandiset's files end up: ``<out>/<identifier>/`` as dandi-cli does."""
        return self.out / self.did


@dataclass
class Tool:
    name: str
    kind: str  # "dandiget", "dandi-cli", "limit"
    modes: tuple[str, ...]
    datasets: tuple[str, ...] = ("big", "files", "zarr", "zarr-small", "plan")
    available: bool = True
    why_unavailable: str = ""
    meta: dict = field(default_factory=dict)

    def applies(self, dataset: str, mode: str) -> bool:
        return mode in self.modes and dataset in self.datasets

    def command(self, ctx: Ctx) -> list[str]:
        raise NotImplementedError

    def env(self, ctx: Ctx) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DANDI_API_KEY", "DANDI_SANDBOX", "DANDI_STAGING"))}
        env.update(HOME=str(ctx.home), XDG_CACHE_HOME=str(ctx.home / ".cache"),
                   XDG_CONFIG_HOME=str(ctx.home / ".config"), PYTHONDONTWRITEBYTECODE="1",
                   LC_ALL="C.UTF-8")
        env.pop("PYTHONPATH", None)
        return env


class Dandiget(Tool):
    def __init__(self, binary: str):
        super().__init__("dandiget", "dandiget",
                         ("download", "refresh", "overwrite-different", "plan", "first-file"))
        self.binary = binary
        self.meta = {"binary": binary}

    def command(self, ctx: Ctx) -> list[str]:
        cmd = [self.binary, "download", ctx.dandiset_url, "-o", str(ctx.out), "-f", "json"]
        if ctx.mode == "plan":
            cmd.append("--dry-run")
        elif ctx.mode in ("refresh", "overwrite-different"):
            cmd += ["-e", ctx.mode]
        return cmd


class DandiCli(Tool):
    def __init__(self, binary: str | None, jobs: str | None, why: str = ""):
        name = f"dandi-cli -J{jobs}" if jobs else "dandi-cli -J6"
        # -J changes nothing for one file (one connection) or for `dandi ls`: the generous
        # configuration runs only where it can matter.
        modes = ("download",) if jobs else ("download", "refresh", "overwrite-different", "plan",
                                             "first-file")
        super().__init__(name, "dandi-cli", modes, ("files", "zarr-small") if jobs else
                         ("big", "files", "zarr-small", "plan"))
        self.binary = binary or ""
        self.jobs = jobs
        self.available = binary is not None
        self.why_unavailable = why
        self.meta = {"binary": self.binary, "jobs": jobs or "6 (default)"}

    def command(self, ctx: Ctx) -> list[str]:
        if ctx.mode == "plan":
            # dandi-cli has no dry run: its closest operation is listing every asset.
            return [self.binary, "ls", "-r", "-f", "json_lines", ctx.dandiset_url]
        cmd = [self.binary, "download", "-o", str(ctx.out)]
        if self.jobs:
            cmd += ["-J", self.jobs]
        if ctx.mode in ("refresh", "overwrite-different"):
            cmd += ["-e", ctx.mode]
        return [*cmd, ctx.dandiset_url]

    def env(self, ctx: Ctx) -> dict[str, str]:
        env = super().env(ctx)
        env["DANDI_NO_ET"] = "1"  # no telemetry; the digest cache stays on (DANDI_CACHE unset)
        env.pop("DANDI_CACHE", None)
        return env


class Curl(Tool):
    def __init__(self, binary: str | None):
        super().__init__("curl --parallel 64", "limit", ("download",),
                         ("files", "zarr", "zarr-small"))
        self.binary = binary or ""
        self.available = binary is not None
        self.why_unavailable = "curl is not installed"

    def command(self, ctx: Ctx) -> list[str]:
        cfg = ctx.home / "urls.curlrc"
        with open(cfg, "w") as f:
            for rel, (_size, _kind, _digest, key) in ctx.files.items():
                f.write(f'url = "{ctx.content_url}/{key}"\n')
                f.write(f'output = "{ctx.root / rel}"\n')
        return [self.binary, "--parallel", "--parallel-max", "64", "--create-dirs", "--fail",
                "--silent", "--show-error", "--config", str(cfg)]


class Aria2c(Tool):
    def __init__(self, binary: str | None):
        super().__init__("aria2c -x16 -s16", "limit", ("download",), ("big",))
        self.binary = binary or ""
        self.available = binary is not None
        self.why_unavailable = "aria2c is not installed"

    def command(self, ctx: Ctx) -> list[str]:
        ((rel, (_s, _k, _d, key)),) = ctx.files.items()
        target = ctx.root / rel
        return [self.binary, "-x16", "-s16", "--file-allocation=none", "--allow-overwrite=true",
                "--auto-file-renaming=false", "--console-log-level=warn",
                "--summary-interval=0", "--download-result=hide", "-d", str(target.parent),
                "-o", target.name, f"{ctx.content_url}/{key}"]


# --------------------------------------------------------------------------- discovery


def dandiget_binary() -> str:
    here = Path(sys.executable).parent / "dandiget"
    if here.exists():
        return str(here)
    venv = REPO / ".venv" / "bin" / "dandiget"
    if venv.exists():
        return str(venv)
    found = shutil.which("dandiget")
    if found:
        return found
    raise SystemExit("dandiget is not installed (pip install -e . in the repository)")


def peer_venv() -> Path:
    return Path(os.environ.get("DANDIGET_PEER_VENV") or REPO / ".peer-venv")


def dandi_binary(create: bool, log=sys.stderr) -> tuple[str | None, str]:
    """dandi-cli's ``dandi`` from the peer venv, creating the venv if ``create``."""
    venv = peer_venv()
    dandi = venv / "bin" / "dandi"
    if dandi.exists():
        return str(dandi), ""
    if not create:
        return None, f"no dandi-cli in {venv} (set DANDIGET_PEER_VENV)"
    print(f"creating {venv} with dandi-cli (pip install dandi) ...", file=log, flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "dandi"], check=True,
                       timeout=1200)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"could not install dandi-cli into {venv}: {e}"
    return (str(dandi), "") if dandi.exists() else (None, "pip did not install dandi")


def dandi_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "DANDI_NO_ET": "1"})
        return out.stdout.strip() or out.stderr.strip().splitlines()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        line = (out.stdout or out.stderr).strip().splitlines()[0]
        return " ".join(line.split()[:3]) if line.startswith("curl") else line
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"
