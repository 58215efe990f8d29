"""The Dask worker plugins of executors/dask.py (imported only when Dask is used)."""

from __future__ import annotations

import asyncio
from typing import Any

from distributed import WorkerPlugin

from . import dask as ex


class TokenPlugin(WorkerPlugin):
    """Carries API tokens to every worker once (a Dask worker plugin).

    Its repr, the only thing the dashboard or logs could show, names the instances only.
    """

    name = "dandiget-tokens"

    def __init__(self, tokens: dict[str, str]):
        self._tokens = dict(tokens)

    def __repr__(self) -> str:
        return f"TokenPlugin({sorted(self._tokens)}, tokens=<redacted>)"

    def setup(self, worker: Any = None) -> None:
        ex._TOKENS.update(self._tokens)
        ex._SHIPPED.update(self._tokens)

    def teardown(self, worker: Any = None) -> None:
        for api in self._tokens:
            ex._TOKENS.pop(api, None)


class SessionPlugin(WorkerPlugin):
    """Closes the worker's sessions when the worker closes (a Dask worker plugin)."""

    name = "dandiget-sessions"

    def setup(self, worker: Any = None) -> None:
        pass

    def teardown(self, worker: Any = None) -> None:
        loop = ex._LOOP
        if loop is None or loop.is_closed():
            return
        contexts = list(ex._CONTEXTS.values())
        ex._CONTEXTS.clear()

        async def close() -> None:
            for ctx in contexts:
                await ctx.transferer.session.close()

        try:
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
        except Exception as e:  # closing anyway
            ex.log.debug("closing worker sessions: %s", e)
