"""Text shared by the human renderers: shortened paths and the lines that end a run."""

from __future__ import annotations

import asyncio
import re

from ..errors import DownloadFailed
from ..report import DownloadReport

#: Failed files listed at the end of a run; the JSON summary (``-f json``) has them all.
MAX_FAILURES_LISTED = 50

_EXISTS = re.compile(r"^File '(?P<path>.*)' already exists(?P<rest>.*)$")


def shorten_middle(path: str, width: int) -> str:
    """``path`` in at most ``width`` characters, cut in the middle so the file name stays.

    Cutting on the right (or left) makes sibling files look identical at 80 columns; the
    file name is what tells rows apart, and the first folder says which dandiset it is.
    A file name longer than the width is itself cut, keeping two thirds of its start
    (``sub-01_ses-02_...``, what tells BIDS siblings apart) and a third of its end (the
    extension).
    """
    if width <= 0:
        return ""
    if len(path) <= width:
        return path
    if width == 1:
        return "…"
    budget = width - 1  # one character for the ellipsis
    name = path[path.rfind("/") + 1:]
    if len(name) + 1 <= budget:  # the whole name and "/" fit: cut among the folders
        head = min(budget // 3, budget - len(name) - 1)
        if head < 6:  # "00…/name" says less than the end of the folder: "…-01/name"
            head = 0
        return path[:head] + "…" + path[len(path) - (budget - head):]
    tail = budget // 3
    return name[:budget - tail] + "…" + name[len(name) - tail:]


def one_line(message: str, path: str | None = None) -> str:
    """The first line of a message. Our own "File '<absolute path>' already exists" is
    shortened: the row (``path``) already names the file; inside a Zarr, the entry stays."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    m = _EXISTS.match(line)
    if m is None:
        return line
    where = m.group("path")
    inner = where.split(f"{path}/", 1)[1] if path and f"{path}/" in where else ""
    if path is not None and not inner and not where.endswith(path):
        return line  # about some other file: keep it whole
    return "already exists" + (f" ({inner})" if inner else "") + m.group("rest")


def is_interruption(error: BaseException | None) -> bool:
    return isinstance(error, (KeyboardInterrupt, asyncio.CancelledError))


def final_lines(report: DownloadReport | None, error: BaseException | None,
                limit: int = MAX_FAILURES_LISTED, summary: str | None = None) -> list[str]:
    """What a human renderer prints once the run is over (after any live display stopped).

    * every failed file with its one-line reason (the first ``limit``, then where the rest
      are), so errors that scrolled out of the table are still visible;
    * the summary line, unless a fatal error stopped the run before anything was done (then
      the error alone is the output: a "0 files downloaded, 0 errors" line would read as
      success). After a fatal error or Ctrl-C, the summary says what was done before it.

    ``summary`` replaces the report's own summary line (the dry-run plan has its own).
    """
    if report is None:
        return []
    fatal = error is not None and not isinstance(error, DownloadFailed)
    lines: list[str] = []
    failures = report.errors
    if failures:
        n = len(failures)
        lines.append(f"{n} file{'' if n == 1 else 's'} failed:")
        for o in failures[:limit]:
            lines.append(f"  {o.path}: {one_line(o.message, o.path) or 'failed'}")
        if n > limit:
            lines.append(f"  ... and {n - limit} more: the report lists them all "
                         "(`-f json`: error_list in the last line; Python: report.errors)")
        if any(_EXISTS.match(o.message.strip()) or o.message == "already exists"
               for o in failures):
            lines.append("Existing files dandiget did not download (or that changed since) are "
                         "left alone under --existing error, the default: choose skip, "
                         "refresh or overwrite-different.")
    if fatal:
        if not report.outcomes:
            return lines
        prefix = "Interrupted after: " if is_interruption(error) else "Before the error: "
        lines.append(prefix + (summary or report.summary()))
        return lines
    lines.append(summary or report.summary())
    return lines
