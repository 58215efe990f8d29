"""Executing one unit, on whichever process runs it: transfer (transfer.py), then the one
commit (commit.py). Nothing here knows about the report, the state or the terminal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import aiohttp

from ..api import ApiClient
from ..commit import commit_file, write_verified
from ..errors import AuthenticationError, DandigetError, HTTPError
from ..instances import Instance
from ..plan import LocalStat
from ..requests import REDIRECT_STATUSES, display_url
from ..transfer import SMALL_OBJECT, Meter, RefusalMemo, Source, Transferer, discard
from ..units import Fetch, FileUnit, RangeUnit, Result, Unit

#: Redirect hops within the API before the content URL (a trailing-slash 301, at most).
MAX_API_HOPS = 4


class UnitInterrupted(BaseException):
    """The run was cancelled after the unit's file was committed: the caller records
    ``result`` (so a rerun knows the file is ours) and stops."""

    def __init__(self, result: Result):
        super().__init__(result.rec)
        self.result = result


class WorkerContext:
    """The live things units need: one request executor (one session), the API clients
    (for redirects and their tokens) and what the run learnt about refusing prefixes."""

    def __init__(self, transferer: Transferer, clients: Callable[[Instance], ApiClient],
                 refusals: RefusalMemo | None = None):
        self.transferer = transferer
        self.clients = clients
        self.refusals = refusals or RefusalMemo()

    def source(self, fetch: Fetch) -> Source:
        resolve = None
        if fetch.redirect is not None:
            async def resolve() -> str:
                url = fetch.redirect_url()
                assert url is not None
                return await resolve_redirect(self.clients(fetch.instance), url)

        return Source(url=fetch.url, resolve=resolve, refusals=self.refusals)


async def run_unit(ctx: WorkerContext, unit: Unit, meter: Meter) -> Result:
    """Execute one unit; errors propagate (the executor decides how to report them)."""
    if isinstance(unit, RangeUnit):
        done = await ctx.transferer.fetch_parts(ctx.source(unit.source), unit.temp,
                                                unit.size, unit.first, unit.last, meter)
        return Result(unit.rec, part_md5s=tuple(sorted(done.items())))
    return await _run_file(ctx, unit, meter)


async def _run_file(ctx: WorkerContext, unit: FileUnit, meter: Meter) -> Result:
    source = ctx.source(unit.source)
    temp, target = unit.temp, unit.target
    t = ctx.transferer
    inline = unit.kind == "zarr"  # a Zarr chunk: a thread hand-off costs more than it saves
    if unit.size <= SMALL_OBJECT and t.memory.take(unit.size):
        try:
            data = await t.fetch_small(source, unit.size, unit.digest, meter)
            mark_verified(meter)
            if inline:
                write_verified(temp, target, data, unit.mtime_ns)
                interrupted = False
            else:
                interrupted = await to_the_end(asyncio.to_thread(write_verified, temp, target,
                                                                 data, unit.mtime_ns))
        finally:
            t.memory.give(unit.size)
    else:
        await t.fetch(source, temp, unit.size, unit.digest, meter)
        mark_verified(meter)
        if inline:
            commit_file(temp, target, unit.mtime_ns, sync=unit.sync)
            interrupted = False
        else:
            interrupted = await to_the_end(asyncio.to_thread(
                commit_file, temp, target, unit.mtime_ns, sync=unit.sync))
            discard(temp)  # the part journal, if any
    stat = LocalStat.of(target)
    result = Result(unit.rec, digest=unit.digest[1],
                    stat=stat.signature() if stat is not None else None)
    if interrupted:
        raise UnitInterrupted(result)
    return result


def mark_verified(meter: Meter) -> None:
    hook = getattr(meter, "verified", None)
    if hook is not None:
        hook()


async def to_the_end(work: Any) -> bool:
    """Await ``work`` (a rename into place, in a thread that finishes anyway) even when the
    caller is cancelled meanwhile; True when it was, so the caller records the file before
    it re-raises."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if task.cancelled() or task.exception() is not None:
            raise  # the rename did not happen: nothing to record, stop all the same
        return True
    return False


async def resolve_redirect(client: ApiClient, url: str) -> str:
    """Ask the API where the bytes are (a presigned URL), without following it.

    The redirect is read, not followed: the token must never travel to the content host.
    Hops that stay on the API (a missing trailing slash) are followed, a few at most.
    """
    for _hop in range(MAX_API_HOPS):
        target = await client.requester.send(
            "GET", url, _location, auth=client.auth, accept=REDIRECT_STATUSES,
            error=lambda status, u, body: _redirect_error(client, status, u, body))
        if client.auth.on_api_origin(target) and "/download" in target:
            url = target  # an API-internal hop (e.g. trailing slash)
            continue
        return target
    raise DandigetError(f"{display_url(url)} did not redirect to the content")


def _redirect_error(client: ApiClient, status: int, url: str, body: bytes) -> Exception:
    """One line; the server's words included (the executor takes any token out)."""
    detail = " ".join(body[:300].decode("utf-8", "replace").split())
    if status == 401:
        return AuthenticationError(
            f"{display_url(url)} requires authentication. Set "
            f"{client.instance.api_key_env} or DANDI_API_KEY.", status=401,
            url=display_url(url))
    if status == 403:
        return AuthenticationError(f"HTTP 403 from {display_url(url)}: you do not have "
                                   f"access to this resource ({detail})", status=403,
                                   url=display_url(url))
    return HTTPError(f"HTTP {status} from {display_url(url)}: {detail}", status=status,
                     url=display_url(url))


async def _location(resp: aiohttp.ClientResponse) -> str:
    """Where a redirect points (absolute)."""
    loc = resp.headers.get("Location")
    if not loc:
        raise HTTPError(f"HTTP {resp.status} without a Location from {display_url(str(resp.url))}",
                        status=resp.status, url=display_url(str(resp.url)))
    return urljoin(str(resp.url), loc)
