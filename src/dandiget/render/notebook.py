"""``-f pyout`` inside Jupyter: the live table as one notebook display, updated in place.

rich's ``Live`` needs ipywidgets to draw in a notebook: without them it leaves an empty
block and the table never appears; with them the table lives in a widget that is lost once
the kernel stops. Here the terminal renderer's table (same rows, same summary row) is turned
into HTML plus plain text and sent as a display with a ``display_id``; a refresh thread
updates that display in place, so the saved notebook keeps the final table, the failures and
the summary, without escape codes and without a second copy of the table.
"""

from __future__ import annotations

import io
import threading
from typing import Any

from rich.console import Console
from rich.text import Text

from ..errors import DownloadFailed
from ..events import Event
from ..report import DownloadReport
from .table import TableRenderer
from .text import final_lines, is_interruption

#: rich's own notebook ``<pre>`` (monospace, scroll instead of wrapping long lines).
HTML_FORMAT = ("<pre style=\"white-space:pre;overflow-x:auto;line-height:normal;"
               "font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',monospace\">"
               "{code}</pre>")
WIDTH = 120


class NotebookRenderer:
    def __init__(self, interval: float = 0.5):
        # A recording console that never writes to the kernel itself: it only renders.
        self.console = Console(file=io.StringIO(), record=True, force_jupyter=False,
                               force_terminal=False, width=WIDTH)
        self.table = TableRenderer(io.StringIO(), console=self.console)
        self.interval = interval
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.handle: Any = None

    def __call__(self, event: Event) -> None:
        self.table(event)

    def start(self) -> None:
        from IPython.display import display

        self.handle = display(self._bundle(), raw=True, display_id=True)
        self.thread = threading.Thread(target=self._refresh, name="dandiget-notebook",
                                       daemon=True)
        self.thread.start()

    def _refresh(self) -> None:
        while not self.stop.wait(self.interval):
            self.handle.update(self._bundle(), raw=True)

    def _bundle(self, report: DownloadReport | None = None, error: BaseException | None = None,
                final: bool = False) -> dict[str, str]:
        """The display's mime bundle: the table, then (at the end) what the run did."""
        with self.lock:
            self.console.print(self.table.render())
            if final:
                if not (error is None or isinstance(error, DownloadFailed)
                        or is_interruption(error)):
                    # not a per-file failure (those are listed below): a bad URL, no network
                    self.console.print(Text(f"{type(error).__name__}: {error}", style="red"),
                                       highlight=False)
                for line in final_lines(report, error):  # failures, then the summary
                    self.console.print(Text(line), highlight=False)
            text = self.console.export_text(clear=False)
            html = self.console.export_html(inline_styles=True, code_format=HTML_FORMAT)
        return {"text/plain": text, "text/html": html}

    def finish(self, report: DownloadReport | None, error: BaseException | None) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        if self.handle is not None:
            self.handle.update(self._bundle(report, error, final=True), raw=True)
