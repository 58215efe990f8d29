"""Helpers for testing the test archive itself: a raw HTTP client that never follows redirects."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from dandiget.testing import TestArchive, oracle_spec, text_spec


@dataclass
class Resp:
    status: int
    headers: Mapping[str, str]
    body: bytes
    #: Set when the body ended early (IncompleteRead, reset...).
    error: str | None = None
    elapsed: float = 0.0
    header_time: float = 0.0
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        for k, v in self.raw_headers:
            if k.lower() == name.lower():
                return v
        return None


def fetch(url: str, method: str = "GET", headers: Mapping[str, str] | None = None,
          body: bytes | None = None, timeout: float = 30) -> Resp:
    """One request, no redirects followed, the body read as far as the server sends it."""
    u = urlsplit(url)
    assert u.hostname is not None
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body,
                     headers=dict(headers or {}))
        r = conn.getresponse()
        t_head = time.monotonic() - t0
        raw = r.getheaders()
        hdrs = {k: v for k, v in raw}
        error = None
        try:
            data = r.read()
        except http.client.IncompleteRead as e:
            data, error = e.partial, "IncompleteRead"
        except (ConnectionError, TimeoutError) as e:
            data, error = b"", type(e).__name__
        return Resp(r.status, CaseInsensitive(hdrs), data, error, time.monotonic() - t0, t_head,
                    raw)
    finally:
        conn.close()


class CaseInsensitive(dict):
    """Header lookup that ignores case (``resp.headers["content-type"]``)."""

    def __init__(self, data: Mapping[str, str]):
        super().__init__({k.lower(): v for k, v in data.items()})

    def __getitem__(self, k: str) -> str:
        return super().__getitem__(k.lower())

    def get(self, k: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(k.lower(), default)

    def __contains__(self, k: object) -> bool:
        return isinstance(k, str) and super().__contains__(k.lower())


def raw_exchange(url: str, request_headers: str = "", timeout: float = 10) -> bytes:
    """Send a bare HTTP/1.1 GET with ``Connection: close`` and return every byte received."""
    u = urlsplit(url)
    assert u.hostname is not None and u.port is not None
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as s:
        target = u.path + (f"?{u.query}" if u.query else "")
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n"
                  f"{request_headers}\r\n".encode())
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def oracle() -> Iterator[TestArchive]:
    """The golden-like archive (shared by a module: building it hashes an 84 MB blob)."""
    with TestArchive(oracle_spec()) as archive:
        yield archive


@pytest.fixture(scope="module")
def text_mod() -> Iterator[TestArchive]:
    """A module-scoped text archive for read-only tests."""
    with TestArchive(text_spec()) as archive:
        yield archive
