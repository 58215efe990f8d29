"""The one request executor: every HTTP request dandiget sends goes through :meth:`Requester.send`.

It alone decides what happens between "send this request" and "here is a response worth
reading" (cf. httpx's Client vs Transport split; huggingface_hub's single retrying helper):

* **Retries** on transport errors (reset, truncated body, stall, timeout) and on the statuses
  of :class:`~dandiget.retry.RetryPolicy` (429, 5xx), with exponential backoff and full
  jitter, or the server's ``Retry-After``. Attempts that moved bytes (``progress`` advanced)
  do not count against the budget: a flaky but working link finishes.
* **Fail fast**: a host that refuses the connection, cannot be resolved or is unreachable,
  and has not answered once in this run, is a :class:`~dandiget.errors.ConnectError` at
  once, with one line naming the host and the cause. Retrying cannot fix a typo.
* **Redirects by hand**, hop by hop, so the auth rule is applied to every hop.
* **The auth rule**, in one place (:meth:`ApiAuth.headers_for`): the token goes to the
  instance's API origin only, never to the content host, never to another origin named by
  a redirect or a pagination ``next`` link. A 401 from the API picks up a key (once).
* **Presigned URLs that expire** (403/404 from the content host) are renewed through the
  URL source's ``refresh`` (the API redirect) a bounded number of times.
* **Logging** at DEBUG: every request with its status and time, every retry with its
  reason and delay. URLs are logged without their query string (signatures are secrets).

What to do with a usable response is the caller's ``handle`` coroutine; it may raise a
:class:`~dandiget.errors.RequestError` whose ``retryable`` flag says whether to try again
(from wherever ``progress`` says the caller got to).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Container, Mapping
from typing import Protocol, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp

from .errors import (
    AuthenticationError,
    ConnectError,
    HTTPError,
    RequestError,
    RequestTimeout,
    ResponseError,
    TransportError,
)
from .retry import RetryPolicy, parse_retry_after

log = logging.getLogger("dandiget.requests")

T = TypeVar("T")

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
SUCCESS = range(200, 300)
#: Pass every status that is neither retried nor a redirect to ``handle``.
ANY_STATUS = range(100, 600)
MAX_HOPS = 10
#: A host that never answered gets this many connect timeouts before it is declared
#: unreachable (a blackholed address would otherwise cost attempts x connect timeout).
CONNECT_TIMEOUT_ATTEMPTS = 2


def display_url(url: str) -> str:
    """A URL safe to show: no query string (presigned signatures are credentials)."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, p.path, "", ""))


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, with default ports made explicit."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def redact(text: str, token: str | None) -> str:
    """Remove a secret from text that may end up in a log, record or exception."""
    if token and token in text:
        return text.replace(token, "<redacted>")
    return text


