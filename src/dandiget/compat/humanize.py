"""humanize-compatible formatting (decimal sizes, durations) without the extra dependency."""

from __future__ import annotations

from .progress import naturaldelta, naturalsize

__all__ = ["naturaldelta", "naturalsize"]
