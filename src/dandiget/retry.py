"""The retry policy's values: how often, how long (dandi-cli had three policies).

The one place that applies them is :class:`dandiget.requests.Requester`. Retried: resets,
timeouts, truncated bodies, and the statuses in ``RetryPolicy.statuses`` (429 and 5xx);
not retried: a host that refused or could not be resolved before it ever answered. ``Retry-After`` is honoured (seconds or an
HTTP date); otherwise the wait is exponential with full jitter, so many workers hitting
the same throttled server do not retry in lockstep.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when absent or unusable.

    Rules as dandi-cli: 0 stays 0; slightly negative (> -2 s, clock skew) becomes 0; a
    date further in the past, more than 7 days ahead, or garbage is unusable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        secs = float(int(value))
    except ValueError:
        try:
            dt = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if dt is None:  # pragma: no cover - older Pythons
            return None
        secs = dt.timestamp() - (time.time() if now is None else now)
    if secs < -2:
        return None
    if secs < 0:
        return 0.0
    if secs > 7 * 24 * 3600:
        return None
    return secs


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failed request."""

    attempts: int = 10
    statuses: frozenset[int] = field(default_factory=lambda: RETRY_STATUSES)
    base_delay: float = 0.5
    max_delay: float = 30.0
    #: Never wait longer than this for a single Retry-After, whatever the server says.
    max_retry_after: float = 600.0

    def is_retryable_status(self, status: int) -> bool:
        return status in self.statuses

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(0, cap)
