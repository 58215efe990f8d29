"""Resource identifiers, over the network: redirects and server lookups.

* any spelling of a known instance's URLs (with or without ``/api``, trailing slash) maps to
  that instance, and known instances are recognised without a network round trip;
* redirect resolution uses the shared :class:`~dandiget.retry.RetryPolicy` (no 1000 s sleeps,
  no sleep after the last attempt) and reports redirect loops;
* there is no client-version gate against the server's ``cli-minimal-version``.

Everything that needs the network is in :func:`resolve_url`; :func:`parse_url` is a blocking
wrapper for synchronous callers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import yarl

from .. import __version__
from ..errors import (
    ConnectError,
    FailedToConnectError,
    NotFoundError,
    RequestError,
)
from ..instances import Instance, instance_by_url, known_instances
from ..requests import ANY_STATUS, Requester
from ..retry import RetryPolicy
from .grammar import (
    _PATTERNS,
    ParsedURL,
    _Action,
    _classify,
    _instance_by_name,
    _unknown_instance,
    _unknown_url,
)

log = logging.getLogger("dandiget.resolve")

#: Seconds one HEAD (redirect) or server-info GET may take, as dandi-cli's REDIRECT_HEAD_TIMEOUT.
REDIRECT_HEAD_TIMEOUT = 30.0
#: Redirect hops followed before giving up (the ``requests`` default dandi-cli inherited).
MAX_REDIRECTS = 30
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = f"dandiget/{__version__} aiohttp/{aiohttp.__version__}"

_NETLIFY_PREVIEW = re.compile(r"https?://deploy-preview-.*--gui-dandiarchive-org\.netlify\.app")
_NETLIFY_PREVIEW_SERVER = "https://sandbox.dandiarchive.org"


def _origin_key(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of ``url`` with the scheme's default port filled in."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.scheme not in ("http", "https"):
        return None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, port


def known_instance_for_url(url: str) -> Instance | None:
    """The known instance that ``url`` (any URL on its GUI or API host) belongs to, if any.

    An exact GUI/API URL wins; otherwise the scheme, host and port decide, so
    ``https://dandiarchive.org/api`` and ``https://api.dandiarchive.org`` both mean ``dandi``
    (dandi-cli turned the former into an instance named ``api.dandiarchive.org``).
    """
    exact = instance_by_url(url)
    if exact is not None:
        return exact
    key = _origin_key(url)
    if key is None:
        return None
    for inst in known_instances().values():
        for candidate in (inst.gui, inst.api):
            if candidate and _origin_key(candidate) == key:
                return inst
    return None


def _instance_name_for_api(api_url: str) -> str:
    """``host[:port]`` of an API URL, IPv6 hosts bracketed (dandi-cli's naming)."""
    parts = urlsplit(api_url)
    host = parts.hostname
    if not host:
        raise ValueError(f"API URL without a host: {api_url!r}")
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port is not None else host


def _service_url(services: dict[str, Any], name: str) -> str | None:
    entry = services.get(name)
    url = entry.get("url") if isinstance(entry, dict) else None
    return url if isinstance(url, str) and url else None


def _instance_from_info(info: Any) -> Instance:
    """Build an instance from a ``/server-info`` or ``/api/info/`` answer (ValueError if bad)."""
    if not isinstance(info, dict):
        raise ValueError("server info is not a JSON object")
    services = info.get("services")
    if not isinstance(services, dict):
        raise ValueError("server info has no 'services'")
    api = _service_url(services, "api")
    if api is None or not api.startswith(("http://", "https://")):
        raise ValueError("server info has no services.api.url")
    gui = _service_url(services, "webui")
    api = api.rstrip("/")
    known = known_instance_for_url(api)
    if known is not None and known.api == api:
        return known
    return Instance(
        name=_instance_name_for_api(api),
        gui=gui.rstrip("/") if gui else None,
        api=api,
    )


#: Instances learnt from servers' info endpoints, by origin; lives for the process.
_server_cache: dict[str, Instance] = {}
_server_cache_lock = threading.Lock()


def clear_instance_cache() -> None:
    """Forget servers looked up so far (tests; long-running processes after a migration)."""
    with _server_cache_lock:
        _server_cache.clear()



# --------------------------------------------------------------------------------------------
# The network side: redirects and server lookups
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    status: int
    location: str | None
    body: bytes | None


def _defrag(url: str) -> tuple[str, str]:
    base, _, frag = url.partition("#")
    return base, frag


_BAD_HOST_CHARS = re.compile(r"[\s\x00-\x1f\x7f/\\?#]")


def _has_host(url: str) -> bool:
    """Whether ``url`` names a host one could send a request to (else it is no URL at all)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return bool(parts.hostname) and not _BAD_HOST_CHARS.search(parts.hostname or "")


class _Resolver:
    """One resolution: a (possibly borrowed) session, the retry policy and a redirect memo."""

    def __init__(self, session: aiohttp.ClientSession | None, retry: RetryPolicy, timeout: float):
        self._session = session
        self._owned: aiohttp.ClientSession | None = None
        self._retry = retry
        self._timeout = timeout
        #: url -> final url, so re-parsing a redirect target never issues the same HEAD twice.
        self._followed: dict[str, str] = {}

    async def aclose(self) -> None:
        if self._owned is not None:
            await self._owned.close()

    def _get_session(self) -> aiohttp.ClientSession:
        # Redirect HEADs go to arbitrary hosts (bit.ly, identifiers.org): never send them a
        # borrowed session's API token.
        if self._session is not None and "Authorization" not in self._session.headers:
            return self._session
        if self._owned is None:
            self._owned = aiohttp.ClientSession(headers={"User-Agent": _USER_AGENT})
        return self._owned

    async def _request(self, method: str, url: str, *, read_body: bool) -> _Reply:
        """One request through the shared executor (retries, Retry-After, fail-fast)."""
        attempts = max(1, self._retry.attempts)

        async def reply(resp: aiohttp.ClientResponse) -> _Reply:
            body = await resp.read() if read_body else None
            return _Reply(resp.status, resp.headers.get("Location"), body)

        def exhausted(status: int, _url: str, _body: bytes) -> Exception:
            return FailedToConnectError(f"{method} request to {url} failed with final {status}"
                                        f" status code after {attempts} attempts")

        try:
            return await Requester(self._get_session(), self._retry).send(
                method, str(yarl.URL(url)), reply, accept=ANY_STATUS, error=exhausted,
                headers={"Accept": "application/json"} if read_body else None,
                timeout=aiohttp.ClientTimeout(total=self._timeout,
                                              sock_connect=min(10.0, self._timeout)),
                read_error_body=False)
        except aiohttp.InvalidURL as e:
            raise FailedToConnectError(f"{method} request to {url} failed: {e}") from e
        except ConnectError:
            raise
        except RequestError as e:
            raise FailedToConnectError(
                f"{method} request to {url} failed with {attempts} attempts: {e}") from e

    async def follow_redirect(self, url: str) -> str:
        """The URL ``url`` finally lands on (HEAD hops), keeping its fragment like ``requests``."""
        if url in self._followed:
            return self._followed[url]
        current = url
        base, fragment = _defrag(url)
        seen = {base}
        for _hop in range(MAX_REDIRECTS + 1):
            reply = await self._request("HEAD", _defrag(current)[0], read_body=False)
            if reply.status in _REDIRECT_STATUSES and reply.location:
                nxt_base, nxt_frag = _defrag(urljoin(_defrag(current)[0], reply.location))
                if nxt_frag:
                    fragment = nxt_frag
                if nxt_base in seen:
                    raise FailedToConnectError(
                        f"HEAD request to {url} ran into a redirect loop"
                        f" ({_defrag(current)[0]} redirects back to {nxt_base})"
                    )
                seen.add(nxt_base)
                current = f"{nxt_base}#{fragment}" if fragment else nxt_base
                continue
            if 200 <= reply.status < 300:
                break
            if reply.status == 404:
                raise NotFoundError(url)
            raise FailedToConnectError(
                f"HEAD request to {url} failed with {reply.status} status code"
                f" (last URL reached: {_defrag(current)[0]})"
            )
        else:
            raise FailedToConnectError(f"HEAD request to {url} exceeded {MAX_REDIRECTS} redirects")
        self._followed[url] = current
        self._followed[current] = current
        return current

    async def server_instance(self, server: str) -> Instance:
        """The instance behind a server URL matched in a GUI/API URL."""
        server = server.rstrip("/")
        if _NETLIFY_PREVIEW.fullmatch(server):
            server = _NETLIFY_PREVIEW_SERVER
        known = known_instance_for_url(server)
        if known is not None:
            return known
        parts = urlsplit(server)
        origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        with _server_cache_lock:
            cached = _server_cache.get(origin)
        if cached is not None:
            return cached
        instance = await self._fetch_server_info(origin, server)
        with _server_cache_lock:
            _server_cache[origin] = instance
        return instance

    async def _fetch_server_info(self, origin: str, server: str) -> Instance:
        """``<origin>/server-info``, falling back to ``<origin>/api/info/``."""
        last: BaseException | None = None
        for endpoint in ("/server-info", "/api/info/"):
            try:
                reply = await self._request("GET", origin + endpoint, read_body=True)
            except FailedToConnectError as e:
                last = e
                break  # the host is unreachable: the other endpoint would be too
            if reply.status != 200:
                last = FailedToConnectError(f"GET {origin}{endpoint}: status {reply.status}")
                continue
            try:
                return _instance_from_info(_json(reply.body))
            except ValueError as e:
                last = e
        why = f": {last}" if isinstance(last, ConnectError) else ""  # the cause, one line
        raise FailedToConnectError(
            f"Could not retrieve server info from {server}, and client does not recognize URL"
            f"{why}"
        ) from last

    async def resolve(self, url: str, glob: bool) -> ParsedURL:
        """Try the patterns in order; recurse on redirect targets."""
        for pattern in _PATTERNS:
            m = pattern.regex.fullmatch(url)
            if m is None:
                continue
            groups = m.groupdict()
            action = pattern.action
            if action is _Action.INSTANCE_PREFIX:
                instance = _instance_by_name(groups["instance_name"])
                if instance is None:
                    continue
                return _classify(instance, groups, glob)
            if action is _Action.DANDI_SCHEME:
                instance = _instance_by_name(groups["instance_name"])
                if instance is None:
                    raise _unknown_instance(groups["instance_name"].lower())
                return _classify(instance, groups, glob)
            if action is _Action.SERVER:
                return _classify(await self.server_instance(groups["server"]), groups, glob)
            if action is _Action.IDENTIFIERS:
                return await self._identifiers(url, groups, glob)
            if action is _Action.IGNORE:
                continue
            if not _has_host(url):
                raise _unknown_url(url)
            target = await self.follow_redirect(url)
            if target != url:
                return await self.resolve(target, glob)
            if action is _Action.REDIRECT_ONLY:
                raise RuntimeError(
                    f"{url} did not redirect to another location which dandi client would"
                    " know how to handle."
                )
            log.debug("Redirection did not happen for %s", url)
        raise _unknown_url(url)

    async def _identifiers(
        self, url: str, groups: Mapping[str, str | None], glob: bool
    ) -> ParsedURL:
        """identifiers.org: follow its redirect; ``/draft`` (or no redirect) maps locally."""
        dandi = known_instances()["dandi"]
        version = groups.get("version")
        if version is not None and version.lower() == "draft":
            # The pattern ignores case; keep the canonical spelling.
            groups = {**groups, "version": "draft"}
        else:
            target = await self.follow_redirect(url)
            if target != url:
                return await self.resolve(target, glob)
        return _classify(dandi, groups, glob)


def _json(body: bytes | None) -> Any:
    try:
        return json.loads(body or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from e


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


async def resolve_url(
    url: str,
    *,
    glob: bool = False,
    session: aiohttp.ClientSession | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> ParsedURL:
    """Parse ``url`` (patterns #1-#12), following redirects and looking up unknown servers.

    Known instances never cost a round trip. ``session`` is borrowed if given (left open);
    ``timeout`` bounds each HEAD/GET (default :data:`REDIRECT_HEAD_TIMEOUT`).
    """
    resolver = _Resolver(
        session, retry or RetryPolicy(), REDIRECT_HEAD_TIMEOUT if timeout is None else timeout
    )
    try:
        parsed = await resolver.resolve(url, glob)
    finally:
        await resolver.aclose()
    return replace(parsed, original=url)


def parse_url(url: str, *, glob: bool = False) -> ParsedURL:
    """Blocking :func:`resolve_url`; safe inside a running event loop (e.g. Jupyter).

    The coroutine runs on a private thread with its own loop, so the caller's loop (if any)
    is neither blocked re-entrantly nor touched.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(resolve_url(url, glob=glob))
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=run, name="dandiget-resolve", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: ParsedURL = box["value"]
    return result
