"""Work units and their results: plain, picklable values.

Planning (engine.py, zarr.py) turns remote entries into units; an executor (executors/)
runs them — in this process or on a Dask worker — and hands back results; the coordinator
(coordinator.py) merges the results into the state, the report and the events. A unit
carries everything its execution needs and nothing live: no session, no token, no
callbacks. A result carries what the coordinator needs to record the file without reading
it again (its digest, its part md5s, its stat signature).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .instances import Instance

UnitKind = Literal["blob", "zarr"]


@dataclass(frozen=True, slots=True)
class Fetch:
    """Where a file's bytes come from.

    ``url`` is read anonymously (a public content URL); ``redirect`` is the API URL that
    redirects to the bytes (embargoed data, or a direct URL that stopped working), asked
    through the API's own auth on ``instance``. For a Zarr entry, ``redirect`` is the
    Zarr's shared prefix URL and ``key`` the entry (the URL is built only when asked).
    """

    url: str | None
    redirect: str | None
    instance: Instance
    key: str | None = None

    def redirect_url(self) -> str | None:
        if self.key is None or self.redirect is None:
            return self.redirect
        from urllib.parse import quote

        return f"{self.redirect}{quote(self.key, safe='')}&download=true"

    def __repr__(self) -> str:  # presigned URLs never travel in units: the host is enough
        from .requests import display_url

        return f"Fetch({display_url(self.url) if self.url else None!r})"


@dataclass(frozen=True, slots=True)
class FileUnit:
    """A whole file: fetched into ``temp``, verified against ``digest``, renamed onto
    ``target`` with ``mtime_ns`` (commit.py). Small files and every Zarr entry."""

    rec: str
    target: Path
    temp: Path
    size: int
    digest: tuple[str, str]
    mtime_ns: int | None
    source: Fetch
    kind: UnitKind = "blob"
    #: fsync before the rename (large files: a power loss cannot leave a truncated file).
    sync: bool = False


@dataclass(frozen=True, slots=True)
class RangeUnit:
    """Consecutive dandi-etag parts ``[first, last]`` of a large file, written at their
    offsets into the shared temporary ``temp``; the coordinator combines every range's part
    md5s into the dandi-etag and commits the file once all are in."""

    rec: str
    temp: Path
    size: int
    first: int
    last: int
    source: Fetch


Unit = FileUnit | RangeUnit


@dataclass(frozen=True, slots=True)
class Batch:
    """Units shipped together (one Dask task), so scheduler overhead is amortised."""

    units: tuple[Unit, ...]


@dataclass(frozen=True, slots=True)
class Result:
    """What executing one unit produced.

    ``error`` is set (with ``error_type``) when the unit failed; the coordinator reports
    it for the unit's file. ``stat`` is the committed file's signature (size, mtime_ns,
    inode, ctime_ns), so the state can vouch for it later without a re-hash.
    """

    rec: str
    digest: str = ""
    part_md5s: tuple[tuple[int, str], ...] = ()
    stat: tuple[int, int, int, int] | None = None
    bytes: int = 0
    error: str = ""
    error_type: str = ""
    #: True when the error is one the run must stop for (e.g. the disk is full).
    fatal: bool = False

    @property
    def ok(self) -> bool:
        return not self.error_type
