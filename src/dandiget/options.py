"""The user-facing choices of a download, with dandi-cli's names and string values."""

from __future__ import annotations

from enum import Enum


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
