"""How many assets in flight, when the user did not say (``-J`` not given).

A fixed 6 leaves a high-latency content host idle (each file waits out its first byte),
while on a fast local link the CPU is the limit and more in flight only costs. So the
number is found by hill climbing on measured throughput, in windows of a fraction of a
second (:class:`AdaptiveLimit`, pure: fed time, bytes and errors, answers "how many now"):

* more in flight raised throughput by >= ``gain``: raise the limit again (x1.5);
* it did not: go back to the last limit (the extra requests only queued: the latency
  rose without a throughput gain, as TCP Vegas reads it), and probe again later;
* retries (429/503, timeouts, resets; requests.py counts them) in a window: cut the
  limit by ``backoff`` at once, and do not grow for a few windows.

:class:`AdaptiveGate` applies the limit to the workers of :func:`pipeline.drain`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from types import TracebackType


class AdaptiveLimit:
    """The limit on units in flight, moved by what each window of time measured."""

    def __init__(self, initial: int = 6, minimum: int = 2, maximum: int = 64, *,
                 interval: float = 0.15, gain: float = 0.10, growth: float = 1.5,
                 backoff: float = 0.7, probe_after: int = 12, cooldown: int = 3):
        self.minimum = max(1, minimum)
        self.maximum = max(self.minimum, maximum)
        self.limit = min(self.maximum, max(self.minimum, initial))
        self.interval = interval
        self.gain = gain
        self.growth = growth
        self.backoff = backoff
        self.probe_after = probe_after
        self.cooldown = cooldown
        self._start: tuple[float, int, int] | None = None
        #: The rate measured at ``_base_limit`` before the last step up (None: none yet).
        self._base_rate: float | None = None
        self._base_limit = self.limit
        self._flat = 0
        self._quiet = 0  # windows left without growth after a back-off
        #: The limits taken, in order (for tests and the debug log).
        self.history: list[int] = [self.limit]
        #: Cuts on errors so far.
        self.backoffs = 0
        #: The last :meth:`observe` closed a window (a new one begins).
        self.new_window = False

    def observe(self, now: float, bytes_done: int, errors: int,
                saturated: bool = True) -> int:
        """Feed the running totals; ``saturated``: the limit was reached in this window
        (otherwise the work, not the limit, set the pace and nothing is learnt)."""
        if self._start is None:
            self._start = (now, bytes_done, errors)
            return self.limit
        t0, b0, e0 = self._start
        self.new_window = False
        if now - t0 < self.interval:
            return self.limit
        self._start = (now, bytes_done, errors)
        self.new_window = True
        rate = (bytes_done - b0) / (now - t0)
        if errors > e0:
            self._set(max(self.minimum, math.floor(self.limit * self.backoff)))
            self.backoffs += 1
            self._base_rate, self._base_limit = None, self.limit
            self._quiet = self.cooldown
            return self.limit
        if self._quiet:
            self._quiet -= 1
            return self.limit
        if not saturated or rate <= 0:
            return self.limit
        base = self._base_rate
        if base is None or rate >= base * (1 + self.gain):
            self._step_up(rate)  # a first measure, or the last step paid: another
        elif self.limit != self._base_limit:
            self._set(self._base_limit)  # it did not: back to where the rate was the same
            self._flat = 1
        else:
            self._flat += 1
            if self._flat >= self.probe_after:
                self._step_up(rate)  # things change: try more again, now and then
            else:
                self._base_rate = (base + rate) / 2
        return self.limit

    def _step_up(self, rate: float) -> None:
        self._base_rate, self._base_limit, self._flat = rate, self.limit, 0
        self._set(min(self.maximum, max(self.limit + 2, math.ceil(self.limit * self.growth))))

    def _set(self, limit: int) -> None:
        if limit != self.limit:
            self.limit = limit
            self.history.append(limit)


class AdaptiveGate:
    """An async gate that lets at most ``controller.limit`` holders through at once, and
    feeds the controller the run's totals (``sample``: bytes done, retries) on every
    entry and exit."""

    def __init__(self, controller: AdaptiveLimit, sample: Callable[[], tuple[int, int]],
                 clock: Callable[[], float] = time.monotonic):
        self.controller = controller
        self.sample = sample
        self.clock = clock
        self.in_use = 0
        #: The most holders at once over the run (what the tests check).
        self.peak = 0
        self._window_peak = 0
        self._cond = asyncio.Condition()

    @property
    def maximum(self) -> int:
        return self.controller.maximum

    def _tick(self) -> None:
        before = self.controller.limit
        bytes_done, errors = self.sample()
        saturated = self._window_peak >= before
        after = self.controller.observe(self.clock(), bytes_done, errors, saturated)
        if self.controller.new_window:
            self._window_peak = self.in_use  # a new window began
        if after > before:
            self._cond.notify_all()

    async def __aenter__(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_use < self.controller.limit)
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
            self._window_peak = max(self._window_peak, self.in_use)
            self._tick()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        async with self._cond:
            self.in_use -= 1
            self._tick()
            self._cond.notify_all()
