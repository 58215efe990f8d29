"""``-f debug``: every record on its own line as a Python dict repr, as dandi-cli prints them.

Unlike dandi-cli, downloads stay parallel: records of different files interleave.
"""

from __future__ import annotations

from typing import IO

from ..events import Event, Planned, Totals
from ..report import DownloadReport
from .text import final_lines


class DebugRenderer:
    def __init__(self, out: IO[str]):
        self.out = out

    def start(self) -> None:
        pass

    def __call__(self, event: Event) -> None:
        if isinstance(event, Totals):
            return
        if isinstance(event, Planned):
            rec = {"path": event.path, "plan": event.action, "size": event.size,
                   "message": event.reason}
        else:
            body = event.record()
            if not body:
                return
            if event.path.endswith("dandiset.yaml"):
                rec = {"path": event.path, **body}
            else:
                rec = {**body, "path": event.path}
        self.out.write(repr(rec) + "\n")
        self.out.flush()

    def finish(self, report: DownloadReport | None, error: BaseException | None) -> None:
        for line in final_lines(report, error):
            self.out.write(line + "\n")
        self.out.flush()
