"""Progress bookkeeping compatible with ``dandi.download``'s helper classes.

dandiget reports through its own event stream, but callers (and tests) written against
dandi-cli import ``ProgressCombiner``, ``PYOUTHelper`` and friends, so their observable
behaviour is reproduced here: the exact records a Zarr's combined stream emits (spec §6.4)
and the pyout summary strings (spec §7.3).  Every update is O(1).

``naturalsize``/``naturaldelta`` are small local equivalents of the ``humanize`` functions
dandi-cli renders with (decimal units, rounding as in humanize 4.x), so dandiget needs no
extra dependency while producing the same text.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any, TypeVar

__all__ = [
    "DLState",
    "DownloadProgress",
    "EnumerationState",
    "ItemsSummary",
    "PYOUTHelper",
    "ProgressCombiner",
    "naturaldelta",
    "naturalsize",
    "pairing",
]

lgr = logging.getLogger(__name__)

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# humanize-compatible formatting


_DECIMAL_SUFFIXES = ("kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB", "RB", "QB")


def naturalsize(value: float) -> str:
    """Render a byte count like ``humanize.naturalsize(value)`` (decimal units, one decimal).

    Byte counts below 1000 are printed as integers ("1 Byte", "42 Bytes"); larger values get
    the unit whose one-decimal rendering stays below 1000 ("999.9 kB", then "1.0 MB").
    """
    n = float(value)
    a = abs(n)
    if a == 1:
        return f"{int(n)} Byte"
    if a < 1000:
        return f"{int(n)} Bytes"
    last = len(_DECIMAL_SUFFIXES) - 1
    for i, suffix in enumerate(_DECIMAL_SUFFIXES):
        scaled = n / 1000 ** (i + 1)
        text = f"{scaled:.1f}"
        if abs(float(text)) < 1000 or i == last:
            return f"{text} {suffix}"
    raise AssertionError("unreachable")  # pragma: no cover


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else f"{n:,} {many}"


def naturaldelta(value: float | timedelta) -> str:
    """Render a duration like ``humanize.naturaldelta(value)`` (sign ignored, months on).

    Below a minute seconds are truncated; minutes and hours are rounded (half to even);
    from one day on whole days are grouped into months (30.5 days) and years (365 days).
    """
    secs = abs(value.total_seconds() if isinstance(value, timedelta) else float(value))
    try:
        delta = timedelta(seconds=secs)  # rounds to whole microseconds, as humanize does
        days, seconds = delta.days, delta.seconds
    except OverflowError:
        days, seconds = int(secs // 86400), int(secs % 86400)
    years, rem_days = divmod(days, 365)
    months = round(rem_days / 30.5)
    if days == 0:
        if seconds == 0:
            return "a moment"
        if seconds < 60:
            return _plural(seconds, "a second", "seconds")
        if seconds < 3600:
            minutes = round(seconds / 60)
            return "an hour" if minutes == 60 else _plural(minutes, "a minute", "minutes")
        hours = round(seconds / 3600)
        return "a day" if hours == 24 else _plural(hours, "an hour", "hours")
    if years == 0:
        if days == 1:
            return "a day"
        if months == 0:
            return f"{days} days"
        return "a year" if months == 12 else _plural(months, "a month", "months")
    if years == 1:
        if months == 0:
            if rem_days == 0:
                return "a year"
            return f"1 year, {_plural(rem_days, '1 day', 'days')}"
        if months == 12:
            return "2 years"
        return f"1 year, {_plural(months, '1 month', 'months')}"
    return f"{round(days / 365):,} years"


# ---------------------------------------------------------------------------------------------
# Zarr progress aggregation (spec §6.4)

DLState = Enum("DLState", "STARTING DOWNLOADING SKIPPED ERROR DONE")
"""Per-entry state counted by :class:`ProgressCombiner` (values 1..5)."""


@dataclass
class DownloadProgress:
    """Bytes received so far for one Zarr entry, and its size when announced."""

    downloaded: int = 0
    size: int | None = None


@dataclass
class ProgressCombiner:
    """Fold the record streams of a Zarr's entries into the records of the Zarr itself.

    Entries report ``{"size"}``, ``{"status": "downloading"}``, ``{"done", "done%"}``,
    ``{"checksum"}``, ``{"status": "setting mtime"}`` and a final ``done``/``error``/
    ``skipped`` status; the combiner turns them into one size announcement, running byte
    totals and an overall status with a ``"<n> done, <n> errored, <n> skipped"`` message.
    ``file_qty`` stays ``None`` until the listing of entries is complete, so the overall
    status cannot become final before every entry has been seen.
    """

    zarr_size: int
    file_qty: int | None = None
    downloading: dict[str, DownloadProgress] = field(default_factory=dict)
    total_downloaded: int = 0
    maxsize: int = 0
    prev_status: str = ""
    yielded_size: bool = False
    file_states: Counter[DLState] = field(default_factory=Counter)
    files_fed: int = 0
    #: Where each entry currently stands, so that a terminal record for an entry that never
    #: announced itself is counted instead of corrupting the counters (dandi-cli: KeyError).
    _entry_states: dict[str, DLState] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def get_done(self) -> dict[str, Any]:
        """Running byte total and percentage of the whole Zarr."""
        pct = self.total_downloaded / self.zarr_size * 100 if self.zarr_size else 0
        return {"done": self.total_downloaded, "done%": pct}

    def _overall_status(self) -> str:
        states = self.file_states
        in_flight = states[DLState.STARTING] + states[DLState.DOWNLOADING]
        if self.file_qty is not None and self.files_fed == self.file_qty and not in_flight:
            if states[DLState.ERROR]:
                return "error"
            if states[DLState.DONE]:
                return "done"
            return "skipped"
        if self.files_fed - states[DLState.STARTING] - states[DLState.SKIPPED] > 0:
            return "downloading"
        return ""

    def get_status(self, report_done: bool = True) -> dict[str, Any]:
        """Overall status (only when it changed) plus, if ``report_done``, message and totals."""
        out: dict[str, Any] = {}
        if report_done:
            parts = [
                f"{self.file_states[state]} {label}"
                for state, label in (
                    (DLState.DONE, "done"),
                    (DLState.ERROR, "errored"),
                    (DLState.SKIPPED, "skipped"),
                )
                if self.file_states[state]
            ]
            if parts:
                out["message"] = ", ".join(parts)
        status = self._overall_status()
        if status != self.prev_status:
            out["status"] = status
            self.prev_status = status
        if report_done and self.zarr_size:
            out.update(self.get_done())
        return out

    def _finish(self, path: str, state: DLState) -> DownloadProgress:
        """Move entry ``path`` from its current state to the terminal ``state``."""
        previous = self._entry_states.pop(path, None)
        if previous is None:
            self.files_fed += 1
        else:
            self.file_states[previous] -= 1
        self.file_states[state] += 1
        return self.downloading.pop(path, None) or DownloadProgress()

    def feed(self, path: str, status: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Account for one record of entry ``path`` and yield the resulting Zarr records."""
        keys = status.keys()
        states = self.file_states
        if "size" in status and not self.yielded_size:
            self.yielded_size = True
            yield {"size": self.zarr_size}
        if status.get("status") == "skipped":
            self.files_fed += 1
            states[DLState.SKIPPED] += 1
            if "size" in status:
                self.total_downloaded += status["size"]
                self.maxsize += status["size"]
            yield self.get_status()
        elif keys == {"size"}:
            self.files_fed += 1
            states[DLState.STARTING] += 1
            self._entry_states[path] = DLState.STARTING
            self.downloading[path] = DownloadProgress(size=status["size"])
            self.maxsize += status["size"]
            if states[DLState.DOWNLOADING]:
                yield self.get_done()
        elif status == {"status": "downloading"}:
            previous = self._entry_states.get(path)
            if previous is not None:
                states[previous] -= 1
            else:
                self.files_fed += 1
            states[DLState.DOWNLOADING] += 1
            self._entry_states[path] = DLState.DOWNLOADING
            self.downloading.setdefault(path, DownloadProgress())
            out = self.get_status(report_done=False)
            if out:
                yield out
        elif "done" in status:
            progress = self.downloading.setdefault(path, DownloadProgress())
            self.total_downloaded += status["done"] - progress.downloaded
            progress.downloaded = status["done"]
            yield self.get_done()
        elif status.get("status") == "error":
            progress = self._finish(path, DLState.ERROR)
            if "checksum" not in status:
                # The bytes of a failed transfer no longer count; a checksum failure keeps
                # them because the data did arrive.
                self.total_downloaded -= progress.downloaded
                self.maxsize -= progress.size or 0
            yield self.get_status()
        elif keys == {"checksum"} or status == {"status": "setting mtime"}:
            pass
        elif status == {"status": "done"}:
            self._finish(path, DLState.DONE)
            yield self.get_status()
        else:
            lgr.warning("Unexpected download status dict received for %r: %r", path, status)