def describe(e: BaseException) -> str:
    """A short, single-line description of a transport error (no reprs, no newlines)."""
    if isinstance(e, RequestError):
        return str(e)
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    if isinstance(e, aiohttp.ClientPayloadError):
        text = str(e).split("\n")[0]
        return f"incomplete body ({text})" if text else "incomplete body"
    text = " ".join(str(e).split())
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _connect_cause(e: aiohttp.ClientConnectorError) -> str:
    """Why a connection could not be made, in words (``connection refused``)."""
    if isinstance(e, aiohttp.ClientConnectorDNSError) or isinstance(e.os_error,
                                                                     socket.gaierror):
        return "cannot resolve host name"
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate not trusted"
    if isinstance(e, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    code = getattr(e.os_error, "errno", None)
    if code == errno.ECONNREFUSED or isinstance(e.os_error, ConnectionRefusedError):
        return "connection refused"
    if code == errno.ENETUNREACH:
        return "network unreachable"
    if code == errno.EHOSTUNREACH:
        return "host unreachable"
    return (getattr(e.os_error, "strerror", None) or describe(e)).lower()


class UrlSource(Protocol):
    """Where a request goes: a current URL, and a way to get a fresh one after 403/404."""

    async def current(self) -> str: ...
    async def refresh(self, status: int) -> bool: ...


class ApiAuth:
    """The API token of one instance and the only origin it may travel to.

    Requests go out anonymously until the API answers 401 (a stale token makes *every*
    request fail, archive-api §4); then ``find_key`` is asked once.
    """

    __slots__ = ("_find_key", "_lock", "_origin", "_tried", "token")

    def __init__(self, api_url: str, token: str | None = None,
                 find_key: Callable[[], str | None] | None = None):
        self._origin = origin(api_url)
        self.token = token
        self._find_key = find_key
        self._tried = token is not None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # never the token
        scheme, host, port = self._origin
        return f"ApiAuth({scheme}://{host}:{port}, token={'set' if self.token else 'none'})"

    def headers_for(self, url: str) -> dict[str, str]:
        """The Authorization header, but only for URLs on the API's own origin."""
        if self.token and origin(url) == self._origin:
            return {"Authorization": f"token {self.token}"}
        return {}

    def on_api_origin(self, url: str) -> bool:
        return origin(url) == self._origin

    async def authenticate(self) -> bool:
        """Pick up an API key after a 401. False when there is none (or it was tried)."""
        async with self._lock:
            if self.token:
                return True
            if self._tried or self._find_key is None:
                return False
            self._tried = True
            key = self._find_key()
            if not key:
                return False
            self.token = key
            return True


ErrorFactory = Callable[[int, str, bytes], Exception]


class Requester:
    """Sends requests over one shared aiohttp session under one retry policy."""

    def __init__(self, session: aiohttp.ClientSession, policy: RetryPolicy | None = None, *,
                 connect_timeout: float = 10.0, read_timeout: float = 60.0):
        self.session = session
        self.policy = policy or RetryPolicy()
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout,
                                             sock_read=read_timeout)
        #: Hosts (``host:port``) that answered at least once: their connect errors are
        #: transient (a restart, a full backlog), everyone else's are fatal.
        self.reached: set[str] = set()
        self.requests = 0
        self.retries = 0

    def with_timeouts(self, *, sock_read: float | None = None) -> aiohttp.ClientTimeout:
        """This requester's timeouts with a different read (stall) deadline."""
        return aiohttp.ClientTimeout(total=None, sock_connect=self.timeout.sock_connect,
                                     sock_read=sock_read or self.timeout.sock_read)

    async def send(
        self,
        method: str,
        url: str | UrlSource,
        handle: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        *,
        headers: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        auth: ApiAuth | None = None,
        accept: Container[int] = SUCCESS,
        follow_redirects: bool = False,
        attempts: int | None = None,
        progress: Callable[[], int] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
        error: ErrorFactory | None = None,
        read_error_body: bool = True,
        decompress: bool = True,
    ) -> T:
        """Send one logical request until ``handle`` returns, or raise why it cannot.

        ``attempts`` overrides the policy's number of tries for failures the server gives
        no advice on; a retryable status with ``Retry-After`` is still waited out and
        retried within the policy's budget.
        ``headers`` may be a callable, evaluated per attempt (a Range that resumes where the
        last attempt stopped). ``accept``: statuses handed to ``handle``; other non-retried
        statuses become ``error(status, url, body)`` (default :class:`HTTPError`).
        """
        policy = self.policy
        budget = max(1, attempts if attempts is not None else policy.attempts)
        attempt = 0
        moved = progress() if progress is not None else 0
        timeout = timeout or self.timeout
        source = None if isinstance(url, str) else url
        fixed_url = url if isinstance(url, str) else None
        hops = 0
        hop_url: str | None = None
        debug = log.isEnabledFor(logging.DEBUG)
        while True:
            attempt += 1
            if progress is not None:
                now = progress()
                if now > moved:  # bytes moved: this is a fresh start, not another failure
                    attempt, moved = 1, now
            target = ""
            retry_after: float | None = None
            try:
                if hop_url is not None:
                    target = hop_url
                elif fixed_url is not None:
                    target = fixed_url
                else:
                    assert source is not None
                    target = await source.current()
                hdrs = dict(headers() if callable(headers) else headers or {})
                if auth is not None:
                    hdrs.update(auth.headers_for(target))
                t0 = time.monotonic()
                self.requests += 1
                async with self.session.request(method, target, headers=hdrs, timeout=timeout,
                                                allow_redirects=False,
                                                raise_for_status=False,
                                                auto_decompress=decompress) as resp:
                    status = resp.status
                    self.reached.add(resp.url.raw_authority.rpartition("@")[2])
                    if debug:
                        log.debug("%s %s -> %d in %.0f ms", method, display_url(target), status,
                                  1000 * (time.monotonic() - t0))
                    if status in REDIRECT_STATUSES and follow_redirects:
                        loc = resp.headers.get("Location")
                        if loc and hops < MAX_HOPS:
                            hops += 1
                            hop_url = urljoin(target, loc)
                            attempt -= 1  # a hop is not a failure
                            continue
                    if status in accept and status not in policy.statuses:
                        return await handle(resp)
                    body = await resp.read() if read_error_body else b""
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if (status == 401 and auth is not None and "Authorization" not in hdrs
                        and await auth.authenticate() and auth.headers_for(target)):
                    attempt -= 1  # now with the key: not a failure
                    continue
                if status in (403, 404) and source is not None and hop_url is None \
                        and await source.refresh(status):
                    attempt -= 1  # the source bounds its own refreshes
                    continue
                # ``attempts`` caps retries on our own judgement; a Retry-After is the
                # server's instruction and is honoured within the policy's whole budget.
                if status in policy.statuses and (attempt < budget or (
                        retry_after is not None and attempt < policy.attempts)):
                    raise _RetryStatus(status)
                failure = (error or _default_error)(status, target, body)
                if isinstance(failure, HTTPError):
                    failure.retry_after = retry_after  # the caller may still honour it
                raise _redacted(failure, auth)
            except _RetryStatus as e:
                reason = f"HTTP {e.status}"
                delay = policy.delay(attempt, retry_after)
            except RequestError as e:
                if not e.retryable:
                    raise
                if attempt >= budget:
                    e.retryable = False  # exhausted here: an outer send must not retry it
                    raise
                reason, delay = str(e), policy.delay(attempt)
            except aiohttp.ClientConnectorError as e:
                host = _hostport(target) if target else "?"
                cause = _connect_cause(e)
                if (host not in self.reached or attempt >= budget
                        or isinstance(e, aiohttp.ClientSSLError)):
                    raise ConnectError(f"cannot connect to {host}: {cause}",
                                       url=display_url(target), host=host, cause=cause) from None
                reason, delay = f"cannot connect to {host}: {cause}", policy.delay(attempt)
            except asyncio.TimeoutError as e:
                host = _hostport(target) if target else "?"
                connecting = isinstance(e, aiohttp.ConnectionTimeoutError)
                if connecting and host not in self.reached and (
                        attempt >= min(budget, CONNECT_TIMEOUT_ATTEMPTS)):
                    raise ConnectError(f"cannot connect to {host}: connect timed out",
                                       url=display_url(target), host=host,
                                       cause="connect timed out") from None
                what = "connect timed out" if connecting else (
                    f"no data for {timeout.sock_read:g} s" if timeout.sock_read else "timed out")
                if attempt >= budget:
                    raise _final(RequestTimeout(
                        f"{method} {display_url(target)}: {what} (gave up after {attempt} "
                        "attempts)", url=display_url(target))) from None
                reason, delay = what, policy.delay(attempt)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError,
                    aiohttp.ClientResponseError) as e:
                if attempt >= budget:
                    raise _final(TransportError(
                        f"{method} {display_url(target)}: {describe(e)} (gave up after "
                        f"{attempt} attempts)", url=display_url(target))) from None
                reason, delay = describe(e), policy.delay(attempt)
            self.retries += 1
            if debug:
                log.debug("%s %s: %s; retry %d/%d in %.2f s", method, display_url(target),
                          reason, attempt, budget, delay)
            hop_url = None
            hops = 0
            await asyncio.sleep(delay)


def _redacted(e: Exception, auth: ApiAuth | None) -> Exception:
    """The error with the token taken out of its message (servers echo what they got)."""
    if auth is not None and auth.token and auth.token in str(e):
        e.args = (redact(str(e), auth.token), *e.args[1:])
    return e


def _final(e: RequestError) -> RequestError:
    e.retryable = False
    return e


class _RetryStatus(Exception):
    def __init__(self, status: int):
        self.status = status


def _hostport(url: str) -> str:
    p = urlsplit(url)
    return p.netloc.rpartition("@")[2] or "?"


def _default_error(status: int, url: str, body: bytes) -> Exception:
    text = " ".join(body[:300].decode("utf-8", "replace").split())
    msg = f"HTTP {status} from {display_url(url)}" + (f": {text}" if text else "")
    if status in (401, 403):
        return AuthenticationError(msg, status=status, url=display_url(url))
    return HTTPError(msg, status=status, url=display_url(url))


__all__ = [
    "ANY_STATUS", "ApiAuth", "Requester", "ResponseError", "UrlSource", "describe",
    "display_url", "origin", "redact",
]
