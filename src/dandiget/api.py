"""The Archive's REST API as the engine needs it: JSON documents, pagination, auth.

Every request goes through the one executor (:mod:`dandiget.requests`), which owns retries,
timeouts and the auth rule. Authentication is reactive, as in dandi-cli: requests go out
anonymously until the server answers 401, because a stale token makes *every* request fail
(archive-api §4). The token is attached only to URLs on the API's own origin, never to the
content host, a redirect target elsewhere or a ``next`` link naming another host.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp

from .errors import (
    AuthenticationError,
    ConnectError,
    HTTPError,
    NotFoundError,
    ResponseError,
    TransportError,
)
from .instances import Instance
from .requests import ApiAuth, Requester, display_url, origin, redact
from .retry import RetryPolicy

log = logging.getLogger("dandiget")

USER_AGENT = "dandiget"

__all__ = ["ApiClient", "find_api_key", "origin", "redact"]

#: Statuses that, on a ``metadata=true`` asset page, mean "this page was too expensive": the
#: Archive's workers are cut off after 15-30 s and the router answers 5xx (archive-api §6).
PAGE_TOO_BIG = frozenset({500, 502, 503, 504})
#: Asset pages are not shrunk below this many rows (then the normal retries apply).
MIN_ASSET_PAGE = 10
#: About this many rows on page 1 of an asset listing: 0.7 s rather than 1.3 s for a full
#: page on the Archive (0.73 ms a row with metadata, dandisets#236), so the first download
#: starts sooner; the pages after it double up to the full size.
FIRST_ASSET_PAGE = 100
#: Asset pages requested at once after page 1 (its ``count`` says how many there are).
#: Modest on purpose: the Archive slows down under bursts of parallel page requests
#: (dandi-archive#1891 saw 12 s pages); dandi-cli uses 5 threads.
ASSET_PAGES_IN_FLIGHT = 4



def find_api_key(instance: Instance) -> str | None:
    """The API key for ``instance``: its own env var, then ``DANDI_API_KEY``, then the keyring.

    Never prompts: dandiget must not hang a cron job or a pipeline waiting for input.
    """
    for var in (instance.api_key_env, "DANDI_API_KEY"):
        value = os.environ.get(var)
        if value:
            return value.strip()
    try:  # the optional ``dandiget[keyring]`` extra
        import keyring
    except ImportError:
        log.warning("No API key in %s or DANDI_API_KEY, and the system keyring cannot be read: "
                    "pip install 'dandiget[keyring]' to use it", instance.api_key_env)
        return None
    try:
        value = keyring.get_password(f"dandi-api-{instance.name}", "key")
    except Exception as e:  # no usable keyring backend: not an error for open data
        log.debug("keyring lookup failed: %s", e)
        return None
    return str(value) if value else None


class ApiClient:
    """JSON access to one instance's API over a shared aiohttp session."""

    def __init__(
        self,
        instance: Instance,
        session: aiohttp.ClientSession,
        *,
        retry: RetryPolicy | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
        token: str | None = None,
        max_pages: int = 1_000_000,
        requester: Requester | None = None,
    ):
        self.instance = instance
        self.session = session
        self.retry = retry or (requester.policy if requester else RetryPolicy())
        self.requester = requester or Requester(session, self.retry)
        self.timeout = timeout or aiohttp.ClientTimeout(
            total=None, sock_connect=self.requester.timeout.sock_connect, sock_read=120)
        self.auth = ApiAuth(instance.api, token, lambda: find_api_key(instance))
        self.max_pages = max_pages
        #: Asset listing: rows on page 1 (about), and pages requested at once after it.
        self.first_asset_page = FIRST_ASSET_PAGE
        self.asset_pages_in_flight = ASSET_PAGES_IN_FLIGHT

    def __repr__(self) -> str:
        return f"ApiClient({self.instance.api!r}, {self.auth!r})"

    @property
    def token(self) -> str | None:
        return self.auth.token

    @token.setter
    def token(self, value: str | None) -> None:
        self.auth.token = value

    # ------------------------------------------------------------------ helpers

    def url(self, path: str) -> str:
        """Absolute URL of an API path such as ``dandisets/000001/``."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.instance.api}/{path.lstrip('/')}"

    def auth_headers(self, url: str) -> dict[str, str]:
        """The Authorization header, but only for URLs on the API's own origin."""
        return self.auth.headers_for(url)

    async def authenticate(self) -> bool:
        """Pick up an API key after a 401. Returns False when there is none to try."""
        return await self.auth.authenticate()

    # ------------------------------------------------------------------ requests

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None, *,
                       attempts: int | None = None) -> Any:
        """GET a JSON document; 401 triggers authentication.

        ``attempts`` overrides the retry budget (a listing that would rather shrink its page
        than wait out a slow one passes a small number).
        """
        url = self.url(path)
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"

        async def parse(resp: aiohttp.ClientResponse) -> Any:
            body = await resp.read()
            try:
                return json.loads(body)
            except ValueError:
                raise ResponseError(f"GET {display_url(url)} returned invalid JSON: "
                                    f"{redact(repr(body[:200]), self.token)}",
                                    url=display_url(url)) from None

        return await self.requester.send(
            "GET", url, parse, headers={"Accept": "application/json"}, auth=self.auth,
            follow_redirects=True, attempts=attempts, timeout=self.timeout, error=self._error)

    def _error(self, status: int, url: str, body: bytes) -> HTTPError:
        text = redact(" ".join(body[:1024].decode("utf-8", "replace").split()), self.token)
        url = redact(url, self.token)
        msg = f"Error {status} while sending GET request to {url}: {text}"
        if status == 401:
            if self.token:
                return AuthenticationError(
                    f"{msg}. The API key in use was rejected by {self.instance.api}.",
                    status=status, url=url)
            return AuthenticationError(
                f"{url} requires authentication (embargoed data?). Set "
                f"{self.instance.api_key_env} or DANDI_API_KEY to an API key for "
                f"{self.instance.api}.", status=status, url=url)
        if status == 403:
            return AuthenticationError(
                f"{msg}. You do not have access to this resource.", status=status, url=url)
        if status == 404:
            return _NotFoundHTTP(msg, status=status, url=url)
        return HTTPError(msg, status=status, url=url)

    async def paginate(self, path: str, params: Mapping[str, Any] | None = None
                       ) -> AsyncIterator[dict[str, Any]]:
        """Yield the ``results`` of every page, following ``next`` links.

        The next page is requested as soon as the current one arrives, so the server works
        on page n+1 while we process page n (two requests in flight at most: the Archive
        slows down under bursts of parallel page requests, dandi-archive #1891). Guards
        against a server whose ``next`` never ends (a loop, or endless pages).
        """
        seen: set[str] = set()
        pages = 0

        async def fetch(url: str, query: Mapping[str, Any] | None) -> dict[str, Any]:
            nonlocal pages
            if url in seen:
                raise HTTPError(f"Pagination loop: {url} was already requested", url=url)
            seen.add(url)
            pages += 1
            if pages > self.max_pages:
                raise HTTPError(f"More than {self.max_pages} pages from {path}", url=url)
            page = await self.get_json(url, query)
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise HTTPError(f"Unexpected page shape from {url}", url=url)
            return page

        pending: asyncio.Task[dict[str, Any]] | None = asyncio.ensure_future(
            fetch(self.url(path), params))
        try:
            while pending is not None:
                page = await pending
                pending = None
                nxt = page.get("next")
                if isinstance(nxt, str) and nxt:
                    pending = asyncio.ensure_future(fetch(nxt, None))
                for item in page["results"]:
                    yield item
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

    # ------------------------------------------------------------------ resources

    async def get_dandiset(self, dandiset_id: str) -> dict[str, Any]:
        try:
            return await self.get_json(f"dandisets/{dandiset_id}/")
        except _NotFoundHTTP:
            raise NotFoundError(
                f"No such Dandiset: {dandiset_id!r}. Verify the Dandiset ID is correct and "
                "that you have access. "
            ) from None

    async def get_version_info(self, dandiset_id: str, version: str) -> dict[str, Any]:
        try:
            return await self.get_json(
                f"dandisets/{dandiset_id}/versions/{version}/info/")
        except _NotFoundHTTP:
            raise NotFoundError(f"No such version: {version!r} of Dandiset {dandiset_id}") from None

    async def get_version_metadata(self, dandiset_id: str, version: str) -> dict[str, Any]:
        return await self.get_json(
            f"dandisets/{dandiset_id}/versions/{version}/")

    async def get_asset_info(self, asset_id: str) -> dict[str, Any]:
        try:
            return await self.get_json(f"assets/{asset_id}/info/")
        except _NotFoundHTTP:
            raise NotFoundError(
                f"No such asset: {asset_id!r}. Verify the asset ID is correct. "
                "Use 'dandi ls' to list available assets."
            ) from None

    async def get_version_asset_info(self, dandiset_id: str, version: str,
                                     asset_id: str) -> dict[str, Any]:
        try:
            return await self.get_json(
                f"dandisets/{dandiset_id}/versions/{version}/assets/{asset_id}/info/")
        except _NotFoundHTTP:
            raise NotFoundError(
                f"No such asset: {asset_id!r} for "
                f"{self.instance.upper_name}:{dandiset_id}/{version}"
            ) from None

    async def asset_pages(self, dandiset_id: str, version: str, *, page_size: int = 1000,
                          **filters: str) -> AsyncGenerator[dict[str, Any], None]:
        """The pages of a version's asset listing (full metadata, path order), one pass.

        Page 1 is small (about :attr:`first_asset_page` rows: cheap for the server, so the first
        downloads start early) and carries the ``count``; the pages after it double in size
        up to ``page_size`` and are requested :attr:`asset_pages_in_flight` at a time, yet
        yielded in path order (a page that arrives early waits, so memory stays bounded by
        that many pages). Without a ``count`` they are requested one ahead, following ``next``.

        Pages are addressed by row offset (page p of size s holds rows (p-1)s .. ps-1), not
        by following ``next``, so that their size can vary and adapt: a ``metadata=true``
        page the server cannot produce in time (5xx, timeout) is asked for again as smaller
        pages covering the same rows, instead of retrying the same doomed request, and later
        pages keep the smaller size. The first try of each size fails fast; at
        :data:`MIN_ASSET_PAGE` rows the normal retries apply.
        """
        path = f"dandisets/{dandiset_id}/versions/{version}/assets/"
        url = self.url(path)
        full = max(1, min(int(page_size), 1000))
        first = full
        while first > max(1, self.first_asset_page) and first % 2 == 0:
            first //= 2  # page 1, 1, 2, 4, ... of size first/2^k all end where a full one does
        in_flight = max(1, self.asset_pages_in_flight)
        seen: set[str] = set()
        pages = 0
        cap = full  # the largest page to ask for: shrinks when the server cannot keep up

        async def fetch(offset: int, size: int, end: int) -> tuple[dict[str, Any], int]:
            """The page of ``size`` rows at ``offset`` (smaller if the server cuts it off)."""
            nonlocal pages, cap
            while True:
                params = {"metadata": "true", "order": "path", **filters,
                          "page": str(offset // size + 1), "page_size": str(size)}
                key = urlencode(sorted(params.items()))
                if key in seen:
                    raise HTTPError(f"Pagination loop: {url}?{key} was already requested",
                                    url=url)
                seen.add(key)
                pages += 1
                if pages > self.max_pages:
                    raise HTTPError(f"More than {self.max_pages} pages from {path}", url=url)
                try:
                    page = await self.get_json(path, params, attempts=1)
                except (HTTPError, TransportError) as e:
                    status = getattr(e, "status", None)
                    # A 5xx without Retry-After or a timeout: the page cost too much. A
                    # Retry-After is the server asking for patience, not a smaller page.
                    cut_off = (status in PAGE_TOO_BIG and getattr(e, "retry_after", None) is None
                               ) or (isinstance(e, TransportError)
                                     and not isinstance(e, ConnectError))
                    if size > MIN_ASSET_PAGE and cut_off:
                        smaller = size // 2
                        while offset % smaller or end % smaller:
                            smaller -= 1
                        log.info("Asset page of %d rows failed (%s); asking for %d rows a page",
                                 size, status or "no answer", smaller)
                        size = smaller
                        cap = min(cap, size)
                        continue
                    if status is not None and not self.retry.is_retryable_status(status):
                        raise
                    seen.discard(key)
                    page = await self.get_json(path, params)  # the whole retry policy
                if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                    raise HTTPError(f"Unexpected page shape from {path}", url=url)
                n = len(page["results"])
                if n != size and page.get("next"):  # the server pages by another size
                    if n == 0:
                        raise HTTPError(f"Pagination loop: an empty page of {path} links to "
                                        "a next one", url=url)
                    if offset % n:
                        raise HTTPError(f"Inconsistent page of {n} rows (asked {size}) "
                                        f"from {path}", url=url)
                    cap = min(cap, n)
                    size = n
                    if offset:  # its rows are not the ones asked for: ask by its size
                        continue
                return page, size

        async def fetch_rows(start: int, end: int) -> list[dict[str, Any]]:
            """The pages holding rows ``start`` .. ``end``-1 (fewer where the listing ends)."""
            out: list[dict[str, Any]] = []
            offset, size = start, end - start
            while offset < end:
                size = min(size, cap)
                while offset % size or end % size:
                    size -= 1
                page, size = await fetch(offset, size, end)
                rows = page["results"]
                if offset + len(rows) > end:  # a server that pages by a larger size
                    page = {**page, "results": rows[:end - offset]}
                out.append(page)
                offset += len(rows)
                if not page.get("next"):
                    break  # the listing ends here
            return out

        window: deque[tuple[int, asyncio.Task[list[dict[str, Any]]]]] = deque()
        count: int | None = None
        allocated = 0  # rows [0, allocated) are covered by requests sent

        def launch() -> None:
            nonlocal allocated
            size = min(cap, max(first, allocated))
            while allocated % size:
                size -= 1
            window.append((allocated + size,
                           asyncio.ensure_future(fetch_rows(allocated, allocated + size))))
            allocated += size

        launch()
        try:
            while window:
                end, task = window.popleft()
                got = await task
                received = got[-1]  # the page that says whether the listing goes on
                if end == first and isinstance(got[0].get("count"), int):
                    count = got[0]["count"]  # only page 1 carries it
                ended = not received.get("next")
                if ended:
                    for _, other in window:
                        other.cancel()
                    await asyncio.gather(*(t for _, t in window), return_exceptions=True)
                    window.clear()
                else:
                    # More rows follow: keep ``in_flight`` requests going, up to the announced
                    # count, and past it one at a time while ``next`` says there is more.
                    while len(window) < in_flight and (
                            (count is not None and allocated < count)
                            or (not window and allocated == end)):
                        launch()
                for page in got:
                    yield page
        finally:
            for _, task in window:
                task.cancel()
            await asyncio.gather(*(t for _, t in window), return_exceptions=True)

    async def iter_assets(self, dandiset_id: str, version: str, *, page_size: int = 1000,
                          **filters: str) -> AsyncIterator[dict[str, Any]]:
        """Every asset of a version with its full metadata, in path order (one pass; see
        :func:`dandiget.listing.iter_selected_assets` for a listing checked for drafts
        that change meanwhile)."""
        async for page in self.asset_pages(dandiset_id, version, page_size=page_size,
                                           **filters):
            for item in page["results"]:
                yield item

    def iter_zarr_files(self, zarr_id: str, *, limit: int = 1000
                        ) -> AsyncIterator[dict[str, Any]]:
        """Every entry of a Zarr, in key order (key-based continuation)."""
        return self.paginate(f"zarr/{zarr_id}/files/", {"limit": str(limit)})


class _NotFoundHTTP(HTTPError):
    """A 404 from the API, translated into NotFoundError by the resource methods."""
