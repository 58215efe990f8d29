"""The adaptive limit on assets in flight (concurrency.py), without a network: a model
server whose throughput grows with what is in flight up to a knee, then stays flat."""

from __future__ import annotations

import asyncio

import pytest

from dandiget.concurrency import AdaptiveGate, AdaptiveLimit


def run_model(ctl: AdaptiveLimit, *, knee: float, per_unit: float = 1e6,
              seconds: float = 10.0, step: float = 0.05,
              errors_above: int | None = None) -> list[int]:
    """Feed ``ctl`` what a server gives: ``per_unit`` bytes/s per unit in flight up to
    ``knee`` units (then flat); a retry per step while more than ``errors_above`` are in
    flight. Returns the limit at every step."""
    t, done, errors, seen = 0.0, 0.0, 0, []
    ctl.observe(t, 0, 0)
    while t < seconds:
        t += step
        done += min(ctl.limit, knee) * per_unit * step
        if errors_above is not None and ctl.limit > errors_above:
            errors += 1
        seen.append(ctl.observe(t, int(done), errors))
    return seen


def test_grows_while_throughput_grows_and_stops_at_the_knee() -> None:
    """Latency-bound (each unit adds throughput up to 40 in flight): from 6 it climbs to
    the knee within a couple of seconds, and does not run away past it."""
    ctl = AdaptiveLimit(initial=6, maximum=64)
    seen = run_model(ctl, knee=40)
    assert ctl.backoffs == 0
    assert max(seen[:40]) >= 40  # within 2 s
    assert 40 <= seen[-1] <= 64
    # the step past the knee that did not pay was taken back: it sits within one step
    # (x1.5) of the knee, not at the maximum
    tail = seen[len(seen) // 2:]
    assert sum(1 for x in tail if x <= 60) >= 0.8 * len(tail), tail


def test_cpu_bound_keeps_what_it_has() -> None:
    """Throughput already flat at 6 (the CPU is the limit): one probe, then back to 6 and
    mostly there, never far above."""
    ctl = AdaptiveLimit(initial=6, maximum=64)
    seen = run_model(ctl, knee=6)
    assert max(seen) <= 9
    assert sum(1 for x in seen if x == 6) >= 0.8 * len(seen)


def test_errors_cut_the_limit() -> None:
    """Retries whenever more than 10 are in flight (a 503-ing host): the limit is cut at
    once, and stays around the level that does not fail."""
    ctl = AdaptiveLimit(initial=6, maximum=64)
    seen = run_model(ctl, knee=40, errors_above=10)
    assert ctl.backoffs >= 1
    assert max(seen) <= 15  # never far past the level that fails
    tail = seen[len(seen) // 2:]
    assert sum(tail) / len(tail) <= 11


def test_not_saturated_learns_nothing() -> None:
    """While fewer units than the limit are running (the listing is the pace), the limit
    stays put however the rate moves."""
    ctl = AdaptiveLimit(initial=6)
    ctl.observe(0.0, 0, 0)
    for i in range(1, 50):
        ctl.observe(i * 0.2, i * i * 10**6, 0, saturated=False)
    assert ctl.history == [6]


def test_bounds() -> None:
    ctl = AdaptiveLimit(initial=6, minimum=2, maximum=20)
    assert max(run_model(ctl, knee=100)) == 20
    ctl = AdaptiveLimit(initial=6, minimum=2, maximum=20)
    assert min(run_model(ctl, knee=100, errors_above=0)) == 2


@pytest.mark.asyncio
async def test_gate_holds_to_the_limit_and_opens_when_it_grows() -> None:
    """The gate lets exactly ``limit`` holders in; a raised limit wakes the waiters."""
    now = [0.0]
    ctl = AdaptiveLimit(initial=3, maximum=10, interval=1.0)
    gate = AdaptiveGate(ctl, lambda: (int(now[0] * 1e6 * gate.in_use), 0), clock=lambda: now[0])
    entered = asyncio.Event()
    release = asyncio.Event()
    inside = 0

    async def hold() -> None:
        nonlocal inside
        async with gate:
            inside += 1
            if inside == gate.controller.limit:
                entered.set()
            await release.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(8)]
    await entered.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert gate.in_use == 3 == inside
    ctl.limit = 8  # as a window's verdict would
    async with gate._cond:
        gate._cond.notify_all()
    while inside < 8:
        await asyncio.sleep(0)
    assert gate.in_use == 8 and gate.peak == 8
    release.set()
    await asyncio.gather(*tasks)
    assert gate.in_use == 0
