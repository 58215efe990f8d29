"""Fault injection: declarative misbehaviours applied to matching requests.

A :class:`Fault` matches on host, method and a regex searched in ``path?query``. When several
faults match one request their effects are merged into a :class:`Plan`, which the hosts
consult before answering (``latency``, ``status``, ``expire_presigned``, range faults) and
while writing the body (``drop_after``, ``stall``, ``corrupt``, ``short_body``,
``long_body``, ``rate``; see :mod:`dandiget.testing.sending`).

``range`` narrows a fault to requests whose ``Range`` header matches a regex (one part of a
multi-part download); ``echo_auth`` makes an error reply echo the request's
``Authorization`` header in its body and an ``X-Echo-Authorization`` header (to prove a
client redacts what servers send back); ``disconnect`` closes the connection before a
byte of the response (a dropped connection, on any route of either host); ``refuse_unsigned`` makes the content host refuse
(403) every request under the match that is not a valid presigned URL, as a bucket
without anonymous read access does.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

HOSTS = ("any", "api", "content")


@dataclass(eq=False)
class Fault:
    """One injected misbehaviour; ``hits`` counts the requests it was applied to."""

    match: str
    host: str = "any"
    method: str | None = None
    times: int | None = None
    status: int | None = None
    retry_after: int | str | None = None
    drop_after: int | None = None
    stall: float | None = None
    corrupt: bool = False
    ignore_range: bool = False
    wrong_content_range: bool = False
    short_body: bool = False
    long_body: bool = False
    rate: float | None = None
    latency: float | None = None
    expire_presigned: bool = False
    range: str | None = None
    disconnect: bool = False
    echo_auth: bool = False
    refuse_unsigned: bool = False
    hits: int = 0
    _owner: FaultSet | None = field(default=None, repr=False)
    _regex: re.Pattern[str] | None = field(default=None, repr=False)
    _range_regex: re.Pattern[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.host not in HOSTS:
            raise ValueError(f"host must be one of {HOSTS}, not {self.host!r}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0 bytes/s")
        self._regex = re.compile(self.match)
        if self.range is not None:
            self._range_regex = re.compile(self.range)

    def matches(self, host: str, method: str, target: str,
                range_header: str | None = None) -> bool:
        if self.host not in ("any", host):
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        assert self._regex is not None
        if self._range_regex is not None and (
                range_header is None or self._range_regex.search(range_header) is None):
            return False
        return self._regex.search(target) is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def remove(self) -> None:
        """Stop applying this fault."""
        if self._owner is not None:
            self._owner.remove(self)


@dataclass
class Plan:
    """The merged effect of every fault applied to one request."""

    status: int | None = None
    retry_after: int | str | None = None
    drop_after: int | None = None
    stall: float = 0.0
    corrupt: bool = False
    ignore_range: bool = False
    wrong_content_range: bool = False
    short_body: bool = False
    long_body: bool = False
    rate: float | None = None
    latency: float = 0.0
    expire_presigned: bool = False
    echo_auth: bool = False
    refuse_unsigned: bool = False
    disconnect: bool = False

    @property
    def touches_body(self) -> bool:
        return bool(self.drop_after is not None or self.stall or self.corrupt or self.short_body
                    or self.long_body or self.rate)

    def add(self, f: Fault) -> None:
        if f.status is not None and self.status is None:
            self.status = f.status
            self.retry_after = f.retry_after
        if f.drop_after is not None:
            self.drop_after = f.drop_after if self.drop_after is None else min(self.drop_after,
                                                                               f.drop_after)
        if f.rate is not None:
            self.rate = f.rate if self.rate is None else min(self.rate, f.rate)
        self.stall += f.stall or 0.0
        self.latency += f.latency or 0.0
        for name in ("corrupt", "ignore_range", "wrong_content_range", "short_body", "long_body",
                     "expire_presigned", "echo_auth", "refuse_unsigned", "disconnect"):
            if getattr(f, name):
                setattr(self, name, True)


NO_FAULTS = Plan()


class FaultSet:
    """The active faults of one archive (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, match: str, **kwargs: Any) -> Fault:
        f = Fault(match, **kwargs)
        f._owner = self
        with self._lock:
            self._faults.append(f)
        return f

    def remove(self, f: Fault) -> None:
        with self._lock:
            if f in self._faults:
                self._faults.remove(f)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def plan(self, host: str, method: str, target: str,
             range_header: str | None = None) -> Plan:
        """Take one hit from every matching, non-exhausted fault and merge their effects."""
        with self._lock:
            if not self._faults:
                return NO_FAULTS
            plan = Plan()
            for f in self._faults:
                if not f.exhausted and f.matches(host, method, target, range_header):
                    f.hits += 1
                    plan.add(f)
            return plan
