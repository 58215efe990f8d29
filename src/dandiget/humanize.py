"""Tiny humanize-compatible formatting (decimal sizes), so we need no extra dependency."""

from __future__ import annotations


def naturalsize(value: float) -> str:
    """``42 Bytes``, ``1 Byte``, ``1.2 kB``, ``3.4 MB`` (decimal units, like humanize)."""
    b = float(value)
    if abs(b) == 1:
        return f"{int(b)} Byte"
    if abs(b) < 1000:
        return f"{int(b)} Bytes"
    for i, unit in enumerate(("kB", "MB", "GB", "TB", "PB", "EB", "ZB")):
        scale = 1000 ** (i + 2)
        if abs(b) < scale:
            return f"{1000 * b / scale:.1f} {unit}"
    return f"{b / 1000 ** 8:.1f} YB"
