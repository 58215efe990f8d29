"""``-f json``: one JSON object per line, for pipelines. Schema ``dandiget.event/1``.

Every line has ``"schema": "dandiget.event/1"``, ``"event"`` and ``"time"`` (Unix seconds).
Events and their extra keys:

=============  ==============================================================
``started``    ``path``, ``size``, ``kind`` (blob | zarr | dandiset.yaml)
``progress``   ``path``, ``done``, ``size``
``zarr``       ``path`` plus dandi-cli's Zarr record keys (done, done%, status, message)
``skipped``    ``path``, ``reason``, ``size``
``verified``   ``path``, ``checksum`` ("ok", or "-" when there is nothing to verify)
``done``       ``path``, ``size``, ``message``
``error``      ``path``, ``message``, ``error_type``
``deleted``    ``path``
``message``    ``path``, ``status``, ``message``
``planned``    ``path``, ``action`` (download | skip | delete | error), ``size``, ``reason``
``summary``    last line: the report (``ok``, counts, bytes, ``duration``, ``errors``,
               ``error_list`` of {path, message}); ``fatal`` holds the message of an error
               that stopped the run (e.g. a URL that does not resolve, or
               ``KeyboardInterrupt``). ``files_downloaded`` counts every file written,
               Zarr entries included (``zarr_entries_downloaded`` of them).
=============  ==============================================================
"""

from __future__ import annotations

import json
import time
from typing import IO, Any

from ..errors import DownloadFailed
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
from .text import is_interruption

SCHEMA = "dandiget.event/1"


def event_to_json(event: Event) -> dict[str, Any] | None:
    """The JSON object for an event, or None for events that are not part of the schema."""
    if isinstance(event, Started):
        d: dict[str, Any] = {"event": "started", "size": event.size, "kind": event.kind}
    elif isinstance(event, Progress):
        d = {"event": "progress", "done": event.done, "size": event.size}
    elif isinstance(event, ZarrUpdate):
        d = {"event": "zarr", **event.fields}
    elif isinstance(event, Skipped):
        d = {"event": "skipped", "reason": event.reason, "size": event.size}
    elif isinstance(event, Verified):
        d = {"event": "verified", "checksum": event.checksum}
    elif isinstance(event, Done):
        d = {"event": "done", "size": event.size, "message": event.message}
    elif isinstance(event, Failed):
        d = {"event": "error", "message": event.message, "error_type": event.error_type}
    elif isinstance(event, Deleted):
        d = {"event": "deleted"}
    elif isinstance(event, Message):
        d = {"event": "message", "status": event.status, "message": event.message}
    elif isinstance(event, Planned):
        d = {"event": "planned", "action": event.action, "size": event.size,
             "reason": event.reason}
    elif isinstance(event, (Downloading, Totals)):
        return None
    else:  # pragma: no cover - a new event type must be added to the schema
        return None
    return {"schema": SCHEMA, "time": round(time.time(), 3), "path": event.path, **d}


class JsonRenderer:
    def __init__(self, out: IO[str]):
        self.out = out

    def start(self) -> None:
        pass

    def __call__(self, event: Event) -> None:
        d = event_to_json(event)
        if d is not None:
            self.out.write(json.dumps(d) + "\n")
            self.out.flush()

    def finish(self, report: DownloadReport | None, error: BaseException | None) -> None:
        d: dict[str, Any] = {"schema": SCHEMA, "time": round(time.time(), 3), "event": "summary"}
        if report is not None:
            d.update(report.to_dict(outcomes=False))
            d["error_list"] = [{"path": o.path, "message": o.message} for o in report.errors]
        if error is not None and not isinstance(error, DownloadFailed):
            d["ok"] = False
            name = type(error).__name__
            if is_interruption(error):  # Ctrl-C reaches the engine as a cancellation
                d["fatal"] = "KeyboardInterrupt: interrupted"
            else:
                d["fatal"] = f"{name}: {error}" if str(error) else name
        elif report is None:
            d["ok"] = False
        self.out.write(json.dumps(d) + "\n")
        self.out.flush()
