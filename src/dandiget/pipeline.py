"""The shape every stage of work takes: a streaming listing feeding a few workers.

Items flow through a bounded queue, so memory stays flat however long the listing is, and
the first item is handled as soon as it is listed. An error raised by the listing surfaces
only after the items already listed were handled (dandi-cli's order); an error raised by a
handler cancels everything at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .concurrency import AdaptiveGate

T = TypeVar("T")


async def drain(items: AsyncIterator[T], handle: Callable[[T], Awaitable[None]], *,
                workers: int, queue_size: int, gate: AdaptiveGate | None = None) -> None:
    """Run ``handle`` on every item of ``items`` with ``workers`` concurrent handlers;
    with a ``gate``, as many as it lets through at once (at most ``workers``)."""
    queue: asyncio.Queue[tuple[T] | None] = asyncio.Queue(maxsize=max(1, queue_size))
    listing_error: list[BaseException] = []
    n = max(1, workers)

    async def produce() -> None:
        try:
            async for item in items:
                await queue.put((item,))
        except Exception as e:  # re-raised once the workers handled what was listed
            listing_error.append(e)
        finally:
            for _ in range(n):
                await queue.put(None)

    async def work() -> None:
        while (slot := await queue.get()) is not None:
            if gate is None:
                await handle(slot[0])
            else:
                async with gate:
                    await handle(slot[0])

    tasks = [asyncio.create_task(produce()), *(asyncio.create_task(work()) for _ in range(n))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    if listing_error:
        raise listing_error[0]
