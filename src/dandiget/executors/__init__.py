"""Executors run work units (units.py) and hand back results; the coordinator merges them.

Two of them share one code path (work.py): :class:`~.local.LocalExecutor` runs units in
this process's event loop; :class:`~.dask.DaskExecutor` ships batches of them to the
workers of a Dask cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..transfer import Meter
from ..units import Result, Unit

if TYPE_CHECKING:
    from ..concurrency import AdaptiveGate


class Executor(Protocol):
    """Runs units; ``run`` returns the unit's result or raises its error."""

    #: Units the planner should keep in flight per stream of work (assets, Zarr entries).
    def concurrency(self, default: int) -> int: ...

    #: A gate whose limit on assets in flight adapts (``-J`` not given), or None to keep
    #: ``concurrency(6)``. ``sample`` answers the run's bytes moved and retries so far.
    def adaptive(self, sample: Callable[[], tuple[int, int]]) -> AdaptiveGate | None: ...

    #: Groups of dandi-etag parts ``(first, last)`` to run as separate units, or None to
    #: fetch a file of ``size`` bytes as one unit.
    def ranges(self, size: int, n_parts: int) -> list[tuple[int, int]] | None: ...

    async def check_output(self, out: Path) -> None: ...

    async def run(self, unit: Unit, meter: Meter) -> Result: ...

    async def close(self) -> None: ...
