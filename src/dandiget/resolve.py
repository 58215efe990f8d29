"""Resource identifiers: turn what the user typed into "which instance, Dandiset, version, assets".

The accepted shapes, their order and their error messages are dandi-cli's (``dandi download``
users paste the same URLs and scripts match on the messages). Deliberate differences:

* ``<INSTANCE>:<id>`` accepts the instance name in any case (dandi-cli's docs promise it);
* ``https://identifiers.org/DANDI:<id>/draft`` is accepted (mapped locally, identifiers.org
  cannot resolve it);
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
import posixpath
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
import yarl

from . import __version__
from .errors import (
    ConnectError,
    FailedToConnectError,
    NotFoundError,
    RequestError,
    UnknownURLError,
)
from .instances import Instance, instance_by_url, known_instances
from .requests import ANY_STATUS, Requester
from .retry import RetryPolicy

log = logging.getLogger(__name__)

#: Seconds one HEAD (redirect) or server-info GET may take, as dandi-cli's REDIRECT_HEAD_TIMEOUT.
REDIRECT_HEAD_TIMEOUT = 30.0
#: Redirect hops followed before giving up (the ``requests`` default dandi-cli inherited).
MAX_REDIRECTS = 30
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = f"dandiget/{__version__} aiohttp/{aiohttp.__version__}"


class URLKind(str, Enum):
    """What a parsed identifier selects (dandi-cli's ParsedDandiURL subclasses)."""

    DANDISET = "dandiset"  # DandisetURL
    ASSET_ID = "asset-id"  # AssetIDURL: asset id within a dandiset version
    BASE_ASSET_ID = "base-asset-id"  # BaseAssetIDURL: /api/assets/<id>/...
    ITEM = "item"  # AssetItemURL
    FOLDER = "folder"  # AssetFolderURL
    PREFIX = "prefix"  # AssetPathPrefixURL
    GLOB = "glob"  # AssetGlobURL


_SINGLE_ASSET_KINDS = frozenset({URLKind.ITEM, URLKind.ASSET_ID, URLKind.BASE_ASSET_ID})
_MULTI_ASSET_KINDS = frozenset({URLKind.FOLDER, URLKind.PREFIX, URLKind.GLOB})


@dataclass(frozen=True)
class ParsedURL:
    """A resolved resource identifier. Equality ignores ``original`` (as dandi-cli's objects)."""

    kind: URLKind
    instance: Instance
    dandiset_id: str | None = None
    version_id: str | None = None
    asset_id: str | None = None
    #: Location / prefix / glob exactly as dandi-cli keeps it (folder paths end with "/").
    path: str | None = None
    #: What the user typed (before any redirect).
    original: str = field(default="", compare=False)

    @property
    def is_single_asset(self) -> bool:
        return self.kind in _SINGLE_ASSET_KINDS

    @property
    def is_multi_asset(self) -> bool:
        return self.kind in _MULTI_ASSET_KINDS


# --------------------------------------------------------------------------------------------
# The pattern table (order matters: the first full match wins)
# --------------------------------------------------------------------------------------------

_ID = r"(?P<dandiset_id>[0-9]{6})"
_VERSION = r"(?P<version>draft|[0-9]+\.[0-9]+\.[0-9]+)"
# The host part excludes whitespace so that garbage never reaches the network.
_SERVER = r"(?P<server>https?://[^/\s]+/(?:api/)?)"
_ASSET_ID = r"(?P<asset_id>[^?/]+)"
_VERSIONED = rf"{_SERVER}dandisets/{_ID}/versions/{_VERSION}/assets/"


class _Action(Enum):
    """What to do when a pattern matches."""

    INSTANCE_PREFIX = "instance-prefix"  # NAME:<id>; an unknown NAME means "no match"
    REDIRECT_PASS = "redirect-pass"  # follow redirects; without one keep matching
    IDENTIFIERS = "identifiers"  # identifiers.org: follow redirects, else map locally
    SERVER = "server"  # an instance URL: look the server up
    IGNORE = "ignore"  # listed in the help but never acted on (dandi-cli's dead branch)
    DANDI_SCHEME = "dandi-scheme"  # dandi://NAME/...; an unknown NAME is an error
    REDIRECT_ONLY = "redirect-only"  # any other http(s) URL: it must redirect somewhere


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    action: _Action
    display: str


_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(
        re.compile(rf"(?P<instance_name>[-\w.]+):{_ID}(?:/{_VERSION})?"),
        _Action.INSTANCE_PREFIX,
        "<INSTANCE>:<dandiset id>[/<version>]",
    ),
    _Pattern(
        re.compile(r"https?://gui\.dandiarchive\.org/.*"),
        _Action.REDIRECT_PASS,
        "https://gui.dandiarchive.org/...",
    ),
    _Pattern(
        re.compile(rf"https?://identifiers\.org/DANDI:{_ID}(?:/{_VERSION})?", re.I),
        _Action.IDENTIFIERS,
        "https://identifiers.org/DANDI:<dandiset id>[/<version>]",
    ),
    _Pattern(
        re.compile(
            rf"{_SERVER}(?:#/)?dandiset/{_ID}(?:/{_VERSION})?"
            r"(?:/(?:files(?:\?location=(?P<gui_location>.*))?)?)?"
        ),
        _Action.SERVER,
        "https://<server>[/api]/[#/]dandiset/<dandiset id>[/<version>][/files[?location=<path>]]",
    ),
    _Pattern(
        re.compile(r"https?://[^/]*dandiarchive-org\.netlify\.app/.*"),
        _Action.IGNORE,
        "https://*dandiarchive-org.netlify.app/...",
    ),
    _Pattern(
        re.compile(rf"{_SERVER}dandisets/{_ID}(?:/(?:versions(?:/{_VERSION})?/?)?)?"),
        _Action.SERVER,
        "https://<server>[/api]/dandisets/<dandiset id>[/versions[/<version>]]",
    ),
    _Pattern(
        re.compile(rf"{_SERVER}assets/{_ASSET_ID}(?:/(?:download/?)?)?"),
        _Action.SERVER,
        "https://<server>[/api]/assets/<asset id>[/download]",
    ),
    _Pattern(
        re.compile(rf"{_VERSIONED}{_ASSET_ID}(?:/(?:download/?)?)?"),
        _Action.SERVER,
        "https://<server>[/api]/dandisets/<dandiset id>/versions/<version>"
        "/assets/<asset id>[/download]",
    ),
    _Pattern(
        re.compile(rf"{_VERSIONED}\?path=(?P<path>[^&]+)"),
        _Action.SERVER,
        "https://<server>[/api]/dandisets/<dandiset id>/versions/<version>/assets/?path=<path>",
    ),
    _Pattern(
        re.compile(rf"{_VERSIONED}\?glob=(?P<glob>[^&]+)"),
        _Action.SERVER,
        "https://<server>[/api]/dandisets/<dandiset id>/versions/<version>/assets/?glob=<glob>",
    ),
    _Pattern(
        re.compile(
            rf"dandi://(?P<instance_name>[-\w._]+)/{_ID}(?:@{_VERSION})?(?:/(?P<location>.*))?"
        ),
        _Action.DANDI_SCHEME,
        "dandi://<instance name>/<dandiset id>[@<version>][/<path>]",
    ),
    _Pattern(re.compile(r"https?://.*"), _Action.REDIRECT_ONLY, "https://<server>/..."),
)

