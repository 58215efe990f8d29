"""The local executor: units run in this process's event loop, as they are planned."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..concurrency import AdaptiveGate, AdaptiveLimit
from ..config import DEFAULT_JOBS
from ..transfer import Meter
from ..units import Result, Unit
from .work import WorkerContext, run_unit


class LocalExecutor:
    """Runs each unit at once in the caller's task (no batching, no copies)."""

    def __init__(self, context: WorkerContext):
        self.context = context

    def concurrency(self, default: int) -> int:
        return default

    def adaptive(self, sample: Callable[[], tuple[int, int]]) -> AdaptiveGate | None:
        """A limit on assets in flight that finds its own level (``-J`` not given),
        within the one connection budget."""
        cap = self.context.transferer.config.max_connections
        return AdaptiveGate(AdaptiveLimit(initial=DEFAULT_JOBS, maximum=cap), sample)

    def ranges(self, size: int, n_parts: int) -> list[tuple[int, int]] | None:
        return None  # one process: the transferer's parallel parts are the faster shape

    async def check_output(self, out: Path) -> None:
        return None  # this process writes the files it checks

    async def run(self, unit: Unit, meter: Meter) -> Result:
        return await run_unit(self.context, unit, meter)

    async def close(self) -> None:
        return None
