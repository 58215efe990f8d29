"""The log of every request the archive received, so tests can assert on client behaviour."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field


def canonical_header(name: str) -> str:
    """``authorization`` -> ``Authorization``: one spelling, whatever the client sent."""
    return "-".join(p.capitalize() for p in name.split("-"))


@dataclass
class RequestRecord:
    """One request as it arrived. ``status`` is 0 until the response status is decided.

    ``path`` is the decoded URL path, ``query`` the raw query string (no ``?``), and header
    names are canonicalised (``Range``, ``Authorization``, ``User-Agent``).
    """

    method: str
    host: str  # "api" or "content"
    path: str
    query: str
    headers: dict[str, str]
    status: int = 0
    #: Body bytes actually written (after faults).
    bytes_sent: int = 0
    #: ``time.monotonic()`` at arrival.
    time: float = field(default_factory=time.monotonic)

    @property
    def target(self) -> str:
        """``path?query``: what fault patterns are matched against."""
        return f"{self.path}?{self.query}" if self.query else self.path


class RequestLog:
    """Thread-safe, append-only (until cleared) list of records in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, method: str, host: str, path: str, query: str,
            headers: Mapping[str, str]) -> RequestRecord:
        hdrs: dict[str, str] = {}
        for k, v in headers.items():
            k = canonical_header(k)
            hdrs[k] = f"{hdrs[k]}, {v}" if k in hdrs else v
        rec = RequestRecord(method, host, path, query, hdrs)
        with self._lock:
            self._records.append(rec)
        return rec

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
