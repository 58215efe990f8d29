"""``-f pyout`` on a terminal: a live table in the spirit of dandi-cli's, drawn with rich.

dandi-cli's pyout table kept a row per file and recomputed its summary over all rows on
every update, so the display used more CPU than the download on big Dandisets (dandi-cli
#1549, #1581). Here events update a few counters and at most a handful of row dicts (O(1));
rich redraws a bounded view (active rows, the latest finished ones, a summary row) four
times a second from its own thread.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..compat.humanize import naturalsize
from ..events import (
    Deleted,
    Done,
    Downloading,
    Event,
    Failed,
    Message,
    Planned,
    Progress,
    Skipped,
    Started,
    Totals,
    Verified,
    ZarrUpdate,
)
from ..report import DownloadReport

COLUMNS = ("PATH", "SIZE", "DONE", "DONE%", "CHECKSUM", "STATUS", "MESSAGE")
MAX_ACTIVE = 15
MAX_RECENT = 6
STATUS_STYLE = {"done": "green", "skipped": "yellow", "error": "red", "downloading": "cyan"}


def _eta(seconds: float) -> str:
    if seconds < 1:
        return "a second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    if seconds < 3600:
        return f"{int(seconds // 60)} minutes"
    return f"{seconds / 3600:.1f} hours"


class TableRenderer:
    def __init__(self, out: IO[str], console: Console | None = None):
        self.console = console or Console(file=out)
        self.lock = threading.Lock()
        self.active: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.recent: deque[tuple[str, dict[str, Any]]] = deque(maxlen=MAX_RECENT)
        self.statuses: Counter[str] = Counter()
        self.files_total = 0
        self.bytes_total = 0
        self.listing_done = False
        self.bytes_finished = 0
        self.t0 = time.monotonic()
        self.live: Live | None = None
        self.planned: list[str] = []

    # ------------------------------------------------------------------ events

    def start(self) -> None:
        self.live = Live(get_renderable=self.render, console=self.console,
                         refresh_per_second=4, transient=False)
        self.live.start()

    def _row(self, path: str) -> dict[str, Any]:
        row = self.active.get(path)
        if row is None:
            row = self.active[path] = {"size": None, "done": 0}
        return row

    def _finish_row(self, path: str, row: dict[str, Any], status: str) -> None:
        row["status"] = status
        self.active.pop(path, None)
        self.recent.append((path, row))
        self.statuses[status] += 1

    def __call__(self, event: Event) -> None:
        with self.lock:
            p = event.path
            if isinstance(event, Totals):
                self.files_total, self.bytes_total = event.files, event.bytes
                self.listing_done = event.listing_done
            elif isinstance(event, Started):
                self._row(p)["size"] = event.size
            elif isinstance(event, Downloading):
                self._row(p)["status"] = "downloading"
            elif isinstance(event, Progress):
                self._row(p)["done"] = event.done
            elif isinstance(event, ZarrUpdate):
                row = self._row(p)
                row.update({k: v for k, v in event.fields.items() if k != "done%"})
            elif isinstance(event, Verified):
                self._row(p)["checksum"] = event.checksum
            elif isinstance(event, Message):
                row = self._row(p)
                if event.status:
                    row["status"] = event.status
                if event.message:
                    row["message"] = event.message
            elif isinstance(event, Done):
                row = self._row(p)
                row["done"] = event.size
                if event.message:
                    row["message"] = event.message
                self.bytes_finished += event.size
                self._finish_row(p, row, "done")
            elif isinstance(event, Skipped):
                row = self._row(p)
                row["message"] = event.reason
                if event.size:
                    row["size"] = event.size
                    self.bytes_finished += event.size
                self._finish_row(p, row, "skipped")
            elif isinstance(event, Failed):
                row = self._row(p)
                row["message"] = event.message
                if event.checksum_differs:
                    row["checksum"] = "differs"
                self._finish_row(p, row, "error")
            elif isinstance(event, Deleted):
                self._finish_row(p, {"message": "deleted"}, "deleted")
            elif isinstance(event, Planned):
                size = "" if event.size is None else naturalsize(event.size)
                self.planned.append(f"{event.action:8} {p} {size}")

    # ------------------------------------------------------------------ drawing

    def render(self) -> Group:
        with self.lock:
            active = list(self.active.items())[-MAX_ACTIVE:]
            hidden = len(self.active) - len(active)
            recent = list(self.recent)
            statuses = dict(self.statuses)
            inflight = sum(r.get("done") or 0 for r in self.active.values())
            files_total, bytes_total = self.files_total, self.bytes_total
            listing_done = self.listing_done
            finished = self.bytes_finished
        table = Table(*COLUMNS, expand=False, show_edge=False, pad_edge=False)
        for path, row in recent + active:
            size, done = row.get("size"), row.get("done") or 0
            status = row.get("status", "")
            pct = f"{100 * done / size:.0f}" if size and status != "skipped" else ""
            table.add_row(
                Text(path, style="bold", overflow="ellipsis", no_wrap=True),
                naturalsize(size) if size is not None else "",
                naturalsize(done) if done else "",
                pct,
                Text(str(row.get("checksum", "")),
                     style="green" if row.get("checksum") == "ok" else "yellow"),
                Text(status, style=STATUS_STYLE.get(status, "")),
                Text(str(row.get("message", "")), style="red" if status == "error" else ""),
            )
        if hidden:
            table.add_row(Text(f"... {hidden} more active", style="dim"), *[""] * 6)
        done_bytes = finished + inflight
        elapsed = time.monotonic() - self.t0
        rate = done_bytes / elapsed if elapsed > 0 else 0.0
        total_txt = naturalsize(bytes_total) + ("" if listing_done else "+")
        eta = ""
        if rate > 0 and bytes_total > done_bytes and listing_done:
            eta = f" ETA: {_eta((bytes_total - done_bytes) / rate)}"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        n_done = sum(statuses.values())
        summary = Text.assemble(
            ("Summary: ", "bold"),
            f"{n_done}/{files_total}{'' if listing_done else '+'} files, "
            f"{naturalsize(done_bytes)} of {total_txt}, {naturalsize(rate)}/s{eta}",
            (f"  [{counts}]" if counts else ""),
        )
        return Group(table, summary)

    def finish(self, report: DownloadReport | None, error: BaseException | None) -> None:
        if self.live is not None:
            self.live.stop()
        for line in self.planned:
            self.console.print(line, highlight=False)
        if report is not None:
            self.console.print(report.summary(), highlight=False)
