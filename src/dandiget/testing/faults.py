"""Fault injection: declarative misbehaviours applied to matching requests.

A :class:`Fault` matches on host, method and a regex searched in ``path?query``. When several
faults match one request their effects are merged into a :class:`Plan`, which the hosts
consult before answering (``latency``, ``status``, ``expire_presigned``, range faults) and
while writing the body (``drop_after``, ``stall``, ``corrupt``, ``short_body``,
``long_body``, ``rate``, ``pause_at``; see :mod:`dandiget.testing.sending`).

``pause_at`` is how tests synchronise with a transfer without sleeping: matching responses
are held just before that byte until the test calls :meth:`Fault.release`, and the test
waits for :meth:`Fault.wait_paused` instead of hoping some time was enough.

``range`` narrows a fault to requests whose ``Range`` header matches a regex (one part of a
multi-part download); ``echo_auth`` makes an error reply echo the request's
``Authorization`` header in its body and an ``X-Echo-Authorization`` header (to prove a
client redacts what servers send back); ``disconnect`` closes the connection before a
byte of the response (a dropped connection, on any route of either host);
``refuse_unsigned`` makes the content host refuse (403) every request under the match that is not a valid presigned URL, as a bucket
without anonymous read access does.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field
from typing import Any

HOSTS = ("any", "api", "content")


class Gate:
    """Holds responses (on the archive's loop) until a test, on any thread, releases them;
    counts the responses that reached it so the test can wait for that instead of a time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = False
        self._held: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.arrivals = 0

    async def hold(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            self.arrivals += 1
            self._cond.notify_all()
            if self._open:
                return
            self._held.append((loop, fut))
        try:
            await fut
        finally:
            with self._cond:
                if (loop, fut) in self._held:
                    self._held.remove((loop, fut))

    def release(self) -> None:
        with self._cond:
            self._open = True
            held, self._held = self._held, []
        for loop, fut in held:
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # that loop is already closed: nothing is waiting any more
                pass

    def wait_arrivals(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.arrivals >= n, timeout)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


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
    #: Hold the response just before this byte of the object (of the body, off the bucket)
    #: until :meth:`release`; a ranged response pauses only if its range holds that byte.
    pause_at: int | None = None
    #: Let the first ``skip`` matching requests through untouched (e.g. pause the 41st file).
    skip: int = 0
    range: str | None = None
    disconnect: bool = False
    echo_auth: bool = False
    refuse_unsigned: bool = False
    hits: int = 0
    #: Matching requests seen, including the skipped ones.
    seen: int = 0
    _owner: FaultSet | None = field(default=None, repr=False)
    _regex: re.Pattern[str] | None = field(default=None, repr=False)
    _gate: Gate = field(default_factory=Gate, repr=False)
    _range_regex: re.Pattern[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.host not in HOSTS:
            raise ValueError(f"host must be one of {HOSTS}, not {self.host!r}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0 bytes/s")
        if self.skip < 0:
            raise ValueError("skip must be >= 0")
        if self.pause_at is not None and self.pause_at < 0:
            raise ValueError("pause_at must be a byte offset >= 0")
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
        """Stop applying this fault (releasing any response it holds)."""
        if self._owner is not None:
            self._owner.remove(self)
        self.release()

    @property
    def paused(self) -> int:
        """How many responses have reached the ``pause_at`` point so far."""
        return self._gate.arrivals

    def wait_paused(self, n: int = 1, timeout: float = 60.0) -> bool:
        """Block until ``n`` responses are held at ``pause_at`` (False after ``timeout``)."""
        if self.pause_at is None:
            raise ValueError("not a pause fault")
        return self._gate.wait_arrivals(n, timeout)

    def release(self) -> None:
        """Let every held response go on; later ones pass the pause point without stopping."""
        self._gate.release()


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
    pause_at: int | None = None
    gates: list[Gate] = field(default_factory=list)
    echo_auth: bool = False
    refuse_unsigned: bool = False
    disconnect: bool = False

    @property
    def touches_body(self) -> bool:
        return bool(self.drop_after is not None or self.stall or self.corrupt or self.short_body
                    or self.long_body or self.rate or self.pause_at is not None)

    async def hold(self) -> None:
        """Wait at the pause point until every matching pause fault is released."""
        for gate in self.gates:
            await gate.hold()

    def add(self, f: Fault) -> None:
        if f.status is not None and self.status is None:
            self.status = f.status
            self.retry_after = f.retry_after
        if f.drop_after is not None:
            self.drop_after = f.drop_after if self.drop_after is None else min(self.drop_after,
                                                                               f.drop_after)
        if f.rate is not None:
            self.rate = f.rate if self.rate is None else min(self.rate, f.rate)
        if f.pause_at is not None:
            self.pause_at = f.pause_at if self.pause_at is None else min(self.pause_at,
                                                                         f.pause_at)
            self.gates.append(f._gate)
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
        f.release()

    def clear(self) -> None:
        with self._lock:
            faults, self._faults = self._faults, []
        for f in faults:
            f.release()  # a removed fault never keeps a response on hold

    def plan(self, host: str, method: str, target: str,
             range_header: str | None = None) -> Plan:
        """Take one hit from every matching, non-exhausted fault and merge their effects."""
        with self._lock:
            if not self._faults:
                return NO_FAULTS
            plan = Plan()
            for f in self._faults:
                if not f.exhausted and f.matches(host, method, target, range_header):
                    f.seen += 1
                    if f.seen > f.skip:
                        f.hits += 1
                        plan.add(f)
            return plan
