"""The outcome of a run, returned by the Python API and summarised by every renderer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["downloaded", "skipped", "failed", "deleted", "would-download", "would-skip",
                 "would-delete", "would-fail"]


@dataclass
class FileOutcome:
    """One asset (a Zarr counts as one), ``dandiset.yaml``, or one deleted path."""

    path: str
    status: Status
    kind: str = "blob"
    size: int = 0
    message: str = ""


@dataclass
class DownloadReport:
    """What a run did. ``download()`` returns it; ``DownloadFailed.report`` carries it."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    dry_run: bool = False
    #: Bytes actually transferred over the network (resumed bytes excluded).
    bytes_transferred: int = 0
    #: Files written (blobs, Zarr entries, dandiset.yaml): Zarr entries count one by one
    #: here, while :meth:`summary` and the table count a Zarr as one file.
    files_downloaded: int = 0
    bytes_downloaded: int = 0
    files_skipped: int = 0
    bytes_skipped: int = 0
    files_deleted: int = 0

    @property
    def duration(self) -> float:
        return (self.finished or time.time()) - self.started

    @property
    def errors(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status in ("failed", "would-fail")]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, outcome: FileOutcome) -> None:
        self.outcomes.append(outcome)

    def count(self, *statuses: Status) -> int:
        """How many outcomes (files as the table shows them: a Zarr is one) have a status."""
        return sum(1 for o in self.outcomes if o.status in statuses)

    @property
    def zarr_entries_downloaded(self) -> int:
        """Zarr entries written (or that would be): ``files_downloaded`` counts them too."""
        whole = sum(1 for o in self.outcomes if o.kind != "zarr"
                    and o.status in ("downloaded", "would-download"))
        return max(0, self.files_downloaded - whole)

    def summary(self) -> str:
        """One human line, e.g. ``3 files downloaded (1.2 MB), 1 skipped, 0 errors in 0.4 s``.

        Files are counted as the live table counts them: one per asset (a Zarr is one file,
        its entries are given in brackets) plus ``dandiset.yaml``.
        """
        from .compat.humanize import naturalsize

        def n_files(n: int) -> str:
            return f"{n} file{'' if n == 1 else 's'}"

        if self.dry_run:
            parts = [f"would download {n_files(self.count('would-download'))} "
                     f"({naturalsize(self.bytes_downloaded)}"]
        else:
            parts = [f"{n_files(self.count('downloaded'))} downloaded "
                     f"({naturalsize(self.bytes_downloaded)}"]
        entries = self.zarr_entries_downloaded
        if entries:
            parts[0] += f", {entries} Zarr entr{'y' if entries == 1 else 'ies'}"
        parts[0] += ")"
        parts.append(f"{self.count('skipped', 'would-skip')} skipped")
        deleted = self.count("deleted", "would-delete")
        if deleted:
            parts.append(f"{deleted} {'would be ' if self.dry_run else ''}deleted")
        n = len(self.errors)
        parts.append(f"{n} error{'s' if n != 1 else ''}")
        line = ", ".join(parts) + f" in {self.duration:.1f} s"
        if self.bytes_transferred and self.duration > 0:  # no rate for a no-op run
            line += f" ({naturalsize(self.bytes_transferred / self.duration)}/s)"
        return line

    def __repr__(self) -> str:
        """Counts, not every outcome: a report of a million files stays one line."""
        return (f"DownloadReport(ok={self.ok}, "
                f"downloaded={self.count('downloaded', 'would-download')}, "
                f"skipped={self.count('skipped', 'would-skip')}, failed={len(self.errors)}, "
                f"deleted={self.count('deleted', 'would-delete')}, "
                f"bytes_downloaded={self.bytes_downloaded}"
                f"{', dry_run=True' if self.dry_run else ''}, "
                f"duration={self.duration:.1f}s)")

    def to_dict(self, *, outcomes: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "duration": round(self.duration, 3),
            "files_downloaded": self.files_downloaded,
            "bytes_downloaded": self.bytes_downloaded,
            "bytes_transferred": self.bytes_transferred,
            "files_skipped": self.files_skipped,
            "bytes_skipped": self.bytes_skipped,
            "files_deleted": self.files_deleted,
            "zarr_entries_downloaded": self.zarr_entries_downloaded,
            "errors": len(self.errors),
        }
        if outcomes:  # by hand: dataclasses.asdict deep-copies, 10x slower per outcome
            d["outcomes"] = [{"path": o.path, "status": o.status, "kind": o.kind,
                              "size": o.size, "message": o.message} for o in self.outcomes]
        return d
