"""Renderers: each turns the engine's events into output for one audience.

* ``table``  (``-f pyout``): a live rich table of active and recent files plus a summary row.
* ``debug``  (``-f debug``): dandi-cli's records, one Python dict repr per line.
* ``jsonl``  (``-f json``): versioned JSON lines for pipelines.
* ``plain``  (not a terminal): a progress line at a sane interval, no escape codes.

All of them do O(1) work per event, so a million-file Zarr costs the display nothing.
"""

from __future__ import annotations

from typing import IO, Protocol

from ..events import Event
from ..report import DownloadReport


class Renderer(Protocol):
    def __call__(self, event: Event) -> None: ...
    def start(self) -> None: ...
    def finish(self, report: DownloadReport | None, error: BaseException | None) -> None: ...


def make_renderer(fmt: str, stream: IO[str] | None = None, *, is_tty: bool | None = None
                  ) -> Renderer:
    """The renderer for ``-f``; ``pyout`` falls back to ``plain`` when not on a terminal."""
    import sys

    out = stream or sys.stdout
    tty = out.isatty() if is_tty is None else is_tty
    if fmt == "pyout" and is_tty is None and in_jupyter():
        from .notebook import NotebookRenderer

        return NotebookRenderer()  # the live table as a notebook display, updated in place
    if fmt == "debug":
        from .debug import DebugRenderer

        return DebugRenderer(out)
    if fmt == "json":
        from .jsonl import JsonRenderer

        return JsonRenderer(out)
    if fmt == "pyout" and tty:
        from .table import TableRenderer

        return TableRenderer(out)
    from .plain import PlainRenderer

    return PlainRenderer(out)


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (where stdout is not a TTY but rich can draw live)."""
    import sys

    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = getattr(ipython, "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"
