"""``-f pyout`` on a terminal: a live table in the spirit of dandi-cli's, drawn with rich.

dandi-cli's pyout table kept a row per file and recomputed its summary over all rows on
every update, so the display used more CPU than the download on big Dandisets (dandi-cli
#1549, #1581). Here events update a few counters and at most a handful of row dicts (O(1));
rich redraws a bounded view (active rows, the latest finished ones, a summary row) four
times a second from its own thread.

While the display is live, log lines are printed above it (through rich's console) instead
of being written to the terminal behind its back, which left stale rows on screen. Once it
stops, every failed file is listed with its reason (errors scroll out of the view).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from typing import IO, Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.live import Live
from rich.measure import Measurement
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
from .text import final_lines, one_line, shorten_middle

COLUMNS = ("PATH", "SIZE", "DONE", "DONE%", "CHECKSUM", "STATUS", "MESSAGE")
#: Fixed widths: sizes as naturalsize writes them ("999 Bytes", "300.0 kB"), "setting mtime".
WIDTHS = {"SIZE": 9, "DONE": 9, "DONE%": 5, "CHECKSUM": 8, "STATUS": 13}
#: Below this many terminal columns, DONE and CHECKSUM give their room to the path (DONE%
#: shows progress; a checksum that differs is an error with its message).
WIDE = 100
GAP = 2  # between columns: one space of padding and the box's blank divider
MIN_MESSAGE = 18  # "already downloaded"
MAX_ACTIVE = 15
MAX_RECENT = 6
STATUS_STYLE = {"done": "green", "skipped": "yellow", "error": "red", "downloading": "cyan",
                "verifying": "cyan"}
#: The path column never gets narrower than this (unless the path is shorter).
MIN_PATH = 24


class MiddlePath:
    """A path cell that shortens itself in the middle to the width rich gives the column."""

    def __init__(self, path: str, style: str = "bold"):
        self.path = path
        self.style = style

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        yield Text(shorten_middle(self.path, options.max_width), style=self.style,
                   no_wrap=True, overflow="crop")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        n = len(self.path)
        return Measurement(min(n, MIN_PATH), n).clamp(max_width=options.max_width)


class ConsoleLines:
    """A text stream for logging handlers: each line is printed through rich's console, so
    it appears above the live display instead of tearing it."""

    def __init__(self, console: Console):
        self.console = console
        self.buffer = ""
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.buffer += text
            *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.console.print(Text(line), highlight=False, markup=False, emoji=False,
                               soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def _terminal_log_handlers() -> list[logging.StreamHandler[Any]]:
    """Logging handlers that write to a terminal (the ones the live display would tear)."""
    found = []
    for logger in (logging.getLogger(), logging.getLogger("dandiget")):
        for h in logger.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                isatty = getattr(h.stream, "isatty", None)
                try:
                    if isatty is not None and isatty():
                        found.append(h)
                except ValueError:  # a closed stream
                    pass
    return found


def _eta(seconds: float) -> str:
    if seconds < 2:
        return "a second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    if seconds < 120:
        return "a minute"
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
        #: Bytes of files downloaded (not skipped): what the throughput is computed from.
        self.bytes_fetched = 0
        #: Sizes of failed files: no longer to come, so not part of the ETA.
        self.bytes_failed = 0
        self.t0 = time.monotonic()
        self.live: Live | None = None
        self._routed: list[tuple[logging.StreamHandler[Any], Any]] = []

    # ------------------------------------------------------------------ events

    def start(self) -> None:
        self.live = Live(get_renderable=self.render, console=self.console,
                         refresh_per_second=4, transient=False)
        self.live.start()
        lines = ConsoleLines(self.console)
        for h in _terminal_log_handlers():
            self._routed.append((h, h.setStream(lines)))

    def suspend(self) -> None:
        """Stop the live display for good (before a question on the terminal, or at the
        end) and give logging its terminal back."""
        if self.live is not None:
            if not (self.recent or self.active or self.statuses):
                self.live.transient = True  # nothing happened: erase the empty table
            self.live.stop()
            self.live = None
        for h, stream in reversed(self._routed):
            h.setStream(stream)
        self._routed.clear()

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
                if event.kind != "dandiset.yaml":  # written, not transferred
                    self.bytes_fetched += event.size
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
                row["message"] = one_line(event.message, p)
                self.bytes_failed += max(0, (row.get("size") or 0) - (row.get("done") or 0))
                if event.checksum_differs:
                    row["checksum"] = "differs"
                self._finish_row(p, row, "error")
            elif isinstance(event, Deleted):
                self._finish_row(p, {"message": "deleted"}, "deleted")
            elif isinstance(event, Planned):  # dry runs use PlanRenderer; count, don't draw
                self.statuses[event.action] += 1

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
            fetched = self.bytes_fetched
            to_come = bytes_total - finished - self.bytes_failed - inflight
            busy = bool(self.active)
        rows = recent + active
        table = self._table(max((len(p) for p, _ in rows), default=4))
        for path, row in rows:
            size, done = row.get("size"), row.get("done") or 0
            status = row.get("status", "")
            if status == "downloading" and size and done >= size:
                status = "verifying"  # every byte is in: the digest and rename remain
            cells: dict[str, RenderableType] = {
                "PATH": MiddlePath(path),
                "SIZE": naturalsize(size) if size is not None else "",
                "DONE": naturalsize(done) if done else "",
                "DONE%": f"{100 * done / size:.0f}" if size and status != "skipped" else "",
                "CHECKSUM": Text(str(row.get("checksum", "")),
                                 style="green" if row.get("checksum") == "ok" else "yellow"),
                "STATUS": Text(status, style=STATUS_STYLE.get(status, "")),
                "MESSAGE": Text(str(row.get("message", "")),
                                style="red" if status == "error" else ""),
            }
            table.add_row(*(cells[str(c.header)] for c in table.columns))
        if hidden:
            table.add_row(Text(f"... {hidden} more active", style="dim"),
                          *[""] * (len(table.columns) - 1))
        done_bytes = finished + inflight
        elapsed = time.monotonic() - self.t0
        moving = fetched + inflight  # skipped files are not throughput
        rate = moving / elapsed if elapsed > 0 else 0.0
        total_txt = naturalsize(bytes_total) + ("" if listing_done else "+")
        speed = ""
        if moving:
            speed = f", {naturalsize(rate)}/s"
            if rate > 0 and to_come > 0 and listing_done and busy:
                speed += f" ETA: {_eta(to_come / rate)}"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        n_done = sum(statuses.values())
        noun = "file" if files_total == 1 and listing_done else "files"
        summary = Text.assemble(
            ("Summary: ", "bold"),
            f"{n_done}/{files_total}{'' if listing_done else '+'} {noun}, "
            f"{naturalsize(done_bytes)} of {total_txt}{speed}",
            (f"  [{counts}]" if counts else ""),
        )
        return Group(table, summary)

    def _table(self, longest_path: int) -> Table:
        """The columns for this terminal width: fixed ones first, then the path as wide as
        it needs (at least ``MIN_PATH``), and the message gets the rest."""
        width = self.console.width
        names = list(COLUMNS) if width >= WIDE else [
            c for c in COLUMNS if c not in ("DONE", "CHECKSUM")]
        fixed = sum(WIDTHS.get(c, 0) for c in names) + GAP * (len(names) - 1)
        room = max(width - fixed, MIN_PATH + MIN_MESSAGE)
        path_w = min(longest_path, max(MIN_PATH, room - MIN_MESSAGE))
        table = Table(expand=False, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      padding=(0, 1, 0, 0), header_style="bold")
        for name in names:
            w = {"PATH": path_w, "MESSAGE": max(room - path_w, MIN_MESSAGE)}.get(name)
            table.add_column(name, width=w or WIDTHS[name], no_wrap=True, overflow="ellipsis",
                             justify="right" if name == "DONE%" else "left")
        return table

    def finish(self, report: DownloadReport | None, error: BaseException | None) -> None:
        self.suspend()
        for line in final_lines(report, error):
            self.console.print(Text(line), highlight=False)