# ---------------------------------------------------------------------------------------------
# pyout summary row (spec §7.3)


class ItemsSummary:
    """Running totals over the assets enumerated so far; used as an aggregation callback."""

    def __init__(self) -> None:
        self.files = 0
        self.t0: float | None = None
        self.size = 0
        self.has_unknown_sizes = False

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "size": self.size, "has_unknown_sizes": self.has_unknown_sizes}

    def __call__(self, rec: Any, prior: ItemsSummary | None = None) -> ItemsSummary:
        """Count one enumerated asset (a record dict with ``size`` or an object with ``.size``)."""
        assert prior in (None, self)
        if not self.files:
            self.t0 = time.time()
        self.files += 1
        size = rec.get("size") if isinstance(rec, dict) else getattr(rec, "size", None)
        if size is None:
            self.has_unknown_sizes = True
        else:
            self.size += size
        return self


class EnumerationState:
    """Whether asset enumeration has finished (what dandi-cli reads off its iterator)."""

    def __init__(self, finished: bool = False) -> None:
        self.finished = finished


class PYOUTHelper:
    """Summary-row callbacks for the ``size`` and ``done`` columns of the pyout table."""

    def __init__(self, it: EnumerationState | None = None) -> None:
        self.items_summary = ItemsSummary()
        self.it: Any = it if it is not None else EnumerationState()

    def agg_files(self, *ignored: Any) -> str:
        """Number of enumerated assets, with ``+`` while enumeration is still running."""
        return f"{self.items_summary.files}{'' if self.it.finished else '+'}"

    def agg_size(self, sizes: Iterable[int]) -> str | list[str]:
        """Bytes of the rows shown, then what remains of the enumerated total."""
        active = sum(sizes)
        total = self.items_summary.size
        if not active and not total:
            return ""
        lines = [naturalsize(active)]
        unknown = self.items_summary.has_unknown_sizes
        if not self.it.finished or active != total or unknown:
            extra = total - active
            if extra < 0:
                # Rows can outlive the enumeration totals (e.g. across URLs); show nothing.
                lgr.debug(
                    "Got negative remaining size %d (active %d, total %d)", extra, active, total
                )
            else:
                line = f"+{naturalsize(extra)}"
                if not self.it.finished:
                    line = ">" + line
                if unknown:
                    line += "+?"
                lines.append(line)
        return lines

    def agg_done(self, done_sizes: Iterable[int]) -> list[str]:
        """Bytes done, percentage of the enumerated total and an ETA."""
        done = sum(done_sizes)
        summary = self.items_summary
        finished = self.it.finished
        if finished and done == 0 and summary.size == 0:
            ratio = 1.0
        elif summary.size:
            ratio = done / summary.size
        else:
            ratio = 0.0
        prefix = ("" if finished else "<") + ("?" if summary.has_unknown_sizes else "")
        lines = [naturalsize(done), f"{prefix}{ratio * 100:.2f}%"]
        if done and summary.t0 is not None and ratio and summary.size:
            elapsed = time.time() - summary.t0
            remaining = elapsed / ratio - elapsed if ratio != 1 else 0
            if remaining:
                text = naturaldelta(remaining)
                if not finished:
                    text += "<"
                if summary.has_unknown_sizes:
                    text += "+?"
                lines.append(f"ETA: {text}")
        return lines


def pairing(p: str, gen: Iterable[T]) -> Iterator[tuple[str, T]]:
    """Tag each item of ``gen`` with ``p`` (used to merge per-asset streams)."""
    for item in gen:
        yield (p, item)
