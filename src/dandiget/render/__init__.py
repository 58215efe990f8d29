"""Renderers: each turns the engine's events into output for one audience.

* ``table``  (``-f pyout``): a live rich table of active and recent files plus a summary row.
* ``debug``  (``-f debug``): dandi-cli's records, one Python dict repr per line.
* ``jsonl``  (``-f json``): versioned JSON lines for pipelines.
* ``plain``  (not a terminal): a progress line at a sane interval, no escape codes.
* ``plan``   (``--dry-run`` with ``pyout``/``plain``): what would be downloaded, skipped,
  deleted, with totals.
* ``quiet``  (``download(..., quiet=True)``): nothing; the returned report is the output.

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


class NullRenderer:
    """Prints nothing: for library use, where the report is the output."""

    def start(self) -> None:
        pass

    def __call__(self, event: Event) -> None:
        pass

    def finish(self, report: DownloadReport | None, error: BaseException | None) -> None:
        pass


def make_renderer(fmt: str, stream: IO[str] | None = None, *, is_tty: bool | None = None,
                  dry_run: bool = False, quiet: bool = False) -> Renderer:
    """The renderer for ``-f``; ``pyout`` falls back to ``plain`` when not on a terminal,
    and both show a plan instead of progress for a dry run."""
    import sys

    if quiet:
        return NullRenderer()
    out = stream or sys.stdout
    if dry_run and fmt in ("pyout", "plain"):
        from .plan import PlanRenderer

        return PlanRenderer(out)
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
