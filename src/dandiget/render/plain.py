"""Output for logs, cron and pipes: no escape codes, a progress line every few seconds,
errors as they happen, and at the end every failed file again plus the summary."""

from __future__ import annotations

import time
from typing import IO

from ..compat.humanize import naturalsize
from ..events import Done, Event, Failed, Planned, Progress, Skipped, Totals, ZarrUpdate
from ..report import DownloadReport
from .text import final_lines


class PlainRenderer:
    def __init__(self, out: IO[str], interval: float = 10.0):
        self.out = out
        self.interval = interval
        self.t0 = time.monotonic()
        self.last = self.t0
        self.files_total = 0
        self.bytes_total = 0
        self.files_done = 0
        self.inflight: dict[str, int] = {}
        self.bytes_done = 0
        self.bytes_fetched = 0

    def start(self) -> None:
        pass

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Totals):
            self.files_total, self.bytes_total = event.files, event.bytes
        elif isinstance(event, Progress):
            self.inflight[event.path] = event.done
        elif isinstance(event, ZarrUpdate):
            self.inflight[event.path] = int(event.fields.get("done", 0))
        elif isinstance(event, (Done, Skipped)):
            size = self.inflight.pop(event.path, None)
            self.files_done += 1
            self.bytes_done += event.size or size or 0
            if isinstance(event, Done) and event.kind != "dandiset.yaml":
                self.bytes_fetched += event.size
        elif isinstance(event, Failed):
            self.inflight.pop(event.path, None)
            self.files_done += 1
            self._line(f"ERROR {event.path}: {event.message}")
        elif isinstance(event, Planned):
            human = "" if event.size is None else f" ({naturalsize(event.size)})"
            self._line(f"{event.action:8} {event.path}{human}")
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line(self.progress_line(now))

    def progress_line(self, now: float) -> str:
        inflight = sum(self.inflight.values())
        done = self.bytes_done + inflight
        moving = self.bytes_fetched + inflight  # skipped files are not throughput
        line = (f"{self.files_done}/{self.files_total} file{'' if self.files_total == 1 else 's'}"
                f", {naturalsize(done)} of {naturalsize(self.bytes_total)}")
        if moving:
            line += f", {naturalsize(moving / max(now - self.t0, 1e-6))}/s"
        return line

    def finish(self, report: DownloadReport | None, error: BaseException | None) -> None:
        for line in final_lines(report, error):
            self._line(line)
