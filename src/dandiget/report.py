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
    #: Files written (blobs, Zarr entries, dandiset.yaml).
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

    def summary(self) -> str:
        """One human line, e.g. ``3 downloaded (1.2 MB), 1 skipped, 0 errors in 0.4 s``."""
        from .compat.humanize import naturalsize

        verb = "would download" if self.dry_run else "downloaded"
        parts = [f"{self.files_downloaded} files {verb} ({naturalsize(self.bytes_downloaded)})",
                 f"{self.files_skipped} skipped"]
        if self.files_deleted:
            parts.append(f"{self.files_deleted} deleted")
        n = len(self.errors)
        parts.append(f"{n} error{'s' if n != 1 else ''}")
        return ", ".join(parts) + f" in {self.duration:.1f} s"

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
            "errors": len(self.errors),
        }
        if outcomes:  # by hand: dataclasses.asdict deep-copies, 10x slower per outcome
            d["outcomes"] = [{"path": o.path, "status": o.status, "kind": o.kind,
                              "size": o.size, "message": o.message} for o in self.outcomes]
        return d