#: The lines of the "Accepted resource identifier patterns:" help text, in matching order.
ACCEPTED_PATTERNS: list[str] = [p.display for p in _PATTERNS]
#: The whole help block, as shown by ``--help`` and in :class:`UnknownURLError` messages.
ACCEPTED_PATTERNS_HELP = "Accepted resource identifier patterns:" + "".join(
    f"\n - {line}" for line in ACCEPTED_PATTERNS
)

_NETLIFY_PREVIEW = re.compile(r"https?://deploy-preview-.*--gui-dandiarchive-org\.netlify\.app")
_NETLIFY_PREVIEW_SERVER = "https://sandbox.dandiarchive.org"


def _unknown_url(url: str) -> UnknownURLError:
    return UnknownURLError(
        f"We do not know how to map URL {url} to our servers.\n{ACCEPTED_PATTERNS_HELP}"
    )


def _unknown_instance(name: str) -> UnknownURLError:
    valid = ", ".join(sorted(known_instances()))
    return UnknownURLError(f"Unknown instance {name!r}.  Valid instances: {valid}")


# --------------------------------------------------------------------------------------------
# From a match to a ParsedURL (no network)
# --------------------------------------------------------------------------------------------


def _location(groups: Mapping[str, str | None], glob: bool) -> str:
    """The asset location carried by a GUI ``?location=`` or a ``dandi://`` path.

    A GUI location always names a folder (a "/" is appended) unless in glob mode.
    """
    gui = groups.get("gui_location")
    if gui is not None:
        loc = unquote(gui)
        if not loc.endswith("/") and not glob:
            loc += "/"
        return loc.lstrip("/")
    raw = groups.get("location")
    return unquote(raw).lstrip("/") if raw else ""


