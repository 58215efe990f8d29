"""The user-facing choices of a download, with dandi-cli's names and string values."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .config import TransferConfig


class _StrEnum(str, Enum):
    def __str__(self) -> str:
        return str(self.value)


class DownloadExisting(_StrEnum):
    """What to do with a local path that already exists."""

    ERROR = "error"
    SKIP = "skip"
    OVERWRITE = "overwrite"
    OVERWRITE_DIFFERENT = "overwrite-different"
    REFRESH = "refresh"


class DownloadFormat(_StrEnum):
    """How progress is shown. ``pyout`` and ``debug`` are dandi-cli's; the rest are dandiget's."""

    PYOUT = "pyout"
    DEBUG = "debug"
    JSON = "json"
    PLAIN = "plain"


class PathType(_StrEnum):
    """Whether paths in ``dandi://`` and GUI ``?location=`` URLs are exact or glob patterns."""

    EXACT = "exact"
    GLOB = "glob"


class SyncMode(_StrEnum):
    """Whether ``--sync`` asks before deleting local files that are gone from the server."""

    ASK = "ask"
    DO = "do"


@dataclass
class DownloadOptions:
    """What to download and how; the CLI and ``download()`` both build one."""

    existing: DownloadExisting = DownloadExisting.ERROR
    #: Assets at once (``-J N``); None: adaptive, starting at 6 (concurrency.py).
    jobs: int | None = None
    jobs_per_zarr: int | None = None
    get_metadata: bool = True
    get_assets: bool = True
    preserve_tree: bool = False
    sync: SyncMode | None = None
    path_type: PathType = PathType.EXACT
    dry_run: bool = False
    #: Raise the first per-file exception instead of recording it (dandi-cli's debug mode).
    fail_fast: bool = False
    #: ``--zarr TYPE:PATTERN`` filters (see zarr.py); empty means whole Zarrs.
    zarr_filters: tuple[Any, ...] = ()
    config: TransferConfig = field(default_factory=TransferConfig)
    #: How ``--sync ask`` asks; returns the user's answer. None reads stdin.
    prompt: Any = None
    #: Skip the free-space check before the first byte (space.py).
    ignore_free_space: bool = False
    #: Run the units on a Dask cluster: a ``distributed.Client``, a scheduler address
    #: (``tcp://head:8786``) or ``local:N`` (a LocalCluster of N processes). None: locally.
    dask: Any = None
