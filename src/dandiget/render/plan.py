"""``--dry-run`` for people: the plan, one line per file as it is decided, then totals.

A progress table would show rows at 0 % that never move; a plan says what a real run would
download, skip, delete or refuse, and why.
"""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.text import Text

from ..compat.humanize import naturalsize
from ..events import Event, Failed, Planned, Skipped
from ..report import DownloadReport
from .text import final_lines, one_line

STYLE = {"download": "green", "skip": "dim", "delete": "red", "error": "bold red"}
#: Reasons not worth a word: a new file is what "download" means.
QUIET_REASONS = {"new", "metadata"}


def plan_line(action: str, path: str, size: int | None, reason: str) -> str:
    """``download 000001/a.txt (12 Bytes)``: the action padded to 8, the path, details."""
    details = [] if size is None else [naturalsize(size)]
    if reason and reason not in QUIET_REASONS:
        details.append(reason)
    return f"{action:8} {path}" + (f" ({', '.join(details)})" if details else "")


def plan_totals(report: DownloadReport) -> str:
    """``Plan: download 7 files (74.9 MB, 27 Zarr entries), skip 1, delete 0, 0 errors``."""
    n = report.count("would-download")
    what = f"download {n} file{'' if n == 1 else 's'} ({naturalsize(report.bytes_downloaded)}"
    entries = report.zarr_entries_downloaded
    if entries:
        what += f", {entries} Zarr entr{'y' if entries == 1 else 'ies'}"
    errors = len(report.errors)
    return (f"Plan: {what}), skip {report.count('would-skip')}, "
            f"delete {report.count('would-delete')}, {errors} error{'' if errors == 1 else 's'}")


class PlanRenderer:
    def __init__(self, out: IO[str]):
        self.console = Console(file=out, highlight=False)
        # a terminal wraps long lines at word boundaries; a pipe gets them whole
        self.soft_wrap = not self.console.is_terminal

    def start(self) -> None:
        pass

    def _print(self, action: str, path: str, size: int | None, reason: str) -> None:
        self.console.print(Text(plan_line(action, path, size, reason),
                                style=STYLE.get(action, "")), soft_wrap=self.soft_wrap)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Planned):
            self._print(event.action, event.path, event.size, event.reason)
        elif isinstance(event, Skipped):  # dandiset.yaml decides without a Planned event
            self._print("skip", event.path, None, event.reason)
        elif isinstance(event, Failed):
            self._print("error", event.path, None, one_line(event.message, event.path))

    def finish(self, report: DownloadReport | None, error: BaseException | None) -> None:
        summary = plan_totals(report) if report is not None else None
        lines = final_lines(report, error, summary=summary)
        if lines and lines[-1] == summary:
            lines.append("Nothing was written (--dry-run).")
        for line in lines:
            self.console.print(Text(line), soft_wrap=self.soft_wrap)