def _classify(instance: Instance, groups: Mapping[str, str | None], glob: bool) -> ParsedURL:
    """dandi-cli's decision list from a match's groups to a URL kind (spec 2.4)."""
    dandiset_id = groups.get("dandiset_id")
    version_id = groups.get("version")
    common: dict[str, Any] = {
        "instance": instance,
        "dandiset_id": dandiset_id,
        "version_id": version_id,
    }
    location = _location(groups, glob)
    asset_id = groups.get("asset_id")
    if location:
        if glob:
            kind = URLKind.GLOB
        elif location.endswith("/"):
            kind = URLKind.FOLDER
        else:
            kind = URLKind.ITEM
        return ParsedURL(kind, path=location, **common)
    if asset_id:
        if dandiset_id is None:
            return ParsedURL(URLKind.BASE_ASSET_ID, instance, asset_id=asset_id)
        return ParsedURL(URLKind.ASSET_ID, asset_id=asset_id, **common)
    if groups.get("path"):
        return ParsedURL(URLKind.PREFIX, path=groups["path"], **common)
    if groups.get("glob"):
        return ParsedURL(URLKind.GLOB, path=groups["glob"], **common)
    return ParsedURL(URLKind.DANDISET, **common)


def _instance_by_name(name: str) -> Instance | None:
    return known_instances().get(name.lower())


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


# --------------------------------------------------------------------------------------------
# Local paths (spec 4.5, 4.10)
# --------------------------------------------------------------------------------------------


def normalize_asset_path(path: str) -> str:
    """Posix-normalise an asset path: collapse ``./``, ``..`` and ``//``; ``.`` becomes "".

    A trailing "/" survives, because it is what makes a location a folder.
    """
    absolute = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not absolute:
                parts.append(part)
            continue
        parts.append(part)
    result = "/".join(parts)
    if absolute:
        result = "/" + result
    if path.endswith("/") and result and not result.endswith("/"):
        result += "/"
    return result


def _starts_with_ci(text: str, prefix: str) -> bool:
    """Case-insensitive ``startswith``, the way the server's path filter compares."""
    return text[: len(prefix)].casefold() == prefix.casefold()


def _url_dir(path: str) -> str:
    """D of spec 4.5: the directory part of a folder/prefix URL path, no surrounding "/"."""
    return posixpath.dirname(path.strip("/"))


def relative_download_path(parsed: ParsedURL, asset_path: str, *, preserve_tree: bool) -> str:
    """Where an asset lands, relative to ``<out>/<output_prefix>`` (spec 4.5).

    Unlike dandi-cli, an asset whose path differs in case from the URL's directory part (the
    server's ``path=`` filter ignores case) is stripped case-insensitively instead of
    failing an assertion.
    """
    p = asset_path.lstrip("/")
    if preserve_tree or parsed.kind in (URLKind.DANDISET, URLKind.GLOB):
        return p
    if parsed.is_single_asset:
        return posixpath.basename(p)
    d = _url_dir(parsed.path or "")
    if d and _starts_with_ci(p, d + "/"):
        return p[len(d) + 1 :]
    return p


def output_prefix(parsed: ParsedURL, *, preserve_tree: bool) -> str:
    """The per-URL folder under the output directory: ``<id>`` or ""."""
    if parsed.dandiset_id is None:
        return ""
    if parsed.kind is URLKind.DANDISET or preserve_tree:
        return parsed.dandiset_id
    return ""


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """The server's glob: anchored, case-insensitive, only ``*`` is special (crossing "/")."""
    return re.compile(".*".join(re.escape(s) for s in pattern.split("*")), re.I | re.S)


def in_download_area(parsed: ParsedURL, rel_path: str, *, preserve_tree: bool = False) -> bool:
    """Could an asset selected by ``parsed`` be downloaded to ``rel_path``? (sync, spec 4.10)

    ``rel_path`` is relative to ``<out>/<output_prefix>``. This implements what dandi-cli's
    documentation intends for nested folder/prefix URLs: for ``foo/bar/`` the files land
    under ``bar/``, so only ``bar/...`` is in the area (dandi-cli tested ``foo/``). Matching
    ignores case, as the server's filters do. Single-asset URLs own no area.
    """
    rel = rel_path.lstrip("/")
    if parsed.kind is URLKind.DANDISET:
        return True
    if parsed.is_single_asset or not parsed.path:
        return False
    if parsed.kind is URLKind.GLOB:
        return _glob_regex(parsed.path).fullmatch(rel) is not None
    u = parsed.path.lstrip("/")
    if not preserve_tree:
        d = _url_dir(u)
        if d:
            u = u[len(d) + 1 :]
    return _starts_with_ci(rel, u)
