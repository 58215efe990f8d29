"""Typed events the engine emits; renderers (table, debug, JSON lines) consume them.

The engine knows nothing about terminals. Every event can also be expressed as the flat
record dict dandi-cli's frontends use (``path``, ``size``, ``done``, ``done%``,
``checksum``, ``status``, ``message``), which is what ``-f debug`` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["blob", "zarr", "dandiset.yaml", "zarr-entry"]


@dataclass(frozen=True, slots=True)
class Event:
    """Base class. ``path`` is the record path, relative to the output folder."""

    path: str

    def record(self) -> dict[str, Any]:
        """dandi-cli's record for this event (without ``path``)."""
        return {}


@dataclass(frozen=True, slots=True)
class Planned(Event):
    """``--dry-run``: what would happen to this path."""

    action: str  # "download" | "skip" | "delete" | "error"
    size: int | None = None
    reason: str = ""
    kind: Kind = "blob"


@dataclass(frozen=True, slots=True)
class Started(Event):
    size: int | None = None
    kind: Kind = "blob"

    def record(self) -> dict[str, Any]:
        return {"size": self.size} if self.size is not None else {}


@dataclass(frozen=True, slots=True)
class Downloading(Event):
    def record(self) -> dict[str, Any]:
        return {"status": "downloading"}


@dataclass(frozen=True, slots=True)
class Progress(Event):
    done: int
    size: int | None = None

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"done": self.done}
        if self.size:
            rec["done%"] = 100.0 * self.done / self.size
        return rec


@dataclass(frozen=True, slots=True)
class Message(Event):
    """A free-form status/message update (dandiset.yaml "updating", Zarr cleanup)."""

    status: str | None = None
    message: str | None = None

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {}
        if self.status is not None:
            rec["status"] = self.status
        if self.message is not None:
            rec["message"] = self.message
        return rec


@dataclass(frozen=True, slots=True)
class Skipped(Event):
    reason: str = "already exists"
    size: int | None = None
    kind: Kind = "blob"

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"status": "skipped", "message": self.reason}
        if self.reason == "same time and size" and self.size is not None:
            rec["size"] = self.size
        return rec


@dataclass(frozen=True, slots=True)
class Verified(Event):
    checksum: str = "ok"  # "ok" or "-" when the server gave no digest

    def record(self) -> dict[str, Any]:
        return {"checksum": self.checksum}


@dataclass(frozen=True, slots=True)
class Done(Event):
    size: int = 0
    message: str | None = None
    kind: Kind = "blob"

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"status": "done"}
        if self.message:
            rec["message"] = self.message
        return rec


@dataclass(frozen=True, slots=True)
class Failed(Event):
    message: str = ""
    error_type: str = "Error"
    checksum_differs: bool = False
    kind: Kind = "blob"

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"status": "error", "message": self.message}
        if self.checksum_differs:
            rec = {"checksum": "differs", **rec}
        return rec


@dataclass(frozen=True, slots=True)
class Deleted(Event):
    """A local file removed by ``--sync`` (or an extra file inside a Zarr)."""

    def record(self) -> dict[str, Any]:
        return {"status": "deleted"}


@dataclass(frozen=True, slots=True)
class ZarrUpdate(Event):
    """Zarr-level aggregate, shaped like dandi-cli's ProgressCombiner output."""

    fields: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return dict(self.fields)


@dataclass(frozen=True, slots=True)
class Totals(Event):
    """Running totals of what has been listed so far (for the summary row and ETA)."""

    files: int = 0
    bytes: int = 0
    listing_done: bool = False


Listener = Callable[[Event], None]
